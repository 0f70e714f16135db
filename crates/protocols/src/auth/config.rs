//! A listener's `[auth]` section as configured: static tokens, JWT settings, certificate identities, the
//! anonymous identity, and the start-up rule that anonymous access next to required credentials is said aloud.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Identity;

/// One static token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// When set, the client's login must equal it too (STOMP login/passcode).
    #[serde(default)]
    pub login: Option<String>,
    pub token: String,
    pub identity: Identity,
}

/// The identity of one TLS client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateIdentity {
    /// A name of the certificate's subject: its common name (CN), or one of its DNS, URI or e-mail subject
    /// alternative names.
    pub common_name: String,
    pub identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
}

/// JWT validation settings. Claims used: `sub` (identity name), `exp`, optional `publish` and `subscribe` arrays
/// of canonical patterns (absent = everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256 public key (PEM).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

/// A listener's `[auth]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse clients that present no credentials.
    pub required: bool,
    /// The identity of clients without credentials when not required, and of protocols that carry none.
    pub anonymous: Identity,
    pub tokens: Vec<StaticToken>,
    pub jwt: Option<JwtConfig>,
    /// Identities of TLS client certificates (verified against the listener's `tls.client_ca_file`), by the
    /// certificate's subject common name. Goomerang only.
    pub certificates: Vec<CertificateIdentity>,
    /// Let anonymous clients in here although another listener requires credentials: without it such a
    /// config is refused at start-up ([`check_anonymous`]); with it, a warning is logged.
    pub allow_anonymous: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            anonymous: Identity::trusted("anonymous"),
            tokens: Vec::new(),
            jwt: None,
            certificates: Vec::new(),
            allow_anonymous: false,
        }
    }
}

impl AuthConfig {
    /// Clients without credentials get in and can reach some topic.
    pub fn admits_anonymous(&self) -> bool {
        !self.required && self.anonymous.reaches_anything()
    }
}

/// A listener section lets anonymous clients reach topics while another one requires credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "anonymous clients reach topics here while {protected}.auth.required = true, so they \
     would bypass its credentials; set {section}.auth.required = true, give {section}.auth.anonymous no \
     publish and subscribe rights, or set {section}.auth.allow_anonymous = true"
)]
pub struct AnonymousBypass {
    pub section: String,
    pub protected: String,
}

impl From<AnonymousBypass> for crate::config::ConfigError {
    fn from(error: AnonymousBypass) -> Self {
        crate::config::ConfigError::new(format!("{}.auth", error.section), error)
    }
}

/// The start-up rule across the enabled listener sections (`(section, auth)`): when one requires credentials,
/// every other that admits anonymous clients must say `allow_anonymous = true`. Returns those sections (to
/// warn about), or the first that does not say so.
pub fn check_anonymous(sections: &[(&str, &AuthConfig)]) -> Result<Vec<String>, AnonymousBypass> {
    let Some((protected, _)) = sections.iter().find(|(_, auth)| auth.required) else {
        return Ok(Vec::new());
    };
    let mut allowed = Vec::new();
    for (section, auth) in sections.iter().filter(|(_, auth)| auth.admits_anonymous()) {
        if !auth.allow_anonymous {
            return Err(AnonymousBypass {
                section: (*section).to_owned(),
                protected: (*protected).to_owned(),
            });
        }
        allowed.push((*section).to_owned());
    }
    Ok(allowed)
}

/// Why an [`AuthConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.jwt: HS256 needs `secret`")]
    MissingSecret,
    #[error("auth.jwt: RS256 needs `public_key_file`")]
    MissingPublicKey,
    #[error("auth.jwt.public_key_file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth.jwt.public_key_file {path}: {source}")]
    Key {
        path: PathBuf,
        source: jsonwebtoken::errors::Error,
    },
}

impl From<AuthConfigError> for crate::config::ConfigError {
    /// Keyed relative to the section's `auth` table; callers add their section with
    /// [`ConfigError::within`](crate::config::ConfigError::within).
    fn from(error: AuthConfigError) -> Self {
        use crate::config::ConfigError;
        match error {
            AuthConfigError::MissingSecret => ConfigError::new("auth.jwt", "HS256 needs `secret`"),
            AuthConfigError::MissingPublicKey => {
                ConfigError::new("auth.jwt", "RS256 needs `public_key_file`")
            }
            AuthConfigError::KeyFile { path, source } => ConfigError::new(
                "auth.jwt.public_key_file",
                format!("{}: {source}", path.display()),
            ),
            AuthConfigError::Key { path, source } => ConfigError::new(
                "auth.jwt.public_key_file",
                format!("{}: {source}", path.display()),
            ),
        }
    }
}
