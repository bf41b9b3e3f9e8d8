//! The IMAP source against a real Dovecot: the pass, its idempotence, a refused login, a crash between commit
//! and move, a changed UIDVALIDITY, a server restart under the daemon's mailbox task, and `run --once` with one
//! good and one broken mailbox.

use crate::dovecot::{folder_count, Dovecot, PASSWORD};
use crate::helpers::{corpus, on_both_engines, Engine, TestApp};
use std::time::{Duration, Instant};
use taxinbox::imap::{self, MailboxSession, PollContext};
use taxinbox::pipeline::Status;
use taxinbox::settings::MailboxSettings;

/// Mails of the corpus used per test: enough for several batches, few enough for a shared 2-core machine.
const MAILS: usize = 12;

/// A Dovecot with `MAILS` corpus mails in INBOX and a test app whose mailbox `demands` points at it, with a
/// small batch size so that a pass takes several transactions.
async fn world(engine: Engine) -> (TestApp, Dovecot, MailboxSettings) {
    let mut dovecot = Dovecot::start();
    let password = dovecot.password_file("imap-password", PASSWORD);
    let extra = format!(
        "[ingest]\nbatch_size = 5\n{}",
        dovecot.mailbox_config("demands", &password)
    );
    let app = TestApp::with_extra_config(engine, &extra).await;
    app.import_corpus_register().await;
    for i in 1..=MAILS {
        let raw = std::fs::read(corpus().join(format!("mail/{i:04}.eml"))).unwrap();
        dovecot.deliver(&raw);
    }
    let mailbox = app.app.settings.mailboxes[0].clone();
    (app, dovecot, mailbox)
}

async fn poll(app: &TestApp, mailbox: &MailboxSettings) -> imap::PollOutcome {
    let pipeline = app.pipeline().await;
    let ctx = PollContext::new(
        &app.app.store,
        &pipeline,
        app.app.settings.ingest.batch_size,
    );
    imap::poll_mailbox_once(&ctx, mailbox)
        .await
        .expect("a pass over the mailbox")
}

