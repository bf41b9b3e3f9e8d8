//! Archive import (`ingest --archive`, `archive_before`): history is parsed, classified, logged and joined to cases
//! as usual, but notifies nobody and pushes nothing to the task sinks; its tasks are stored done and marked archived,
//! and later mail joins its cases.

use crate::helpers::{corpus, on_both_engines, Engine, TestApp};
use taxinbox::pipeline::batch::Archive;
use taxinbox::pipeline::{Report, Status};

/// A webhook sink on a loopback port nobody listens on: events would be queued for it, never delivered.
fn webhook_sink(app_dir: &std::path::Path) -> String {
    let secret = app_dir.join("webhook-secret");
    std::fs::write(&secret, "archive-test-secret\n").unwrap();
    format!(
        "[[sinks]]\nkind = \"webhook\"\nname = \"tracker\"\nurl = \"http://127.0.0.1:9/hooks\"\nsecret_file = \"{}\"\n",
        secret.display()
    )
}

/// A test world with the webhook sink configured and registered, and the folder holding its secret.
async fn app_with_webhook(engine: Engine) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::with_extra_config(engine, &webhook_sink(dir.path())).await;
    taxinbox::notify::sink::register(&app.app.store, &app.app.settings.sinks, chrono::Utc::now())
        .await
        .unwrap();
    (app, dir)
}

async fn ingest(app: &TestApp, paths: &[&std::path::Path], archive: Archive) -> Vec<Report> {
    let options = taxinbox::ingest::IngestOptions {
        dry_run: false,
        batch_size: 64,
        max_batch_bytes: taxinbox::pipeline::budget::MAX_BATCH_BYTES,
        archive,
        mailbox: None,
    };
    app.ingest_with_options(&app.pipeline().await, paths, &options)
        .await
        .1
}

on_both_engines!(
    an_archive_import_of_the_corpus_notifies_nobody_pushes_nothing_and_later_mail_joins_its_cases,
    |engine| async move {
        let (app, _secret) = app_with_webhook(engine).await;
        app.import_corpus_register().await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sinks WHERE active = 1")
                .await,
            1
        );
        let mail = corpus().join("mail");
        let reports = ingest(&app, &[mail.as_path()], Archive::All).await;
        assert_eq!(reports.len(), 400);
        assert!(reports
            .iter()
            .all(|r| r.archived || r.status == Status::Duplicate));
        let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
        assert!(tasks > 200, "the history keeps its tasks: {tasks}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM tasks WHERE status = 'done' AND archived = 1")
                .await,
            tasks
        );
        assert!(app.count("SELECT COUNT(*) FROM cases").await > 100);
        // Nobody hears of history: no notification, no task event, nothing for the admins later either.
        assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM sink_outbox").await, 0);
        let logged = app
            .count("SELECT COUNT(*) FROM audit_log WHERE event IN ('mail_processed', 'mail_linked', 'mail_quarantined')")
            .await;
        let duplicates = reports
            .iter()
            .filter(|r| r.status == Status::Duplicate)
            .count() as i64;
        assert_eq!(logged, 400 - duplicates);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE payload LIKE '%\"archived\":true%'")
                .await,
            logged
        );

        // Later, live: a second copy of demand 14-13/8809@ (corpus 0007, another Message-ID) joins the archived case.
        let first = reports
            .iter()
            .find(|r| r.source.ends_with("0007.eml"))
            .unwrap();
        assert_eq!(first.status, Status::Processed);
        assert_eq!(first.tasks.len(), 2);
        let original = std::fs::read_to_string(mail.join("0007.eml")).unwrap();
        let copy = original.replacen(
            "<9268634465.864704.6498369785072@taxcom.ru>",
            "<second-copy-0007@taxcom.ru>",
            1,
        );
        assert_ne!(copy, original);
        let path = app.path("second-copy.eml");
        std::fs::write(&path, copy).unwrap();
        let later = ingest(&app, &[path.as_path()], Archive::No).await;
        assert_eq!(later[0].status, Status::Linked, "{:?}", later[0]);
        assert_eq!(later[0].joins, first.message_id);
        assert!(later[0].tasks.is_empty());
        assert!(!later[0].archived);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks);
        assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM sink_outbox").await, 0);
        app.cleanup().await;
    }
);

on_both_engines!(
    archive_before_takes_only_mail_received_before_the_day_as_history,
    |engine| async move {
        let (app, _secret) = app_with_webhook(engine).await;
        app.import_corpus_register().await;
        let mail = corpus().join("mail");
        // The corpus mail is of 2025–2026: a cut in 2030 makes it history, a cut in 2020 leaves it live.
        let live = Archive::Before(chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
        let history = Archive::Before(chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap());
        let one = ingest(&app, &[mail.join("0001.eml").as_path()], history).await;
        assert!(one[0].archived);
        assert_eq!(app.count("SELECT COUNT(*) FROM sink_outbox").await, 0);
        let seven = ingest(&app, &[mail.join("0007.eml").as_path()], live).await;
        assert!(!seven[0].archived);
        assert_eq!(seven[0].tasks.len(), 2);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM tasks WHERE status = 'open' AND archived = 0")
                .await,
            2
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sink_outbox").await,
            2,
            "two created events, one sink"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox").await,
            2,
            "two task mails"
        );
        app.cleanup().await;
    }
);
