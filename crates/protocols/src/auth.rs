//! Identities, ACLs on canonical topics, and the per-listener authenticator (static tokens, HS256/RS256 JWT).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use core_bus::names::INBOX_TOKEN;
use core_bus::{Pattern, Protocol, Topic};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use metrics::counter;
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

    /// A publish to `topic` is allowed when an allowed pattern matches it. A reply into another connection's
    /// inbox (`$inbox.<connection>.<name>`, whose name nobody can write down in advance) is also allowed by
    /// the entry `$inbox`.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        match &self.publish {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => {
                let inbox = is_inbox(topic).then(|| Topic::from_tokens([INBOX_TOKEN]));
                patterns.iter().any(|p| {
                    p.matches(topic) || inbox.as_ref().is_some_and(|inbox| p.matches(inbox))
                })
            }
        }
    }

    /// Whether this identity can reach any topic at all (publish or subscribe).
    pub fn reaches_anything(&self) -> bool {
        let any = |allowed: &Allowed| match allowed {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => !patterns.is_empty(),
        };
        any(&self.publish) || any(&self.subscribe)
    }

    /// A subscription is allowed when one allowed pattern covers every topic the requested pattern can match.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        match &self.subscribe {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => patterns.iter().any(|allowed| covers(allowed, pattern)),
        }
    }
}

fn is_inbox(topic: &Topic) -> bool {
    topic.tokens().next() == Some(INBOX_TOKEN)
}

/// A name nobody can guess: 128 random bits as 32 lowercase hex digits (temp queues, reply inboxes).
pub fn unguessable_name() -> String {
    format!("{:032x}", rand::random::<u128>())
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
    /// The label of `gatewayd_auth_refusals_total` ([`Authenticator::for_protocol`]).
    protocol: Protocol,
}

/// Credentials refused, by protocol and reason (`missing`, `invalid`, `token`, `certificate`).
pub const AUTH_REFUSALS: &str = "gatewayd_auth_refusals_total";

impl AuthError {
    fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Token(_) => "token",
        }
    }
}

/// Without the secrets.
impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.config.required)
            .field("anonymous", &self.config.anonymous.name)
            .finish_non_exhaustive()
    }
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
            protocol: Protocol::Internal,
        })
    }

    /// An authenticator that lets everybody in as a trusted anonymous identity.
    pub fn open() -> Arc<Authenticator> {
        Arc::new(Authenticator {
            config: AuthConfig::default(),
            tokens: HashMap::new(),
            jwt: None,
            protocol: Protocol::Internal,
        })
    }

    /// Clients without credentials are refused.
    pub fn required(&self) -> bool {
        self.config.required
    }

    /// The identity of connections that present no credentials.
    pub fn anonymous(&self) -> &Identity {
        &self.config.anonymous
    }

    /// Counts the refusals of this authenticator under `protocol` (else `internal`).
    pub fn for_protocol(mut self, protocol: Protocol) -> Authenticator {
        self.protocol = protocol;
        self
    }

    fn refused(&self, reason: &'static str) {
        counter!(AUTH_REFUSALS, "protocol" => self.protocol.as_str(), "reason" => reason)
            .increment(1);
    }

    /// Who `credentials` name; a refusal is counted in [`AUTH_REFUSALS`].
    pub fn authenticate(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        self.check(credentials)
            .inspect_err(|error| self.refused(error.reason()))
    }

    fn check(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
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

    /// The identity of a verified TLS client certificate with subject `names` ([`crate::tls::certificate_names`]):
    /// the first `certificates` entry naming one of them; a certificate no entry names is refused.
    pub fn authenticate_certificate(&self, names: &[String]) -> Result<Identity, AuthError> {
        self.config
            .certificates
            .iter()
            .find(|c| names.contains(&c.common_name))
            .map(|c| c.identity.clone())
            .ok_or(AuthError::Invalid)
            .inspect_err(|_| self.refused("certificate"))
    }

    /// Who the client of a WebSocket upgrade is: the identity of its verified TLS client certificate (by
    /// common name) when it presented one, else of the upgrade's token ([`upgrade_token`]), else anonymous
    /// unless credentials are required.
    pub fn authenticate_upgrade(
        &self,
        certificate: Option<&[String]>,
        request: &http::Request<()>,
    ) -> Result<Identity, AuthError> {
        if let Some(names) = certificate {
            return self.authenticate_certificate(names);
        }
        let token = upgrade_token(request);
        self.authenticate(Credentials {
            login: None,
            secret: token.as_deref(),
        })
    }
}

