//! Behaviour of the ingest path on both engines: duplicates, cases, quarantine, hostile input, dry runs, Maildir.

use crate::helpers::{copy_files, corpus, on_both_engines, project_root, Engine, TestApp};
use taxinbox::pipeline::Status;

on_both_engines!(
    a_second_copy_of_a_demand_joins_the_first_and_creates_no_task,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0014: Saby notifies a payment demand; 0015: Taxcom notifies the same one.
        let first = app.ingest(&[&corpus().join("mail/0014.eml")], false).await;
        assert_eq!(first[0].status, Status::Processed);
        assert_eq!(first[0].tasks.len(), 1);
        let second = app.ingest(&[&corpus().join("mail/0015.eml")], false).await;
        assert_eq!(second[0].status, Status::Linked);
        assert_eq!(second[0].joins, first[0].message_id);
        assert!(second[0].tasks.is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        app.cleanup().await;
    }
);

on_both_engines!(the_same_mail_twice_is_a_duplicate, |engine| async move {
    let app = TestApp::new(engine).await;
    app.import_corpus_register().await;
    let mail = corpus().join("mail/0007.eml");
    let first = app.ingest(&[&mail], false).await;
    assert_eq!(first[0].status, Status::Processed);
    let again = app.ingest(&[&mail, &mail], false).await;
    assert!(again.iter().all(|r| r.status == Status::Duplicate));
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2);
    app.cleanup().await;
});

on_both_engines!(
    garbage_empty_and_huge_mail_each_end_with_a_clear_result,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let dir = app.path("odd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1-empty.eml"), b"").unwrap();
        let garbage: Vec<u8> = (0u32..65_536)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.join("2-garbage.eml"), &garbage).unwrap();
        let mut huge = b"From: a@b.example\r\nTo: c@d.example\r\nSubject: big\r\nMessage-ID: <big@b.example>\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        while huge.len() < 20 << 20 {
            huge.extend_from_slice(b"0123456789 abcdefghij klmnopqrst uvwxyz 0123456789 abcdefghij klmnopqrst uvwxyz\r\n");
        }
        std::fs::write(dir.join("3-huge.eml"), &huge).unwrap();
        let reports = app.ingest(&[&dir], false).await;
        assert_eq!(reports.len(), 3);
        for r in &reports {
            assert!(
                matches!(r.status, Status::Processed | Status::Quarantined),
                "{r:?}"
            );
            if r.status == Status::Quarantined {
                assert!(
                    r.error.as_deref().is_some_and(|e| !e.is_empty()),
                    "a quarantined mail says why: {r:?}"
                );
            }
        }
        assert_eq!(
            reports[0].status,
            Status::Quarantined,
            "an empty file is no mail"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM messages").await,
            3,
            "every input is recorded"
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    a_dry_run_stores_nothing_but_reports_joins_within_the_run,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let reports = app
            .ingest(
                &[
                    &corpus().join("mail/0014.eml"),
                    &corpus().join("mail/0015.eml"),
                ],
                true,
            )
            .await;
        assert_eq!(reports[0].status, Status::Processed);
        assert_eq!(reports[1].status, Status::Linked);
        assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
        app.cleanup().await;
    }
);

on_both_engines!(
    maildir_mail_moves_to_cur_only_after_it_is_stored,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let maildir = app.path("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for f in ["0001.eml", "0002.eml", "0003.eml"] {
            std::fs::copy(
                corpus().join("mail").join(f),
                maildir.join("new").join(format!("1700000000.{f}.host")),
            )
            .unwrap();
        }
        let reports = app.ingest(&[&maildir], false).await;
        assert_eq!(reports.len(), 3);
        assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
        let cur: Vec<String> = std::fs::read_dir(maildir.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(cur.len(), 3);
        assert!(cur.iter().all(|n| n.ends_with(":2,S")), "{cur:?}");
        assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 3);
        app.cleanup().await;
    }
);

