//! MessageLoop channel names → bus topics and patterns (docs/protocols/messageloop.md, "Session behaviour"):
//! segments split on `.`, no empty segment, `*` one segment, a final `**` zero or more. G2 also requires wildcard
//! keys to be routable: at least one literal segment followed by a single final `*` or `**`. G0 has no wildcards
//! (every character is literal). Channels starting with `$` name gatewayd's internal topics and are refused.

use crate::names::{pattern_from_name, WildcardSyntax};
use core_bus::{Pattern, Topic};

use super::codes::ErrorCode;
use super::generation::Generation;
use super::message::Error;

/// Whether a channel name contains a wildcard character (reference: any `*` counts).
pub fn is_wildcard(channel: &str) -> bool {
    channel.contains('*')
}

fn check_grammar(channel: &str) -> Result<(), Error> {
    if channel.is_empty() {
        return Err(Error::new(ErrorCode::BadRequest, "channel is required"));
    }
    if channel.split('.').any(str::is_empty) {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("invalid channel {channel:?}: empty segment"),
        ));
    }
    if channel.starts_with('$') {
        return Err(Error::new(
            ErrorCode::PermissionDenied,
            format!("channel {channel:?} is reserved"),
        ));
    }
    Ok(())
}

/// The topic an exact channel publishes to. Wildcards are refused with BAD_REQUEST.
pub fn publish_topic(channel: &str) -> Result<Topic, Error> {
    check_grammar(channel)?;
    if is_wildcard(channel) {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("cannot publish to wildcard channel {channel:?}"),
        ));
    }
    Topic::try_from_dotted(channel.as_bytes())
        .map_err(|error| Error::new(ErrorCode::BadRequest, format!("invalid channel: {error}")))
}

/// The pattern a subscription key stands for under `generation`'s rules (`None`: a JSON client not yet
/// known to be G0 or G1, read with G1 rules).
pub fn subscribe_pattern(channel: &str, generation: Option<Generation>) -> Result<Pattern, Error> {
    check_grammar(channel)?;
    let syntax = match generation {
        Some(Generation::G0) => WildcardSyntax::Literal,
        Some(Generation::G1 | Generation::G2) | None => WildcardSyntax::MessageLoop,
    };
    if syntax == WildcardSyntax::MessageLoop && is_wildcard(channel) {
        let segments: Vec<&str> = channel.split('.').collect();
        let last = segments.len() - 1;
        let grammatical = segments.iter().enumerate().all(|(i, segment)| {
            !segment.contains('*') || *segment == "*" || (*segment == "**" && i == last)
        });
        let routable = last >= 1
            && segments[..last]
                .iter()
                .all(|segment| !segment.contains('*'))
            && matches!(segments[last], "*" | "**");
        if generation == Some(Generation::G2) && !routable {
            return Err(Error::new(
                ErrorCode::PatternNotRoutable,
                format!(
                    "pattern {channel:?} is not routable: use literal segments and a final * or **"
                ),
            ));
        }
        if !grammatical {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("invalid pattern {channel:?}: ** must be the whole last segment"),
            ));
        }
    }
    pattern_from_name(channel, syntax).map_err(|error| {
        Error::new(
            ErrorCode::BadRequest,
            format!("invalid channel {channel:?}: {error}"),
        )
    })
}

/// The internal topic carrying presence join/leave events of `channel`: `$messageloop.presence.<channel>`
/// (the channel is one escaped token).
pub fn presence_topic(channel: &str) -> Topic {
    Topic::from_tokens([b"$messageloop".as_slice(), b"presence", channel.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<Pattern, Error>) -> String {
        result.map_or_else(|e| e.code.as_str().to_owned(), |p| p.as_str().to_owned())
    }

    #[test]
    fn g2_routability() {
        let g2 = Some(Generation::G2);
        assert_eq!(code(subscribe_pattern("chat.**", g2)), "chat.#");
        assert_eq!(code(subscribe_pattern("chat.*", g2)), "chat.*");
        assert_eq!(
            code(subscribe_pattern("chat.messages", g2)),
            "chat.messages"
        );
        for bad in ["*.room", "im.*.tick", "a*b", "*", "**", "a.**.b"] {
            assert_eq!(
                code(subscribe_pattern(bad, g2)),
                "PATTERN_NOT_ROUTABLE",
                "{bad}"
            );
        }
        for bad in ["", "a.", ".a", "a..b"] {
            assert_eq!(code(subscribe_pattern(bad, g2)), "BAD_REQUEST", "{bad:?}");
        }
        assert_eq!(code(subscribe_pattern("$rpc.x", g2)), "PERMISSION_DENIED");
    }

    #[test]
    fn g1_allows_inner_stars_and_g0_is_literal() {
        let g1 = Some(Generation::G1);
        assert_eq!(code(subscribe_pattern("im.*.tick", g1)), "im.*.tick");
        assert_eq!(code(subscribe_pattern("**", g1)), "#");
        assert_eq!(code(subscribe_pattern("a.**.b", g1)), "BAD_REQUEST");
        assert_eq!(code(subscribe_pattern("a*b", None)), "BAD_REQUEST");
        assert_eq!(
            code(subscribe_pattern("a.*", Some(Generation::G0))),
            "a.%2A"
        );
    }

    #[test]
    fn publish_needs_an_exact_channel() {
        assert_eq!(publish_topic("chat.x").unwrap().as_str(), "chat.x");
        assert_eq!(
            publish_topic("chat.*").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(publish_topic("").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            presence_topic("a.b").as_str(),
            "$messageloop.presence.a%2Eb"
        );
    }
}
