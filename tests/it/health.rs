//! `/healthz` and `/metrics` tell the truth: a database that stops answering makes `/healthz` answer 503, every
//! source appears by its configured name, and mail taken from a Maildir shows in `/metrics` per source and status
//! beside the backlog gauges, the last successful poll and the build.

use crate::daemon::http_get;
use crate::helpers::{corpus, postgres_server, Engine, TestApp};
use std::sync::Arc;
use std::time::Duration;
use taxinbox::metrics::Metrics;

async fn get(port: u16, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(port, path))
        .await
        .unwrap()
}

/// A loopback TCP proxy to PostgreSQL: the test "stops the database" by shutting it, which refuses new connections
/// and cuts the open ones, as a stopped server does.
struct PgProxy {
    address: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    async fn start(upstream: String) -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            let mut stopped = stop_rx.clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        let upstream = upstream.clone();
                        let mut stopped = stop_rx.clone();
                        connections.spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = stopped.wait_for(|s| *s) => {}
                            }
                        });
                    }
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            // Every open connection ends with the listener (the JoinSet aborts what is left when dropped).
            connections.shutdown().await;
        });
        PgProxy {
            address,
            stop,
            task,
        }
    }

    async fn shut(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_stopped_healthz_answers_503() {
    let app = TestApp::new(Engine::Postgres).await;
    let server_address = postgres_server()
        .trim_start_matches("postgres://")
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let proxy = PgProxy::start(server_address.clone()).await;
    let url = app
        .app
        .settings
        .database
        .url
        .replace(&server_address, &proxy.address.to_string());
    assert_ne!(
        url, app.app.settings.database.url,
        "the store goes through the proxy"
    );
    let store = taxinbox::store::Store::connect(&url).await.unwrap();
    let metrics = Arc::new(Metrics::new());
    metrics.attach_store(store.clone(), app.app.settings.general.timezone);
    taxinbox::daemon::register_sources(&metrics, &app.app.settings);
    let server = taxinbox::http::Server::start("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let port = server.address.port();

    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"]["status"], "ok", "{health}");
    assert_eq!(health["mailboxes"]["stdin"]["kind"], "stdin", "{health}");

    proxy.shut().await;
    let started = std::time::Instant::now();
    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["database"]["status"], "down", "{health}");
    assert!(health["database"]["error"].is_string(), "{health}");
    // Bounded by the check's timeout, with room for the rest of the request.
    assert!(
        started.elapsed() < taxinbox::metrics::DATABASE_CHECK_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (code, text) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains("taxinbox_database_up 0"), "{text}");

    server.stop().await;
    store.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sqlite_store_closed_healthz_answers_503() {
    let app = TestApp::new(Engine::Sqlite).await;
    let metrics = Arc::new(Metrics::new());
    metrics.attach_store(app.app.store.clone(), app.app.settings.general.timezone);
    let server = taxinbox::http::Server::start("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let port = server.address.port();
    assert_eq!(get(port, "/healthz").await.0, 200);
    // What a SQLite store can honestly fail with while the daemon runs: its connections gone.
    app.app.store.close().await;
    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"database\":{\"status\":\"down\""), "{body}");
    server.stop().await;
    app.cleanup().await;
}

/// The value of the series `series` (name and labels exactly as written) in a Prometheus text page.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_maildir_ingest_metrics_show_that_sources_mail_counts() {
    let app = TestApp::with_extra_config(
        Engine::Sqlite,
        "[[maildirs]]\nname = \"buh\"\npath = \"buh\"\n",
    )
    .await;
    app.import_corpus_register().await;
    let new = app.path("buh/new");
    std::fs::create_dir_all(&new).unwrap();
    std::fs::create_dir_all(app.path("buh/cur")).unwrap();
    const MAILS: usize = 40;
    for n in 1..=MAILS {
        let name = format!("{n:04}.eml");
        std::fs::copy(corpus().join("mail").join(&name), new.join(&name)).unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    metrics.attach_store(app.app.store.clone(), app.app.settings.general.timezone);
    taxinbox::daemon::register_sources(&metrics, &app.app.settings);
    let server = taxinbox::http::Server::start("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let port = server.address.port();
    // Listed by its configured name before its first pass.
    let (_, body) = get(port, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["mailboxes"]["buh"]["kind"], "maildir", "{health}");
    assert!(
        health["mailboxes"]["buh"]["last_poll"].is_null(),
        "{health}"
    );

    let pipeline = app.pipeline().await;
    let (summary, _) = taxinbox::daemon::run_pass_recording(&app.app, &pipeline, Some(&metrics))
        .await
        .unwrap();
    assert_eq!(summary.total(), MAILS);

    let (code, text) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    let mut counted = 0.0;
    for status in ["processed", "linked", "quarantined"] {
        let stored = app
            .count(&format!(
                "SELECT COUNT(*) FROM messages WHERE mailbox = 'buh' AND status = '{status}'"
            ))
            .await;
        let series = format!("taxinbox_mails_total{{mailbox=\"buh\",status=\"{status}\"}}");
        let shown = sample(&text, &series).unwrap_or(0.0);
        assert_eq!(shown, stored as f64, "{series}\n{text}");
        counted += shown;
    }
    assert_eq!(counted, MAILS as f64, "{text}");
    let tasks = app
        .count("SELECT COUNT(*) FROM tasks WHERE message IS NOT NULL")
        .await;
    assert_eq!(
        sample(&text, "taxinbox_tasks_created_total{mailbox=\"buh\"}"),
        Some(tasks as f64),
        "{text}"
    );
    let polled = sample(
        &text,
        "taxinbox_source_last_poll_timestamp_seconds{mailbox=\"buh\"}",
    )
    .expect("the last poll of buh");
    assert!((chrono::Utc::now().timestamp() as f64 - polled).abs() < 120.0);
    let quarantined = app
        .count("SELECT COUNT(*) FROM messages WHERE status = 'quarantined'")
        .await;
    assert_eq!(
        sample(&text, "taxinbox_quarantined_mails"),
        Some(quarantined as f64),
        "{text}"
    );
    let pending = app
        .count("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .await;
    assert_eq!(
        sample(&text, "taxinbox_outbox_pending"),
        Some(pending as f64),
        "{text}"
    );
    for gauge in [
        "taxinbox_sink_queue_pending",
        "taxinbox_overdue_tasks",
        "taxinbox_database_up",
    ] {
        assert!(sample(&text, gauge).is_some(), "{gauge}\n{text}");
    }
    let version = format!(
        "taxinbox_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");

    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["mailboxes"]["buh"]["state"], "idle", "{health}");
    assert!(
        health["mailboxes"]["buh"]["last_poll"].is_string(),
        "{health}"
    );
    server.stop().await;
    app.cleanup().await;
}
