//! TLS server configuration shared by every TLS listener: certificate files, or a self-signed development
//! certificate generated with rcgen whose SHA-256 fingerprint is logged; client certificates (mTLS) and the
//! names (common name, subject alternative names) that find their identity.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A listener's `tls` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Generate a development certificate for `localhost`, `127.0.0.1` and `::1` when no files are given.
    pub self_signed: bool,
    /// Require client certificates signed by this CA (mTLS); the subject becomes the connection's identity.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: set cert_file and key_file, or self_signed = true")]
    NoCertificate,
    #[error("tls.{key} {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.{key} {path}: no usable PEM item ({detail})")]
    Pem {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls: self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls: client CA: {0}")]
    Verifier(String),
}

impl From<TlsError> for crate::config::ConfigError {
    /// Keyed relative to the `tls` table, as [`TlsConfig::check_files`] says; callers add their section with
    /// [`ConfigError::within`](crate::config::ConfigError::within).
    fn from(error: TlsError) -> Self {
        use crate::config::ConfigError;
        match error {
            TlsError::File { key, path, source } => ConfigError::new(
                format!("tls.{key}"),
                format!("{}: {source}", path.display()),
            ),
            TlsError::Pem { key, path, detail } => ConfigError::new(
                format!("tls.{key}"),
                format!("{}: no usable PEM item ({detail})", path.display()),
            ),
            TlsError::NoCertificate => {
                ConfigError::new("tls", "set cert_file and key_file, or self_signed = true")
            }
            TlsError::Rustls(error) => ConfigError::new("tls", error),
            TlsError::Generate(error) => {
                ConfigError::new("tls", format!("self-signed certificate: {error}"))
            }
            TlsError::Verifier(detail) => ConfigError::new("tls", format!("client CA: {detail}")),
        }
    }
}

impl TlsConfig {
    /// Checks the settings without loading anything: a certificate source is configured and every named file
    /// exists. Errors name the key relative to the `tls` section (`tls.cert_file ...`); callers prefix their
    /// section (`stomp.tls.`).
    pub fn check_files(&self) -> Result<(), TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) => {}
            (None, None) if self.self_signed => {}
            _ => return Err(TlsError::NoCertificate),
        }
        let files = [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                std::fs::metadata(path).map_err(|source| TlsError::File {
                    key,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// Installs the ring crypto provider once per process (rustls needs one chosen explicitly).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(key: &'static str, path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::File {
        key,
        path: path.clone(),
        source,
    })
}

/// Certificate chain and key from the config, or a fresh self-signed pair.
pub fn load_identity(
    config: &TlsConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    match (&config.cert_file, &config.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let pem = read("cert_file", cert_path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Pem {
                    key: "cert_file",
                    path: cert_path.clone(),
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::Pem {
                    key: "cert_file",
                    path: cert_path.clone(),
                    detail: "no certificate".into(),
                });
            }
            let key_pem = read("key_file", key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
                key: "key_file",
                path: key_path.clone(),
                detail: e.to_string(),
            })?;
            Ok((certs, key))
        }
        _ if config.self_signed => {
            let names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            let generated = rcgen::generate_simple_self_signed(names)?;
            let cert = generated.cert.der().clone();
            let fingerprint: String = Sha256::digest(&cert)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            tracing::warn!(%fingerprint, "using a self-signed development certificate (SHA-256 fingerprint)");
            let key =
                PrivateKeyDer::try_from(generated.signing_key.serialize_der()).map_err(|e| {
                    TlsError::Pem {
                        key: "self_signed",
                        path: PathBuf::new(),
                        detail: e.to_string(),
                    }
                })?;
            Ok((vec![cert], key))
        }
        _ => Err(TlsError::NoCertificate),
    }
}

/// The names of the client certificate `connection` verified (only listeners with `client_ca_file` ask for
/// one), if any: see [`certificate_names`].
pub fn peer_names(connection: &rustls::ServerConnection) -> Option<Vec<String>> {
    connection
        .peer_certificates()?
        .first()
        .map(|leaf| certificate_names(leaf))
}

/// The names a certificate gives its subject, as identities are looked up: the subject common names, then the
/// DNS, URI and e-mail subject alternative names. A certificate that does not parse has none.
pub fn certificate_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        names.extend(
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                        Some((*n).to_owned())
                    }
                    _ => None,
                }),
        );
    }
    names
}

/// A TLS acceptor for a TCP listener with `config`, offering `alpn` protocols in order.
pub fn acceptor(config: &TlsConfig, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    server_config(config, alpn).map(tokio_rustls::TlsAcceptor::from)
}

/// [`acceptor`] for a listener whose TLS is optional: `None` where its `tls` table is not set.
pub fn optional_acceptor(
    config: Option<&TlsConfig>,
    alpn: &[&[u8]],
) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    config.map(|config| acceptor(config, alpn)).transpose()
}

/// A rustls server config for `config`, offering `alpn` protocols in order.
pub fn server_config(
    config: &TlsConfig,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    install_crypto_provider();
    let (certs, key) = load_identity(config)?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &config.client_ca_file {
        Some(path) => {
            let pem = read("client_ca_file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| TlsError::Pem {
                    key: "client_ca_file",
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
                roots.add(cert)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(certs, key)?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_config_builds() {
        let config = TlsConfig {
            self_signed: true,
            ..TlsConfig::default()
        };
        let server = server_config(&config, &[b"h3"]).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"h3".to_vec()]);
    }

    #[test]
    fn missing_files_name_the_key() {
        let config = TlsConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        let err = server_config(&config, &[]).unwrap_err().to_string();
        assert!(err.contains("tls.cert_file"), "{err}");
        assert!(matches!(
            server_config(&TlsConfig::default(), &[]),
            Err(TlsError::NoCertificate)
        ));
    }
}
