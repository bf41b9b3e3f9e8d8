//! The daemon on a real Dovecot: every mailbox, exactly once, through crashes and disconnects. Two instances
//! sharing PostgreSQL under the mailbox lease, a thousand mails in one `run --once` step, the real binary killed
//! with SIGKILL at pseudo-random moments and restarted, the latency of a mail delivered while the daemon idles,
//! and the HTTP endpoint (`/healthz`, `/metrics`).

use crate::dovecot::{folder_count, Dovecot, PASSWORD};
use crate::helpers::{corpus, spawn_daemon, wait_until, Engine, TestApp};
use std::io::{Read as _, Write as _};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taxinbox::imap::{self, Lease};
use taxinbox::metrics::Metrics;
use taxinbox::settings::MailboxSettings;

/// A Dovecot with `mails` load mails in INBOX and a test app whose mailbox `demands` points at it; `extra` is
/// added to the configuration.
async fn world(engine: Engine, mails: usize, extra: &str) -> (TestApp, Dovecot) {
    let mut dovecot = Dovecot::start();
    let password = dovecot.password_file("imap-password", PASSWORD);
    let config = format!("{extra}\n{}", dovecot.mailbox_config("demands", &password));
    let app = TestApp::with_extra_config(engine, &config).await;
    app.import_corpus_register().await;
    if mails > 0 {
        dovecot.deliver_numbered(&corpus(), 1..=mails);
    }
    (app, dovecot)
}

/// Every one of `n` mails is stored once, logged once and moved out of INBOX once; no task twice.
async fn assert_exactly_once(app: &TestApp, mailbox: &MailboxSettings, n: usize) {
    let n = n as i64;
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, n);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT message_id) FROM messages")
            .await,
        n,
        "one message row per Message-ID"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE event LIKE 'mail%'")
            .await,
        n,
        "one log entry per mail"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM (SELECT message FROM audit_log WHERE event LIKE 'mail%' \
             GROUP BY message HAVING COUNT(*) > 1) AS twice"
        )
        .await,
        0
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM (SELECT message, step FROM tasks WHERE message IS NOT NULL GROUP BY message, step \
             HAVING COUNT(*) > 1) AS twice"
        )
        .await,
        0,
        "no task twice"
    );
    assert_eq!(folder_count(mailbox, "INBOX").await, 0);
    let moved = folder_count(mailbox, &crate::dovecot::processed(mailbox)).await
        + folder_count(mailbox, &crate::dovecot::quarantine(mailbox)).await;
    assert_eq!(i64::from(moved), n, "every mail moved once");
}

/// A second `App` on the same database, as a second instance on another machine would have.
async fn second_instance(app: &TestApp) -> taxinbox::app::Instance {
    taxinbox::app::Instance {
        settings: app.app.settings.clone(),
        store: taxinbox::store::Store::connect(&app.app.settings.database.url)
            .await
            .expect("second store"),
    }
}

