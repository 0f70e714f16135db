//! A real `redis-server` (Debian package) on 127.0.0.1 for cluster tests, without persistence, polled through
//! `PUBSUB NUMSUB` / `NUMPAT` (over a plain RESP socket) so tests wait for subscriptions instead of sleeping.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// The ACL user and password this helper's own commands authenticate with, when the default user is off.
    auth: Option<(String, String)>,
    /// The TLS port, beside the plain one this helper uses.
    pub tls_port: Option<u16>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    /// Starts redis-server on `port` (0 = any free port) and returns once it answers PING.
    pub fn start(port: u16) -> RedisServer {
        RedisServer::launch(port, &[], None)
    }

    /// Starts redis-server with the default user off and one ACL user, `user` with `password`, allowed only the
    /// commands gatewayd needs, history streams and presence included (and `PUBSUB`, for this helper's polling) on the keys and channels under `prefix`.
    pub fn start_with_user(user: &str, password: &str, prefix: &str) -> RedisServer {
        let acl = [
            "--user",
            user,
            "on",
            &format!(">{password}"),
            &format!("~{prefix}*"),
            &format!("&{prefix}*"),
            "+publish",
            "+subscribe",
            "+psubscribe",
            "+unsubscribe",
            "+punsubscribe",
            "+set",
            "+ping",
            "+get",
            "+xadd",
            "+xread",
            "+xrange",
            "+hset",
            "+hdel",
            "+hgetall",
            "+del",
            "+pexpire",
            "+sadd",
            "+smembers",
            "+srem",
            "+pubsub",
            "--user",
            "default",
            "off",
        ]
        .map(str::to_owned);
        RedisServer::launch(0, &acl, Some((user.to_owned(), password.to_owned())))
    }

    /// Starts redis-server with TLS on a second port (`certificate`, `key` and `ca` are PEM files; clients are not
    /// asked for certificates).
    pub fn start_tls(certificate: &Path, key: &Path, ca: &Path) -> RedisServer {
        let tls_port = free_port();
        let tls = [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &certificate.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-ca-cert-file",
            &ca.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned);
        let mut server = RedisServer::launch(0, &tls, None);
        server.tls_port = Some(tls_port);
        server
    }

    fn launch(port: u16, extra: &[String], auth: Option<(String, String)>) -> RedisServer {
        let port = if port == 0 { free_port() } else { port };
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is installed");
        let server = RedisServer {
            child,
            port,
            auth,
            tls_port: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.try_command(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends one command (after `AUTH` with an ACL user) and returns the reply's lines (RESP, unparsed), or `None`
    /// when the server is not there.
    pub fn try_command(&self, args: &[&str]) -> Option<Vec<String>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = String::new();
        let mut push = |args: &[&str]| {
            request.push_str(&format!("*{}\r\n", args.len()));
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
        };
        if let Some((user, password)) = &self.auth {
            push(&["AUTH", user, password]);
        }
        push(args);
        stream.write_all(request.as_bytes()).ok()?;
        stream.shutdown(std::net::Shutdown::Write).ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        Some(reply.lines().map(str::to_owned).collect())
    }

    pub fn command(&self, args: &[&str]) -> Vec<String> {
        self.try_command(args).expect("redis-server answers")
    }

    /// How many subscribers the exact channel `channel` has.
    pub fn subscriptions(&self, channel: &str) -> usize {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]);
        reply
            .last()
            .and_then(|n| n.trim_start_matches(':').parse().ok())
            .unwrap_or(0)
    }

    /// Polls until `channel` has at least `n` subscribers.
    pub fn wait_subscribed(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.subscriptions(channel) < n {
            assert!(
                Instant::now() < deadline,
                "redis: {channel} never got {n} subscribers"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
