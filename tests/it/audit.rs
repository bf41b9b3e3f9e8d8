//! The processed-mail log as auditors use it, on both engines: verification names the first bad entry after any
//! edit, deletion, swap or altered raw mail; purged raw mail still verifies; the export has one row per mail;
//! `audit show` tells a mail's whole story; the audit commands work with a role that may only read.

use crate::helpers::{corpus, on_both_engines, postgres_server, project_root, Engine, TestApp};
use taxinbox::audit;
use taxinbox::pipeline::Status;

async fn ingested_corpus(engine: Engine) -> TestApp {
    let app = TestApp::new(engine).await;
    app.import_corpus_register().await;
    app.ingest(&[&corpus().join("mail")], false).await;
    app
}

async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    app.count(sql).await
}

/// Runs `tamper` in a transaction, verifies inside it, and rolls back, so one ingested corpus serves every case.
async fn verify_after(app: &TestApp, tamper: &[&str]) -> audit::Verification {
    let mut tx = app.app.store.begin().await.unwrap();
    for sql in tamper {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&mut **tx)
            .await
            .expect(sql);
    }
    let v = audit::verify(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();
    v
}

fn first_bad(v: &audit::Verification) -> i64 {
    assert!(!v.is_intact(), "tampering not detected: {v}");
    v.first_bad()
        .and_then(|f| f.seq)
        .expect("a bad entry is named")
}

on_both_engines!(
    the_ingested_corpus_verifies_and_every_edit_deletion_swap_or_altered_raw_mail_is_named,
    |engine| async move {
        let app = ingested_corpus(engine).await;
        let mut conn = app.app.store.acquire().await.unwrap();
        let v = audit::verify(&mut conn).await.unwrap();
        drop(conn);
        let mails = scalar_i64(&app, "SELECT COUNT(*) FROM messages").await;
        assert!(v.is_intact(), "{v}");
        assert_eq!(v.entries, mails + 1, "one entry per mail and the register");
        assert_eq!(v.raw_checked, u64::try_from(mails).unwrap());
        assert_eq!(v.mails_checked, u64::try_from(mails).unwrap());

        // Someone edits the decision recorded in one entry.
        let demand = scalar_i64(
            &app,
            "SELECT MIN(seq) FROM audit_log WHERE event = 'mail_processed' AND payload LIKE '%\"tax_demand\"%'",
        )
        .await;
        let v = verify_after(
            &app,
            &[&format!(
                "UPDATE audit_log SET payload = REPLACE(payload, '\"tax_demand\"', '\"ignore\"') WHERE seq = {demand}"
            )],
        )
        .await;
        assert_eq!(first_bad(&v), demand, "{v}");

        // … or the decision stored with the mail, leaving the log alone.
        let message = scalar_i64(
            &app,
            &format!("SELECT message FROM audit_log WHERE seq = {demand}"),
        )
        .await;
        let v = verify_after(
            &app,
            &[&format!(
                "UPDATE messages SET category = 'ignore' WHERE id = {message}"
            )],
        )
        .await;
        assert_eq!(first_bad(&v), demand, "{v}");
        assert!(v.to_string().contains("category ignore"), "{v}");

        // … deletes one entry.
        let v = verify_after(&app, &["DELETE FROM audit_log WHERE seq = 10"]).await;
        assert_eq!(first_bad(&v), 10, "{v}");

        // … swaps two.
        let v = verify_after(
            &app,
            &[
                "UPDATE audit_log SET seq = -21 WHERE seq = 21",
                "UPDATE audit_log SET seq = 21 WHERE seq = 20",
                "UPDATE audit_log SET seq = 20 WHERE seq = -21",
            ],
        )
        .await;
        assert_eq!(first_bad(&v), 20, "{v}");

        // … or alters a stored raw mail (here: one byte of the mail entry 30 is about).
        let sha: (String,) = sqlx::query_as("SELECT sha256 FROM audit_log WHERE seq = 30")
            .fetch_one(&mut *app.app.store.acquire().await.unwrap())
            .await
            .unwrap();
        let first = scalar_i64(
            &app,
            &format!("SELECT MIN(seq) FROM audit_log WHERE sha256 = '{}'", sha.0),
        )
        .await;
        let mut tx = app.app.store.begin().await.unwrap();
        let raw = taxinbox::store::raw_mail(&mut tx, &sha.0)
            .await
            .unwrap()
            .unwrap();
        let mut altered = raw.clone();
        let last = altered.len() - 3;
        altered[last] ^= 0x20;
        sqlx::query("UPDATE raw_mail SET content = $1 WHERE sha256 = $2")
            .bind(altered)
            .bind(&sha.0)
            .execute(&mut **tx)
            .await
            .unwrap();
        let v = audit::verify(&mut tx).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(first_bad(&v), first, "{v}");
        assert!(v.to_string().contains("altered"), "{v}");

        // Untouched again after every rollback.
        let mut conn = app.app.store.acquire().await.unwrap();
        assert!(audit::verify(&mut conn).await.unwrap().is_intact());
        drop(conn);
        app.cleanup().await;
    }
);