/// Two instances committing at once on one PostgreSQL database (each its own input) give their rows ids the other
/// does not take: each batch reserves its ids from the tables' sequences, and every mail is stored with its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_committing_at_once_on_postgres_take_ids_of_their_own() {
    const EACH: usize = 20;
    let app = TestApp::new(Engine::Postgres).await;
    app.import_corpus_register().await;
    let other = second_instance(&app).await;
    let pipeline = app.pipeline().await;
    // A client's payroll request (corpus 0053), made a new mail by its Message-ID: one task each.
    let template = std::fs::read_to_string(corpus().join("mail/0053.eml")).unwrap();
    let (left, right) = (app.path("left"), app.path("right"));
    for dir in [&left, &right] {
        std::fs::create_dir_all(dir).unwrap();
        for n in 1..=EACH {
            let text = template.replace(
                "<001301dcae04$19e5b276$4a5c4746@veter-snab.example>",
                &format!(
                    "<at-once-{n}@{}.veter-snab.example>",
                    dir.file_name().unwrap().to_string_lossy()
                ),
            );
            std::fs::write(dir.join(format!("{n:02}.eml")), text).unwrap();
        }
    }
    let options = taxinbox::ingest::IngestOptions {
        archive: taxinbox::pipeline::batch::Archive::No,
        dry_run: false,
        batch_size: 4,
        max_batch_bytes: 1 << 20,
        mailbox: None,
    };
    let run = |store: taxinbox::store::Store, dir: std::path::PathBuf| {
        let pipeline = pipeline.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let inputs = taxinbox::source::collect(&[dir.display().to_string()]).unwrap();
            taxinbox::ingest::ingest(
                &store,
                &pipeline,
                &inputs,
                &options,
                &chrono::Utc::now,
                |_| {},
            )
            .await
        })
    };
    let a = run(app.app.store.clone(), left);
    let b = run(other.store.clone(), right);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    a.expect("the first instance's batches");
    b.expect("the second instance's batches");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        2 * EACH as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks t JOIN messages m ON m.id = t.message")
            .await,
        2 * EACH as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT message) FROM audit_log WHERE event = 'mail_processed'")
            .await,
        2 * EACH as i64
    );
    other.store.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_work_a_mailbox_one_at_a_time_and_process_every_mail_once() {
    const FIRST: usize = 30;
    const MORE: usize = 20;
    let (app, mut dovecot) = world(Engine::Postgres, FIRST, "[ingest]\nbatch_size = 5\n").await;
    let other = second_instance(&app).await;
    let mut mailbox = app.app.settings.mailboxes[0].clone();
    // Leases of 2 s change hands under load; a short wait bounds how long mail waits for whichever instance holds it.
    mailbox.poll_interval = Duration::from_secs(5);
    let pipeline = app.pipeline().await;
    // Short leases so that the take-over after a crash is quick.
    let ttl = Duration::from_secs(2);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let spawn = |store: taxinbox::store::Store, holder: &str| {
        tokio::spawn(imap::run_mailbox(
            store,
            pipeline.clone(),
            mailbox.clone(),
            imap::Batching::new(5),
            Lease::new(holder, ttl),
            Arc::new(Metrics::new()),
            rx.clone(),
        ))
    };
    let a = spawn(app.app.store.clone(), "instance-a");
    let b = spawn(other.store.clone(), "instance-b");
    wait_until(Duration::from_secs(60), "the first mails", || async {
        app.count("SELECT COUNT(*) FROM messages").await == FIRST as i64
    })
    .await;
    // More mail while both run: whoever holds the lease takes it.
    dovecot.deliver_numbered(&corpus(), FIRST + 1..=FIRST + MORE);
    wait_until(Duration::from_secs(60), "the later mails", || async {
        app.count("SELECT COUNT(*) FROM messages").await == (FIRST + MORE) as i64
    })
    .await;
    wait_until(Duration::from_secs(30), "an empty INBOX", || async {
        folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    assert_exactly_once(&app, &mailbox, FIRST + MORE).await;

    // The holder dies without releasing its lease: the other instance takes over once it expires.
    let holder = {
        let mut conn = app.app.store.acquire().await.unwrap();
        taxinbox::store::mailbox_lease(&mut conn, "demands")
            .await
            .unwrap()
            .expect("a lease is held")
            .holder
    };
    let (dead, survivor) = if holder == "instance-a" {
        (a, b)
    } else {
        (b, a)
    };
    dead.abort();
    let _ = dead.await;
    dovecot.deliver_numbered(&corpus(), FIRST + MORE + 1..=FIRST + MORE + 5);
    wait_until(Duration::from_secs(60), "the take-over", || async {
        app.count("SELECT COUNT(*) FROM messages").await == (FIRST + MORE + 5) as i64
    })
    .await;
    {
        let mut conn = app.app.store.acquire().await.unwrap();
        let lease = taxinbox::store::mailbox_lease(&mut conn, "demands")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(lease.holder, holder, "the survivor holds the lease now");
    }
    wait_until(Duration::from_secs(30), "an empty INBOX", || async {
        folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    assert_exactly_once(&app, &mailbox, FIRST + MORE + 5).await;
    // Shutdown releases the lease.
    stop.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), survivor)
        .await
        .expect("the survivor stops")
        .unwrap();
    assert!(matches!(end, imap::MailboxEnd::Shutdown), "{end:?}");
    {
        let mut conn = app.app.store.acquire().await.unwrap();
        assert!(taxinbox::store::mailbox_lease(&mut conn, "demands")
            .await
            .unwrap()
            .is_none());
    }
    other.store.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_refused_while_another_live_instance_holds_it_and_taken_once_it_expires() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let app = TestApp::new(engine).await;
        let mut conn = app.app.store.acquire().await.unwrap();
        let a = Lease::new("a", Duration::from_secs(30));
        let b = Lease::new("b", Duration::from_secs(30));
        let t0 = chrono::Utc::now();
        assert!(a.take(&mut conn, "demands", t0).await.unwrap());
        assert!(!b.take(&mut conn, "demands", t0).await.unwrap());
        assert!(a.take(&mut conn, "demands", t0).await.unwrap(), "renewal");
        assert!(b.take(&mut conn, "other", t0).await.unwrap(), "per mailbox");
        let later = t0 + chrono::Duration::seconds(31);
        assert!(
            b.take(&mut conn, "demands", later).await.unwrap(),
            "expired"
        );
        assert!(!a.take(&mut conn, "demands", later).await.unwrap());
        // Releasing someone else's lease does nothing; releasing one's own frees it.
        assert!(
            !taxinbox::store::release_mailbox_lease(&mut conn, "demands", "a")
                .await
                .unwrap()
        );
        assert!(
            taxinbox::store::release_mailbox_lease(&mut conn, "demands", "b")
                .await
                .unwrap()
        );
        assert!(a.take(&mut conn, "demands", later).await.unwrap());
        drop(conn);
        app.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mails_go_through_one_run_once_step_each_logged_once() {
    const MAILS: usize = 1000;
    let (app, _dovecot) = world(Engine::Sqlite, MAILS, "[ingest]\nbatch_size = 100\n").await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    let pipeline = app.pipeline().await;
    let started = Instant::now();
    let once =
        taxinbox::daemon::poll_mailboxes_once(&app.app, &pipeline, &Lease::for_this_process())
            .await;
    let elapsed = started.elapsed();
    println!(
        "{MAILS} mails in {elapsed:.1?}: {:.0} mails/s",
        MAILS as f64 / elapsed.as_secs_f64()
    );
    assert!(once.failed.is_empty(), "{:?}", once.failed);
    assert_eq!(once.summary.total(), MAILS);
    assert_exactly_once(&app, &mailbox, MAILS).await;
    app.cleanup().await;
}

/// One HTTP/1.1 GET on 127.0.0.1: the status code and the body.
pub(crate) fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits until something answers on `port`, up to `limit`.
fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port} after {limit:?}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits until `n` mails are committed by the daemon of `round`; fails with the end of its log after two minutes.
async fn wait_for_commits(app: &TestApp, daemon: &mut Child, round: usize, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.count("SELECT COUNT(*) FROM messages").await < n {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            let log = std::fs::read_to_string(app.path(&format!("daemon-{round}.log")))
                .unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("run {round}: {n} mails not committed within 120 s; its log ends:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_and_restarts_leave_every_mail_processed_exactly_once() {
    const MAILS: usize = 600;
    const ROUNDS: usize = 5;
    let port = free_port();
    let extra = format!("[ingest]\nbatch_size = 10\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let (app, _dovecot) = world(Engine::Sqlite, MAILS, &extra).await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    // A fixed linear congruential sequence: the same "random" moments every run, so a failure can be replayed.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut committed_before = 0;
    for round in 0..ROUNDS {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut daemon = spawn_daemon(&app, round);
        // Start-up (rules, directory) takes a moment; kill once work is under way, after a pseudo-random delay.
        wait_for_commits(&app, &mut daemon, round, committed_before + 1).await;
        let delay = Duration::from_millis(20 + (seed >> 33) % 400);
        tokio::time::sleep(delay).await;
        daemon.kill().unwrap(); // SIGKILL: no shutdown, no lease release, maybe mid-transaction
        daemon.wait().unwrap();
        committed_before = app.count("SELECT COUNT(*) FROM messages").await;
        println!("round {round}: killed after {delay:?}, {committed_before} mails committed");
        if committed_before == MAILS as i64 {
            break;
        }
    }
    // The last run finishes the mailbox, serves its endpoint, and stops cleanly on SIGTERM.
    let mut daemon = spawn_daemon(&app, ROUNDS);
    wait_for_commits(&app, &mut daemon, ROUNDS, MAILS as i64).await;
    wait_until(Duration::from_secs(60), "an empty INBOX", || async {
        folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    wait_for_port(port, Duration::from_secs(10));
    // The endpoint answers from the start; the mailbox shows a finished pass once the first one is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (status, body) = http_get(port, "/healthz");
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        if health["mailboxes"]["demands"]["last_poll"].is_string() {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "no finished pass in /healthz: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["mailboxes"]["demands"]["last_error"].is_null(),
        "{health}"
    );
    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    // The families show once something was recorded (the last run may only have moved left-overs).
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let term = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "taxinbox run did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the endpoint stops with the daemon"
    );
    assert_exactly_once(&app, &mailbox, MAILS).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM mailbox_leases").await,
        0,
        "a clean stop releases the lease"
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&app.config)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_delivered_while_the_daemon_idles_is_processed_within_ten_seconds() {
    let (app, mut dovecot) = world(Engine::Sqlite, 3, "").await;
    let pipeline = app.pipeline().await;
    let metrics = Arc::new(Metrics::new());
    let tasks = taxinbox::daemon::MailboxTasks::start(
        &app.app,
        &pipeline,
        &Lease::for_this_process(),
        &metrics,
    );
    wait_until(Duration::from_secs(60), "the waiting mail", || async {
        app.count("SELECT COUNT(*) FROM messages").await == 3
    })
    .await;
    wait_until(Duration::from_secs(30), "the daemon idles", || async {
        metrics
            .mailboxes()
            .get("demands")
            .is_some_and(|h| h.state == taxinbox::metrics::MailboxState::Idle)
    })
    .await;
    // Let it settle in IDLE, then deliver.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dovecot.deliver_numbered(&corpus(), 4..=4);
    let delivered = Instant::now();
    wait_until(Duration::from_secs(10), "the new mail", || async {
        app.count("SELECT COUNT(*) FROM messages").await == 4
    })
    .await;
    println!(
        "a mail delivered during IDLE was committed after {:?}",
        delivered.elapsed()
    );
    tasks.stop().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoint_reports_mailbox_health_and_prometheus_metrics() {
    let (app, _dovecot) = world(Engine::Sqlite, 5, "").await;
    let pipeline = app.pipeline().await;
    let metrics = Arc::new(Metrics::new());
    let server = taxinbox::http::Server::start("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let port = server.address.port();
    let tasks = taxinbox::daemon::MailboxTasks::start(
        &app.app,
        &pipeline,
        &Lease::for_this_process(),
        &metrics,
    );
    wait_until(Duration::from_secs(60), "the mail", || async {
        app.count("SELECT COUNT(*) FROM messages").await == 5
    })
    .await;
    wait_until(Duration::from_secs(30), "a finished pass", || async {
        metrics
            .mailboxes()
            .get("demands")
            .is_some_and(|h| h.last_poll.is_some())
    })
    .await;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/healthz"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert!(
        health["mailboxes"]["demands"]["last_error"].is_null(),
        "{body}"
    );
    let (status, text) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("taxinbox_mails_total{mailbox=\"demands\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 5, "{text}");
    assert!(
        text.contains("taxinbox_mail_processing_seconds_count{mailbox=\"demands\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("taxinbox_tasks_created_total{mailbox=\"demands\"}"),
        "{text}"
    );
    tasks.stop().await;
    server.stop().await;
    let (status, _) = tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| (1u16, String::new()))
            .unwrap_or((0, String::new()))
    })
    .await
    .unwrap();
    assert_eq!(status, 0, "the endpoint is closed after stop");
    app.cleanup().await;
}
