//! Credentials on every protocol, over real sockets (issue 15, defect 12): Goomerang takes a token on the
//! WebSocket upgrade (`Authorization: Bearer`, `?access_token=`) and refuses the upgrade with 401 without one
//! when auth is required; chanserv takes an `AUTH <token>` line in front of a request; and a config in which
//! some listeners require credentials while others let anonymous clients reach the same topics is refused by
//! `gatewayd check-config` and at start-up, unless that listener says `allow_anonymous = true` (a warning).

mod support;

#[path = "support/chanserv_client.rs"]
mod chanserv_client;
#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/pki.rs"]
mod pki;

use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use goomerang_client::{message_v1, GoomerangClient};
use pki::{client_certificate, test_ca, ClientCertificate};
use support::*;
use tokio_tungstenite::tungstenite::Error as WsError;

const KIND: &str = "goomerang.example.MessageV1";

const REQUIRED: &str = r#"
[goomerang]
enabled = true
address = "127.0.0.1:0"
[goomerang.auth]
required = true
[[goomerang.auth.tokens]]
token = "g-good"
identity = { name = "ui", publish = ["orders.>"], subscribe = ["orders.>"] }

[chanserv]
enabled = true
address = "127.0.0.1:0"
[chanserv.auth]
required = true
[[chanserv.auth.tokens]]
token = "c-good"
identity = { name = "feed", publish = ["orders.>"], subscribe = ["orders.>"] }
"#;

/// The header of the one answer source of a chanserv request.
fn answer(client: &mut chanserv_client::Client, body: &[u8]) -> String {
    let master = client.post(body);
    let (header, _) = client.next_source(master).expect("an answer");
    client.close(master);
    header
}

#[test]
fn goomerang_and_chanserv_require_credentials_when_configured() {
    let gateway = Gatewayd::start(&format!("{}{REQUIRED}", base_config()));
    let goomerang = gateway.listener("goomerang.ws");
    let rt = current_thread_runtime();

    let mut subscriber = rt.block_on(async {
        match GoomerangClient::connect_path(goomerang, "/ws").await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
            Err(other) => panic!("expected 401, got {other}"),
            Ok(_) => panic!("an upgrade without a token was accepted"),
        }
        let wrong = GoomerangClient::connect_path(goomerang, "/ws?access_token=wrong").await;
        assert!(matches!(wrong, Err(WsError::Http(r)) if r.status() == 401));
        let mut by_query = GoomerangClient::connect_path(goomerang, "/ws?access_token=g-good")
            .await
            .expect("a token in the query");
        // Refused by the token's ACL; handled before the next subscribe.
        by_query.subscribe("secret").await;
        by_query.subscribe("orders.eu").await;
        by_query
    });
    wait_subscribers(&gateway, "orders.eu", 1);
    assert_eq!(
        dropped(&gateway, "acl_denied", "goomerang"),
        1.0,
        "the token's identity and ACL apply"
    );

    let mut chanserv = chanserv_client::Client::connect(gateway.listener("chanserv.tcp"));
    assert_eq!(
        answer(&mut chanserv, b"PUB orders.eu\nanonymous"),
        "err credentials required"
    );
    assert_eq!(
        answer(&mut chanserv, b"AUTH wrong\nPUB orders.eu\nforged"),
        "err invalid credentials"
    );
    assert_eq!(
        answer(&mut chanserv, b"AUTH c-good\nPUB secret\nno"),
        "err not allowed to publish to secret"
    );
    assert_eq!(
        answer(
            &mut chanserv,
            b"AUTH c-good\r\nPUB orders.eu\nfrom chanserv"
        ),
        "ok"
    );

    rt.block_on(async {
        let frame = subscriber.recv_frame().await;
        assert!(
            frame.payload.ends_with(b"from chanserv"),
            "the first delivery is the authenticated publish: {frame:?}"
        );
        let mut by_header = GoomerangClient::connect_with_headers(
            goomerang,
            "/ws",
            &[("authorization", "Bearer g-good")],
        )
        .await
        .expect("a bearer token");
        by_header
            .publish("orders.eu", KIND, message_v1("from goomerang"), &[])
            .await;
        let frame = subscriber.recv_frame().await;
        assert_eq!(frame.payload, message_v1("from goomerang"));
    });

    // A chanserv subscription with credentials.
    let (_master, sources) = chanserv.subscribe("AUTH c-good\norders.us", 1);
    assert_eq!(sources[0].0, "topic=orders.us\n");
    let master = chanserv.post(b"orders.us");
    let (header, _) = chanserv.next_source(master).expect("an answer");
    assert_eq!(header, "err credentials required");
}

