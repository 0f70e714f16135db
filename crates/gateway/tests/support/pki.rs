//! Certificates for mTLS tests: a test CA written to a folder, and client certificates it signs with a subject
//! common name and optional subject alternative names.
#![allow(dead_code)]

/// A client certificate and its key, as rustls clients present them.
pub type ClientCertificate = (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A test CA, written to `dir/ca.pem`.
pub fn test_ca(dir: &std::path::Path) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatewayd test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    ca
}

/// A client certificate signed by `ca` with subject common name `common_name` and DNS subject alternative
/// names `sans`.
pub fn client_certificate(
    ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
    common_name: &str,
    sans: &[&str],
) -> ClientCertificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let sans = sans.iter().map(|san| (*san).to_owned()).collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(sans).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let certificate = params.signed_by(&key, ca).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (certificate.der().clone(), key)
}

/// Another copy of `certificate` (rustls keys are not `Clone`).
pub fn copy(certificate: &ClientCertificate) -> ClientCertificate {
    (certificate.0.clone(), certificate.1.clone_key())
}