on_both_engines!(
    every_torture_message_ends_processed_or_quarantined_in_one_run,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let dir = app.path("torture");
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = 0;
        let mut stack = vec![project_root().join("tests/mail-torture/messages")];
        let mut files = vec![];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push(e.path());
                }
            }
        }
        files.sort();
        for f in &files {
            n += 1;
            std::fs::copy(f, dir.join(format!("{n:05}.eml"))).unwrap();
        }
        let reports = app.ingest(&[&dir], false).await;
        assert_eq!(reports.len(), files.len());
        let bad: Vec<_> = reports
            .iter()
            .filter(|r| !matches!(r.status, Status::Processed | Status::Quarantined))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
        let quarantined = reports
            .iter()
            .filter(|r| r.status == Status::Quarantined)
            .count();
        println!(
            "torture on {engine:?}: {} processed, {quarantined} quarantined",
            reports.len() - quarantined
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    a_bad_directory_row_names_its_line_and_applies_nothing,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let clients = app.path("clients.csv");
        let good = std::fs::read_to_string(corpus().join("clients.csv")).unwrap();
        let mut lines: Vec<&str> = good.lines().collect();
        lines[5] = "ООО «Сломанный»,7728997899,,osno,true,false,ivanova@debet-service.example,,a@b.example,";
        std::fs::write(&clients, lines.join("\n")).unwrap();
        let err = taxinbox::directory_import::import_files(
            &app.app.store,
            &clients,
            Some(&corpus().join("accountants.csv")),
            None,
            None,
        )
        .await
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(":6:"), "the error names line 6: {message}");
        assert_eq!(app.count("SELECT COUNT(*) FROM clients").await, 0);
        assert_eq!(app.count("SELECT COUNT(*) FROM accountants").await, 0);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_failing_rule_quarantines_the_mail_and_reprocess_runs_it_again,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // A copy of the rules with a rule that fails on every mail.
        let rules = app.path("rules");
        copy_files(&project_root().join("rules"), &rules);
        copy_files(&project_root().join("rules/mail"), &rules.join("mail"));
        copy_files(
            &project_root().join("rules/calendar/production"),
            &rules.join("calendar/production"),
        );
        std::fs::write(
            rules.join("mail/05-broken.rhai"),
            "fn classify(mail) { let x = mail.nothing_here.len(); () }\n",
        )
        .unwrap();
        let mut settings = app.app.settings.clone();
        settings.rules.dir = rules.clone();
        let broken = taxinbox::app::build_pipeline(&settings, {
            let mut conn = app.app.store.acquire().await.unwrap();
            taxinbox::store::load_directory(&mut conn).await.unwrap()
        })
        .unwrap();
        let reports = app
            .ingest_with(&broken, &[&corpus().join("mail/0014.eml")], false)
            .await;
        assert_eq!(reports[0].status, Status::Quarantined);
        assert!(
            reports[0]
                .error
                .as_deref()
                .unwrap()
                .contains("05-broken.rhai"),
            "{:?}",
            reports[0].error
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

        // With the shipped rules the same mail is processed and gets its task.
        let good = app.pipeline().await;
        let mut tx = app.app.store.begin().await.unwrap();
        let again = good
            .reprocess(&mut tx, reports[0].id.unwrap(), chrono::Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(again.status, Status::Processed);
        assert_eq!(again.tasks.len(), 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
        app.cleanup().await;
    }
);

#[test]
fn a_broken_rule_file_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("10-ok.rhai"), "fn classify(mail) { () }\n").unwrap();
    std::fs::write(
        dir.path().join("20-bad.rhai"),
        "fn classify(mail) {\n  let x = ;\n}\n",
    )
    .unwrap();
    let ctx = taxinbox::rules::RuleContext {
        directory: Default::default(),
        calendar: std::sync::Arc::new(
            taxinbox::calendar::ProductionCalendar::load_dir(
                &project_root().join("rules/calendar/production"),
            )
            .unwrap(),
        ),
        demands: std::sync::Arc::new(
            taxinbox::calendar::DemandCatalog::load(&project_root().join("rules/demands.toml"))
                .unwrap(),
        ),
        vocabulary: std::sync::Arc::new(
            taxinbox::evidence::Vocabulary::load(
                &project_root().join("rules"),
                &taxinbox::rules::demand_titles(
                    &taxinbox::calendar::DemandCatalog::load(
                        &project_root().join("rules/demands.toml"),
                    )
                    .unwrap(),
                ),
            )
            .unwrap(),
        ),
    };
    let err = taxinbox::rules::Ruleset::load(dir.path(), &Default::default(), &ctx).unwrap_err();
    assert!(err.to_string().starts_with("20-bad.rhai:2:"), "{err}");
}