/// A TLS client configuration that presents `certificate` and accepts any server certificate.
fn mtls_config(certificate: ClientCertificate) -> rustls::ClientConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(clients::tls::AnyCertificate::default()))
        .with_client_auth_cert(vec![certificate.0], certificate.1)
        .unwrap()
}

type MtlsWebSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A `wss://` upgrade presenting `certificate`; then subscribes to each of `topics`.
async fn goomerang_over_mtls(
    addr: std::net::SocketAddr,
    certificate: ClientCertificate,
    topics: &[&str],
) -> Result<MtlsWebSocket, WsError> {
    use futures::SinkExt;
    use protocols::goomerang::{encode_command, Command as GoomerangCommand};
    let config = mtls_config(certificate);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS with a client certificate");
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/wss", tls).await?;
    for topic in topics {
        let subscribe = GoomerangCommand::Subscribe {
            topic: (*topic).into(),
        };
        let bytes = encode_command(&subscribe, SystemTime::now());
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(bytes))
            .await
            .unwrap();
    }
    Ok(ws)
}

#[test]
fn goomerang_client_certificates_name_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let ca_file = dir.path().join("ca.pem");
    let config = format!(
        r#"{}[goomerang]
enabled = true
address = "127.0.0.1:0"
tls = {{ self_signed = true, client_ca_file = "{}" }}
[goomerang.auth]
required = true
[[goomerang.auth.certificates]]
common_name = "billing-service"
identity = {{ name = "billing", publish = ["billing.>"], subscribe = ["billing.>"] }}
"#,
        base_config(),
        ca_file.display()
    );
    let gateway = Gatewayd::start(&config);
    let addr = gateway.listener("goomerang.ws");
    let rt = current_thread_runtime();
    let unlisted = client_certificate(&ca, "someone-else", &[]);
    match rt.block_on(goomerang_over_mtls(addr, unlisted, &[])) {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        Err(other) => panic!("expected 401, got {other}"),
        Ok(_) => panic!("an unlisted certificate was accepted"),
    }
    let listed = client_certificate(&ca, "billing-service", &[]);
    let _open = rt
        .block_on(goomerang_over_mtls(addr, listed, &["orders", "billing.x"]))
        .expect("a listed certificate");
    wait_subscribers(&gateway, "billing.x", 1);
    assert_eq!(
        dropped(&gateway, "acl_denied", "goomerang"),
        1.0,
        "the certificate's identity and ACL apply"
    );
}

/// Auth required on STOMP; Goomerang and chanserv let anonymous clients reach every topic.
fn mixed(goomerang_extra: &str) -> String {
    format!(
        "{}[stomp.auth]\nrequired = true\n[[stomp.auth.tokens]]\ntoken = \"t\"\nidentity = {{ name = \"a\" }}\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n{goomerang_extra}",
        base_config()
    )
}

