//! The admin HTTP listener: the admin page (`/`), `/livez`, `/readyz` (also as loomd's `/healthz`), `/metrics`, and the JSON API (`/api/listeners`,
//! `/api/connections`, `/api/topics`, `/api/cluster`, `/api/process`) that operators and tests poll, and the
//! message stream of `/api/tap` ([`tap`]), behind the access rules of [`guard`].

mod guard;
mod process;
mod tap;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use core_bus::{Bus, FlowStatus, Protocol};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::RwLock;
use protocols::{ConnectionInfo, ConnectionRegistry};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::reload::Reloader;
pub use guard::Guard;

/// One bound listener as `/api/listeners` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub name: String,
    pub protocol: Protocol,
    pub transport: &'static str,
    pub address: SocketAddr,
}

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub bus: Bus,
    pub connections: ConnectionRegistry,
    pub listeners: Arc<RwLock<Vec<ListenerInfo>>>,
    pub ready: Arc<AtomicBool>,
    pub prometheus: PrometheusHandle,
    /// Set once the listeners are up.
    pub reloader: Arc<OnceLock<Arc<Reloader>>>,
    /// Who may use which endpoint.
    pub guard: Arc<Guard>,
    /// Ends the streams that would otherwise hold the listener open (taps).
    pub shutdown: CancellationToken,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/", get(page))
        .route("/readyz", get(readyz))
        // loomd's name for readiness, for tooling written against it.
        .route("/healthz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/listeners", get(listeners))
        .route("/api/connections", get(connections))
        .route("/api/topics", get(topics))
        .route("/api/cluster", get(cluster))
        .route("/api/process", get(process))
        .route("/api/tap", get(tap::tap))
        .route("/api/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::enforce,
        ))
        .with_state(state)
}

/// The read-only admin page: plain HTML and script embedded in the binary, which reads `/api/*` and `/metrics`
/// from the browser (asking for the admin token when those need it).
async fn page() -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 frame-ancestors 'none'",
            ),
        ],
        include_str!("admin/page.html"),
    )
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    state.bus.refresh_gauges();
    process::ProcessStats::read().export();
    let mut text = state.prometheus.render();
    state.bus.render_metrics(&mut text);
    text
}

async fn listeners(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.listeners.read().clone())
}

/// One connection as `/api/connections` shows it: the registry's entry and, while it takes part in flow control,
/// `flow`: `stalled_ms` (a publisher that stopped reading, waiting for a subscriber) and/or `stalling_ms` (a
/// subscriber over its queue bound, holding its publishers).
#[derive(Serialize)]
struct ConnectionView {
    #[serde(flatten)]
    info: ConnectionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<FlowStatus>,
}

async fn connections(State(state): State<AdminState>) -> impl IntoResponse {
    let mut flow = state.bus.flow_status();
    let view: Vec<ConnectionView> = state
        .connections
        .list()
        .into_iter()
        .map(|info| ConnectionView {
            flow: flow.remove(&info.id),
            info,
        })
        .collect();
    Json(view)
}

async fn topics(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.bus.topics())
}

async fn cluster(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.bus.cluster_state())
}

/// This process: pid, resident set size, file descriptors, CPU time (null where `/proc` has none).
async fn process() -> impl IntoResponse {
    Json(process::ProcessStats::read())
}

async fn reload(State(state): State<AdminState>) -> axum::response::Response {
    match state.reloader.get() {
        Some(reloader) => {
            let reloader = reloader.clone();
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(report) => Json(report).into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response(),
    }
}

/// Binds the admin listener and serves until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin listener failed");
        }
    });
    Ok((local, task))
}
