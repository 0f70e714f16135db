//! WebSocket subprotocol negotiation (docs/protocols/messageloop.md, "Listeners and ports"). G1/G2 servers offer
//! `messageloop`, `messageloop+json`, `messageloop+proto` and take the first of those, in that order, that the
//! client also offered; only `messageloop+proto` means binary protobuf. The G0 server takes the first offered
//! subprotocol that contains `json` (JSON) or `proto` (protobuf). Without a match the encoding is JSON and no
//! subprotocol is echoed.

use super::generation::{Encoding, Generation, GenerationSetting};

/// The subprotocols a G1/G2 server offers, in preference order.
pub const SERVER_SUBPROTOCOLS: [&str; 3] = ["messageloop", "messageloop+json", "messageloop+proto"];

/// Outcome of negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Value for the `Sec-WebSocket-Protocol` response header, if any.
    pub subprotocol: Option<String>,
    pub encoding: Encoding,
}

/// Chooses the subprotocol and encoding from the client's `Sec-WebSocket-Protocol` header values (each
/// may be a comma-separated list). With [`GenerationSetting::Auto`] the G1/G2 rule is tried first, then
/// the G0 rule.
pub fn negotiate<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    setting: GenerationSetting,
) -> Negotiated {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .collect();
    let chosen = match setting {
        GenerationSetting::Fixed(Generation::G0) => by_contents(&offered),
        GenerationSetting::Fixed(Generation::G1 | Generation::G2) => by_server_order(&offered),
        GenerationSetting::Auto => by_server_order(&offered).or_else(|| by_contents(&offered)),
    };
    chosen.unwrap_or(Negotiated {
        subprotocol: None,
        encoding: Encoding::Json,
    })
}

fn by_server_order(offered: &[&str]) -> Option<Negotiated> {
    let chosen = SERVER_SUBPROTOCOLS
        .iter()
        .find(|server| offered.contains(server))?;
    Some(Negotiated {
        subprotocol: Some((*chosen).to_owned()),
        encoding: if *chosen == "messageloop+proto" {
            Encoding::Protobuf
        } else {
            Encoding::Json
        },
    })
}

fn by_contents(offered: &[&str]) -> Option<Negotiated> {
    offered.iter().find_map(|token| {
        let encoding = if token.contains("json") {
            Encoding::Json
        } else if token.contains("proto") {
            Encoding::Protobuf
        } else {
            return None;
        };
        Some(Negotiated {
            subprotocol: Some((*token).to_owned()),
            encoding,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const G2: GenerationSetting = GenerationSetting::Fixed(Generation::G2);
    const G0: GenerationSetting = GenerationSetting::Fixed(Generation::G0);

    fn pick(offered: &[&str], setting: GenerationSetting) -> (Option<String>, Encoding) {
        let negotiated = negotiate(offered.iter().copied(), setting);
        (negotiated.subprotocol, negotiated.encoding)
    }

    #[test]
    fn server_order_wins_over_client_order() {
        assert_eq!(
            pick(&["messageloop+proto, messageloop"], G2),
            (Some("messageloop".into()), Encoding::Json)
        );
        assert_eq!(
            pick(&["messageloop+proto"], G2),
            (Some("messageloop+proto".into()), Encoding::Protobuf)
        );
        assert_eq!(
            pick(&["messageloop+json"], GenerationSetting::Auto),
            (Some("messageloop+json".into()), Encoding::Json)
        );
        assert_eq!(pick(&[], G2), (None, Encoding::Json));
        assert_eq!(pick(&["x-proto"], G2), (None, Encoding::Json));
    }

    #[test]
    fn g0_matches_by_contents_in_client_order() {
        assert_eq!(
            pick(&["x-proto", "y-json"], G0),
            (Some("x-proto".into()), Encoding::Protobuf)
        );
        assert_eq!(
            pick(&["messageloop+json"], G0),
            (Some("messageloop+json".into()), Encoding::Json)
        );
        assert_eq!(pick(&["other"], G0), (None, Encoding::Json));
    }

    #[test]
    fn auto_falls_back_to_the_g0_rule() {
        assert_eq!(
            pick(&["foo+proto", "messageloop+proto"], GenerationSetting::Auto),
            (Some("messageloop+proto".into()), Encoding::Protobuf)
        );
        assert_eq!(
            pick(&["foo+proto"], GenerationSetting::Auto),
            (Some("foo+proto".into()), Encoding::Protobuf)
        );
    }
}
