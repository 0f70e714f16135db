//! Identities, ACLs on canonical topics, and the per-listener authenticator (static tokens, HS256/RS256 JWT).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use core_bus::{Pattern, Topic};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// Allowed topics for one operation: every topic (`None` in config) or a list of patterns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Allowed {
    #[default]
    #[serde(skip)]
    Everything,
    Patterns(Vec<Pattern>),
}

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials required")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("invalid token: {0}")]
    Token(String),
}

/// Who a connection is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_everything")]
    pub publish: Allowed,
    #[serde(default, skip_serializing_if = "is_everything")]
    pub subscribe: Allowed,
}

fn is_everything(allowed: &Allowed) -> bool {
    matches!(allowed, Allowed::Everything)
}

impl Identity {
    /// An identity allowed everything.
    pub fn trusted(name: impl Into<String>) -> Identity {
        Identity {
            name: name.into(),
            publish: Allowed::Everything,
            subscribe: Allowed::Everything,
        }
    }

    pub fn may_publish(&self, topic: &Topic) -> bool {
        match &self.publish {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => patterns.iter().any(|p| p.matches(topic)),
        }
    }

    /// A subscription is allowed when one allowed pattern covers every topic the requested pattern can match.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        match &self.subscribe {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => patterns.iter().any(|allowed| covers(allowed, pattern)),
        }
    }
}

/// Whether every topic matched by `requested` is matched by `allowed`.
pub fn covers(allowed: &Pattern, requested: &Pattern) -> bool {
    requested.is_covered_by(allowed)
}

/// Credentials as a protocol carries them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// STOMP `login`; ignored by token protocols.
    pub login: Option<&'a str>,
    /// STOMP `passcode`, Loom token, MessageLoop Connect token.
    pub secret: Option<&'a str>,
}

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
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            anonymous: Identity::trusted("anonymous"),
            tokens: Vec::new(),
            jwt: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    publish: Option<Vec<Pattern>>,
    subscribe: Option<Vec<Pattern>>,
}

/// Checks credentials for one listener. Built from [`AuthConfig`]; swap it to reload.
pub struct Authenticator {
    config: AuthConfig,
    tokens: HashMap<String, Vec<StaticToken>>,
    jwt: Option<(DecodingKey, Validation)>,
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

impl Authenticator {
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        let mut tokens: HashMap<String, Vec<StaticToken>> = HashMap::new();
        for token in &config.tokens {
            tokens
                .entry(token.token.clone())
                .or_default()
                .push(token.clone());
        }
        let jwt = match &config.jwt {
            None => None,
            Some(jwt) => {
                let (key, algorithm) = match jwt.algorithm {
                    JwtAlgorithm::HS256 => {
                        let secret = jwt.secret.as_ref().ok_or(AuthConfigError::MissingSecret)?;
                        (
                            DecodingKey::from_secret(secret.as_bytes()),
                            Algorithm::HS256,
                        )
                    }
                    JwtAlgorithm::RS256 => {
                        let path = jwt
                            .public_key_file
                            .clone()
                            .ok_or(AuthConfigError::MissingPublicKey)?;
                        let pem =
                            std::fs::read(&path).map_err(|source| AuthConfigError::KeyFile {
                                path: path.clone(),
                                source,
                            })?;
                        let key = DecodingKey::from_rsa_pem(&pem)
                            .map_err(|source| AuthConfigError::Key { path, source })?;
                        (key, Algorithm::RS256)
                    }
                };
                let mut validation = Validation::new(algorithm);
                validation.required_spec_claims.clear();
                if let Some(issuer) = &jwt.issuer {
                    validation.set_issuer(&[issuer]);
                }
                match &jwt.audience {
                    Some(audience) => validation.set_audience(&[audience]),
                    None => validation.validate_aud = false,
                }
                Some((key, validation))
            }
        };
        Ok(Authenticator {
            config,
            tokens,
            jwt,
        })
    }

