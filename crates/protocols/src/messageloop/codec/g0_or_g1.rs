//! Replies to a JSON connection that is G0 or G1, not yet known which (both SDKs send version `1.0.0` and the
//! same Connect and Subscribe). The G0 SDK parses with protojson's defaults, which reject unknown keys; the G1
//! SDK drops them. So a reply carries only what both generations define: it is rendered as G0 and as G1, and
//! only the keys present in both renderings with the same meaning are kept (G1's `epoch`, `presence`,
//! `recover_results`, a publish ack's `id`, G0's envelope `metadata` are left out).
//!
//! Where the two type one key differently, a G0 CloudEvent against a G1 `Payload` or `RpcReply` (a delivered
//! message's `payload`, `rpc_reply`, a survey's `payload`), G0's CloudEvent is written: the G0 SDK would fail on
//! G1's keys, the G1 SDK reads an empty payload. A G1 client that only subscribes on an `auto` listener thus
//! gets no payload data until it sends a message with a G1 shape; `generation = "g1"` on the listener avoids
//! that. Messages either generation lacks (presence, server ping, recovery notices) are not sent.

use serde_json::{Map, Value};

/// The reply both a G0 and a G1 client read: `g0` and `g1` are the same outbound message rendered by each
/// generation's JSON encoding.
pub fn common_reply(g0: &Value, g1: &Value) -> Value {
    let mut g1 = g1.clone();
    put_cloud_events(g0, &mut g1);
    common(g0, &g1).unwrap_or_else(|| Value::Object(Map::new()))
}

/// Copies G0's CloudEvents into the slots where G1 has a differently typed value, so they count as common.
fn put_cloud_events(g0: &Value, g1: &mut Value) {
    let (Some(g0), Some(g1)) = (g0.as_object(), g1.as_object_mut()) else {
        return;
    };
    if g1.contains_key("rpc_reply") {
        // A G1 RpcReply is G0's `rpc_reply` event, or G0's `error` when the reply failed.
        g1.remove("rpc_reply");
        for key in ["rpc_reply", "error"] {
            if let Some(value) = g0.get(key) {
                g1.insert(key.to_owned(), value.clone());
            }
        }
    }
    if let (Some(event), Some(survey)) = (
        g0.get("survey_request").and_then(|s| s.get("payload")),
        g1.get_mut("survey_request").and_then(Value::as_object_mut),
    ) {
        survey.insert("payload".to_owned(), event.clone());
    }
    let (Some(events), Some(messages)) = (
        g0.get("publication")
            .and_then(|p| p.get("messages"))
            .and_then(Value::as_array),
        g1.get_mut("publication")
            .and_then(|p| p.get_mut("messages"))
            .and_then(Value::as_array_mut),
    ) else {
        return;
    };
    for (event, message) in events.iter().zip(messages) {
        if let (Some(payload), Some(message)) = (event.get("payload"), message.as_object_mut()) {
            message.insert("payload".to_owned(), payload.clone());
        }
    }
}

/// What two renderings share: equal values, objects by their common keys, arrays of equal length element by
/// element. `None` when nothing is shared (different scalars, lengths or kinds). Recursion is bounded by the
/// depth of gatewayd's own renderings, whose payload objects are depth-checked when decoded.
fn common(a: &Value, b: &Value) -> Option<Value> {
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => Some(Value::Object(
            a.iter()
                .filter_map(|(key, left)| {
                    let right = b.get(key)?;
                    Some((key.clone(), common(left, right)?))
                })
                .collect(),
        )),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .map(|(left, right)| common(left, right))
            .collect::<Option<Vec<Value>>>()
            .map(Value::Array),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_shared_keys() {
        let g0 = json!({"id":"1","time":"5","connected":{"session_id":"s"}});
        let g1 = json!({"id":"1","time":"5","connected":{"session_id":"s","epoch":"e","presence":[{"channel":"c"}]}});
        assert_eq!(common_reply(&g0, &g1), g0);
        let g0 = json!({"id":"2","subscribe_ack":{"subscriptions":[{"channel":"c"}]}});
        let g1 = json!({"id":"2","subscribe_ack":{"subscriptions":[{"channel":"c"}],"epoch":"e"}});
        assert_eq!(common_reply(&g0, &g1), g0);
        let g0 = json!({"id":"3","publish_ack":{}});
        let g1 = json!({"id":"3","publish_ack":{"id":"3","offset":"4"}});
        assert_eq!(common_reply(&g0, &g1), g0);
    }

    #[test]
    fn deliveries_carry_the_cloud_event() {
        let event = json!({"id":"e","source":"demo","spec_version":"1.0","type":"demo.message","binary_data":"aGk="});
        let g0 = json!({"id":"u","publication":{"messages":[{"id":"m","channel":"demo","offset":"1","payload":event}]}});
        let g1 = json!({"id":"u","publication":{"messages":[{"id":"m","channel":"demo","offset":"1",
            "payload":{"content_type":"text/plain","text":"hi"},"metadata":{"entries":{"a":"b"}}}]}});
        assert_eq!(common_reply(&g0, &g1), g0);
    }

    #[test]
    fn rpc_replies_follow_g0() {
        let g0 = json!({"id":"r","error":{"code":"RPC_TIMEOUT"}});
        let g1 = json!({"id":"r","rpc_reply":{"request_id":"r","error":{"code":"RPC_TIMEOUT"}}});
        assert_eq!(common_reply(&g0, &g1), g0);
    }

    #[test]
    fn odd_shapes_share_nothing() {
        assert_eq!(common(&json!([1, 2]), &json!([1])), None);
        assert_eq!(common(&json!("a"), &json!(1)), None);
        assert_eq!(common_reply(&json!(1), &json!(2)), json!({}));
    }
}
