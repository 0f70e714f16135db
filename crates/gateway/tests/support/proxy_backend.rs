//! A MessageLoop proxy HTTP backend for tests, on 127.0.0.1 in its own runtime (stopped when dropped). It
//! records every RPC call and answers by method: `fail` with the backend error `ORDER_MISSING`, `slow` after
//! 3 s, anything else by echoing the payload and the metadata (plus `x-from: backend`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};

pub struct ProxyBackend {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl ProxyBackend {
    pub fn start() -> ProxyBackend {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/proxy", post(answer))
            .with_state(calls.clone());
        let (addr, runtime) = serve_on_loopback(app);
        ProxyBackend {
            addr,
            calls,
            _runtime: runtime,
        }
    }

    /// The URL to name as a proxy `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/proxy", self.addr)
    }

    /// The bodies of the RPC calls received on `channel` with `method`.
    pub fn calls(&self, channel: &str, method: &str) -> Vec<Value> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|call| call["channel"] == channel && call["method"] == method)
            .cloned()
            .collect()
    }

    /// How many RPC calls arrived in all.
    pub fn call_count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }
}

/// Serves `app` on 127.0.0.1 (a free port) from a runtime of its own; the server stops when the runtime is
/// dropped.
pub fn serve_on_loopback(app: axum::Router) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = crate::support::multi_thread_runtime(1);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    runtime.spawn(async move { axum::serve(listener, app).await });
    (addr, runtime)
}

async fn answer(
    State(calls): State<Arc<Mutex<Vec<Value>>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    calls.lock().expect("calls").push(body.clone());
    let reply = match body["method"].as_str() {
        Some("fail") => json!({
            "id": body["id"],
            "error": {"code": "ORDER_MISSING", "type": "app_error", "message": "no such order"},
        }),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json!({"id": body["id"]})
        }
        _ => {
            let mut entries = body["metadata"]["entries"].clone();
            if !entries.is_object() {
                entries = json!({});
            }
            entries["x-from"] = json!("backend");
            json!({"id": body["id"], "payload": body["payload"], "metadata": {"entries": entries}})
        }
    };
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    (StatusCode::OK, json_type, reply.to_string())
}
