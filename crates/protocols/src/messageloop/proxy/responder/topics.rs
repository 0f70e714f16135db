//! Which bus requests the proxy responder can serve: a request topic as the (channel, method) a route
//! matches, and the bus patterns the responder listens on for a route.
//!
//! - `$rpc.messageloop.<channel>.<method>` (one token each): that channel and method.
//! - `$rpc.goomerang.<kind>`: the kind split at its last dot (`orders.Create` → `orders`, `Create`).
//! - any other topic outside the internal `$` namespace: channel = the topic minus its last token (dotted),
//!   method = the last token (`orders.eu.create` → `orders.eu`, `create`).
//!
//! Nothing else maps (other internal topics, an empty channel or method). Wildcards never match internal
//! topics, so the two `$rpc` forms are listened on only for routes whose globs are literal; plain topics follow
//! wildcard globs too (a token with `*` or `?` listens as `#`, and the globs decide on each request).

use core_bus::names::{rpc_topic, RPC_TOKEN};
use core_bus::{escape_token_into, unescape_token, Pattern, Topic};

use super::super::config::RouteConfig;

/// The RPC protocol token of MessageLoop requests (`$rpc.messageloop.…`).
const MESSAGELOOP: &str = "messageloop";
/// The RPC protocol token of Goomerang `SendSync` (`$rpc.goomerang.…`).
const GOOMERANG: &str = "goomerang";

/// The (channel, method) a request on `topic` asks for, if the topic maps to one.
pub fn request_of(topic: &Topic) -> Option<(String, String)> {
    let tokens = topic
        .tokens()
        .map(|token| {
            unescape_token(token)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
        })
        .collect::<Option<Vec<String>>>()?;
    let (channel, method) = if topic.is_internal() {
        match tokens.as_slice() {
            [rpc, protocol, channel, method] if rpc == RPC_TOKEN && protocol == MESSAGELOOP => {
                (channel.clone(), method.clone())
            }
            [rpc, protocol, kind] if rpc == RPC_TOKEN && protocol == GOOMERANG => {
                let (channel, method) = kind.rsplit_once('.')?;
                (channel.to_owned(), method.to_owned())
            }
            _ => return None,
        }
    } else {
        let (method, channel) = tokens.split_last()?;
        (channel.join("."), method.clone())
    };
    (!channel.is_empty() && !method.is_empty()).then_some((channel, method))
}

/// The patterns the responder subscribes to for `routes`, without duplicates.
pub fn patterns(routes: &[RouteConfig]) -> Vec<Pattern> {
    let mut patterns: Vec<Pattern> = Vec::new();
    for route in routes {
        if route.channel.is_empty() || route.method.is_empty() {
            continue;
        }
        let mut add = |pattern: Pattern| {
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        };
        if is_literal(&route.channel) && is_literal(&route.method) {
            let (channel, method) = (route.channel.as_bytes(), route.method.as_bytes());
            add(Pattern::exact(&rpc_topic(MESSAGELOOP, [channel, method])));
            let kind = format!("{}.{}", route.channel, route.method);
            add(Pattern::exact(&rpc_topic(GOOMERANG, [kind])));
        }
        if let Some(plain) = plain_pattern(&route.channel, &route.method) {
            add(plain);
        }
    }
    patterns
}

fn is_literal(glob: &str) -> bool {
    !glob.contains(['*', '?'])
}

/// The plain topics `<channel>.<method>` the globs can match: literal tokens as they are, a token with a glob
/// character as `#` (a glob `*` may span dots). `None` when the channel starts in the internal namespace.
fn plain_pattern(channel: &str, method: &str) -> Option<Pattern> {
    if channel.starts_with('$') {
        return None;
    }
    let mut text = String::with_capacity(channel.len() + method.len() + 1);
    let mut last_hash = false;
    for token in channel.split('.').chain(std::iter::once(method)) {
        let hash = !is_literal(token);
        if hash && last_hash {
            continue;
        }
        if !text.is_empty() {
            text.push('.');
        }
        if hash {
            text.push('#');
        } else {
            escape_token_into(token.as_bytes(), &mut text);
        }
        last_hash = hash;
    }
    Pattern::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(channel: &str, method: &str) -> RouteConfig {
        RouteConfig {
            channel: channel.into(),
            method: method.into(),
        }
    }

    fn request(canonical: &str) -> Option<(String, String)> {
        request_of(&Topic::parse(canonical).unwrap())
    }

    fn pair(channel: &str, method: &str) -> Option<(String, String)> {
        Some((channel.into(), method.into()))
    }

    #[test]
    fn topics_map_to_channel_and_method() {
        assert_eq!(
            request("$rpc.messageloop.chat%2Eroom.echo"),
            pair("chat.room", "echo")
        );
        assert_eq!(
            request("$rpc.goomerang.orders%2ECreate"),
            pair("orders", "Create")
        );
        assert_eq!(request("$rpc.goomerang.a%2Eb%2EC"), pair("a.b", "C"));
        assert_eq!(request("orders.eu.create"), pair("orders.eu", "create"));
        assert_eq!(request("v1%2E0.get"), pair("v1.0", "get"));
        assert_eq!(request("$rpc.goomerang.Plain"), None);
        assert_eq!(request("$rpc.loom.a.b"), None);
        assert_eq!(request("$inbox.1.x"), None);
        assert_eq!(request("orders"), None);
        assert_eq!(request_of(&Topic::from_tokens(["", "get"])), None);
    }

    #[test]
    fn literal_routes_listen_on_three_exact_topics_and_globs_on_plain_ones() {
        let texts = |routes: &[RouteConfig]| -> Vec<String> {
            patterns(routes)
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            texts(&[route("chat.room", "echo")]),
            [
                "$rpc.messageloop.chat%2Eroom.echo",
                "$rpc.goomerang.chat%2Eroom%2Eecho",
                "chat.room.echo"
            ]
        );
        assert_eq!(texts(&[route("orders.*", "*")]), ["orders.#"]);
        assert_eq!(
            texts(&[route("orders.*", "get"), route("orders.*", "get")]),
            ["orders.#.get"]
        );
        assert_eq!(texts(&[route("", "$authenticate")]), Vec::<String>::new());
        assert_eq!(texts(&[route("*", "*")]), ["#"]);
        // Every topic a route's plain pattern lets through is still decided by the globs.
        let plain = Pattern::parse("orders.#.get").unwrap();
        assert!(plain.matches(&Topic::from_dotted(b"orders.eu.get")));
    }
}
