//! Credentials in a chanserv request. AstraNet and chanserv carry none, so a request body may start with one
//! line `AUTH <token>` (LF or CRLF) before the request itself; the token is checked by `[chanserv.auth]` (static
//! tokens or JWT) and its identity's ACL applies to that request. A Go client prepends it to the body it
//! passes to `LookupAndPost`.

use bytes::Bytes;

/// The first word of the credentials line.
pub const AUTH_PREFIX: &[u8] = b"AUTH ";

/// Splits the token off `body`: `(Some(token), rest)` when it starts with an `AUTH` line, else `(None, body)`.
/// A token that is not UTF-8 counts as empty (refused as invalid, never as absent).
pub fn split_token(body: Bytes) -> (Option<String>, Bytes) {
    if !body.starts_with(AUTH_PREFIX) {
        return (None, body);
    }
    let end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let line = &body[AUTH_PREFIX.len()..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token = std::str::from_utf8(line)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let rest = body.slice((end + 1).min(body.len())..);
    (Some(token), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_line_is_taken_off() {
        let (token, rest) = split_token(Bytes::from_static(b"AUTH s3cret\r\nPUB a\nhi"));
        assert_eq!(token.as_deref(), Some("s3cret"));
        assert_eq!(&rest[..], b"PUB a\nhi");
        let (token, rest) = split_token(Bytes::from_static(b"orders.eu\n"));
        assert_eq!(token, None);
        assert_eq!(&rest[..], b"orders.eu\n");
        let (token, rest) = split_token(Bytes::from_static(b"AUTH \xff"));
        assert_eq!(token.as_deref(), Some(""));
        assert!(rest.is_empty());
    }
}
