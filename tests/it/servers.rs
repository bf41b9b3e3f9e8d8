//! IMAP servers other than Dovecot: a private Cyrus ([`crate::cyrus`]) in its packaged shape — `.` as separator,
//! personal folders below INBOX, no push during IDLE — with and without MOVE and UIDPLUS.
//!
//! What a firm with such a server must get: the default folder names work (`INBOX.Processed`), every mail is
//! taken exactly once through restarts and SIGKILLs, a folder the server will not create stops the mailbox at
//! start with the server's reason, a failing acknowledgement never stops new mail and raises an alarm, crash
//! repair without UIDPLUS leaves no mail twice, and the log names the path each mailbox took.

use crate::cyrus::{Cyrus, PASSWORD};
use crate::dovecot::folder_count;
use crate::faults::{
    assert_audit_verifies, assert_stored_once, clean_run_counts, next, taxinbox, wait_for_commits,
};
use crate::helpers::{corpus, spawn_daemon, wait_until, Engine, TestApp};
use std::sync::Arc;
use std::time::Duration;
use taxinbox::imap::{self, Lease, MailboxSession, PollContext};
use taxinbox::metrics::Metrics;

/// A Cyrus (hiding `hidden` capabilities) and a test app whose mailbox `demands` points at it with `extra`
/// mailbox settings and no folder names.
async fn world(hidden: &[&str], mailbox_extra: &str, extra: &str) -> (TestApp, Cyrus) {
    let cyrus = Cyrus::start_hiding(hidden);
    let password = cyrus.password_file("imap-password", PASSWORD);
    let config = format!(
        "{extra}[http]\nlisten = \"127.0.0.1:0\"\n{}{mailbox_extra}",
        cyrus.mailbox_config("demands", &password)
    );
    let app = TestApp::with_extra_config(Engine::Sqlite, &config).await;
    app.import_corpus_register().await;
    (app, cyrus)
}

/// Mail in the two acknowledgement folders of the defaults on a `.` server.
async fn acknowledged(mailbox: &taxinbox::settings::MailboxSettings) -> u32 {
    folder_count(mailbox, "INBOX.Processed").await + folder_count(mailbox, "INBOX.Quarantine").await
}