on_both_engines!(
    the_csv_export_has_one_row_per_mail_with_the_auditor_columns,
    |engine| async move {
        let app = ingested_corpus(engine).await;
        let mut conn = app.app.store.acquire().await.unwrap();
        let rows = audit::export_rows(&mut conn, &Default::default())
            .await
            .unwrap();
        drop(conn);
        let mut bytes = Vec::new();
        audit::write_csv(&mut bytes, &rows).unwrap();
        assert!(bytes.starts_with("\u{feff}".as_bytes()), "a BOM for Excel");
        let mut reader = csv::Reader::from_reader(&bytes[3..]);
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, audit::CSV_COLUMNS);
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let mails = app.count("SELECT COUNT(*) FROM messages").await;
        assert_eq!(records.len() as i64, mails);
        let ids: std::collections::BTreeSet<&str> = records.iter().map(|r| &r[0]).collect();
        assert_eq!(ids.len() as i64, mails, "one row per mail");
        let mut with_tasks = 0;
        for r in &records {
            assert!(
                chrono::NaiveDate::parse_from_str(&r[col("received")], "%Y-%m-%d").is_ok(),
                "{r:?}"
            );
            assert!(!r[col("mailbox")].is_empty());
            assert!(r[col("ruleset_version")].starts_with("sha256:"), "{r:?}");
            assert!(
                ["processed", "linked", "quarantined"].contains(&&r[col("status")]),
                "{r:?}"
            );
            if r[col("tasks")].is_empty() {
                continue;
            }
            with_tasks += 1;
            let tasks = r[col("tasks")].split(audit::LIST_SEPARATOR).count();
            let assignees = r[col("assignees")].split(audit::LIST_SEPARATOR).count();
            let dues: Vec<&str> = r[col("due_dates")].split(audit::LIST_SEPARATOR).collect();
            assert_eq!((tasks, assignees), (dues.len(), dues.len()), "{r:?}");
            for due in dues {
                assert!(chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").is_ok());
            }
        }
        let tasked = app.count("SELECT COUNT(DISTINCT message) FROM tasks").await;
        assert_eq!(with_tasks, tasked);
        let demand = records
            .iter()
            .find(|r| &r[col("category")] == "tax_demand" && !r[col("client_inn")].is_empty())
            .expect("the corpus has demands of known clients");
        assert!(!demand[col("client")].is_empty() && !demand[col("rule")].is_empty());
        app.cleanup().await;
    }
);

