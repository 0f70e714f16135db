//! The STOMP CONNECT frame gatewayctl sends, over TCP ([`super::stomp`]) and over WebSocket (`bench conns --ws`),
//! with the [`Credentials`] as `login`/`passcode`. CONNECT headers are not escaped (STOMP 1.2 keeps them as 1.0
//! had them), so a login or token may hold `:` and `\` but no line break or NUL.

use super::{ClientError, Credentials};

/// CONNECT for STOMP 1.2 without heart-beats, ending with its NUL.
pub fn connect_frame(credentials: &Credentials) -> Result<String, ClientError> {
    let mut frame = String::from("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n");
    for (name, value) in [
        ("login", &credentials.login),
        ("passcode", &credentials.token),
    ] {
        let Some(value) = value else {
            continue;
        };
        if value.contains(['\n', '\r', '\0']) {
            return Err(ClientError::Credentials(format!(
                "a STOMP {name} cannot hold a line break or NUL"
            )));
        }
        frame.push_str(name);
        frame.push(':');
        frame.push_str(value);
        frame.push('\n');
    }
    frame.push_str("\n\0");
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(login: Option<&str>, token: Option<&str>) -> Credentials {
        Credentials {
            login: login.map(str::to_owned),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn credentials_become_unescaped_login_and_passcode() {
        assert_eq!(
            connect_frame(&Credentials::default()).unwrap(),
            "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0"
        );
        let frame = connect_frame(&credentials(Some("a:b"), Some("t\\c"))).unwrap();
        assert!(
            frame.ends_with("\nlogin:a:b\npasscode:t\\c\n\n\0"),
            "{frame:?}"
        );
        let frame = connect_frame(&credentials(None, Some("jwt"))).unwrap();
        assert!(!frame.contains("login:"), "{frame:?}");
        assert!(frame.contains("\npasscode:jwt\n"), "{frame:?}");
    }

    #[test]
    fn line_breaks_are_refused() {
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert!(matches!(
                connect_frame(&credentials(Some(bad), None)),
                Err(ClientError::Credentials(_))
            ));
            assert!(connect_frame(&credentials(None, Some(bad))).is_err());
        }
    }
}