    /// An authenticator that lets everybody in as a trusted anonymous identity.
    pub fn open() -> Arc<Authenticator> {
        Arc::new(Authenticator {
            config: AuthConfig::default(),
            tokens: HashMap::new(),
            jwt: None,
        })
    }

    /// The identity of connections that carry no credentials (Goomerang, chanserv) or present none.
    pub fn anonymous(&self) -> &Identity {
        &self.config.anonymous
    }

    pub fn authenticate(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        let Some(secret) = credentials.secret.filter(|s| !s.is_empty()) else {
            return if self.config.required {
                Err(AuthError::Missing)
            } else {
                Ok(self.config.anonymous.clone())
            };
        };
        if let Some(candidates) = self.tokens.get(secret) {
            let matching = candidates
                .iter()
                .find(|t| t.login.is_none() || t.login.as_deref() == credentials.login);
            return matching
                .map(|t| t.identity.clone())
                .ok_or(AuthError::Invalid);
        }
        if let Some((key, validation)) = &self.jwt {
            let data = jsonwebtoken::decode::<Claims>(secret, key, validation)
                .map_err(|e| AuthError::Token(e.to_string()))?;
            let claims = data.claims;
            return Ok(Identity {
                name: claims.sub.unwrap_or_else(|| "jwt".to_owned()),
                publish: claims
                    .publish
                    .map_or(Allowed::Everything, Allowed::Patterns),
                subscribe: claims
                    .subscribe
                    .map_or(Allowed::Everything, Allowed::Patterns),
            });
        }
        Err(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn coverage_of_wildcard_subscriptions() {
        assert!(covers(&pattern("orders.>"), &pattern("orders.*")));
        assert!(covers(&pattern("orders.#"), &pattern("orders.eu.*")));
        assert!(!covers(&pattern("orders.*"), &pattern("orders.#")));
        assert!(!covers(&pattern("orders.>"), &pattern("#")));
        assert!(covers(&pattern("#"), &pattern("a.*.b")));
    }

    fn config() -> AuthConfig {
        AuthConfig {
            required: true,
            tokens: vec![StaticToken {
                login: Some("alice".into()),
                token: "s3cret".into(),
                identity: Identity {
                    name: "alice".into(),
                    publish: Allowed::Patterns(vec![pattern("orders.>")]),
                    subscribe: Allowed::Patterns(vec![]),
                },
            }],
            jwt: Some(JwtConfig {
                algorithm: JwtAlgorithm::HS256,
                secret: Some("jwt-key".into()),
                public_key_file: None,
                issuer: None,
                audience: None,
            }),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn static_tokens_and_acl() {
        let auth = Authenticator::new(config()).unwrap();
        assert_eq!(
            auth.authenticate(Credentials::default()),
            Err(AuthError::Missing)
        );
        let alice = auth
            .authenticate(Credentials {
                login: Some("alice"),
                secret: Some("s3cret"),
            })
            .unwrap();
        assert!(alice.may_publish(&Topic::parse("orders.eu").unwrap()));
        assert!(!alice.may_publish(&Topic::parse("invoices").unwrap()));
        assert!(!alice.may_subscribe(&pattern("orders.eu")));
        assert_eq!(
            auth.authenticate(Credentials {
                login: Some("bob"),
                secret: Some("s3cret")
            }),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn hs256_jwt_claims_become_the_acl() {
        let auth = Authenticator::new(config()).unwrap();
        let claims =
            serde_json::json!({"sub": "svc", "subscribe": ["metrics.#"], "exp": 4_000_000_000u64});
        let token = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"jwt-key"),
        )
        .unwrap();
        let id = auth
            .authenticate(Credentials {
                login: None,
                secret: Some(&token),
            })
            .unwrap();
        assert_eq!(id.name, "svc");
        assert!(id.may_subscribe(&pattern("metrics.cpu")));
        assert!(!id.may_subscribe(&pattern("orders")));
        assert!(id.may_publish(&Topic::parse("anything").unwrap()));
        let bad = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        assert!(matches!(
            auth.authenticate(Credentials {
                login: None,
                secret: Some(&bad)
            }),
            Err(AuthError::Token(_))
        ));
    }
}