on_both_engines!(
    purged_raw_mail_still_verifies_as_purged_but_raw_mail_emptied_without_a_purge_is_named,
    |engine| async move {
        let app = TestApp::with_extra_config(engine, "[audit]\nretention_days = 30\n").await;
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
        let settings = app.app.settings.audit.clone();
        assert_eq!(settings.retention_days, Some(30));
        // Within the retention period nothing goes.
        let now = audit::purge_expired(&app.app.store, &settings, chrono::Utc::now(), false)
            .await
            .unwrap();
        assert_eq!(now.purged, 0);
        let later = chrono::Utc::now() + chrono::Duration::days(31);
        let dry = audit::purge_expired(&app.app.store, &settings, later, true)
            .await
            .unwrap();
        assert_eq!(dry.purged, 3);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM raw_mail WHERE content IS NULL")
                .await,
            0,
            "a dry run changes nothing"
        );
        let purged = audit::purge_expired(&app.app.store, &settings, later, false)
            .await
            .unwrap();
        assert_eq!(purged.purged, 3);
        assert_eq!(purged.entries.len(), 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM raw_mail WHERE content IS NULL")
                .await,
            3
        );
        let mut conn = app.app.store.acquire().await.unwrap();
        let v = audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        assert_eq!((v.raw_checked, v.raw_purged), (3, 3));
        let story = audit::story(&mut conn, 1).await.unwrap().unwrap();
        assert!(matches!(story.raw, audit::RawState::Purged { .. }));
        assert!(story.history.iter().any(|l| l.event == "raw_mail_purged"));
        drop(conn);

        // A mail whose bytes vanish without a purge entry is tampering, named by its entry.
        app.ingest(&[&corpus().join("mail/0016.eml")], false).await;
        let entry = app
            .count("SELECT MAX(seq) FROM audit_log WHERE sha256 IS NOT NULL")
            .await;
        let v = verify_after(
            &app,
            &[&format!(
                "UPDATE raw_mail SET content = NULL WHERE sha256 = (SELECT sha256 FROM audit_log WHERE seq = {entry})"
            )],
        )
        .await;
        assert_eq!(first_bad(&v), entry, "{v}");
        assert!(v.to_string().contains("no purge entry"), "{v}");
        app.cleanup().await;
    }
);

/// A demand with a scan of `scan_bytes` bytes that do not compress (like a real PDF), as base64 lines.
fn demand_with_a_large_scan(scan_bytes: usize) -> Vec<u8> {
    use base64::Engine as _;
    use rand::{RngCore as _, SeedableRng as _};
    let mut scan = vec![0u8; scan_bytes];
    rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut scan);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&scan);
    let mut mail = "From: noreply@kontur.ru\r\nTo: buh@debet-service.example\r\nSubject: Требование о представлении \
         документов № 4418 от 11.09.2026\r\nDate: Fri, 11 Sep 2026 10:00:00 +0300\r\nMessage-ID: <large-scan@kontur.ru>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nВ адрес ООО «Ветер-Снаб» (ИНН 7703612056) поступило требование о \
         представлении документов № 4418 от 11.09.2026. Скан во вложении.\r\n--b\r\n\
         Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n"
        .as_bytes()
        .to_vec();
    for line in encoded.as_bytes().chunks(76) {
        mail.extend_from_slice(line);
        mail.extend_from_slice(b"\r\n");
    }
    mail.extend_from_slice(b"--b--\r\n");
    mail
}

