//! Faults under load, with real servers and the real binary: `taxinbox run` killed with SIGKILL at seeded
//! pseudo-random moments, the IMAP server restarted under a running daemon, a private PostgreSQL cluster
//! restarted under it, and the SQLite file's disk running full. After each, every mail is stored once, every task
//! exists once (as many as a clean run of the same mail makes), every notification is delivered once, and
//! `taxinbox audit verify` passes.
//!
//! The SMTP server being down is covered in `smtp.rs`
//! (`notifications_wait_while_the_smtp_server_is_down_and_go_out_once_when_it_is_back`).

use crate::dovecot::{folder_count, numbered_mail, Dovecot, PASSWORD};
use crate::helpers::{
    corpus, on_both_engines, project_root, spawn_daemon, wait_until, Engine, TestApp,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taxinbox::imap::Lease;
use taxinbox::metrics::Metrics;

/// A Dovecot holding load mails `1..=mails` in INBOX, and a test app whose mailbox `demands` points at it.
/// The HTTP endpoint listens on a port of the kernel's choosing, so that parallel daemons never collide.
async fn world(engine: Engine, mails: usize, batch: usize) -> (TestApp, Dovecot) {
    let mut dovecot = Dovecot::start();
    let password = dovecot.password_file("imap-password", PASSWORD);
    let extra = format!(
        "[ingest]\nbatch_size = {batch}\n[http]\nlisten = \"127.0.0.1:0\"\n{}",
        dovecot.mailbox_config("demands", &password)
    );
    let app = TestApp::with_extra_config(engine, &extra).await;
    app.import_corpus_register().await;
    dovecot.deliver_numbered(&corpus(), 1..=mails);
    (app, dovecot)
}

/// What a clean, uninterrupted run makes of load mails `1..=mails`: (tasks, notifications queued for mail).
/// Computed, not written down: a fresh SQLite store ingests the same mail in the same order through the library.
pub(crate) async fn clean_run_counts(mails: usize) -> (i64, i64) {
    let reference = TestApp::new(Engine::Sqlite).await;
    reference.import_corpus_register().await;
    let dir = reference.path("mail");
    std::fs::create_dir_all(&dir).unwrap();
    for n in 1..=mails {
        std::fs::write(dir.join(format!("{n:06}.eml")), numbered_mail(&corpus(), n)).unwrap();
    }
    let reports = reference.ingest(&[&dir], false).await;
    assert_eq!(reports.len(), mails);
    let tasks = reference
        .count("SELECT COUNT(*) FROM tasks WHERE message IS NOT NULL")
        .await;
    let notes = reference
        .count("SELECT COUNT(*) FROM outbox WHERE message IS NOT NULL")
        .await;
    reference.cleanup().await;
    (tasks, notes)
}

async fn import_register(store: &taxinbox::store::Store) {
    let c = corpus();
    taxinbox::directory_import::import_files(
        store,
        &c.join("clients.csv"),
        Some(&c.join("accountants.csv")),
        Some(&c.join("absences.csv")),
        None,
    )
    .await
    .expect("import the corpus register");
}

async fn count(store: &taxinbox::store::Store, sql: &str) -> i64 {
    let mut conn = store.acquire().await.expect("conn");
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .expect(sql);
    row.0
}

/// The store holds `n` mails, each once, each logged once, no task twice, no notification queued twice, and
/// `tasks` tasks with `notes` notifications for mail in all (what a clean run makes).
pub(crate) async fn assert_stored_once(
    store: &taxinbox::store::Store,
    n: usize,
    tasks: i64,
    notes: i64,
) {
    let n = n as i64;
    assert_eq!(count(store, "SELECT COUNT(*) FROM messages").await, n);
    assert_eq!(
        count(store, "SELECT COUNT(DISTINCT message_id) FROM messages").await,
        n,
        "one message row per mail"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM audit_log WHERE event LIKE 'mail%'"
        )
        .await,
        n,
        "one log entry per mail"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM (SELECT message, step FROM tasks WHERE message IS NOT NULL \
             GROUP BY message, step HAVING COUNT(*) > 1) AS twice"
        )
        .await,
        0,
        "no task twice"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM (SELECT kind, task, recipient FROM outbox WHERE message IS NOT NULL \
             GROUP BY kind, task, recipient HAVING COUNT(*) > 1) AS twice"
        )
        .await,
        0,
        "no notification queued twice"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM tasks WHERE message IS NOT NULL"
        )
        .await,
        tasks
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM outbox WHERE message IS NOT NULL"
        )
        .await,
        notes
    );
}

