//! [`Authenticator`]: one listener's check of credentials (a static token, with its login where one is set; an
//! HS256 or RS256 JWT whose claims become the ACL; a TLS client certificate's names), with each refusal counted.

use std::collections::HashMap;
use std::sync::Arc;

use core_bus::{Pattern, Protocol};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use metrics::counter;
use serde::Deserialize;

use super::config::{AuthConfig, AuthConfigError, JwtAlgorithm, StaticToken};
use super::upgrade::upgrade_token;
use super::{Allowed, AuthError, Credentials, Identity};

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
