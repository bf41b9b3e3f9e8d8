//! IMAP throughput: N load mails (corpus mail made unique, default 2,000) in a private Dovecot's INBOX, taken from
//! INBOX to committed tasks (fetched, evaluated, committed with the log, acknowledged) by one `run --once` step of
//! taxinbox, beside `mbsync` (isync) fetching the same mailbox into a Maildir in the same run — the ratio is what our
//! pipeline and durability cost on top of plain IMAP fetching.
//!
//! Four variants, each on a fresh Dovecot with its own mbsync run: SQLite and PostgreSQL, each acknowledging by MOVE
//! (the default) and by flag (`acknowledge = "flag"`: the keyword `$Taxinbox`, mail left in INBOX). On SQLite it also
//! prints the write amplification: the bytes the benchmark process wrote while taxinbox worked (`/proc/self/io`
//! `write_bytes`: the WAL, its checkpoints into the database, the outbox files) beside the mail's bytes and the size
//! of the database it left.
//!
//! Run: `bench/imap.sh` (installs isync), or `cargo bench --bench imap` with `mbsync` on the PATH.
//! `TAXINBOX_BENCH_MAILS` sets N; `TAXINBOX_BENCH_MAIL_KB=135` pads every mail to about that size (real traffic;
//! default: the corpus mail as it is); `TAXINBOX_BENCH_DB=sqlite|postgres` keeps one engine;
//! `TAXINBOX_BENCH_ACK=move|flag` keeps one way of acknowledging; `TAXINBOX_BENCH_RUNS` runs each variant that many
//! times (default: 3 for SQLite with MOVE, the headline figure, 1 for the others) and reports the median ratio.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first failure

#[allow(dead_code)] // the test harness's Dovecot; the benchmark uses part of it
#[path = "../tests/it/dovecot.rs"]
mod dovecot;
#[allow(dead_code)] // shared bench support
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
async fn taxinbox_once(
    server: &dovecot::Dovecot,
    dir: &Path,
    variant: Variant,
) -> (Duration, usize) {
    let password = server.password_file("imap-password", dovecot::PASSWORD);
    let (url, _) = load_mail::database_url_on(dir, "imap", variant.postgres).await;
    let config = dir.join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             from = \"taxinbox@debet-service.example\"\n{}{}{}",
            root().join("rules").display(),
            dir.join("outbox").display(),
            // TAXINBOX_BENCH_BATCH: mails per transaction and per FETCH/MOVE (default: the built-in setting).
            std::env::var("TAXINBOX_BENCH_BATCH")
                .map(|b| format!("[ingest]\nbatch_size = {b}\n"))
                .unwrap_or_default(),
            server.mailbox_config("demands", &password),
            if variant.flag {
                "acknowledge = \"flag\"\n"
            } else {
                ""
            },
        ),
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    let store = taxinbox::store::Store::connect(&settings.database.url)
        .await
        .unwrap();
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
    (elapsed, once.summary.total())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// One way of running the benchmark: the engine and how mail is acknowledged.
#[derive(Debug, Clone, Copy)]
struct Variant {
    postgres: bool,
    flag: bool,
}

impl Variant {
    fn label(self) -> String {
        format!(
            "{} {}",
            if self.postgres {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            if self.flag { "flag" } else { "MOVE" }
        )
    }
}

/// Bytes this process has caused to be written to storage so far (`/proc/self/io`).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time from a `/proc/<pid>/stat` line: the process's own (`utime` + `stime`) and that of its children it has
/// waited for (`cutime` + `cstime`), in seconds. Linux counts in clock ticks of 1/100 s (USER_HZ on every mainstream
/// architecture).
fn cpu_seconds(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // pid (comm) state …: comm may hold spaces, so count fields after the last ')'.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    // After ')': state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    (tick(11) + tick(12), tick(13) + tick(14))
}

/// [`cpu_seconds`] of `pid`, its own and its reaped children's together.
fn cpu_total(pid: &str) -> f64 {
    let (own, reaped) = cpu_seconds(pid);
    own + reaped
}

/// CPU seconds of every PostgreSQL process on this machine: each one's own and what it has reaped (the postmaster
/// reaps the backends of closed connections), so that a difference of two readings counts the work in between.
fn postgres_cpu() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_total(&pid))
        .sum()
}

/// CPU seconds spent while one side worked: taxinbox's process, mbsync's, the Dovecot server's (its master and the
/// session processes it has reaped), and on PostgreSQL the database server's during taxinbox's pass.
#[derive(Default, Clone, Copy)]
struct Cpu {
    ours: f64,
    mbsync: f64,
    server_during_ours: f64,
    server_during_mbsync: f64,
    database_during_ours: Option<f64>,
}

/// What one run measured.
struct Run {
    ours: Duration,
    mbsync: Duration,
    cpu: Cpu,
    /// SQLite: bytes written while taxinbox worked, and the size of the database (with its WAL) it left.
    written: Option<(u64, u64)>,
}

impl Run {
    fn ratio(&self, mails: usize) -> f64 {
        rate(mails, self.ours) / rate(mails, self.mbsync)
    }
}

