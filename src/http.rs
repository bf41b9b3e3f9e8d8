//! The daemon's HTTP endpoint on `[http] listen`: `/healthz` (each source's state, last poll and last error, the
//! database, the rules, as JSON; `503 Service Unavailable` whenever anything is degraded, so a prober needs no JSON
//! parsing) and `/metrics` (Prometheus text format). Started by `taxinbox run`, stopped with it.
//!
//! The status endpoints are read-only: nothing there changes the store or the mailboxes. The web view (`web`)
//! joins this router when the daemon gives it one ([`Server::start_with_web`]).
//!
//! The status details (IMAP logins and hosts, server replies, rule errors) are not for the web's public: with
//! `[http] status_listen` they move to a listener of their own and `listen` answers `/healthz` with a bare
//! liveness answer; without it `listen` gives the details only to a direct loopback connection (no proxy's
//! forwarding headers), everyone else the bare answer. Every connection has a header-read and an idle timeout
//! ([`ConnectionLimits`]): a client that trickles its headers or sits idle is cut off (slowloris).

use crate::metrics::{DatabaseHealth, MailboxHealth, MailboxState, Metrics};
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
    /// `ok`, or `degraded` (answered with 503) when the database does not answer, or a source stopped on an error
    /// that needs a person or its alarm is raised (it could not acknowledge, or not be worked, for several passes
    /// in a row).
    status: &'static str,
    /// The database's answer to `SELECT 1`.
    database: DatabaseHealth,
    /// Every source by its configured name: IMAP mailboxes, Maildirs, stdin.
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

/// The bare liveness answer of a public listener.
#[derive(Debug, Serialize)]
struct Alive {
    status: &'static str,
}

async fn alive() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// The status routes of the public listener when status has a listener of its own: liveness only.
fn public_status_router() -> Router {
    Router::new().route("/healthz", get(alive))
}

/// Whether a request came straight from this machine, not through a proxy (which adds forwarding headers).
fn direct_from_loopback(headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| p.ip().is_loopback())
        && !headers.contains_key("x-forwarded-for")
        && !headers.contains_key(header::FORWARDED)
        && !headers.contains_key("x-real-ip")
}

/// The status routes of the public listener without a status listener: details for direct loopback connections
/// (an admin's `curl`, a local monitoring agent), the bare liveness answer (and no metrics) for everyone else.
fn shared_status_router(metrics: Arc<Metrics>) -> Router {
    fn direct(req: &axum::extract::Request) -> bool {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        direct_from_loopback(req.headers(), peer)
    }
    async fn health(
        State(metrics): State<Arc<Metrics>>,
        req: axum::extract::Request,
    ) -> axum::response::Response {
        if direct(&req) {
            healthz(State(metrics)).await.into_response()
        } else {
            alive().await.into_response()
        }
    }
    async fn metrics_text(
        State(metrics): State<Arc<Metrics>>,
        req: axum::extract::Request,
    ) -> axum::response::Response {
        if direct(&req) {
            prometheus(State(metrics)).await.into_response()
        } else {
            axum::http::StatusCode::NOT_FOUND.into_response()
        }
    }
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> (axum::http::StatusCode, Json<Health>) {
    let database = metrics.check_database().await;
    metrics.refresh_gauges(chrono::Utc::now()).await;
    let mailboxes = metrics.mailboxes();
    let stopped = mailboxes
        .values()
        .any(|h| (h.state == MailboxState::Stopped && h.last_error.is_some()) || h.alarm.is_some());
    let degraded = stopped || database.status == "down";
    let code = if degraded {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        axum::http::StatusCode::OK
    };
    let health = Health {
        status: if degraded { "degraded" } else { "ok" },
        database,
        mailboxes,
        rules: metrics.rules(),
    };
    (code, Json(health))
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    metrics.check_database().await;
    metrics.refresh_gauges(chrono::Utc::now()).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// The routes of `[http] listen`: the status routes, plus the web view when given. With the web view (a public
/// listener) status details go to direct loopback connections only, or nowhere here when `separate_status`.
pub fn app(metrics: Arc<Metrics>, web: Option<crate::web::Web>, separate_status: bool) -> Router {
    match (web, separate_status) {
        (Some(web), true) => public_status_router().merge(crate::web::router(web)),
        (Some(web), false) => shared_status_router(metrics).merge(crate::web::router(web)),
        (None, true) => public_status_router(),
        (None, false) => router(metrics),
    }
}

/// How long a connection may take over its request headers, and stay silent, before it is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_read: std::time::Duration,
    /// Without a byte read or written.
    pub idle: std::time::Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read: std::time::Duration::from_secs(
                crate::settings::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            ),
            idle: std::time::Duration::from_secs(crate::settings::DEFAULT_IDLE_TIMEOUT_SECS),
        }
    }
}

impl From<&crate::settings::HttpSettings> for ConnectionLimits {
    fn from(http: &crate::settings::HttpSettings) -> Self {
        ConnectionLimits {
            header_read: http.header_read_timeout,
            idle: http.idle_timeout,
        }
    }
}

