//! `[cluster]` validation: each backend's keys are refused under the other backends.

use super::{ClusterBackendKind, ClusterConfig, HistoryMode, MessageLoopLayout, PresenceMode};

fn redis() -> ClusterConfig {
    ClusterConfig {
        backend: ClusterBackendKind::Redis,
        urls: vec!["redis://127.0.0.1:6379".into()],
        ..ClusterConfig::default()
    }
}

fn error(config: &ClusterConfig) -> String {
    config.validate().expect_err("refused").to_string()
}

#[test]
fn redis_keys_need_the_redis_backend() {
    assert_eq!(redis().validate(), Ok(()));
    for backend in [ClusterBackendKind::Single, ClusterBackendKind::Nats] {
        let base = ClusterConfig {
            backend,
            ..ClusterConfig::default()
        };
        assert_eq!(base.validate(), Ok(()));
        let prefix = ClusterConfig {
            key_prefix: "other:".into(),
            ..base.clone()
        };
        assert!(error(&prefix).starts_with("cluster.key_prefix:"));
        let user = ClusterConfig {
            username: Some("gw".into()),
            ..base.clone()
        };
        assert!(error(&user).starts_with("cluster.username:"));
        let password = ClusterConfig {
            password_file: Some("/dev/null".into()),
            ..base.clone()
        };
        assert!(error(&password).starts_with("cluster.password_file:"));
        let layout = ClusterConfig {
            messageloop_layout: MessageLoopLayout::Ml2,
            ..base
        };
        assert!(error(&layout).starts_with("cluster.messageloop_layout:"));
    }
    let ml2 = ClusterConfig {
        messageloop_layout: MessageLoopLayout::Ml2,
        ..redis()
    };
    assert_eq!(ml2.validate(), Ok(()));
}

#[test]
fn redis_refuses_nats_only_settings_and_bad_urls() {
    let jetstream = ClusterConfig {
        history: HistoryMode::Jetstream,
        ..redis()
    };
    assert!(error(&jetstream).starts_with("cluster.history:"));
    let streams = ClusterConfig {
        history: HistoryMode::Streams,
        ..redis()
    };
    assert_eq!(streams.validate(), Ok(()));
    for backend in [ClusterBackendKind::Single, ClusterBackendKind::Nats] {
        let elsewhere = ClusterConfig {
            backend,
            ..streams.clone()
        };
        assert!(error(&elsewhere).starts_with("cluster.history: \"streams\""));
    }
    let kv = ClusterConfig {
        presence: PresenceMode::Kv,
        ..redis()
    };
    assert_eq!(kv.validate(), Ok(()));
    let creds = ClusterConfig {
        credentials_file: Some("/dev/null".into()),
        ..redis()
    };
    assert!(error(&creds).starts_with("cluster.credentials_file:"));
    let subjects = ClusterConfig {
        subject_prefix: "other".into(),
        ..redis()
    };
    assert!(error(&subjects).starts_with("cluster.subject_prefix:"));
    let nats_url = ClusterConfig {
        urls: vec!["nats://127.0.0.1:4222".into()],
        ..redis()
    };
    assert!(error(&nats_url).starts_with("cluster.urls:"));
    let plain = ClusterConfig {
        require_tls: true,
        ..redis()
    };
    assert!(error(&plain).contains("rediss://"));
    let tls = ClusterConfig {
        require_tls: true,
        urls: vec!["rediss://redis.example:6380".into()],
        ..redis()
    };
    assert_eq!(tls.validate(), Ok(()));
    let none = ClusterConfig {
        urls: Vec::new(),
        ..redis()
    };
    assert!(error(&none).starts_with("cluster.urls:"));
    let missing = ClusterConfig {
        password_file: Some("/nonexistent/gatewayd-password".into()),
        ..redis()
    };
    assert!(error(&missing).starts_with("cluster.password_file:"));
}
