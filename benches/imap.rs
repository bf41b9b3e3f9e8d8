//! IMAP throughput: N load mails (corpus mail made unique, default 2,000) in a private Dovecot's INBOX, taken from
//! INBOX to committed tasks (fetched, evaluated, committed with the log, moved to Processed/Quarantine) by one
//! `run --once` step of taxinbox, beside `mbsync` (isync) fetching the same mailbox into a Maildir in the same
//! run — the ratio is what our pipeline and durability cost on top of plain IMAP fetching.
//!
//! Run: `bench/imap.sh` (installs isync), or `cargo bench --bench imap` with `mbsync` on the PATH.
//! `TAXINBOX_BENCH_MAILS` sets N; `TAXINBOX_BENCH_MAIL_KB=135` pads every mail to about that size (real traffic;
//! default: the corpus mail as it is); `TAXINBOX_BENCH_DB=postgres` measures on PostgreSQL (TAXINBOX_TEST_PG).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first failure

#[allow(dead_code)] // the test harness's Dovecot; the benchmark uses part of it
#[path = "../tests/it/dovecot.rs"]
mod dovecot;
#[path = "support/load_mail.rs"]
mod load_mail;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `mbsync` pulling INBOX into a fresh Maildir: the time and how many mails arrived.
fn mbsync(server: &dovecot::Dovecot, dir: &Path) -> (Duration, usize) {
    let local = dir.join("mbsync-maildir");
    std::fs::create_dir_all(&local).unwrap();
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount bench\nHost 127.0.0.1\nPort {port}\nUser {user}\nPass {pass}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount bench\n\n\
             MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n\
             Channel bench\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync Pull\nExpunge None\nSyncState *\n",
            port = server.port,
            user = dovecot::USER,
            pass = dovecot::PASSWORD,
            local = local.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(&rc)
        .arg("-q")
        .arg("bench")
        .output()
        .expect("run mbsync (bench/imap.sh installs isync)");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "mbsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = ["new", "cur"]
        .iter()
        .map(|sub| {
            std::fs::read_dir(local.join("INBOX").join(sub))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum();
    (elapsed, fetched)
}

/// One `run --once` IMAP step over the mailbox: the time and how many mails were committed.
async fn taxinbox_once(server: &dovecot::Dovecot, dir: &Path) -> (Duration, usize, String) {
    let password = server.password_file("imap-password", dovecot::PASSWORD);
    let (url, _) = load_mail::database_url(dir, "imap").await;
    let config = dir.join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             from = \"taxinbox@debet-service.example\"\n{}{}",
            root().join("rules").display(),
            dir.join("outbox").display(),
            // TAXINBOX_BENCH_BATCH: mails per transaction and per FETCH/MOVE (default: the built-in setting).
            std::env::var("TAXINBOX_BENCH_BATCH")
                .map(|b| format!("[ingest]\nbatch_size = {b}\n"))
                .unwrap_or_default(),
            server.mailbox_config("demands", &password),
        ),
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    let store = taxinbox::store::Store::connect(&settings.database.url)
        .await
        .unwrap();
    let engine = format!("{:?}", store.engine()).to_lowercase();
    let c = root().join("tests/corpus");
    taxinbox::directory_import::import_files(
        &store,
        &c.join("clients.csv"),
        Some(&c.join("accountants.csv")),
        Some(&c.join("absences.csv")),
        None,
    )
    .await
    .unwrap();
    let app = taxinbox::app::Instance { settings, store };
    let pipeline = app.pipeline().await.unwrap();
    let lease = taxinbox::imap::Lease::for_this_process();
    let started = Instant::now();
    let once = taxinbox::daemon::poll_mailboxes_once(&app, &pipeline, &lease).await;
    let elapsed = started.elapsed();
    assert!(once.failed.is_empty(), "{:?}", once.failed);
    app.store.close().await;
    if let Some((server, name)) = url.rsplit_once('/').filter(|_| url.starts_with("postgres")) {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/test"))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    (elapsed, once.summary.total(), engine)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `RUST_LOG=taxinbox::imap=debug` prints each batch's FETCH, evaluate, commit and MOVE times: the profile.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    // `cargo bench` passes `--bench`; a filter that does not name this benchmark skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"imap".contains(a.as_str()))
    {
        return;
    }
    let mails: usize = std::env::var("TAXINBOX_BENCH_MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let mut server = dovecot::Dovecot::start();
    let corpus = root().join("tests/corpus");
    // TAXINBOX_BENCH_MAIL_KB=135 pads each mail with an attachment to about that size (real traffic); the default
    // 0 keeps the corpus mail as it is (~5 KB).
    let target = load_mail::target_size(0);
    let mut bytes = 0;
    for n in 1..=mails {
        let raw = load_mail::load_mail(&corpus, n, target);
        bytes += raw.len();
        server.deliver(&raw);
    }

    // mbsync first: it only reads (Sync Pull, Expunge None), so taxinbox finds the same INBOX afterwards.
    let (mbsync_time, fetched) = mbsync(&server, dir.path());
    assert_eq!(fetched, mails, "mbsync fetched every mail");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ours, committed, engine) = runtime.block_on(taxinbox_once(&server, dir.path()));
    assert_eq!(committed, mails, "taxinbox committed every mail");

    let (r_ours, r_mbsync) = (rate(mails, ours), rate(mails, mbsync_time));
    println!(
        "imap/{mails} mails, average {:.0} KB",
        bytes as f64 / mails as f64 / 1024.0
    );
    println!(
        "  taxinbox run --once ({engine}): {:>8.2} s  {:>8.0} mails/s  (INBOX -> committed tasks, log, moved)",
        ours.as_secs_f64(),
        r_ours
    );
    println!(
        "  mbsync (isync) pull:        {:>8.2} s  {:>8.0} mails/s  (INBOX -> local Maildir)",
        mbsync_time.as_secs_f64(),
        r_mbsync
    );
    println!("  ratio taxinbox / mbsync:    {:>8.3}", r_ours / r_mbsync);
}
