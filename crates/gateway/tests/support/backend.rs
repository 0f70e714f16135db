//! The cluster backends a test can run against: [`Backend`] names one (Redis twice: with gatewayd's own key layout
//! and with `messageloop_layout = "ml2"`), [`Server`] starts its server on 127.0.0.1 (nats-server or redis-server)
//! and speaks its naming, and [`on_every_backend!`] turns each case into one test per backend, so a suite is
//! parametrised rather than copied. Needs sibling modules `nats` and `redis`
//! (`support/nats.rs`, `support/redis.rs`) and `#[macro_use]` on this module.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::nats::NatsServer;
use super::redis::RedisServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nats,
    Redis,
    /// Redis with MessageLoop channels in upstream MessageLoop's layout.
    RedisMl2,
}

/// The server of a backend, started by the test and stopped when dropped.
pub enum Server {
    Nats(NatsServer),
    Redis(RedisServer),
    RedisMl2(RedisServer),
}

impl Server {
    /// Starts the backend's server on `port` (0 = any free port) and returns once it answers.
    pub fn start(backend: Backend, port: u16) -> Server {
        match backend {
            Backend::Nats => Server::Nats(NatsServer::start(port)),
            Backend::Redis => Server::Redis(RedisServer::start(port)),
            Backend::RedisMl2 => Server::RedisMl2(RedisServer::start(port)),
        }
    }

    /// Starts a server that can keep cluster-wide history: nats-server with JetStream, or redis-server.
    pub fn start_with_history(backend: Backend) -> Server {
        match backend {
            Backend::Nats => Server::Nats(NatsServer::start_jetstream(0)),
            Backend::Redis => Server::Redis(RedisServer::start(0)),
            Backend::RedisMl2 => Server::RedisMl2(RedisServer::start(0)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Server::Nats(_) => Backend::Nats,
            Server::Redis(_) => Backend::Redis,
            Server::RedisMl2(_) => Backend::RedisMl2,
        }
    }

    pub fn url(&self) -> String {
        match self {
            Server::Nats(server) => server.url(),
            Server::Redis(server) | Server::RedisMl2(server) => server.url(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Server::Nats(server) => server.port,
            Server::Redis(server) | Server::RedisMl2(server) => server.port,
        }
    }

    pub fn stop(&mut self) {
        match self {
            Server::Nats(server) => server.stop(),
            Server::Redis(server) | Server::RedisMl2(server) => server.stop(),
        }
    }

    /// The `[cluster]` section of a node on this server.
    pub fn cluster_config(&self) -> String {
        let (backend, layout) = match self {
            Server::Nats(_) => ("nats", ""),
            Server::Redis(_) => ("redis", ""),
            Server::RedisMl2(_) => ("redis", "messageloop_layout = \"ml2\"\n"),
        };
        format!(
            "[cluster]\nbackend = \"{backend}\"\nurls = [\"{}\"]\n{layout}",
            self.url()
        )
    }

    /// The `[cluster]` section of a node on this server with cluster-wide history (`history = "jetstream"` or
    /// `"streams"`).
    pub fn history_cluster_config(&self) -> String {
        let history = match self {
            Server::Nats(_) => "jetstream",
            Server::Redis(_) | Server::RedisMl2(_) => "streams",
        };
        format!("{}history = \"{history}\"\n", self.cluster_config())
    }

    /// The NATS subject or Redis channel of the exact topic `topic` (default prefixes). With the ml2 layout a node
    /// subscribes to a fanout pattern's ml2 channels before gatewayd's own.
    fn channel(&self, topic: &str) -> String {
        match self {
            Server::Nats(_) => format!("gatewayd.{topic}"),
            Server::Redis(_) | Server::RedisMl2(_) => format!("gatewayd:topic:{topic}"),
        }
    }

    /// Polls until the server has at least `n` subscriptions on the exact topic `topic`.
    pub fn wait_subscribed(&self, topic: &str, n: usize) {
        match self {
            Server::Nats(server) => server.wait_subscribed(&self.channel(topic), n),
            Server::Redis(server) | Server::RedisMl2(server) => {
                server.wait_subscribed(&self.channel(topic), n)
            }
        }
    }

    /// Polls until the server has at most `n` subscriptions on the exact topic `topic`: nodes have let go of it.
    pub fn wait_unsubscribed(&self, topic: &str, n: usize) {
        let channel = self.channel(topic);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = match self {
                Server::Nats(server) => server.subscriptions(&channel),
                Server::Redis(server) | Server::RedisMl2(server) => server.subscriptions(&channel),
            };
            if held <= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channel} still has {held} subscriptions, expected at most {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls until `nodes` nodes subscribed to `topic` for both a fanout subscriber and an anycast group: NATS
    /// holds a plain and a queue subscription per node, Redis one channel subscription.
    pub fn wait_fanout_and_group(&self, topic: &str, nodes: usize) {
        match self {
            Server::Nats(_) => self.wait_subscribed(topic, 2 * nodes),
            Server::Redis(_) | Server::RedisMl2(_) => self.wait_subscribed(topic, nodes),
        }
    }
}

/// Runs each `fn case(backend: Backend)` once per backend, as the tests `on_nats::case`, `on_redis::case` and
/// `on_redis_ml2::case`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod on_nats {
            $(#[test]
            fn $case() {
                super::$case(super::backend::Backend::Nats)
            })*
        }
        mod on_redis {
            $(#[test]
            fn $case() {
                super::$case(super::backend::Backend::Redis)
            })*
        }
        mod on_redis_ml2 {
            $(#[test]
            fn $case() {
                super::$case(super::backend::Backend::RedisMl2)
            })*
        }
    };
}