#[test]
fn anonymous_listeners_next_to_required_auth_are_refused_at_start_up() {
    let (ok, output) = check_config(&mixed(""));
    assert!(!ok, "{output}");
    assert!(
        output.contains("goomerang.auth") && output.contains("allow_anonymous"),
        "{output}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.toml");
    std::fs::write(&path, mixed("")).unwrap();
    let start = Command::new(GATEWAYD)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run gatewayd");
    assert!(!start.status.success(), "the daemon started anyway");
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(stderr.contains("allow_anonymous"), "{stderr}");

    // chanserv too, and an anonymous identity that reaches nothing is fine.
    let chanserv = format!(
        "{}[chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        mixed("[goomerang.auth.anonymous]\nname = \"none\"\npublish = []\nsubscribe = []\n")
    );
    assert_config_rejected(&chanserv, "chanserv.auth");

    let allowed = format!(
        "{}[chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n[chanserv.auth]\nallow_anonymous = true\n",
        mixed("[goomerang.auth]\nallow_anonymous = true\n")
    );
    let (ok, output) = check_config(&allowed);
    assert!(ok, "{output}");
    assert!(
        output.contains("warning: goomerang.auth.allow_anonymous")
            && output.contains("warning: chanserv.auth.allow_anonymous"),
        "{output}"
    );
}

/// Sends `frames` (raw bytes of any protocol) over TLS presenting `certificate`, and returns what the server
/// answered until it closed or went quiet (for 500 ms after its first answer, which may take up to 10 s, as the
/// TLS handshake may).
fn over_mtls(addr: std::net::SocketAddr, certificate: ClientCertificate, frames: &[u8]) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    let config = mtls_config(certificate);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(frames).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        tls.sock
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
    }
    answer
}

#[test]
fn stomp_client_certificates_name_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let ca_file = dir.path().join("ca.pem");
    let gateway = Gatewayd::start(&format!(
        r#"{}[stomp.auth]
required = true
[[stomp.auth.certificates]]
common_name = "billing-service"
identity = {{ name = "billing", publish = ["billing.>"], subscribe = ["billing.>"] }}
[stomp.tls]
enabled = true
address = "127.0.0.1:0"
tls = {{ self_signed = true, client_ca_file = "{}" }}
"#,
        base_config(),
        ca_file.display()
    ));
    let addr = gateway.listener("stomp.tls");
    let connect = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0";
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let unlisted = text(over_mtls(
        addr,
        client_certificate(&ca, "someone-else", &[]),
        connect,
    ));
    assert!(unlisted.starts_with("ERROR"), "{unlisted}");
    // The listed certificate: CONNECTED without login or passcode, then its ACL applies.
    let mut frames = connect.to_vec();
    frames.extend_from_slice(b"SEND\ndestination:/topic/billing.x\nreceipt:ok\n\nfine\0");
    frames.extend_from_slice(b"SEND\ndestination:/topic/orders.x\nreceipt:no\n\nrefused\0");
    let listed = text(over_mtls(
        addr,
        client_certificate(&ca, "billing-service", &[]),
        &frames,
    ));
    assert!(listed.starts_with("CONNECTED"), "{listed}");
    assert!(listed.contains("receipt-id:ok"), "{listed}");
    assert!(
        listed.contains("\nERROR\n") || listed.contains("\0ERROR\n"),
        "{listed}"
    );
}

#[test]
fn mqtt_client_certificates_name_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let gateway = Gatewayd::start(&format!(
        r#"{}[mqtt.auth]
required = true
[[mqtt.auth.certificates]]
common_name = "sensor-7"
identity = {{ name = "sensor", publish = ["sensors.>"], subscribe = [] }}
[mqtt.tls]
enabled = true
address = "127.0.0.1:0"
tls = {{ self_signed = true, client_ca_file = "{}" }}
"#,
        base_config(),
        dir.path().join("ca.pem").display()
    ));
    let addr = gateway.listener("mqtt.tls");
    // MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "c1", no user name or password.
    let connect = [
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'c', b'1',
    ];
    let refused = over_mtls(addr, client_certificate(&ca, "someone-else", &[]), &connect);
    assert_eq!(refused, [0x20, 2, 0, 5], "CONNACK not authorized");
    let accepted = over_mtls(addr, client_certificate(&ca, "sensor-7", &[]), &connect);
    assert_eq!(&accepted[..4], [0x20, 2, 0, 0], "CONNACK accepted");
}
