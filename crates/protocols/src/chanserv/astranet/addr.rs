//! AstraNet addressing: the 64-bit node id ("host") and the virtual `host:port` address of a stream end.
//!
//! A host's text form is its 8 bytes big-endian in unpadded base64url (11 characters), and host 0 prints as
//! `--anyone---`, as AstraNet's `addr.Uint2Host` does. An address prints as `<host>:<decimal port>`, which is what a
//! chanserv server announces as a source address, and parses back from that form.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A node id. On the wire it is a big-endian `u64`; 0 means "nobody in particular" (the local link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HostId(pub u64);

impl HostId {
    /// The id of nobody in particular: the destination of link-level ops (HANDSHAKE, SERVICE, PING, …).
    pub const ANYONE: HostId = HostId(0);
}

/// The text form of [`HostId::ANYONE`].
const ANYONE_TEXT: &str = "--anyone---";

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str(ANYONE_TEXT);
        }
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.to_be_bytes()))
    }
}

/// One end of a virtual stream: a host and a port on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    pub host: HostId,
    pub port: u32,
}

impl Addr {
    pub const fn new(host: HostId, port: u32) -> Self {
        Addr { host, port }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Text that is not an address's `<host>:<port>` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an AstraNet address: {0:?}")]
pub struct InvalidAddr(pub String);

impl FromStr for Addr {
    type Err = InvalidAddr;

    fn from_str(text: &str) -> Result<Addr, InvalidAddr> {
        let bad = || InvalidAddr(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = match host {
            ANYONE_TEXT => HostId::ANYONE,
            host => {
                let bytes = URL_SAFE_NO_PAD.decode(host).map_err(|_| bad())?;
                HostId(u64::from_be_bytes(bytes.try_into().map_err(|_| bad())?))
            }
        };
        Ok(Addr::new(host, port.parse().map_err(|_| bad())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_text_form_matches_documented_examples() {
        assert_eq!(HostId(0x547C_9609_6AF7_F642).to_string(), "VHyWCWr39kI");
        assert_eq!(HostId(0x1122_3344_5566_7788).to_string(), "ESIzRFVmd4g");
        assert_eq!(HostId::ANYONE.to_string(), "--anyone---");
    }

    #[test]
    fn addr_text_form_is_host_colon_port() {
        let addr = Addr::new(HostId(0x547C_9609_6AF7_F642), 16_777_219);
        assert_eq!(addr.to_string(), "VHyWCWr39kI:16777219");
        // The fixture server's id and the address it announced for its first source.
        let addr = Addr::new(HostId(0x4dfd_eff2_2906_7958), 16_777_218);
        assert_eq!(addr.to_string(), "Tf3v8ikGeVg:16777218");
    }

    #[test]
    fn addr_parses_from_its_text_form() {
        for addr in [
            Addr::new(HostId(0x547C_9609_6AF7_F642), 16_777_219),
            Addr::new(HostId::ANYONE, 0),
        ] {
            assert_eq!(addr.to_string().parse(), Ok(addr));
        }
        for bad in [
            "nope",
            "AAAA:1",
            "VHyWCWr39kI:x",
            "VHyWCWr39kI:-1",
            " VHyWCWr39kI:1",
        ] {
            assert_eq!(bad.parse::<Addr>(), Err(InvalidAddr(bad.to_owned())));
        }
    }
}