on_both_engines!(
    a_large_mail_is_stored_in_parts_reads_back_exactly_verifies_and_a_purge_takes_every_part,
    |engine| async move {
        let app = TestApp::with_extra_config(engine, "[audit]\nretention_days = 30\n").await;
        app.import_corpus_register().await;
        let mail = demand_with_a_large_scan(3 << 20);
        let path = app.path("large.eml");
        std::fs::write(&path, &mail).unwrap();
        let reports = app.ingest(&[&path], false).await;
        assert_eq!(reports.len(), 1);
        let sha = taxinbox::store::sha256_hex(&mail);

        // Stored in parts of at most RAW_PART_BYTES, the row itself holding none of the bytes.
        let parts = app
            .count(&format!(
                "SELECT parts FROM raw_mail WHERE sha256 = '{sha}'"
            ))
            .await;
        let part_size = i64::try_from(taxinbox::store::RAW_PART_BYTES).unwrap();
        assert!(
            parts >= 3,
            "a mail of {} bytes in {parts} parts",
            mail.len()
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM raw_mail_parts WHERE sha256 = '{sha}'"
            ))
            .await,
            parts
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM raw_mail_parts WHERE sha256 = '{sha}' AND (seq < {parts} - 1 AND \
                 length(content) = {part_size} OR seq = {parts} - 1 AND length(content) <= {part_size})"
            ))
            .await,
            parts,
            "every part but the last is full"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM raw_mail WHERE sha256 = '{sha}' AND length(content) = 0"
            ))
            .await,
            1
        );
        let mut conn = app.app.store.acquire().await.unwrap();
        assert_eq!(
            taxinbox::store::raw_mail(&mut conn, &sha).await.unwrap(),
            Some(mail.clone()),
            "the parts read back as the mail"
        );
        let v = audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        assert_eq!(v.raw_checked, 1);
        drop(conn);

        // One byte of one part altered, or a part gone, is named like any altered mail.
        let entry = app
            .count("SELECT MAX(seq) FROM audit_log WHERE sha256 IS NOT NULL")
            .await;
        let v = verify_after(
            &app,
            &[&format!(
                "UPDATE raw_mail_parts SET content = (SELECT content FROM raw_mail_parts WHERE sha256 = '{sha}' \
                 AND seq = 0) WHERE sha256 = '{sha}' AND seq = 1"
            )],
        )
        .await;
        assert_eq!(first_bad(&v), entry, "{v}");
        assert!(v.to_string().contains("altered"), "{v}");
        let drop_a_part = format!("DELETE FROM raw_mail_parts WHERE sha256 = '{sha}' AND seq = 1");
        let v = verify_after(&app, &[&drop_a_part]).await;
        assert_eq!(first_bad(&v), entry, "{v}");
        let mut tx = app.app.store.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(drop_a_part))
            .execute(&mut **tx)
            .await
            .unwrap();
        let err = taxinbox::store::raw_mail(&mut tx, &sha).await.unwrap_err();
        assert!(err.to_string().contains("parts"), "{err:#}");
        tx.rollback().await.unwrap();

        // The same mail again is its duplicate: no second copy of its parts.
        app.ingest(&[&path], false).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM raw_mail_parts").await,
            parts
        );

        // Past the retention period the purge takes the parts with the content.
        let later = chrono::Utc::now() + chrono::Duration::days(31);
        let purged = audit::purge_expired(&app.app.store, &app.app.settings.audit, later, false)
            .await
            .unwrap();
        assert_eq!(purged.purged, 1);
        assert_eq!(purged.bytes, i64::try_from(mail.len()).unwrap());
        assert_eq!(app.count("SELECT COUNT(*) FROM raw_mail_parts").await, 0);
        let mut conn = app.app.store.acquire().await.unwrap();
        let v = audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        assert_eq!((v.raw_checked, v.raw_purged), (1, 1));
        drop(conn);
        app.cleanup().await;
    }
);

