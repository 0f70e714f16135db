//! The HANDSHAKE payload (docs/protocols/chanserv.md, "Link setup"): JSON
//! `{"RAddr":"<peer's TCP ip:port as the sender sees it>"}`.
//!
//! Like Go's `encoding/json`, the reader ignores unknown keys and takes a missing or `null` `RAddr` as `""`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Handshake {
    #[serde(rename = "RAddr", default)]
    raddr: Option<String>,
}

/// The payload gatewayd sends: `peer_addr` is the peer's TCP address as gatewayd sees it (`""` if unknown).
pub(super) fn encode(peer_addr: &str) -> Bytes {
    let body = Handshake {
        raddr: Some(peer_addr.to_owned()),
    };
    // Serialising a struct of one string field cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The peer's view of gatewayd's address, or why the payload is not a handshake.
pub(super) fn decode(payload: &[u8]) -> Result<String, serde_json::Error> {
    let body: Handshake = serde_json::from_slice(payload)?;
    Ok(body.raddr.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go() {
        assert_eq!(
            &encode("10.0.0.7:51234")[..],
            br#"{"RAddr":"10.0.0.7:51234"}"#
        );
        assert_eq!(&encode("")[..], br#"{"RAddr":""}"#);
    }

    #[test]
    fn decodes_leniently_but_rejects_non_json() {
        assert_eq!(
            decode(br#"{"RAddr":"127.0.0.1:25555"}"#).unwrap(),
            "127.0.0.1:25555"
        );
        assert_eq!(decode(br#"{"Other":1}"#).unwrap(), "");
        assert_eq!(decode(br#"{"RAddr":null}"#).unwrap(), "");
        assert!(decode(b"").is_err());
        assert!(decode(b"RAddr").is_err());
        assert!(decode(br#"{"RAddr":5}"#).is_err());
    }
}
