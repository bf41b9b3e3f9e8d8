//! The daemon's HTTP endpoint on `[http] listen`: `/healthz` (each mailbox's state, last poll and last error as
//! JSON) and `/metrics` (Prometheus text format). Started by `taxinbox run`, stopped with it.
//!
//! The status endpoints are read-only: nothing there changes the store or the mailboxes. The web view (`web`)
//! joins this router when the daemon gives it one ([`Server::start_with_web`]).

use crate::metrics::{MailboxHealth, MailboxState, Metrics};
use anyhow::Context as _;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// The `/healthz` answer.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok`, or `degraded` when a mailbox stopped on an error that needs a person or its alarm is raised (it could
    /// not acknowledge, or not be worked, for several passes in a row).
    status: &'static str,
    mailboxes: BTreeMap<String, MailboxHealth>,
    /// The rules in force and a refused reload (`last_error`), if any.
    rules: crate::metrics::RulesHealth,
}

/// The routes, on the shared metrics.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .with_state(metrics)
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> Json<Health> {
    let mailboxes = metrics.mailboxes();
    let stopped = mailboxes
        .values()
        .any(|h| (h.state == MailboxState::Stopped && h.last_error.is_some()) || h.alarm.is_some());
    Json(Health {
        status: if stopped { "degraded" } else { "ok" },
        mailboxes,
        rules: metrics.rules(),
    })
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// The status routes, plus the web view when given.
pub fn app(metrics: Arc<Metrics>, web: Option<crate::web::Web>) -> Router {
    match web {
        Some(web) => router(metrics).merge(crate::web::router(web)),
        None => router(metrics),
    }
}

/// Binds `listen`; a taken port is an error naming the setting.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {listen}"))
}

/// Serves on `listener` until `stop` turns `true`; requests in flight are answered first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let address = listener.local_addr().ok();
    tracing::info!(listen = ?address, "HTTP endpoint up: /healthz, /metrics, the web view");
    // The client's address reaches the handlers (the web view rate-limits failed sign-ins per address).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .context("serve HTTP")
}

/// A running endpoint: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Server {
    /// The bound address (the port the system chose when `listen` said 0).
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Server {
    /// Binds `listen` and serves in a task of its own.
    pub async fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
        Server::start_with_web(listen, metrics, None).await
    }

    /// Same, with the web view mounted beside the status endpoints.
    pub async fn start_with_web(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        web: Option<crate::web::Web>,
    ) -> anyhow::Result<Server> {
        let listener = bind(listen).await?;
        let address = listener
            .local_addr()
            .context("http.listen: local address")?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app(metrics, web), stop_rx));
        Ok(Server {
            address,
            stop,
            task,
        })
    }

    /// Stops accepting, answers what is in flight, and reports a failure of the server (logged, not returned:
    /// the daemon is shutting down anyway).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!("HTTP endpoint stopped"),
            Ok(Ok(Err(e))) => tracing::error!("HTTP endpoint failed: {e:#}"),
            Ok(Err(e)) => tracing::error!("HTTP endpoint task failed: {e}"),
            Err(_) => tracing::warn!("HTTP endpoint did not stop in time"),
        }
    }
}