/// The token a WebSocket upgrade carries: `Authorization: Bearer <token>`, else the query parameter
/// `access_token` (percent-decoded), for clients that cannot set headers.
pub fn upgrade_token(request: &http::Request<()>) -> Option<String> {
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    header.or_else(|| {
        request.uri().query()?.split('&').find_map(|pair| {
            let value = pair.strip_prefix(ACCESS_TOKEN)?.strip_prefix('=')?;
            percent_decode(value)
        })
    })
}

/// The query parameter of [`upgrade_token`].
pub const ACCESS_TOKEN: &str = "access_token";

/// `%XX` and `+` decoding of a query value; `None` if it is not valid UTF-8 or has a bad escape.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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

    #[test]
    fn inbox_replies_need_the_inbox_entry() {
        let inbox = core_bus::names::inbox(core_bus::ConnectionId(3), b"r");
        let narrow = Identity {
            name: "n".into(),
            publish: Allowed::Patterns(vec![pattern("#")]),
            subscribe: Allowed::Everything,
        };
        assert!(!narrow.may_publish(&inbox));
        let replier = Identity {
            publish: Allowed::Patterns(vec![pattern("$inbox")]),
            ..narrow
        };
        assert!(replier.may_publish(&inbox));
        assert!(!replier.may_publish(&Topic::parse("orders").unwrap()));
        assert_eq!(unguessable_name().len(), 32);
        assert_ne!(unguessable_name(), unguessable_name());
    }

    #[test]
    fn upgrade_tokens_from_header_or_query() {
        let request = |uri: &str, header: Option<&str>| {
            let mut builder = http::Request::builder().uri(uri);
            if let Some(value) = header {
                builder = builder.header("authorization", value);
            }
            builder.body(()).unwrap()
        };
        assert_eq!(
            upgrade_token(&request("/ws", Some("Bearer abc"))).as_deref(),
            Some("abc")
        );
        assert_eq!(
            upgrade_token(&request("/ws?x=1&access_token=a%2Bb", None)).as_deref(),
            Some("a+b")
        );
        assert_eq!(upgrade_token(&request("/ws", Some("Basic abc"))), None);
        assert_eq!(upgrade_token(&request("/ws?access_token=%zz", None)), None);
        assert_eq!(upgrade_token(&request("/ws?token=a", None)), None);
    }

    #[test]
    fn anonymous_next_to_required_auth_needs_allow_anonymous() {
        let required = AuthConfig {
            required: true,
            ..AuthConfig::default()
        };
        let open = AuthConfig::default();
        let closed = AuthConfig {
            anonymous: Identity {
                name: "nobody".into(),
                publish: Allowed::Patterns(vec![]),
                subscribe: Allowed::Patterns(vec![]),
            },
            ..AuthConfig::default()
        };
        let allowed = AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        };
        assert_eq!(check_anonymous(&[("a", &open), ("b", &open)]), Ok(vec![]));
        let error = check_anonymous(&[("stomp", &required), ("goomerang", &open)]).unwrap_err();
        assert_eq!(error.section, "goomerang");
        assert!(error.to_string().contains("goomerang.auth.allow_anonymous"));
        assert_eq!(
            check_anonymous(&[("stomp", &required), ("x", &closed), ("y", &allowed)]),
            Ok(vec!["y".to_owned()])
        );
    }
}
