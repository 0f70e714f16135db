//! What every protocol's config section shares: [`ConfigError`], a refused value named by its dotted key, and
//! [`restart_only!`](crate::restart_only), how a section declares the fields only a restart applies.

use std::fmt::Display;

/// A config value that cannot be used: the dotted key that holds it (`stomp.auth.jwt.public_key_file`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Display) -> ConfigError {
        ConfigError {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    /// The same error seen from the enclosing `section`: `tls.cert_file` inside `stomp.tls` is
    /// `stomp.tls.tls.cert_file`.
    pub fn within(self, section: &str) -> ConfigError {
        ConfigError {
            key: format!("{section}.{}", self.key),
            reason: self.reason,
        }
    }
}

/// Refuses a zero where at least 1 is needed.
pub fn at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    match value {
        0 => Err(ConfigError::new(key, "must be at least 1")),
        _ => Ok(()),
    }
}

/// The dotted keys, under `$section`, of the listed fields whose values differ between `$old` and `$new`: a
/// section's restart-only fields, declared once next to its struct (`restart_only!("mqtt", old, new, [tcp.address,
/// tls.tls])`), so that a renamed field fails to compile instead of going unreported.
#[macro_export]
macro_rules! restart_only {
    ($section:literal, $old:expr, $new:expr, [$($($field:ident).+),* $(,)?]) => {{
        let (old, new) = ($old, $new);
        let mut keys: Vec<String> = Vec::new();
        $(
            if old.$($field).+ != new.$($field).+ {
                keys.push(concat!($section, ".", stringify!($($field).+)).to_owned());
            }
        )*
        keys
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Inner {
        address: u16,
    }

    #[derive(Default)]
    struct Section {
        enabled: bool,
        tcp: Inner,
    }

    #[test]
    fn restart_only_names_the_changed_fields_by_their_keys() {
        let old = Section::default();
        let new = Section {
            enabled: true,
            tcp: Inner { address: 1 },
        };
        let keys = restart_only!("demo", &old, &new, [enabled, tcp.address]);
        assert_eq!(keys, ["demo.enabled", "demo.tcp.address"]);
        assert!(restart_only!("demo", &old, &old, [enabled, tcp.address]).is_empty());
    }

    #[test]
    fn an_error_moves_into_its_section() {
        let error = ConfigError::new("tls.cert_file", "missing").within("stomp.tls");
        assert_eq!(error.key, "stomp.tls.tls.cert_file");
        assert_eq!(error.to_string(), "stomp.tls.tls.cert_file: missing");
        assert_eq!(at_least_one("mqtt.write_batch", 1), Ok(()));
        assert_eq!(
            at_least_one("mqtt.write_batch", 0).map_err(|e| e.key),
            Err("mqtt.write_batch".to_owned())
        );
    }
}