/// `taxinbox run --once` with the info log: (success, stdout, stderr).
fn run_once(config: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(config)
        .args(["run", "--once"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run taxinbox");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_folder_names_cyrus_takes_400_corpus_mails_exactly_once_and_empties_inbox() {
    const MAILS: usize = 400;
    let (app, cyrus) = world(&[], "", "[ingest]\nbatch_size = 50\n").await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    assert_eq!(mailbox.processed_folder, None, "no folder names configured");
    cyrus.deliver_numbered(&corpus(), 1..=MAILS);
    assert_eq!(folder_count(&mailbox, "INBOX").await as usize, MAILS);

    let (ok, stdout, stderr) = run_once(&app.config);
    assert!(ok, "run --once failed:\n{stdout}\n{stderr}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        MAILS as i64
    );
    assert_eq!(
        folder_count(&mailbox, "INBOX").await,
        0,
        "every mail left INBOX"
    );
    assert_eq!(
        acknowledged(&mailbox).await as usize,
        MAILS,
        "each moved once"
    );
    // The info log names what the server is and the paths taken.
    let log = format!("{stdout}{stderr}");
    for expected in [
        r#""separator":".""#,
        r#""processed":"INBOX.Processed""#,
        r#""acknowledge":"UID MOVE""#,
        r#""wait":"IDLE, read again at least every 60 s""#,
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not in the log:\n{log}"
        );
    }
    assert!(
        log.to_ascii_uppercase().contains("UIDPLUS"),
        "capabilities logged: {log}"
    );

    // A restart finds nothing to do; mail arriving later is taken.
    let (ok, stdout, stderr) = run_once(&app.config);
    assert!(ok, "second run --once failed:\n{stdout}\n{stderr}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        MAILS as i64
    );
    cyrus.deliver_numbered(&corpus(), MAILS + 1..=MAILS + 5);
    let (ok, stdout, stderr) = run_once(&app.config);
    assert!(ok, "third run --once failed:\n{stdout}\n{stderr}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        (MAILS + 5) as i64
    );
    assert_eq!(acknowledged(&mailbox).await as usize, MAILS + 5);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_folder_the_server_will_not_create_stops_the_mailbox_at_start_with_its_reason(
) {
    // Cyrus keeps a user's folders below INBOX: a top-level folder is refused ("Permission denied").
    let (app, cyrus) = world(&[], "processed_folder = \"Processed\"\n", "").await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    cyrus.deliver_numbered(&corpus(), 1..=3);
    let pipeline = app.pipeline().await;
    let ctx = PollContext::new(&app.app.store, &pipeline, 10);
    let error = imap::poll_mailbox_once(&ctx, &mailbox)
        .await
        .expect_err("the folder cannot be made");
    match &error {
        imap::Error::FolderUnavailable { folder, reason, .. } => {
            assert_eq!(folder, "Processed");
            assert!(
                reason.contains("Permission denied"),
                "the server's reason: {reason}"
            );
        }
        other => panic!("expected FolderUnavailable, got {other:?}"),
    }
    assert!(!error.is_retryable(), "a person must act");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        0,
        "nothing committed"
    );
    assert_eq!(folder_count(&mailbox, "INBOX").await, 3, "nothing moved");
    // The command line says the same and exits non-zero.
    let (ok, stdout, stderr) = run_once(&app.config);
    assert!(!ok, "run --once must fail:\n{stdout}");
    assert!(
        stderr.contains("folder \"Processed\" does not exist and the server refused to create it")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_destination_deleted_mid_run_new_mail_is_still_committed_and_healthz_is_degraded()
{
    let (app, cyrus) = world(&[], "poll_interval_secs = 1\n", "").await;
    let mailbox = app.app.settings.mailboxes[0].clone();
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
    // Load mail 1..=5 holds processed (not only quarantined) mail, bound for INBOX.Processed.
    cyrus.deliver_numbered(&corpus(), 1..=5);
    wait_until(Duration::from_secs(60), "the first mail moved", || async {
        app.count("SELECT COUNT(*) FROM messages").await == 5
            && folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    assert!(folder_count(&mailbox, "INBOX.Processed").await > 0);
    // Someone deletes the destination while the mailbox runs.
    let mut raw = imap::connect(&mailbox).await.unwrap();
    raw.delete("INBOX.Processed").await.unwrap();
    let _ = raw.logout().await;
    cyrus.deliver_numbered(&corpus(), 6..=10);
    wait_until(
        Duration::from_secs(60),
        "the mail after the deletion",
        || async { app.count("SELECT COUNT(*) FROM messages").await == 10 },
    )
    .await;
    let health = || async {
        let (status, body) =
            tokio::task::spawn_blocking(move || crate::daemon::http_get(port, "/healthz"))
                .await
                .unwrap();
        let health = serde_json::from_str::<serde_json::Value>(&body).unwrap();
        // Degraded is 503, so a prober needs no JSON.
        let expected = if health["status"] == "degraded" {
            503
        } else {
            200
        };
        assert_eq!(status, expected, "{body}");
        health
    };
    wait_until(Duration::from_secs(60), "/healthz degraded", || async {
        health().await["status"] == "degraded"
    })
    .await;
    // The alarm is up, and mail arriving now is still read and committed.
    cyrus.deliver_numbered(&corpus(), 11..=15);
    wait_until(
        Duration::from_secs(60),
        "the mail after the alarm",
        || async { app.count("SELECT COUNT(*) FROM messages").await == 15 },
    )
    .await;
    let h = health().await;
    assert_eq!(h["status"], "degraded", "{h}");
    let alarm = h["mailboxes"]["demands"]["alarm"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(alarm.contains("cannot acknowledge"), "{h}");
    assert!(
        metrics
            .encode()
            .contains("taxinbox_mailbox_alarm{mailbox=\"demands\"} 1"),
        "{}",
        metrics.encode()
    );
    assert!(
        folder_count(&mailbox, "INBOX").await > 0,
        "unacknowledged mail stays in INBOX"
    );
    tasks.stop().await;
    server.stop().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uidplus_a_crash_between_copy_and_expunge_leaves_no_mail_twice_in_the_destination()
{
    const MAILS: usize = 30;
    let (app, cyrus) = world(&["MOVE", "UIDPLUS"], "", "").await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    cyrus.deliver_numbered(&corpus(), 1..=MAILS);
    let pipeline = app.pipeline().await;
    let ctx = PollContext::new(&app.app.store, &pipeline, 10);
    // Committed, then the process dies after COPY and part of the \Deleted flags, before EXPUNGE.
    let mut session = MailboxSession::open(&mailbox).await.unwrap();
    assert_eq!(session.commit_new(&ctx).await.unwrap().len(), MAILS);
    drop(session);
    let mut raw = imap::connect(&mailbox).await.unwrap();
    let selected = raw.select("INBOX").await.unwrap();
    let uidvalidity = selected.uid_validity.unwrap();
    for folder in ["INBOX.Processed", "INBOX.Quarantine"] {
        raw.create(folder).await.unwrap();
    }
    let mut conn = app.app.store.acquire().await.unwrap();
    let mut flagged = 0;
    for uid in 1..=MAILS as u32 {
        let stored = taxinbox::store::message_by_source(
            &mut conn,
            &imap::source_ref("demands", uidvalidity, uid),
        )
        .await
        .unwrap()
        .expect("committed");
        let folder = if stored.status == taxinbox::store::MessageStatus::Quarantined {
            "INBOX.Quarantine"
        } else {
            "INBOX.Processed"
        };
        raw.uid_copy(uid.to_string(), folder).await.unwrap();
        if uid % 2 == 0 {
            use futures_util::TryStreamExt as _;
            raw.uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap();
            flagged += 1;
        }
    }
    drop(conn);
    let _ = raw.logout().await;
    assert!(flagged > 0);
    assert_eq!(acknowledged(&mailbox).await as usize, MAILS);

    let restart = imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap();
    assert!(restart.reports.is_empty(), "nothing is processed twice");
    assert_eq!(restart.ack_error, None);
    assert_eq!(folder_count(&mailbox, "INBOX").await, 0);
    assert_eq!(
        acknowledged(&mailbox).await as usize,
        MAILS,
        "no mail twice in the destination"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        MAILS as i64
    );
    app.cleanup().await;
}

/// SIGKILL of `taxinbox run` at seeded moments on Cyrus hiding `hidden`, default folder names: every mail once
/// in the store and once in its destination, INBOX empty, the log chain intact.
async fn sigkill_rounds_on_cyrus(hidden: &[&str], path: &str) {
    const MAILS: usize = 120;
    const KILLS: usize = 4;
    let (expected_tasks, expected_notes) = clean_run_counts(MAILS).await;
    let (app, cyrus) = world(
        hidden,
        "poll_interval_secs = 1\n",
        "[ingest]\nbatch_size = 10\n",
    )
    .await;
    let mailbox = app.app.settings.mailboxes[0].clone();
    cyrus.deliver_numbered(&corpus(), 1..=MAILS);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d ^ hidden.len() as u64;
    let mut committed = 0;
    for round in 0..KILLS {
        let mut daemon = spawn_daemon(&app, round);
        if !next(&mut seed).is_multiple_of(4) {
            wait_for_commits(&app, &mut daemon, round, (committed + 1).min(MAILS as i64)).await;
        }
        tokio::time::sleep(Duration::from_millis(10 + next(&mut seed) % 300)).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        committed = app.count("SELECT COUNT(*) FROM messages").await;
    }
    let mut daemon = spawn_daemon(&app, KILLS);
    wait_for_commits(&app, &mut daemon, KILLS, MAILS as i64).await;
    wait_until(Duration::from_secs(60), "an empty INBOX", || async {
        folder_count(&mailbox, "INBOX").await == 0
    })
    .await;
    // The earlier rounds may have taken every mail already: the last daemon names its path once its session is up.
    let log_path = app.path(&format!("daemon-{KILLS}.log"));
    let what = format!("daemon-{KILLS}.log naming the path {path:?}");
    wait_until(Duration::from_secs(60), &what, || async {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(path))
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let once = taxinbox(&app.config, &["run", "--once"]);
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_stored_once(&app.app.store, MAILS, expected_tasks, expected_notes).await;
    assert_eq!(
        acknowledged(&mailbox).await as usize,
        MAILS,
        "every mail moved out of INBOX once"
    );
    assert_audit_verifies(&app.config);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_seeded_moments_on_cyrus_with_default_folders_loses_and_doubles_nothing() {
    sigkill_rounds_on_cyrus(&[], "UID MOVE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_seeded_moments_on_cyrus_without_move_or_uidplus_loses_and_doubles_nothing() {
    sigkill_rounds_on_cyrus(&["MOVE", "UIDPLUS"], "UID COPY + EXPUNGE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_mailbox_alarm_tells_every_admin_once_a_day() {
    let app = TestApp::new(Engine::Sqlite).await;
    let admins = ["admin@firm.example", "it@firm.example"].map(String::from);
    let alarms = vec![(
        "demands".to_owned(),
        "cannot acknowledge committed mail for 3 passes in a row".to_owned(),
    )];
    let templates = taxinbox::templates::Templates::builtin();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let mut conn = app.app.store.acquire().await.unwrap();
    for (day, expected) in [(today, 2), (today, 0), (today.succ_opt().unwrap(), 2)] {
        let queued = taxinbox::notify::schedule::mailbox_alarm_notices(
            &mut conn,
            &templates,
            &admins,
            &alarms,
            day,
            "2026-03-02T09:00:00Z",
        )
        .await
        .unwrap();
        assert_eq!(queued, expected, "{day}");
    }
    drop(conn);
    let bodies: Vec<(String,)> = {
        let mut conn = app.app.store.acquire().await.unwrap();
        sqlx::query_as("SELECT body FROM outbox WHERE kind = 'admin_mailbox'")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
    };
    assert_eq!(bodies.len(), 4);
    assert!(
        bodies[0].0.contains("demands") && bodies[0].0.contains("3 passes"),
        "{bodies:?}"
    );
    app.cleanup().await;
}