on_both_engines!(
    show_tells_why_a_mail_was_quarantined_and_that_a_reprocess_then_processed_and_notified,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let good = app.pipeline().await;
        // The same rules plus one that fails on every mail, run first.
        let mut broken = good.clone();
        broken.rules = taxinbox::rules::LiveRules::new(
            taxinbox::rules::Ruleset::from_sources(
                &project_root().join("rules/mail"),
                &[(
                    "05-broken.rhai".to_owned(),
                    "fn classify(mail) { let x = mail.nothing_here.len(); () }\n".to_owned(),
                )],
                &Default::default(),
                &good.ctx(),
            )
            .unwrap(),
        );
        let inputs =
            taxinbox::source::collect(&[corpus().join("mail/0014.eml").display().to_string()])
                .unwrap();
        let mut reports = vec![];
        taxinbox::ingest::ingest(
            &app.app.store,
            &broken,
            &inputs,
            &taxinbox::ingest::IngestOptions {
                archive: taxinbox::pipeline::batch::Archive::No,
                dry_run: false,
                batch_size: 8,
                max_batch_bytes: taxinbox::pipeline::budget::MAX_BATCH_BYTES,
                mailbox: None,
            },
            &chrono::Utc::now,
            |r| reports.push(r.clone()),
        )
        .await
        .unwrap();
        assert_eq!(reports[0].status, Status::Quarantined);
        let id = reports[0].id.unwrap();

        let mut tx = app.app.store.begin().await.unwrap();
        let again = good
            .reprocess(&mut tx, id, chrono::Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(again.status, Status::Processed);
        taxinbox::pipeline::reload::record_ruleset(
            &app.app.store,
            &good.rules.snapshot(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        // A restart with the same rules is not news.
        taxinbox::pipeline::reload::record_ruleset(
            &app.app.store,
            &good.rules.snapshot(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'ruleset_loaded'")
                .await,
            1
        );
        let delivery = taxinbox::notify::Delivery::Files(app.path("outbox"));
        let sent = taxinbox::notify::send_pending(
            &app.app.store,
            &delivery,
            "taxinbox@debet-service.example",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(
            sent.sent as i64,
            app.count("SELECT COUNT(*) FROM outbox").await
        );

        let store = taxinbox::store::Store::connect_read_only(&app.app.settings.database.url)
            .await
            .unwrap();
        let mut conn = store.acquire().await.unwrap();
        let story = audit::story(&mut conn, id).await.unwrap().unwrap();
        let text = audit::render_story(&story, chrono_tz::Europe::Moscow);
        let events: Vec<&str> = story.history.iter().map(|l| l.event.as_str()).collect();
        assert_eq!(
            events[..2],
            ["mail_quarantined", "mail_reprocessed"],
            "{text}"
        );
        assert!(
            events[2..].iter().all(|e| *e == "notification_sent"),
            "{text}"
        );
        assert!(
            text.contains("05-broken.rhai"),
            "why it was quarantined:\n{text}"
        );
        assert!(text.contains("reprocessed → processed"), "{text}");
        assert!(text.contains("Subject:"), "raw headers:\n{text}");
        assert!(text.contains(&good.rules.version().to_string()), "{text}");
        assert_eq!(story.tasks.len(), again.tasks.len());
        assert!(story
            .notifications
            .iter()
            .all(|n| n.status == taxinbox::store::NotificationStatus::Sent));
        let v = audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        // The reader cannot write.
        assert!(sqlx::query("DELETE FROM audit_log")
            .execute(&mut *conn)
            .await
            .is_err());
        drop(conn);
        store.close().await;
        app.cleanup().await;
    }
);

/// Raw mail reaches PostgreSQL compressed by taxinbox (or as it came, when it would not shrink): the server keeps it
/// out of line as sent, without trying its own compression on it (migration 0025), and it reads back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_keeps_raw_mail_as_taxinbox_sent_it_and_it_reads_back_exactly() {
    use base64::Engine as _;
    let app = TestApp::new(Engine::Postgres).await;
    app.import_corpus_register().await;
    // A client's letter with a 60 KB file (incompressible, like a PDF): stored out of line, in TOAST chunks.
    let mut file = Vec::with_capacity(60 * 1024);
    let mut block = [7u8; 32];
    while file.len() < 60 * 1024 {
        block = <sha2::Sha256 as sha2::Digest>::digest(block).into();
        file.extend_from_slice(&block);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    let large = format!(
        "From: Бухгалтерия <buh@romashka.example>\r\nTo: inbox@debet-service.example\r\n\
         Subject: Акт сверки за ноябрь\r\nMessage-ID: <toast-1@romashka.example>\r\n\
         Date: Mon, 7 Dec 2026 10:00:00 +0300\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nДобрый день! Акт сверки во вложении.\r\n--b\r\n\
         Content-Type: application/pdf; name=\"akt.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--b--\r\n",
        lines.join("\r\n")
    );
    let large_file = app.dir.path().join("large.eml");
    std::fs::write(&large_file, &large).unwrap();
    let files = [large_file, corpus().join("mail/0007.eml")];
    app.ingest(&[&files[0], &files[1]], false).await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM pg_attribute WHERE attrelid = 'raw_mail'::regclass \
             AND attname = 'content' AND attstorage = 'e'"
        )
        .await,
        1,
        "raw_mail.content is STORAGE EXTERNAL"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM raw_mail WHERE octet_length(content) > 8192")
            .await,
        1,
        "the large mail is stored out of line"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM raw_mail WHERE pg_column_size(content) < octet_length(content)"
        )
        .await,
        0,
        "the server compressed no raw mail (a compressed value takes less than its length)"
    );
    let mut conn = app.app.store.acquire().await.unwrap();
    for file in &files {
        let sent = std::fs::read(file).unwrap();
        let sha = taxinbox::store::sha256_hex(&sent);
        let stored = taxinbox::store::raw_mail(&mut conn, &sha)
            .await
            .unwrap()
            .expect("the mail is stored");
        assert!(stored == sent, "{} reads back as it came", file.display());
    }
    drop(conn);
    app.cleanup().await;
}

/// Runs the binary with a configuration file.
fn taxinbox(config: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_taxinbox"));
    c.arg("--config").arg(config).env_remove("RUST_LOG");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_role_that_may_only_select_runs_every_audit_command_on_postgres() {
    use sqlx::Connection as _;
    let app = TestApp::new(Engine::Postgres).await;
    app.import_corpus_register().await;
    app.ingest(
        &[
            &corpus().join("mail/0007.eml"),
            &corpus().join("mail/0014.eml"),
        ],
        false,
    )
    .await;
    let url = app.app.settings.database.url.clone();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let role = format!("{database}_auditor");
    // The shipped grants, with this test's names.
    let grants = std::fs::read_to_string(project_root().join("deploy/postgres-auditor.sql"))
        .unwrap()
        .replace("taxinbox_auditor", &role)
        .replace("DATABASE taxinbox ", &format!("DATABASE {database} "))
        .replace("FOR ROLE taxinbox ", "FOR ROLE postgres ");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    let server = postgres_server();
    let auditor_url = server.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(auditor_url, server, "the test server URL names its user");
    let config = app.path("auditor.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{auditor_url}/{database}\"\n[rules]\ndir = \"{}\"\n",
            project_root().join("rules").display()
        ),
    )
    .unwrap();
    for args in [
        &["audit", "verify"][..],
        &["audit", "log"],
        &["audit", "log", "--format", "jsonl", "--status", "processed"],
        &["audit", "show", "1"],
        &["audit", "export", "--format", "csv"],
        &["audit", "export", "--format", "jsonl"],
    ] {
        let out = taxinbox(&config).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
    let verify = taxinbox(&config)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact: 3 entries"));
    // The role cannot write: a writing command fails.
    let ingest = taxinbox(&config)
        .arg("ingest")
        .arg(corpus().join("mail/0015.eml"))
        .output()
        .unwrap();
    assert!(!ingest.status.success(), "the auditor role wrote");

    app.cleanup().await;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/test"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// An entry's plain link hash as the unkeyed chain defines it (`store::audit`): what a script with write access to
/// the database recomputes after rewriting the log.
fn plain_link_hash(
    prev: &str,
    seq: i64,
    at: &str,
    event: &str,
    message: Option<i64>,
    sha: Option<&str>,
    payload: &str,
) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        at,
        event,
        &message.map(|m| m.to_string()).unwrap_or_default(),
        sha.unwrap_or(""),
        payload,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// What someone holding the key file computes for an entry: its MAC.
fn keyed_mac(key_file: &std::path::Path, hash: &str) -> String {
    use hmac::Mac as _;
    let text = std::fs::read_to_string(key_file).unwrap();
    let secret = hex::decode(text.lines().find_map(|l| l.strip_prefix("key = ")).unwrap()).unwrap();
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    m.update(b"taxinbox audit v1\0");
    m.update(hash.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

type Row = (i64, String, String, Option<i64>, Option<String>, String);

/// Rewrites the log as a script with write access would: `keep` decides which entries stay (renumbered from 1),
/// `edit` may change a kept entry's payload; every hash is recomputed with the plain SHA-256 chain (and, with
/// `key_file`, every MAC with the key), and the head is updated to match.
async fn rewrite_log(
    app: &TestApp,
    keep: impl Fn(i64) -> bool,
    edit: impl Fn(i64, String) -> String,
    key_file: Option<&std::path::Path>,
) {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, event, message, sha256, payload FROM audit_log ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    sqlx::query("DELETE FROM audit_log")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut prev = "genesis".to_owned();
    let mut seq = 0;
    for (old_seq, at, event, message, sha, payload) in rows {
        if !keep(old_seq) {
            continue;
        }
        seq += 1;
        let payload = edit(old_seq, payload);
        let hash = plain_link_hash(&prev, seq, &at, &event, message, sha.as_deref(), &payload);
        let mac = key_file.map(|k| keyed_mac(k, &hash));
        sqlx::query(
            "INSERT INTO audit_log (seq, at, event, message, sha256, payload, prev_hash, hash, mac) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(seq)
        .bind(&at)
        .bind(&event)
        .bind(message)
        .bind(sha.as_deref())
        .bind(&payload)
        .bind(&prev)
        .bind(&hash)
        .bind(mac)
        .execute(&mut *conn)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&prev)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// `audit verify` of the binary: exit code and what it printed.
fn cli_verify(config: &std::path::Path) -> (Option<i32>, String) {
    let out = taxinbox(config).args(["audit", "verify"]).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_with_the_plain_chain_fails_the_keyed_verify_and_anchored_heads_catch_the_key_holder(
) {
    let app = TestApp::with_extra_config(
        Engine::Sqlite,
        "[audit]\nanchor_file = \"anchors/heads.txt\"\n",
    )
    .await;
    app.import_corpus_register().await;
    let mails: Vec<std::path::PathBuf> = ["0007", "0014", "0015", "0001", "0002"]
        .iter()
        .map(|m| corpus().join(format!("mail/{m}.eml")))
        .collect();
    app.ingest(
        &mails.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        false,
    )
    .await;
    let key_file = app.path("data/audit.key");
    assert!(key_file.exists(), "the key file is made at the first start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let entries = app.count("SELECT COUNT(*) FROM audit_log").await;
    assert!(entries >= 6, "{entries} entries");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE mac IS NULL")
            .await,
        0
    );
    let (code, out) = cli_verify(&app.config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("checked with the key"), "{out}");

    // Today's head, anchored outside the database; a second anchor the same day adds nothing.
    let anchors = app.path("anchors/heads.txt");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let mut conn = app.app.store.acquire().await.unwrap();
    assert_eq!(
        audit::anchor::anchor_if_due(&mut conn, &anchors, day)
            .await
            .unwrap(),
        Some(entries)
    );
    assert_eq!(
        audit::anchor::anchor_if_due(&mut conn, &anchors, day)
            .await
            .unwrap(),
        None
    );
    drop(conn);
    assert_eq!(
        std::fs::read_to_string(&anchors).unwrap().lines().count(),
        1
    );
    let (code, out) = cli_verify(&app.config);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("anchors: 1 anchored head(s) compared"),
        "{out}"
    );

    // A script without the key deletes the entries no mail points to (a register import, say) and recomputes
    // every plain hash and the head, as in issue 18.
    let dropped: Vec<i64> = {
        let mut conn = app.app.store.acquire().await.unwrap();
        sqlx::query_scalar("SELECT seq FROM audit_log WHERE message IS NULL ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
    };
    assert!(!dropped.is_empty());
    rewrite_log(&app, |seq| !dropped.contains(&seq), |_, p| p, None).await;
    let left = entries - i64::try_from(dropped.len()).unwrap();
    // The plain chain now holds: a check without the key (and without the anchors) says intact, and says it is
    // only the plain chain.
    let plain = app.path("plain.toml");
    std::fs::write(
        &plain,
        format!(
            "[database]\nurl = \"{}\"\n[rules]\ndir = \"{}\"\n[audit]\nkey_file = \"no-such.key\"\n",
            app.app.settings.database.url,
            project_root().join("rules").display()
        ),
    )
    .unwrap();
    let (code, out) = cli_verify(&plain);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("WITHOUT the key") && out.contains(&format!("intact: {left} entries")),
        "{out}"
    );
    // With the key the rewrite is found at the first rewritten entry.
    let (code, out) = cli_verify(&app.config);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("BROKEN at entry 1") && out.contains("MAC"),
        "{out}"
    );
    assert!(out.contains("anchored days were"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_anchored_head_with_the_key_in_hand_is_caught_by_the_anchor() {
    let app =
        TestApp::with_extra_config(Engine::Sqlite, "[audit]\nanchor_file = \"heads.txt\"\n").await;
    app.import_corpus_register().await;
    app.ingest(
        &[
            &corpus().join("mail/0007.eml"),
            &corpus().join("mail/0014.eml"),
        ],
        false,
    )
    .await;
    let anchors = app.path("heads.txt");
    let mut conn = app.app.store.acquire().await.unwrap();
    let head = audit::anchor::anchor_if_due(
        &mut conn,
        &anchors,
        chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    drop(conn);
    // Someone with the database and the key edits the anchored entry (who closed it, say) and recomputes its hash,
    // its MAC and the head: the keyed chain holds again.
    let key_file = app.path("data/audit.key");
    rewrite_log(
        &app,
        |_| true,
        |seq, payload| {
            if seq == head {
                payload.replacen('{', "{\"edited\":true,", 1)
            } else {
                payload
            }
        },
        Some(&key_file),
    )
    .await;
    let mut conn = app.app.store.acquire().await.unwrap();
    let key = audit::key::load(&key_file).unwrap();
    let keyed = audit::verify_with(
        &mut conn,
        &audit::Trust {
            key: key.clone(),
            anchors: None,
        },
    )
    .await
    .unwrap();
    assert!(
        keyed.is_intact(),
        "the key holder's rewrite passes the keyed chain: {keyed}"
    );
    drop(conn);
    let (code, out) = cli_verify(&app.config);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains(&format!("BROKEN at entry {head}"))
            && out.contains("anchored days were rewritten"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_role_of_deploy_may_append_to_the_log_but_not_update_or_delete_it_on_postgres()
{
    use sqlx::Connection as _;
    let app = TestApp::new(Engine::Postgres).await;
    let url = app.app.settings.database.url.clone();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let role = format!("{database}_app");
    // The shipped grants, with this test's names; the test server's superuser owns the schema here.
    let grants = std::fs::read_to_string(project_root().join("deploy/postgres-app.sql"))
        .unwrap()
        .replace("taxinbox_app", &role)
        .replace("DATABASE taxinbox ", &format!("DATABASE {database} "))
        .replace("FOR ROLE taxinbox ", "FOR ROLE postgres ");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    let server = postgres_server();
    let app_url = server.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(app_url, server, "the test server URL names its user");
    let config = app.path("service.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{app_url}/{database}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\nfrom = \"taxinbox@debet-service.example\"\n",
            project_root().join("rules").display(),
            app.path("outbox").display()
        ),
    )
    .unwrap();
    // The service works as that role: it starts, takes mail and appends to the log.
    let ingest = taxinbox(&config)
        .arg("ingest")
        .arg(corpus().join("mail/0007.eml"))
        .output()
        .unwrap();
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, 1);
    // But the log's entries are beyond it.
    let mut service = sqlx::PgConnection::connect(&format!("{app_url}/{database}"))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET payload = '{}' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
    ] {
        let refused = sqlx::query(sql).execute(&mut service).await.unwrap_err();
        assert!(
            refused.to_string().contains("permission denied"),
            "{sql}: {refused}"
        );
    }
    service.close().await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, 1);

    app.cleanup().await;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/test"))
        .await
        .unwrap();
    for sql in [
        format!("DROP OWNED BY {role}"),
        format!("DROP ROLE IF EXISTS {role}"),
    ] {
        // DROP OWNED runs in the test database, which cleanup dropped: only the role is left to drop here.
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await;
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1")
        .bind(&role)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "the test's role is left behind");
}