on_both_engines!(
    a_pass_commits_every_mail_once_and_moves_it_out_of_the_inbox,
    |engine| async move {
        let (app, mut dovecot, mailbox) = world(engine).await;
        // An empty message is no mail: quarantined, and moved to the quarantine folder.
        dovecot.deliver(b"");
        let outcome = poll(&app, &mailbox).await;
        let mails = MAILS + 1;
        assert_eq!(outcome.reports.len(), mails);
        assert_eq!(outcome.summary.total(), mails);
        assert_eq!(outcome.moved, mails);
        let quarantined = outcome
            .reports
            .iter()
            .filter(|r| r.status == Status::Quarantined)
            .count();
        assert!(quarantined >= 1, "the empty message is quarantined");
        assert!(
            outcome.reports.iter().all(|r| r
                .source
                .starts_with(&format!("imap:demands:{}:", outcome.uidvalidity))),
            "{:?}",
            outcome
                .reports
                .iter()
                .map(|r| &r.source)
                .collect::<Vec<_>>()
        );
        assert_eq!(folder_count(&mailbox, "INBOX").await, 0);
        assert_eq!(
            folder_count(&mailbox, "INBOX/Processed").await as usize,
            mails - quarantined
        );
        assert_eq!(
            folder_count(&mailbox, "INBOX/Quarantine").await as usize,
            quarantined
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM messages").await,
            mails as i64
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE message IS NOT NULL")
                .await,
            mails as i64
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM source_refs WHERE source LIKE 'imap:demands:%'")
                .await,
            mails as i64
        );
        app.cleanup().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_finds_nothing_and_creates_nothing() {
    let (app, _dovecot, mailbox) = world(Engine::Sqlite).await;
    poll(&app, &mailbox).await;
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let again = poll(&app, &mailbox).await;
    assert!(again.reports.is_empty(), "{:?}", again.reports);
    assert_eq!(again.moved, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        MAILS as i64
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_does_not_mark_mail_as_seen() {
    let (app, _dovecot, mailbox) = world(Engine::Sqlite).await;
    poll(&app, &mailbox).await;
    let mut session = imap::connect(&mailbox).await.unwrap();
    let processed = session.examine("INBOX/Processed").await.unwrap();
    assert!(processed.exists > 0);
    let unseen = session.search("UNSEEN").await.unwrap();
    assert_eq!(
        unseen.len() as u32,
        processed.exists,
        "BODY.PEEK leaves mail unread"
    );
    let _ = session.logout().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_stops_the_mailbox_with_an_error_that_hides_the_password() {
    let (app, dovecot, mut mailbox) = world(Engine::Sqlite).await;
    let wrong = "Wr0ng-secret-value";
    mailbox.password =
        taxinbox::settings::PasswordSource::File(dovecot.password_file("wrong-password", wrong));
    let pipeline = app.pipeline().await;
    let ctx = PollContext::new(&app.app.store, &pipeline, 5);
    let error = imap::poll_mailbox_once(&ctx, &mailbox)
        .await
        .expect_err("a wrong password is refused");
    assert!(matches!(error, imap::Error::Auth { .. }), "{error:?}");
    assert!(!error.is_retryable());
    let text = format!("{error:#} {error:?}");
    assert!(text.contains("demands") && text.contains("buh"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    // The supervised task gives up on this mailbox instead of retrying a refused password.
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let end = tokio::time::timeout(
        Duration::from_secs(60),
        imap::run_mailbox(
            app.app.store.clone(),
            pipeline.clone(),
            mailbox,
            imap::Batching::new(5),
            imap::Lease::for_this_process(),
            Default::default(),
            rx,
        ),
    )
    .await
    .expect("a refused login ends the task");
    assert!(
        matches!(end, imap::MailboxEnd::Stopped(imap::Error::Auth { .. })),
        "{end:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);
    app.cleanup().await;
}

on_both_engines!(
    mail_committed_but_not_moved_before_a_crash_is_moved_later_without_a_second_task,
    |engine| async move {
        let (app, _dovecot, mailbox) = world(engine).await;
        let pipeline = app.pipeline().await;
        let ctx = PollContext::new(&app.app.store, &pipeline, 5);
        // The first run commits and then "crashes": the session is dropped without moving anything.
        let mut session = MailboxSession::open(&mailbox).await.unwrap();
        let committed = session.commit_new(&ctx).await.unwrap();
        assert_eq!(committed.len(), MAILS);
        drop(session);
        assert_eq!(folder_count(&mailbox, "INBOX").await as usize, MAILS);
        let tasks = app.count("SELECT COUNT(*) FROM tasks").await;

        let restart = imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap();
        assert!(restart.reports.is_empty(), "nothing is processed twice");
        assert_eq!(restart.moved_from_before, MAILS);
        assert_eq!(folder_count(&mailbox, "INBOX").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM messages").await,
            MAILS as i64
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    a_move_cut_off_after_its_copy_leaves_one_copy_in_the_archive_and_none_in_the_folder,
    |engine| async move {
        let (app, _dovecot, mailbox) = world(engine).await;
        let pipeline = app.pipeline().await;
        let ctx = PollContext::new(&app.app.store, &pipeline, 5);
        let mut session = MailboxSession::open(&mailbox).await.unwrap();
        session.commit_new(&ctx).await.unwrap();
        drop(session);
        // What a server that dies in the middle of a MOVE leaves (Dovecot's Maildir MOVE copies, then expunges):
        // the mail bound for Processed is there already and still in INBOX.
        let sources: Vec<(String,)> = {
            let mut conn = app.app.store.acquire().await.unwrap();
            sqlx::query_as(
                "SELECT s.source FROM source_refs s JOIN messages m ON m.id = s.message \
                 WHERE m.status <> 'quarantined' AND s.source LIKE 'imap:%'",
            )
            .fetch_all(&mut *conn)
            .await
            .unwrap()
        };
        let bound_for_processed = sources.len();
        // Part of them: the rest is moved as usual.
        let uids: Vec<String> = sources
            .iter()
            .take(7)
            .map(|(s,)| s.rsplit(':').next().unwrap().to_owned())
            .collect();
        assert!(bound_for_processed > uids.len(), "{sources:?}");
        let mut raw = imap::connect(&mailbox).await.unwrap();
        raw.select("INBOX").await.unwrap();
        raw.create(&crate::dovecot::processed(&mailbox))
            .await
            .unwrap();
        raw.uid_copy(uids.join(","), &crate::dovecot::processed(&mailbox))
            .await
            .unwrap();
        let _ = raw.logout().await;
        assert_eq!(
            folder_count(&mailbox, &crate::dovecot::processed(&mailbox)).await as usize,
            uids.len()
        );

        let restart = imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap();
        assert!(restart.reports.is_empty(), "nothing is processed twice");
        assert_eq!(restart.moved_from_before, MAILS);
        assert_eq!(folder_count(&mailbox, "INBOX").await, 0);
        assert_eq!(
            folder_count(&mailbox, &crate::dovecot::processed(&mailbox)).await as usize,
            bound_for_processed,
            "the copies the cut-off MOVE made are not made twice"
        );
        assert_eq!(
            folder_count(&mailbox, &crate::dovecot::quarantine(&mailbox)).await as usize,
            MAILS - bound_for_processed
        );
        app.cleanup().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_uidvalidity_change_stored_mail_is_recognised_not_processed_again() {
    let (app, _dovecot, mailbox) = world(Engine::Sqlite).await;
    let pipeline = app.pipeline().await;
    let ctx = PollContext::new(&app.app.store, &pipeline, 5);
    let mut session = MailboxSession::open(&mailbox).await.unwrap();
    session.commit_new(&ctx).await.unwrap();
    drop(session);
    // As if the server had rebuilt the folder: the checkpoint names another UIDVALIDITY.
    {
        let mut conn = app.app.store.acquire().await.unwrap();
        taxinbox::store::set_imap_checkpoint(
            &mut conn,
            "demands",
            taxinbox::store::ImapCheckpoint {
                uidvalidity: 1,
                last_uid: 999,
            },
            "2026-01-01T00:00:00.000Z",
        )
        .await
        .unwrap();
    }
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let outcome = imap::poll_mailbox_once(&ctx, &mailbox).await.unwrap();
    assert!(outcome.uidvalidity_changed);
    assert_eq!(outcome.reports.len(), MAILS);
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.status == Status::Duplicate),
        "{:?}",
        outcome.reports.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(folder_count(&mailbox, "INBOX").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM messages").await,
        MAILS as i64
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_task_reconnects_after_a_server_restart_and_finishes() {
    let (app, mut dovecot, mailbox) = world(Engine::Sqlite).await;
    let pipeline = app.pipeline().await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(imap::run_mailbox(
        app.app.store.clone(),
        pipeline,
        mailbox.clone(),
        imap::Batching::new(5),
        imap::Lease::for_this_process(),
        Default::default(),
        rx,
    ));
    wait_until(|| async { app.count("SELECT COUNT(*) FROM messages").await == MAILS as i64 }).await;
    // Cut the server while the task sits in IDLE, deliver more, bring it back.
    dovecot.stop();
    for i in MAILS + 1..=MAILS + 3 {
        let raw = std::fs::read(corpus().join(format!("mail/{i:04}.eml"))).unwrap();
        dovecot.deliver(&raw);
    }
    dovecot.restart();
    wait_until(|| async { app.count("SELECT COUNT(*) FROM messages").await == MAILS as i64 + 3 })
        .await;
    wait_until(|| async { folder_count(&mailbox, "INBOX").await == 0 }).await;
    stop.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the task ends on shutdown")
        .unwrap();
    assert!(matches!(end, imap::MailboxEnd::Shutdown), "{end:?}");
    app.cleanup().await;
}

/// Polls `check` until it holds, failing the test after a minute.
async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("condition not reached within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_works_every_mailbox_even_when_one_of_them_fails() {
    let mut dovecot = Dovecot::start();
    let good = dovecot.password_file("good", PASSWORD);
    let bad = dovecot.password_file("bad", "not-the-password");
    let extra = format!(
        "{}{}",
        dovecot.mailbox_config("broken", &bad),
        dovecot.mailbox_config("demands", &good)
    );
    let app = TestApp::with_extra_config(Engine::Sqlite, &extra).await;
    app.import_corpus_register().await;
    for i in 1..=3 {
        dovecot.deliver(&std::fs::read(corpus().join(format!("mail/{i:04}.eml"))).unwrap());
    }
    let pipeline = app.pipeline().await;
    let once = taxinbox::daemon::poll_mailboxes_once(
        &app.app,
        &pipeline,
        &imap::Lease::for_this_process(),
    )
    .await;
    assert_eq!(once.summary.total(), 3);
    assert_eq!(once.failed.len(), 1);
    assert_eq!(once.failed[0].0, "broken");
    assert!(matches!(once.failed[0].1, imap::Error::Auth { .. }));
    assert_eq!(
        folder_count(&app.app.settings.mailboxes[1], "INBOX").await,
        0
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_with_the_configured_ca_and_refuses_an_unknown_certificate() {
    let mut dovecot = Dovecot::start_tls();
    let password = dovecot.password_file("imap-password", PASSWORD);
    let ca = dovecot.ca_file.clone().unwrap();
    let extra = format!(
        "[[mailboxes]]\nname = \"demands\"\nhost = \"localhost\"\nport = {}\ntls = \"tls\"\ntls_ca_file = \"{}\"\nuser = \"buh\"\npassword_file = \"{}\"\n",
        dovecot.port,
        ca.display(),
        password.display()
    );
    let app = TestApp::with_extra_config(Engine::Sqlite, &extra).await;
    app.import_corpus_register().await;
    dovecot.deliver(&std::fs::read(corpus().join("mail/0001.eml")).unwrap());
    let mut mailbox = app.app.settings.mailboxes[0].clone();
    let outcome = poll(&app, &mailbox).await;
    assert_eq!(outcome.reports.len(), 1);
    // Without the private CA the public roots do not vouch for the server: a configuration error, not retried.
    mailbox.tls_ca_file = None;
    let error = imap::connect(&mailbox)
        .await
        .expect_err("an unknown CA is refused");
    assert!(matches!(error, imap::Error::Config { .. }), "{error:?}");
    assert!(!error.is_retryable());
    app.cleanup().await;
}