/// Every queued notification was delivered, once: one `.eml` per outbox row, all rows sent, no Message-ID twice.
async fn assert_notifications_sent_once(store: &taxinbox::store::Store, outbox: &Path) {
    let rows = count(store, "SELECT COUNT(*) FROM outbox").await;
    assert!(rows > 0, "the load creates notifications");
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM outbox WHERE status <> 'sent'").await,
        0,
        "every notification delivered"
    );
    let files: Vec<PathBuf> = std::fs::read_dir(outbox)
        .expect("the outbox folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len() as i64, rows, "one .eml file per notification");
    let mut ids = std::collections::BTreeSet::new();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a delivered notification parses");
        let id = parsed.message_id().expect("a Message-ID").to_owned();
        assert!(ids.insert(id), "{} repeats a Message-ID", f.display());
    }
}

/// `taxinbox <args>` of the real binary on `config`.
pub(crate) fn taxinbox(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run taxinbox")
}

pub(crate) fn assert_audit_verifies(config: &Path) {
    let out = taxinbox(config, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_tail(app: &TestApp, round: usize) -> String {
    let log = std::fs::read_to_string(app.path(&format!("daemon-{round}.log"))).unwrap_or_default();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(0);
    log[start..].to_owned()
}

/// Waits until at least `n` mails are committed while the daemon of `round` runs (two minutes at most).
pub(crate) async fn wait_for_commits(app: &TestApp, daemon: &mut Child, round: usize, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.count("SELECT COUNT(*) FROM messages").await < n {
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "run {round} exited with {status}; its log ends:\n{}",
                log_tail(app, round)
            );
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!(
                "run {round}: {n} mails not committed within 120 s; its log ends:\n{}",
                log_tail(app, round)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next value of a fixed linear congruential sequence: the same "random" moments on every run, so that a
/// failure can be replayed.
pub(crate) fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

on_both_engines!(
    sigkill_at_seeded_random_moments_loses_and_doubles_no_mail_task_or_notification,
    |engine| async move {
        const MAILS: usize = 300;
        const KILLS: usize = 7;
        let (expected_tasks, expected_notes) = clean_run_counts(MAILS).await;
        let (app, _dovecot) = world(engine, MAILS, 10).await;
        let mailbox = app.app.settings.mailboxes[0].clone();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ (engine as u64);
        let mut committed = 0;
        for round in 0..KILLS {
            let mut daemon = spawn_daemon(&app, round);
            // Some rounds die during start-up (migrations, rules, the first pass's notifications), most while
            // batches are fetched, committed and moved.
            // Once every mail is committed, a round still dies somewhere in moving, notifying or idling.
            if !next(&mut seed).is_multiple_of(4) {
                let target = (committed + 1).min(MAILS as i64);
                wait_for_commits(&app, &mut daemon, round, target).await;
            }
            let delay = Duration::from_millis(10 + next(&mut seed) % 300);
            tokio::time::sleep(delay).await;
            daemon.kill().unwrap(); // SIGKILL: no shutdown, no lease release, maybe mid-transaction
            daemon.wait().unwrap();
            committed = app.count("SELECT COUNT(*) FROM messages").await;
            println!(
                "{engine:?} round {round}: killed after {delay:?}; {committed} mails committed"
            );
        }
        // A run left alone finishes the mailbox.
        let mut daemon = spawn_daemon(&app, KILLS);
        wait_for_commits(&app, &mut daemon, KILLS, MAILS as i64).await;
        wait_until(Duration::from_secs(60), "an empty INBOX", || async {
            folder_count(&mailbox, "INBOX").await == 0
        })
        .await;
        // Its work done, the last run is killed too (its clean stop on SIGTERM is daemon.rs's test).
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        // The daemon sends its outbox on its own schedule; one more pass delivers whatever it had not reached.
        let once = taxinbox(&app.config, &["run", "--once"]);
        assert!(
            once.status.success(),
            "{}",
            String::from_utf8_lossy(&once.stderr)
        );
        assert_stored_once(&app.app.store, MAILS, expected_tasks, expected_notes).await;
        let moved = folder_count(&mailbox, &crate::dovecot::processed(&mailbox)).await
            + folder_count(&mailbox, &crate::dovecot::quarantine(&mailbox)).await;
        assert_eq!(moved as usize, MAILS, "every mail moved out of INBOX once");
        assert_notifications_sent_once(&app.app.store, &app.path("outbox")).await;
        assert_audit_verifies(&app.config);
        app.cleanup().await;
    }
);

/// The reconnections counted in `metrics` for mailbox `demands`.
fn reconnects(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("taxinbox_imap_reconnects_total{mailbox=\"demands\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

on_both_engines!(
    the_daemon_reconnects_when_the_imap_server_restarts_mid_run_and_finishes_once,
    |engine| async move {
        const MAILS: usize = 200;
        let (expected_tasks, expected_notes) = clean_run_counts(MAILS).await;
        let (app, mut dovecot) = world(engine, MAILS, 5).await;
        let mailbox = app.app.settings.mailboxes[0].clone();
        let pipeline = app.pipeline().await;
        let metrics = Arc::new(Metrics::new());
        let tasks = taxinbox::daemon::MailboxTasks::start(
            &app.app,
            &pipeline,
            &Lease::for_this_process(),
            &metrics,
        );
        wait_until(Duration::from_secs(60), "the first batches", || async {
            app.count("SELECT COUNT(*) FROM messages").await >= 20
        })
        .await;
        // Killed mid-run: the daemon's session breaks in the middle of a batch; the server is away a moment.
        let at_stop = app.count("SELECT COUNT(*) FROM messages").await;
        tokio::task::block_in_place(|| dovecot.restart_after(Duration::from_millis(1500)));
        println!("{engine:?}: Dovecot restarted after {at_stop} of {MAILS} mails");
        assert!(
            at_stop < MAILS as i64,
            "the restart came after the work was done"
        );
        // A Dovecot killed with SIGKILL leaves its dotlocks behind (dovecot-uidlist.lock): the new one waits them out
        // for about 90 s in the daemon's SELECT, then answers NO, and the daemon retries after its back-off.
        wait_until(
            Duration::from_secs(240),
            "every mail after the restart",
            || async { app.count("SELECT COUNT(*) FROM messages").await == MAILS as i64 },
        )
        .await;
        wait_until(Duration::from_secs(60), "an empty INBOX", || async {
            folder_count(&mailbox, "INBOX").await == 0
        })
        .await;
        tasks.stop().await;
        assert!(
            reconnects(&metrics) >= 1,
            "the daemon reconnected: {}\n{:?}\n{}",
            metrics.encode(),
            metrics.mailboxes(),
            dovecot.log()
        );
        assert_stored_once(&app.app.store, MAILS, expected_tasks, expected_notes).await;
        let moved = folder_count(&mailbox, &crate::dovecot::processed(&mailbox)).await
            + folder_count(&mailbox, &crate::dovecot::quarantine(&mailbox)).await;
        assert_eq!(moved as usize, MAILS, "every mail moved out of INBOX once");
        assert_audit_verifies(&app.config);
        app.cleanup().await;
    }
);

/// A PostgreSQL cluster of the test's own (initdb into a temporary folder, trust authentication, a free port,
/// its socket in that folder), run as the `postgres` user when the test runs as root. Stopped when dropped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/test-services)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_postgres {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown the cluster folder to postgres");
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = PrivatePostgres {
            dir,
            port,
            bin,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// `immediate`: the server dies without closing sessions, as in a crash; it recovers at the next start.
    fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_is_survived_with_every_mail_and_notification_once() {
    use sqlx::Connection as _;
    const MAILS: usize = 200;
    let (expected_tasks, expected_notes) = clean_run_counts(MAILS).await;
    let pg = PrivatePostgres::start();
    {
        let mut conn = sqlx::PgConnection::connect(&pg.url("postgres"))
            .await
            .expect("connect to the private cluster");
        sqlx::query("CREATE DATABASE taxinbox")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
    }
    let mut dovecot = Dovecot::start();
    let password = dovecot.password_file("imap-password", PASSWORD);
    dovecot.deliver_numbered(&corpus(), 1..=MAILS);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             from = \"taxinbox@debet-service.example\"\n[ingest]\nbatch_size = 5\n{}",
            pg.url("taxinbox"),
            project_root().join("rules").display(),
            dir.path().join("outbox").display(),
            dovecot.mailbox_config("demands", &password),
        ),
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    let store = taxinbox::store::Store::connect(&settings.database.url)
        .await
        .unwrap();
    let app = taxinbox::app::Instance { settings, store };
    import_register(&app.store).await;
    let mailbox = app.settings.mailboxes[0].clone();
    let pipeline = app.pipeline().await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let tasks = taxinbox::daemon::MailboxTasks::start(
        &app,
        &pipeline,
        &Lease::for_this_process(),
        &metrics,
    );
    wait_until(Duration::from_secs(60), "the first batches", || async {
        count(&app.store, "SELECT COUNT(*) FROM messages").await >= 20
    })
    .await;
    pg.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.pg_ctl_start();
    let at_restart = count(&app.store, "SELECT COUNT(*) FROM messages").await;
    println!("PostgreSQL restarted after {at_restart} of {MAILS} mails");
    assert!(
        at_restart < MAILS as i64,
        "the restart came after the work was done"
    );
    wait_until(
        Duration::from_secs(90),
        "every mail after the restart",
        || async { count(&app.store, "SELECT COUNT(*) FROM messages").await == MAILS as i64 },
    )
    .await;
    wait_until(Duration::from_secs(60), "an empty INBOX", || async {
        folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    tasks.stop().await;
    // Whether the restart broke a pass depends on where the mailbox task was (the pool may reconnect unseen): it is
    // reported, not required; what is required is above and below — every mail and notification exactly once.
    eprintln!(
        "mailbox sessions reopened after the restart: {}",
        reconnects(&metrics)
    );
    // The notifications of the run, delivered by one pass of the real binary.
    let once = taxinbox(&config, &["run", "--once"]);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_stored_once(&app.store, MAILS, expected_tasks, expected_notes).await;
    let moved = folder_count(&mailbox, &crate::dovecot::processed(&mailbox)).await
        + folder_count(&mailbox, &crate::dovecot::quarantine(&mailbox)).await;
    assert_eq!(moved as usize, MAILS, "every mail moved out of INBOX once");
    assert_notifications_sent_once(&app.store, &dir.path().join("outbox")).await;
    assert_audit_verifies(&config);
    app.store.close().await;
    drop(dovecot);
    drop(pg);
}

/// A small tmpfs mounted on a folder of the test's, unmounted (lazily, so that nothing holds it) when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// The reason as the error where mounting is not permitted.
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if out.status.success() {
            Ok(SmallDisk { dir })
        } else {
            Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes on the filesystem (`df`).
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df gives the free bytes")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Message-IDs of the mail files in `dir`.
fn message_ids_in(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let raw = std::fs::read(e.path()).unwrap();
            mail_parser::MessageParser::default()
                .parse(&raw)
                .and_then(|m| m.message_id().map(str::to_owned))
                .expect("a load mail has a Message-ID")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_ingestion_with_a_clear_error_and_a_rerun_after_freeing_space_finishes_once(
) {
    const MAILS: usize = 400;
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        Err(reason) => {
            // Visible in the test's output and as a failure where the suite demands it: a skipped fault test
            // must not pass unnoticed.
            eprintln!("SKIPPED disk-full fault test: cannot mount a small filesystem ({reason})");
            assert!(
                std::env::var_os("TAXINBOX_REQUIRE_FAULTS").is_none(),
                "TAXINBOX_REQUIRE_FAULTS is set and the disk-full test cannot run: {reason}"
            );
            return;
        }
    };
    let (expected_tasks, expected_notes) = clean_run_counts(MAILS).await;
    let app = TestApp::with_extra_config(Engine::Sqlite, "[ingest]\nbatch_size = 20\n").await;
    // The store on the small disk: the configuration points there, the migrations run there.
    let db = disk.path().join("taxinbox.db");
    let config = std::fs::read_to_string(&app.config).unwrap().replace(
        &format!("sqlite://{}", app.path("taxinbox.db").display()),
        &format!("sqlite://{}", db.display()),
    );
    std::fs::write(&app.config, config).unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&app.config), &[]).unwrap();
    let store = taxinbox::store::Store::connect(&settings.database.url)
        .await
        .unwrap();
    let rig = taxinbox::app::Instance { settings, store };
    import_register(&rig.store).await;
    let maildir = app.path("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mut total_size = 0;
    for n in 1..=MAILS {
        let raw = numbered_mail(&corpus(), n);
        total_size += raw.len() as u64;
        std::fs::write(maildir.join("new").join(format!("{n:06}.load")), raw).unwrap();
    }
    // Ballast leaves room for about a third of the mail (raw mail is stored, plus indexes and the log).
    let ballast = disk.path().join("ballast");
    let keep = total_size / 3;
    let fill = disk.free().saturating_sub(keep);
    std::fs::write(&ballast, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    let maildir_arg = maildir.display().to_string();
    let full = taxinbox(&app.config, &["ingest", &maildir_arg]);
    let stderr = String::from_utf8_lossy(&full.stderr).to_string();
    assert!(!full.status.success(), "ingest on a full disk must fail");
    assert!(
        stderr.to_lowercase().contains("full"),
        "the error names the full disk: {stderr}"
    );
    println!("full disk: {}", stderr.lines().last().unwrap_or_default());
    // Nothing acknowledged that was not stored: every mail moved to cur/ is in the store, and only those.
    let acknowledged = message_ids_in(&maildir.join("cur"));
    let left = message_ids_in(&maildir.join("new"));
    assert!(!left.is_empty(), "the disk filled before the end");
    assert_eq!(acknowledged.len() + left.len(), MAILS);
    let stored: std::collections::BTreeSet<String> = {
        let mut conn = rig.store.acquire().await.unwrap();
        sqlx::query_as::<_, (String,)>("SELECT message_id FROM messages")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(id,)| id.trim_matches(['<', '>']).to_owned())
            .collect()
    };
    let acknowledged_bare: std::collections::BTreeSet<String> = acknowledged
        .iter()
        .map(|id| id.trim_matches(['<', '>']).to_owned())
        .collect();
    assert_eq!(
        stored, acknowledged_bare,
        "exactly the acknowledged mails are stored"
    );
    println!(
        "{} of {MAILS} mails stored before the disk was full",
        stored.len()
    );
    // Space freed: a rerun takes the rest, once.
    std::fs::remove_file(&ballast).unwrap();
    let rerun = taxinbox(&app.config, &["ingest", &maildir_arg]);
    assert!(
        rerun.status.success(),
        "rerun: {}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    assert_stored_once(&rig.store, MAILS, expected_tasks, expected_notes).await;
    assert_audit_verifies(&app.config);
    rig.store.close().await;
    drop(disk);
}
