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
        RedisServer::launch(port, None, || (Vec::new(), None))
    }

    /// Starts redis-server with the default user off and one ACL user, `user` with `password`, allowed only the
    /// commands gatewayd needs, history streams and presence included (and `PUBSUB` and `INFO`, for this helper's polling), on the keys and
    /// channels under `prefix`.
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
            "+info",
            "--user",
            "default",
            "off",
        ]
        .map(str::to_owned);
        RedisServer::launch(0, Some((user.to_owned(), password.to_owned())), || {
            (acl.to_vec(), None)
        })
    }

    /// Starts redis-server with TLS on a second port (`certificate`, `key` and `ca` are PEM files; clients are not
    /// asked for certificates).
    pub fn start_tls(certificate: &Path, key: &Path, ca: &Path) -> RedisServer {
        RedisServer::launch(0, None, || {
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
            (tls.to_vec(), Some(tls_port))
        })
    }

    /// Starts redis-server with the arguments `extra` gives (and the TLS port among them) and waits until it
    /// answers. A port picked by [`free_port`] can be taken by another test's server before this one binds it;
    /// this one then exits, and it is tried again with fresh ports, three times at most.
    fn launch(
        requested: u16,
        auth: Option<(String, String)>,
        extra: impl Fn() -> (Vec<String>, Option<u16>),
    ) -> RedisServer {
        for _ in 0..3 {
            let port = if requested == 0 {
                free_port()
            } else {
                requested
            };
            let (extra, tls_port) = extra();
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
            let mut server = RedisServer {
                child,
                port,
                auth: auth.clone(),
                tls_port,
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server exited at once three times (its ports taken?)");
    }

    /// Polls until this server's own process answers on its port (`INFO server` names its pid; another test's
    /// server may hold the port), or returns false once the process has exited.
    fn wait_ready(&mut self) -> bool {
        let pid = format!("process_id:{}", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.try_command(&["INFO", "server"]).unwrap_or_default();
            if info.iter().any(|line| line.trim() == pid) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
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
