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
