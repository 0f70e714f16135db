//! MQTT 5.0 UNSUBSCRIBE (§3.10), read here instead of by `mqttbytes`: that crate's reader for this one packet
//! prints every packet identifier to standard error (a `dbg!` left in 0.6.0), so any client could fill gatewayd's
//! log at line rate. The packet is simple: a packet identifier, a property list that may only hold User
//! Properties, then one or more topic filters.

use bytes::{Buf, Bytes};
use mqttbytes::v5::{Unsubscribe, UnsubscribeProperties};

/// The one property an UNSUBSCRIBE may carry (§3.10.2.1.2).
const USER_PROPERTY: u8 = 0x26;

/// Reads the variable header and payload of an UNSUBSCRIBE (`body`: the frame after its fixed header). The error
/// says what is malformed.
pub fn read(mut body: Bytes) -> Result<Unsubscribe, String> {
    let pkid = u16_be(&mut body)?;
    let properties_len = variable_int(&mut body)?;
    if properties_len > body.len() {
        return Err(format!(
            "UNSUBSCRIBE property length {properties_len} past the packet's end"
        ));
    }
    let mut list = body.split_to(properties_len);
    let properties = if list.is_empty() {
        None
    } else {
        let mut user_properties = Vec::new();
        while list.has_remaining() {
            let id = list.get_u8();
            if id != USER_PROPERTY {
                return Err(format!("UNSUBSCRIBE property {id:#04x}"));
            }
            let key = string(&mut list)?;
            let value = string(&mut list)?;
            user_properties.push((key, value));
        }
        Some(UnsubscribeProperties { user_properties })
    };
    let mut filters = Vec::new();
    while body.has_remaining() {
        filters.push(string(&mut body)?);
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        properties,
    })
}

fn u16_be(bytes: &mut Bytes) -> Result<u16, String> {
    if bytes.len() < 2 {
        return Err("UNSUBSCRIBE cut short".into());
    }
    Ok(bytes.get_u16())
}

/// A Variable Byte Integer (§1.5.5): at most four bytes.
fn variable_int(bytes: &mut Bytes) -> Result<usize, String> {
    let mut value = 0usize;
    for shift in [0, 7, 14, 21] {
        if !bytes.has_remaining() {
            return Err("UNSUBSCRIBE cut short in its property length".into());
        }
        let byte = bytes.get_u8();
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("UNSUBSCRIBE property length over four bytes".into())
}

/// A UTF-8 Encoded String (§1.5.4): a two-byte length, then that many bytes of UTF-8.
fn string(bytes: &mut Bytes) -> Result<String, String> {
    let len = usize::from(u16_be(bytes)?);
    if len > bytes.len() {
        return Err("UNSUBSCRIBE string past the packet's end".into());
    }
    String::from_utf8(bytes.split_to(len).to_vec())
        .map_err(|_| "UNSUBSCRIBE string is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// What `mqttbytes` writes is what this reads back.
    #[test]
    fn reads_what_mqttbytes_writes() {
        let mut cases = vec![Unsubscribe::new("a/b")];
        cases.push(Unsubscribe {
            pkid: 65535,
            filters: vec!["x/#".into(), "é/+".into()],
            properties: Some(UnsubscribeProperties {
                user_properties: vec![("k".into(), "v".into()), ("".into(), "".into())],
            }),
        });
        for case in cases {
            let mut buf = BytesMut::new();
            case.write(&mut buf).expect("write");
            let header = 2; // these packets' remaining lengths fit one byte
            assert_eq!(read(buf.freeze().slice(header..)), Ok(case));
        }
    }

    #[test]
    fn refuses_what_is_malformed() {
        for body in [
            &b""[..],
            b"\x00",
            b"\x00\x01\x05\x26",
            b"\x00\x01\x03\x01\x00\x00",
            b"\x00\x01\x80\x80\x80\x80\x01",
            b"\x00\x01\x00\x00\x05ab",
            b"\x00\x01\x00\x00\x02\xff\xfe",
        ] {
            assert!(read(Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }
}
