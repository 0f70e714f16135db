//! The client's short reading of the two server envelopes a busy connection gets most: a publication, read for
//! what a received message keeps (each message's channel, payload and metadata; not the envelope's and messages'
//! ids, positions and replay flags), and a publish ack, which nothing waits for. The field numbers are G2's
//! `OutboundMessage`; prost steps over the fields left out without building them, and reads the metadata map's
//! entries as a list, without a hash map. Every other envelope, and one that is neither or both, is for the full
//! decoding.

use bytes::Bytes;
use prost::Message as _;
use protocols::messageloop::pb::messageloop::shared::v2 as shared;

/// What the short reading made of a frame.
pub(super) enum Read {
    Publication(Vec<Published>),
    PublishAck,
    /// Another envelope, or bytes that do not decode: the full decoding answers.
    Other,
}

/// `OutboundMessage` with only its `publish_ack` (7) and `publication` (8).
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(message, optional, tag = "7")]
    publish_ack: Option<Skipped>,
    #[prost(message, optional, tag = "8")]
    publication: Option<Publication>,
}

/// A message whose fields are all stepped over.
#[derive(Clone, PartialEq, prost::Message)]
struct Skipped {}

#[derive(Clone, PartialEq, prost::Message)]
struct Publication {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<Published>,
}

/// `Message` with only its `channel` (2), `payload` (4) and `metadata` (5).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Published {
    #[prost(string, tag = "2")]
    pub channel: String,
    #[prost(message, optional, tag = "4")]
    pub payload: Option<shared::Payload>,
    #[prost(message, optional, tag = "5")]
    metadata: Option<Metadata>,
}

/// `Metadata`: its `map<string, string> entries` (1) on the wire, a list of key (1) and value (2) messages.
#[derive(Clone, PartialEq, prost::Message)]
struct Metadata {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

impl Published {
    /// The channel, the payload and the metadata entries as headers sorted by name, the last of a repeated name
    /// kept, as a map keeps it.
    pub fn into_parts(self) -> (String, Option<shared::Payload>, Vec<(String, String)>) {
        let mut entries = self.metadata.map(|m| m.entries).unwrap_or_default();
        // Stable: entries of one name stay in the order they came.
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let mut headers: Vec<(String, String)> = Vec::with_capacity(entries.len());
        for Entry { key, value } in entries {
            match headers.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => headers.push((key, value)),
            }
        }
        (self.channel, self.payload, headers)
    }
}

/// Reads `frame` as a publication or a publish ack when it is one of them.
pub(super) fn read(frame: &Bytes) -> Read {
    match Envelope::decode(frame.clone()) {
        Ok(Envelope {
            publish_ack: None,
            publication: Some(publication),
        }) => Read::Publication(publication.messages),
        Ok(Envelope {
            publish_ack: Some(_),
            publication: None,
        }) => Read::PublishAck,
        _ => Read::Other,
    }
}

#[cfg(test)]
mod tests {
    use protocols::messageloop::pb::messageloop::client::v2 as pb;

    use super::*;
    use pb::outbound_message::Envelope as Out;

    fn frame(envelope: Out) -> Bytes {
        pb::OutboundMessage {
            id: "f0d7b3c2-0000-4000-8000-000000000000".into(),
            time: 7,
            envelope: Some(envelope),
        }
        .encode_to_vec()
        .into()
    }

    /// A publication keeps each message's channel, payload and metadata, in order, as the full decoding has them.
    #[test]
    fn a_publication_is_read_for_what_a_received_message_keeps() {
        let message = |channel: &str, data: &'static [u8]| pb::Message {
            id: format!("{channel}-3"),
            channel: channel.into(),
            position: Some(shared::Position {
                stream_epoch: "e".into(),
                offset: Some(3),
            }),
            payload: Some(shared::Payload {
                content_type: "text/plain".into(),
                data: Some(shared::payload::Data::Binary(Bytes::from_static(data))),
            }),
            metadata: Some(shared::Metadata {
                entries: [("k", "v"), ("a", ""), ("z", "26")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
            }),
            replay: true,
        };
        let sent = vec![message("a.b", b"one"), message("a.c", b"two")];
        let bytes = frame(Out::Publication(pb::Publication {
            messages: sent.clone(),
        }));
        let Read::Publication(read) = read(&bytes) else {
            panic!("not read as a publication");
        };
        let kept: Vec<_> = sent
            .into_iter()
            .map(|m| (m.channel, m.payload, sorted(m.metadata)))
            .collect();
        let read: Vec<_> = read.into_iter().map(Published::into_parts).collect();
        assert_eq!(read, kept);
    }

    fn sorted(metadata: Option<shared::Metadata>) -> Vec<(String, String)> {
        let mut headers: Vec<_> = metadata
            .map(|m| m.entries)
            .unwrap_or_default()
            .into_iter()
            .collect();
        headers.sort();
        headers
    }

    /// A name repeated on the wire keeps its last value, as the map of the full decoding does.
    #[test]
    fn a_repeated_metadata_name_keeps_its_last_value() {
        let entry = |key: &str, value: &str| Entry {
            key: key.into(),
            value: value.into(),
        };
        let sent = Envelope {
            publish_ack: None,
            publication: Some(Publication {
                messages: vec![Published {
                    channel: "a".into(),
                    payload: None,
                    metadata: Some(Metadata {
                        entries: vec![
                            entry("k", "1"),
                            entry("b", "x"),
                            entry("k", "2"),
                            entry("k", "3"),
                        ],
                    }),
                }],
            }),
        };
        let bytes = Bytes::from(sent.encode_to_vec());
        let Ok(pb::OutboundMessage {
            envelope: Some(Out::Publication(full)),
            ..
        }) = pb::OutboundMessage::decode(bytes.clone())
        else {
            panic!("not a publication");
        };
        let Read::Publication(mut read) = read(&bytes) else {
            panic!("not read as a publication");
        };
        let (_, _, headers) = read.remove(0).into_parts();
        assert_eq!(headers, sorted(full.messages[0].metadata.clone()));
        assert_eq!(
            headers,
            [("b".into(), "x".into()), ("k".into(), "3".into())]
        );
    }

    #[test]
    fn acks_other_envelopes_and_bad_bytes_are_told_apart() {
        let ack = frame(Out::PublishAck(pb::PublishAck::default()));
        assert!(matches!(read(&ack), Read::PublishAck));
        let connected = frame(Out::Connected(pb::Connected::default()));
        assert!(matches!(read(&connected), Read::Other));
        assert!(matches!(
            read(&Bytes::from_static(b"\x42\xff")),
            Read::Other
        ));
        // Both fields of the one-of (never sent): left to the full decoding, which keeps the last.
        let mut both = ack.to_vec();
        both.extend_from_slice(&frame(Out::Publication(pb::Publication::default())));
        assert!(matches!(read(&Bytes::from(both)), Read::Other));
    }
}
