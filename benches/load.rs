//! Load: N mails (default 100,000) waiting in a private Dovecot across M folders (default 10), all configured as
//! mailboxes of one `taxinbox run` (the real release binary, SQLite or PostgreSQL), worked until every mail is
//! committed. Prints the throughput of every tenth of the load (steady, not decaying as the store grows) and the
//! daemon's resident memory sampled from /proc (VmRSS per tenth, VmHWM at the end: flat, not growing with N).
//!
//! Mail resembles real traffic: each corpus mail made unique (its own Message-ID, `[load n]` subject) and, by
//! default, padded to about 135 KB (the average the issue measured) with a PDF-like base64 attachment; the rules
//! classify it like the original. It is written straight into Dovecot's Maildirs, not APPENDed, so generation
//! takes seconds.
//!
//! Run: `bench/load.sh`. Environment: `TAXINBOX_BENCH_MAILS` (default 100000), `TAXINBOX_BENCH_MAIL_KB`
//! (average size, default 135; 0 leaves the corpus mail as it is, ~5 KB), `TAXINBOX_BENCH_MAILBOXES` (10),
//! `TAXINBOX_BENCH_DB=postgres` (TAXINBOX_TEST_PG, default postgres://postgres@127.0.0.1:5432).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first failure

#[allow(dead_code)] // the test harness's Dovecot; the benchmark uses part of it
#[path = "../tests/it/dovecot.rs"]
mod dovecot;
#[allow(dead_code)] // shared bench support
#[path = "support/load_mail.rs"]
mod load_mail;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes mails `1..=mails` into `folders` round-robin, on two threads; returns the bytes written.
fn generate(folders: &[PathBuf], mails: usize, target: usize) -> u64 {
    let corpus = root().join("tests/corpus");
    let threads = 2;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let corpus = &corpus;
                scope.spawn(move || {
                    let mut bytes = 0u64;
                    let mut n = t + 1;
                    while n <= mails {
                        let raw = load_mail::load_mail(corpus, n, target);
                        bytes += raw.len() as u64;
                        let dir = &folders[(n - 1) % folders.len()];
                        let name =
                            format!("{}.M{n}P{}.load", 1_700_000_000 + n, std::process::id());
                        dovecot::deliver_into(dir, &name, &raw);
                        n += threads;
                    }
                    bytes
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// Bytes `pid` has caused to be written to storage (`/proc/PID/io` `write_bytes`): SQLite's WAL, its checkpoints
/// into the database, the outbox files.
fn written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn count(store: &taxinbox::store::Store) -> usize {
    let mut conn = store.acquire().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    usize::try_from(n).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"load".contains(a.as_str()))
    {
        return;
    }
    let mails = env_usize("TAXINBOX_BENCH_MAILS", 100_000);
    let target = load_mail::target_size(135);
    let boxes = env_usize("TAXINBOX_BENCH_MAILBOXES", 10).max(1);
    let dir = tempfile::tempdir().unwrap();
    let server = dovecot::Dovecot::start();
    let folders: Vec<String> = (0..boxes).map(|k| format!("load{k}")).collect();
    let maildirs: Vec<PathBuf> = folders.iter().map(|f| server.folder_maildir(f)).collect();
    let started = Instant::now();
    let bytes = generate(&maildirs, mails, target);
    println!(
        "load/{mails} mails in {boxes} folders: {:.1} MB generated in {:.1} s (average {:.0} KB)",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        bytes as f64 / mails.max(1) as f64 / 1024.0
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, pg) = runtime.block_on(load_mail::database_url(dir.path(), "load"));
    let password = server.password_file("imap-password", dovecot::PASSWORD);
    let mut mailboxes = String::new();
    for f in &folders {
        mailboxes.push_str(&server.mailbox_config(f, &password));
        mailboxes.push_str(&format!(
            "folder = \"{f}\"\nprocessed_folder = \"{f}/Processed\"\nquarantine_folder = \"{f}/Quarantine\"\n"
        ));
    }
    let config = dir.path().join("taxinbox.toml");
    let batch = std::env::var("TAXINBOX_BENCH_BATCH")
        .map(|b| format!("[ingest]\nbatch_size = {b}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             from = \"taxinbox@debet-service.example\"\n[http]\nlisten = \"127.0.0.1:0\"\n{batch}{mailboxes}",
            root().join("rules").display(),
            dir.path().join("outbox").display(),
        ),
    )
    .unwrap();
    // The store is created and the directory imported before the daemon starts, so that sampling never races the
    // migrations.
    let store = runtime.block_on(async {
        let store = taxinbox::store::Store::connect(&url).await.unwrap();
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
        store
    });
    let engine = if pg.is_some() { "postgres" } else { "sqlite" };
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start taxinbox run");
    let pid = daemon.id();
    let started = Instant::now();
    let step = (mails / 10).max(1);
    let mut next_mark = step;
    let mut last = (0usize, Duration::ZERO);
    let mut peak_rss = 0;
    // Bounded: a generous floor of 10 mails/s before the benchmark gives up.
    let limit = Duration::from_secs(120 + mails as u64 / 10);
    println!("taxinbox run ({engine}, {boxes} mailboxes, release build):");
    println!(
        "  {:>8}  {:>9}  {:>12}  {:>10}",
        "mails", "elapsed", "mails/s", "VmRSS MB"
    );
    let done = loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Some((rss, _)) = memory(pid) {
            peak_rss = peak_rss.max(rss);
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
            panic!("taxinbox run exited with {status}:\n{log}");
        }
        let n = runtime.block_on(count(&store));
        let elapsed = started.elapsed();
        while n >= next_mark && next_mark <= mails {
            let rss = memory(pid).map_or(0, |m| m.0);
            let slice = (n - last.0) as f64 / (elapsed - last.1).as_secs_f64();
            println!(
                "  {next_mark:>8}  {:>8.1}s  {slice:>12.0}  {:>10.1}",
                elapsed.as_secs_f64(),
                rss as f64 / 1024.0
            );
            last = (n, elapsed);
            next_mark += step;
        }
        if n >= mails {
            break elapsed;
        }
        assert!(
            elapsed < limit,
            "only {n} of {mails} mails committed after {elapsed:?}"
        );
    };
    let hwm = memory(pid).map_or(0, |m| m.1);
    let written_bytes = written(pid).unwrap_or(0);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    if pg.is_none() {
        // SQLite: what the daemon wrote while committing (sampled before it stopped) beside what it stored.
        let stored: u64 = ["taxinbox.db", "taxinbox.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum();
        println!(
            "  written {:.1} MB for {:.1} MB of mail ({:.2}x the mail); database {:.1} MB ({:.2}x the database)",
            written_bytes as f64 / 1e6,
            bytes as f64 / 1e6,
            written_bytes as f64 / bytes.max(1) as f64,
            stored as f64 / 1e6,
            written_bytes as f64 / stored.max(1) as f64
        );
    }
    println!(
        "  total: {mails} mails in {:.1} s = {:.0} mails/s ({:.1} MB/s of mail); VmHWM {:.1} MB (sampled peak VmRSS {:.1} MB)",
        done.as_secs_f64(),
        mails as f64 / done.as_secs_f64(),
        bytes as f64 / 1e6 / done.as_secs_f64(),
        hwm as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    runtime.block_on(async {
        store.close().await;
        if let Some((server, name)) = pg {
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
    });
}