/// One fresh Dovecot with `mails` load mails in INBOX; mbsync pulls them, then taxinbox works them.
fn run_once(variant: Variant, mails: usize, target: usize) -> (Run, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = dovecot::Dovecot::start();
    let corpus = root().join("tests/corpus");
    let mut bytes = 0;
    for n in 1..=mails {
        let raw = load_mail::load_mail(&corpus, n, target);
        bytes += raw.len();
        server.deliver(&raw);
    }
    // mbsync first: it only reads (Sync Pull, Expunge None), so taxinbox finds the same INBOX afterwards.
    let server_pid = server.pid().to_string();
    let server_cpu = || cpu_total(&server_pid);
    let (server_before, (_, children_before)) = (server_cpu(), cpu_seconds("self"));
    let (mbsync_time, fetched) = mbsync(&server, dir.path());
    // Dovecot reaps a session's process once its client has logged out.
    std::thread::sleep(Duration::from_millis(200));
    let (server_between, (ours_before, children_after)) = (server_cpu(), cpu_seconds("self"));
    assert_eq!(fetched, mails, "mbsync fetched every mail");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = write_bytes();
    let database_before = variant.postgres.then(postgres_cpu);
    let (ours, committed) = runtime.block_on(taxinbox_once(&server, dir.path(), variant));
    let database_after = variant.postgres.then(postgres_cpu);
    // The store is closed: SQLite's last checkpoint is in the figure.
    let written = write_bytes().saturating_sub(before);
    let (ours_after, _) = cpu_seconds("self");
    drop(runtime);
    std::thread::sleep(Duration::from_millis(200));
    let cpu = Cpu {
        ours: ours_after - ours_before,
        mbsync: children_after - children_before,
        server_during_ours: server_cpu() - server_between,
        server_during_mbsync: server_between - server_before,
        database_during_ours: database_after.zip(database_before).map(|(a, b)| a - b),
    };
    assert_eq!(committed, mails, "taxinbox committed every mail");
    let stored = ["taxinbox.db", "taxinbox.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let run = Run {
        ours,
        mbsync: mbsync_time,
        cpu,
        written: (!variant.postgres).then_some((written, stored)),
    };
    (run, bytes)
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
    let engine = std::env::var("TAXINBOX_BENCH_DB").ok();
    let ack = std::env::var("TAXINBOX_BENCH_ACK").ok();
    let runs: Option<usize> = std::env::var("TAXINBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok());
    // TAXINBOX_BENCH_MAIL_KB=135 pads each mail with an attachment to about that size (real traffic); the default
    // 0 keeps the corpus mail as it is (~5 KB).
    let target = load_mail::target_size(0);
    let variants = [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(|(postgres, flag)| Variant { postgres, flag })
        .filter(|v| {
            engine
                .as_deref()
                .is_none_or(|e| (e == "postgres") == v.postgres)
        })
        .filter(|v| ack.as_deref().is_none_or(|a| (a == "flag") == v.flag));
    let mut lines = Vec::new();
    let mut average = 0.0;
    for variant in variants {
        let n = runs
            .unwrap_or(if variant.postgres || variant.flag {
                1
            } else {
                3
            })
            .max(1);
        let mut done = Vec::with_capacity(n);
        for _ in 0..n {
            let (run, bytes) = run_once(variant, mails, target);
            average = bytes as f64 / mails as f64 / 1024.0;
            println!(
                "  {:<16} taxinbox {:>6.2} s {:>6.0} mails/s   mbsync {:>6.2} s {:>6.0} mails/s   ratio {:.3}",
                variant.label(),
                run.ours.as_secs_f64(),
                rate(mails, run.ours),
                run.mbsync.as_secs_f64(),
                rate(mails, run.mbsync),
                run.ratio(mails)
            );
            let database = run
                .cpu
                .database_during_ours
                .map(|s| format!(" + PostgreSQL {s:.2} s"))
                .unwrap_or_default();
            println!(
                "  {:<16} CPU taxinbox {:.2} s + server {:.2} s{database}   mbsync {:.2} s + server {:.2} s",
                "",
                run.cpu.ours,
                run.cpu.server_during_ours,
                run.cpu.mbsync,
                run.cpu.server_during_mbsync
            );
            if let Some((written, stored)) = run.written {
                println!(
                    "  {:<16} written {:.1} MB for {:.1} MB of mail ({:.2}x the mail), database {:.1} MB ({:.2}x the database)",
                    "",
                    written as f64 / 1e6,
                    bytes as f64 / 1e6,
                    written as f64 / bytes as f64,
                    stored as f64 / 1e6,
                    written as f64 / stored.max(1) as f64
                );
            }
            done.push(run);
        }
        done.sort_by(|a, b| a.ratio(mails).total_cmp(&b.ratio(mails)));
        let median = &done[done.len() / 2];
        let ratios: Vec<String> = done
            .iter()
            .map(|r| format!("{:.2}", r.ratio(mails)))
            .collect();
        lines.push(format!(
            "  {:<16} {:>8.2} s {:>8.0} mails/s   mbsync {:>6.2} s   ratio {:.3}{}",
            variant.label(),
            median.ours.as_secs_f64(),
            rate(mails, median.ours),
            median.mbsync.as_secs_f64(),
            median.ratio(mails),
            if done.len() > 1 {
                format!("  (median of {}: {})", done.len(), ratios.join(", "))
            } else {
                String::new()
            }
        ));
    }
    println!("imap/{mails} mails, average {average:.0} KB: taxinbox run --once (INBOX -> committed tasks, log, acknowledged) / mbsync pull (INBOX -> local Maildir)");
    for line in lines {
        println!("{line}");
    }
}
