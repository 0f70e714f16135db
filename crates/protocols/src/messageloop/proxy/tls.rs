//! TLS to backends: the `tls` table of a `[[messageloop.proxy]]` entry and the rustls client config it gives
//! an `https://` or `grpcs://` endpoint (the CA file's certificates, or the system's roots without one).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};

/// `tls = { ca_file = "…", server_name = "…" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// PEM certificates the backend's chain must lead to, instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must carry, instead of the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// What a connector needs for the handshake.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Overrides the endpoint's host.
    pub server_name: Option<ServerName<'static>>,
}

impl BackendTls {
    /// Checks the server name; the CA file is read when the backend is built.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(name) = &self.server_name {
            if ServerName::try_from(name.as_str()).is_err() {
                return Err(ConfigError::new(
                    format!("{key}.tls.server_name"),
                    format!("{name:?} is not a DNS name or IP address"),
                ));
            }
        }
        Ok(())
    }
}

/// The client config for `tls` (absent: the system's roots), offering `alpn`. Errors name the key below
/// the entry (`tls.ca_file: …`).
pub fn client_tls(tls: Option<&BackendTls>, alpn: &[&[u8]]) -> Result<ClientTls, String> {
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|tls| tls.ca_file.as_ref()) {
        Some(path) => {
            let fail = |detail: &dyn std::fmt::Display| {
                format!("tls.ca_file {}: {detail}", path.display())
            };
            let pem = std::fs::read(path).map_err(|error| fail(&error))?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| fail(&error))?;
            if certificates.is_empty() {
                return Err(fail(&"no certificate in the file"));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| fail(&error))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("tls: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let server_name = tls
        .and_then(|tls| tls.server_name.as_deref())
        .map(|name| {
            ServerName::try_from(name.to_owned())
                .map_err(|error| format!("tls.server_name: {error}"))
        })
        .transpose()?;
    Ok(ClientTls {
        config: Arc::new(config),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_or_server_name_names_the_key() {
        let missing = BackendTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            server_name: None,
        };
        let error = client_tls(Some(&missing), &[]).err().unwrap_or_default();
        assert!(
            error.starts_with("tls.ca_file /nonexistent/ca.pem"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("proxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let error = client_tls(
            Some(&BackendTls {
                ca_file: Some(empty),
                server_name: None,
            }),
            &[],
        )
        .err()
        .unwrap_or_default();
        assert!(error.contains("no certificate"), "{error}");
        let bad_name = BackendTls {
            ca_file: None,
            server_name: Some("not a name!".into()),
        };
        assert_eq!(
            bad_name.validate("messageloop.proxy[0]").unwrap_err().key,
            "messageloop.proxy[0].tls.server_name"
        );
        assert!(client_tls(None, &[b"h2"]).is_ok());
    }
}