/// A TCP listener whose connections are [`Guarded`].
struct GuardedListener {
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, address) = axum::serve::Listener::accept(&mut self.listener).await;
        (Guarded::new(io, self.limits), address)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Where a connection is in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte of a request (a new or kept-alive connection): only the idle timeout runs.
    Between,
    /// Reading request headers: the header-read deadline runs.
    Headers,
    /// Headers complete: the body, the handler, the response.
    Rest,
}

/// A connection with a header-read deadline and an idle timeout, enforced on reads: HTTP/1 headers end at the
/// first empty line, which the stream watches for; any byte read or written restarts the idle timer.
struct Guarded {
    io: tokio::net::TcpStream,
    limits: ConnectionLimits,
    phase: Phase,
    /// The last bytes read, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    header_deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    idle_deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Guarded {
    fn new(io: tokio::net::TcpStream, limits: ConnectionLimits) -> Guarded {
        let now = tokio::time::Instant::now();
        Guarded {
            io,
            limits,
            phase: Phase::Between,
            tail: [0; 3],
            header_deadline: Box::pin(tokio::time::sleep_until(now + limits.header_read)),
            idle_deadline: Box::pin(tokio::time::sleep_until(now + limits.idle)),
        }
    }

    fn saw_bytes(&mut self, bytes: &[u8]) {
        let now = tokio::time::Instant::now();
        let idle_until = now + self.limits.idle;
        self.idle_deadline.as_mut().reset(idle_until);
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Between {
            self.phase = Phase::Headers;
            self.tail = [0; 3];
            let headers_until = now + self.limits.header_read;
            self.header_deadline.as_mut().reset(headers_until);
        }
        if self.phase == Phase::Headers {
            let mut window: Vec<u8> = self.tail.to_vec();
            window.extend_from_slice(bytes);
            if window.windows(4).any(|w| w == b"\r\n\r\n") {
                self.phase = Phase::Rest;
            }
            let keep = window.len().saturating_sub(3);
            self.tail.copy_from_slice(&window[keep..]);
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future as _;
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled()[before..].to_vec();
                self.saw_bytes(&read);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.phase == Phase::Headers && self.header_deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(timed_out("request headers took too long")));
                }
                if self.idle_deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(timed_out("connection idle too long")));
                }
                Poll::Pending
            }
        }
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = written {
            if n > 0 {
                // A response: the next bytes read begin the next request.
                let until = tokio::time::Instant::now() + self.limits.idle;
                self.idle_deadline.as_mut().reset(until);
                self.phase = Phase::Between;
            }
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Binds `listen`; a taken port is an error naming the setting.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {listen}"))
}

/// Serves on `listener` until `stop` turns `true`; requests in flight are answered first. Each connection is held
/// to `limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let address = listener.local_addr().ok();
    tracing::info!(listen = ?address, "HTTP endpoint up");
    // The client's address reaches the handlers (the web view rate-limits failed sign-ins per address).
    axum::serve(
        GuardedListener { listener, limits }.tap_io(|_| {}),
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
    /// The status listener's bound address, when status has one of its own.
    pub status_address: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
        Server::start_with(listen, None, metrics, web, ConnectionLimits::default()).await
    }

    /// Binds `listen` (and `status_listen`, when given, for `/healthz` and `/metrics` in full) and serves each in a
    /// task of its own.
    pub async fn start_with(
        listen: SocketAddr,
        status_listen: Option<SocketAddr>,
        metrics: Arc<Metrics>,
        web: Option<crate::web::Web>,
        limits: ConnectionLimits,
    ) -> anyhow::Result<Server> {
        let listener = bind(listen).await?;
        let address = listener
            .local_addr()
            .context("http.listen: local address")?;
        let status = match status_listen {
            Some(s) => {
                let l = tokio::net::TcpListener::bind(s)
                    .await
                    .with_context(|| format!("http.status_listen: cannot listen on {s}"))?;
                let a = l
                    .local_addr()
                    .context("http.status_listen: local address")?;
                Some((l, a))
            }
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(serve(
            listener,
            app(metrics.clone(), web, status.is_some()),
            limits,
            stop_rx.clone(),
        ))];
        let status_address = status.as_ref().map(|(_, a)| *a);
        if let Some((l, _)) = status {
            tasks.push(tokio::spawn(serve(l, router(metrics), limits, stop_rx)));
        }
        Ok(Server {
            address,
            status_address,
            stop,
            tasks,
        })
    }

    /// Stops accepting, answers what is in flight, and reports a failure of the server (logged, not returned:
    /// the daemon is shutting down anyway).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(Ok(()))) => tracing::info!("HTTP endpoint stopped"),
                Ok(Ok(Err(e))) => tracing::error!("HTTP endpoint failed: {e:#}"),
                Ok(Err(e)) => tracing::error!("HTTP endpoint task failed: {e}"),
                Err(_) => tracing::warn!("HTTP endpoint did not stop in time"),
            }
        }
    }
}