on_both_engines!(
    an_edited_log_entry_is_named_by_audit_verify,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        app.ingest(
            &[
                &corpus().join("mail/0007.eml"),
                &corpus().join("mail/0014.eml"),
                &corpus().join("mail/0015.eml"),
            ],
            false,
        )
        .await;
        let mut conn = app.app.store.acquire().await.unwrap();
        assert!(matches!(
            taxinbox::store::verify_log(&mut conn).await.unwrap(),
            taxinbox::store::VerifyOutcome::Intact { entries: 4 }
        ));
        // Someone with database access rewrites the decision of the second mail.
        sqlx::query(
            "UPDATE audit_log SET payload = REPLACE(payload, 'tax_demand', 'ignore') WHERE seq = 3",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        match taxinbox::store::verify_log(&mut conn).await.unwrap() {
            taxinbox::store::VerifyOutcome::Broken { seq, .. } => assert_eq!(seq, 3),
            other => panic!("tampering not detected: {other:?}"),
        }
        drop(conn);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_batch_ends_at_its_byte_limit_and_no_mail_is_left_out,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let files: Vec<std::path::PathBuf> = (10..20)
            .map(|n| corpus().join(format!("mail/{n:04}.eml")))
            .collect();
        let paths: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
        // One byte per batch: every mail is a batch of its own, however many the count allows.
        let options = taxinbox::ingest::IngestOptions {
            archive: taxinbox::pipeline::batch::Archive::No,
            dry_run: false,
            batch_size: 64,
            max_batch_bytes: 1,
            mailbox: None,
        };
        let (summary, reports) = app
            .ingest_with_options(&app.pipeline().await, &paths, &options)
            .await;
        assert!(summary.unreadable.is_empty());
        let sources: Vec<String> = reports.iter().map(|r| r.source.clone()).collect();
        let expected: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(sources, expected, "every mail, in order");
        assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 10);
        // 0014 and 0015 notify the same demand: the second, a batch later, joins the first's case.
        assert_eq!(reports[5].status, Status::Linked);
        assert_eq!(reports[5].joins, reports[4].message_id);
        app.cleanup().await;
    }
);

/// The batch path spreads a batch over the cores and keeps its order: each mail comes back beside its own
/// evaluation, decided as one mail alone is decided, and without its bytes (packed for the store instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_evaluated_across_threads_keeps_each_mail_beside_its_own_decision() {
    use taxinbox::pipeline::batch::{self, Archive, Incoming, Shadow};
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let pipeline = app.pipeline().await;
    let mut files: Vec<_> = std::fs::read_dir(corpus().join("mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files.truncate(64);
    let raws: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let now = chrono::Utc::now();
    let incoming = files
        .iter()
        .zip(&raws)
        .map(|(f, raw)| Incoming {
            raw: raw.clone(),
            source: f.display().to_string(),
            mailbox: "file".into(),
            archive: Archive::No,
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert!(
        batch::evaluation_threads(files.len()) >= 2 || cores < 2,
        "the batch is split across threads wherever the machine has the cores"
    );
    let evaluated = batch::evaluate(&pipeline, incoming, Shadow::Skip, now);
    assert_eq!(evaluated.len(), files.len());
    for (i, (mail, eval)) in evaluated
        .mails
        .iter()
        .zip(evaluated.evaluations())
        .enumerate()
    {
        assert_eq!(mail.source, files[i].display().to_string());
        assert!(
            mail.raw.is_empty(),
            "{}: bytes dropped once packed",
            mail.source
        );
        assert_eq!(eval.sha256, taxinbox::store::sha256_hex(&raws[i]));
        let alone = pipeline.evaluate(&raws[i], "file", now);
        let decided = |e: &taxinbox::pipeline::Evaluation| {
            e.outcome
                .as_ref()
                .map(|r| {
                    (
                        r.rule.clone(),
                        format!("{:?}", r.decision),
                        r.client_inn.clone(),
                    )
                })
                .map_err(Clone::clone)
        };
        assert_eq!(decided(eval), decided(&alone), "{}", mail.source);
    }
    app.cleanup().await;
}
