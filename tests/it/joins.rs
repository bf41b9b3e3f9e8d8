//! The demand lifecycle: a demand is one case however often and however it arrives — a second copy (same client,
//! number and date), a reply in its thread, a client's mail quoting it — and a new document that merely cites an
//! earlier demand is a case of its own. Also: the manager hears of an open demand task before its legal deadline.

use crate::helpers::{on_both_engines, project_root, Engine, TestApp};
use std::path::PathBuf;
use taxinbox::pipeline::{Report, Status};

fn holdout(n: usize) -> PathBuf {
    project_root()
        .join("tests/holdout/mail")
        .join(format!("{n:04}.eml"))
}

async fn ingest_one(app: &TestApp, path: &std::path::Path) -> Report {
    let mut reports = app.ingest(&[path], false).await;
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

/// Writes a mail into the test's folder and returns its path.
fn mail(app: &TestApp, name: &str, text: &str) -> PathBuf {
    let path = app.path(name);
    std::fs::write(&path, text.replace('\n', "\r\n")).unwrap();
    path
}

on_both_engines!(
    an_operator_notice_and_the_clients_forward_of_one_demand_give_one_case_with_two_tasks,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0001: Kontur notifies a documents demand; 0002: the client forwards the same demand by Gmail.
        let first = ingest_one(&app, &holdout(1)).await;
        assert_eq!(first.status, Status::Processed);
        assert_eq!(first.tasks.len(), 2);
        let forward = ingest_one(&app, &holdout(2)).await;
        assert_eq!(forward.status, Status::Linked);
        assert_eq!(forward.joins, first.message_id);
        assert!(forward.tasks.is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_reply_in_the_thread_of_a_demand_joins_its_case_and_creates_no_task,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let first = ingest_one(&app, &holdout(1)).await;
        ingest_one(&app, &holdout(2)).await;
        // 0005 answers 0002 (In-Reply-To) and names no demand in its own words.
        let reply = ingest_one(&app, &holdout(5)).await;
        assert_eq!(reply.status, Status::Linked, "{reply:?}");
        assert_eq!(reply.joins, first.message_id);
        assert_eq!(reply.category.as_deref(), Some("tax_demand"));
        assert_eq!(reply.kind.as_deref(), Some("documents"));
        assert!(reply.tasks.is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2);
        let case_of_reply = app
            .count("SELECT COUNT(*) FROM messages WHERE case_id IS NOT NULL AND joins IS NOT NULL")
            .await;
        assert_eq!(
            case_of_reply, 2,
            "the forward and the reply are linked to the case"
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    a_clients_reply_quoting_a_known_demand_joins_it_though_it_cites_a_contract_first,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0004: Saby notifies an explanations demand № 5521; 0006: the client replies without thread headers,
        // naming "договор № 44 от 01.02.2026" before the quoted demand.
        let first = ingest_one(&app, &holdout(4)).await;
        let reply = ingest_one(&app, &holdout(6)).await;
        assert_eq!(reply.status, Status::Linked, "{reply:?}");
        assert_eq!(reply.joins, first.message_id);
        assert!(reply.tasks.is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_reply_quoting_an_unknown_demand_is_the_clients_request_not_a_new_demand,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let reply = ingest_one(&app, &holdout(15)).await;
        assert_eq!(reply.status, Status::Processed);
        assert_eq!(reply.category.as_deref(), Some("client_request"));
        let steps: Vec<&str> = reply.tasks.iter().map(|t| t.step.as_str()).collect();
        assert_eq!(steps, ["request"]);
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 0);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_new_demand_that_cites_a_known_one_opens_its_own_case,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0007: a payment demand № 778 от 27.02.2026 for ООО «Сосновый Край».
        let payment = ingest_one(&app, &holdout(7)).await;
        assert_eq!(payment.status, Status::Processed);
        let freeze = mail(
            &app,
            "freeze.eml",
            "From: Astral <no-reply@astral.ru>\n\
             To: buh@debet-service.example\n\
             Subject: =?utf-8?B?0KDQtdGI0LXQvdC40LU=?=\n\
             Date: Tue, 31 Mar 2026 10:00:00 +0300\n\
             Message-ID: <freeze-cites-778@astral.ru>\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             Решение № 4410 от 30.03.2026 о приостановлении операций по счетам налогоплательщика в банке.\n\
             Налогоплательщик: ООО «Сосновый Край», ИНН 0280932620.\n\
             Основание: неисполнение требования об уплате задолженности № 778 от 27.02.2026.\n",
        );
        let freeze = ingest_one(&app, &freeze).await;
        assert_eq!(freeze.status, Status::Processed, "{freeze:?}");
        assert_eq!(freeze.kind.as_deref(), Some("freeze"));
        assert!(freeze.joins.is_none());
        assert_eq!(freeze.tasks.len(), 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 2);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_forwarded_demand_naming_an_inn_outside_the_register_says_so_and_stays_with_the_sender,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0012: ИП Виноградов forwards a demand whose taxpayer INN is nobody's in the directory (FORMAT.md 5:
        // then the sender's client).
        let report = ingest_one(&app, &holdout(12)).await;
        assert_eq!(report.client_inn.as_deref(), Some("774362001180"));
        let mut conn = app.app.store.acquire().await.unwrap();
        let (reason,): (Option<String>,) =
            sqlx::query_as("SELECT reason FROM messages WHERE id = $1")
                .bind(report.id.unwrap())
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        let reason = reason.unwrap_or_default();
        assert!(
            reason.contains("нет в реестре") && reason.contains("по адресу отправителя"),
            "{reason}"
        );
        drop(conn);
        // 0011: a forward from one client's address of a demand naming another client's INN: the INN decides.
        let other = ingest_one(&app, &holdout(11)).await;
        assert_eq!(other.client_inn.as_deref(), Some("7743323572"));
        app.cleanup().await;
    }
);

on_both_engines!(
    the_manager_is_warned_before_the_legal_deadline_of_an_open_demand_task,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0001: ООО «Лес-Групп» (Кузнецова, manager Белова); "acknowledge" is due Wednesday 18.02.2026.
        let demand = ingest_one(&app, &holdout(1)).await;
        let acknowledge = demand
            .tasks
            .iter()
            .find(|t| t.step == "acknowledge")
            .unwrap();
        assert_eq!(acknowledge.due.to_string(), "2026-02-18");
        let templates = taxinbox::notify::Templates::builtin();
        let manager = "SELECT COUNT(*) FROM outbox WHERE kind = 'escalation' \
                       AND recipient = 'belova@debet-service.example'";
        // Friday 13.02, three working days ahead: the assignee, not yet the manager.
        let friday = chrono::DateTime::parse_from_rfc3339("2026-02-13T09:00:00+03:00")
            .unwrap()
            .to_utc();
        taxinbox::notify::schedule::schedule_today(
            &app.app.store,
            &app.app.settings,
            &templates,
            friday,
        )
        .await
        .unwrap();
        assert_eq!(app.count(manager).await, 0);
        // Tuesday 17.02, one working day before the deadline: the manager is told.
        let tuesday = chrono::DateTime::parse_from_rfc3339("2026-02-17T09:00:00+03:00")
            .unwrap()
            .to_utc();
        taxinbox::notify::schedule::schedule_today(
            &app.app.store,
            &app.app.settings,
            &templates,
            tuesday,
        )
        .await
        .unwrap();
        assert_eq!(app.count(manager).await, 1);
        app.cleanup().await;
    }
);

/// An operator's notice about demand № 12-07/3311 от 09.02.2026 of ООО «Лес-Групп» (ИНН 7703703377, holdout 0001).
fn receipt(app: &TestApp, name: &str, subject: &str, body: &str) -> PathBuf {
    mail(
        app,
        name,
        &format!(
            "Date: Wed, 11 Feb 2026 10:02:00 +0300\n\
             From: =?utf-8?b?0JrQvtC90YLRg9GALtCt0LrRgdGC0LXRgNC9?= <noreply@extern.kontur.ru>\n\
             To: buh@debet-service.example\n\
             Subject: {subject}\n\
             Message-ID: <{name}@extern.kontur.ru>\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\
             \n\
             {body}\n"
        ),
    )
}

/// A test app with the corpus register and a webhook task sink (the firm's tracker; nothing listens on its
/// address, so its events wait in the sink's outbox), with the folder holding the sink's secret.
async fn app_with_a_tracker(engine: Engine) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, "secret-of-the-firm\n").unwrap();
    let app = TestApp::with_extra_config(
        engine,
        &format!(
            "[[sinks]]\nkind = \"webhook\"\nname = \"tracker\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .await;
    taxinbox::notify::sink::register(&app.app.store, &app.app.settings.sinks, chrono::Utc::now())
        .await
        .unwrap();
    app.import_corpus_register().await;
    (app, dir)
}

on_both_engines!(
    operator_receipts_that_name_a_known_demand_close_the_steps_they_prove,
    |engine| async move {
        let (app, _secret) = app_with_a_tracker(engine).await;
        let demand = ingest_one(&app, &holdout(1)).await;
        assert_eq!(demand.tasks.len(), 2);
        let open = "SELECT COUNT(*) FROM tasks WHERE status = 'open'";
        let done_events = "SELECT COUNT(*) FROM sink_outbox WHERE event = 'done'";
        assert_eq!(app.count(open).await, 2);

        // A receipt for a demand nobody knows (another number) changes nothing.
        let stranger = ingest_one(
            &app,
            &receipt(
                &app,
                "r0",
                "Квитанция о приеме требования отправлена",
                "Абонент: ООО «Лес-Групп», ИНН 7703703377\nКвитанция о приеме требования № 12-07/9999 от 09.02.2026 \
                 отправлена в ИФНС России № 3 по г. Москве.",
            ),
        )
        .await;
        assert_eq!(stranger.category.as_deref(), Some("notice"), "{stranger:?}");
        assert_eq!(app.count(open).await, 2);
        assert_eq!(app.count(done_events).await, 0);

        // The client's receipt went out: `acknowledge` is done.
        let sent = ingest_one(
            &app,
            &receipt(
                &app,
                "r1",
                "Квитанция о приеме требования отправлена",
                "Абонент: ООО «Лес-Групп», ИНН 7703703377\nКвитанция о приеме требования № 12-07/3311 от 09.02.2026 \
                 отправлена в ИФНС России № 3 по г. Москве.",
            ),
        )
        .await;
        assert_eq!(sent.category.as_deref(), Some("notice"), "{sent:?}");
        assert!(sent.tasks.is_empty());
        assert!(
            sent.joins.is_none(),
            "a receipt is no second copy of the demand"
        );
        let step_status = |step: &'static str| {
            let app = &app;
            async move {
                app.count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE step = '{step}' AND status = 'done'"
                ))
                .await
            }
        };
        assert_eq!(step_status("acknowledge").await, 1);
        assert_eq!(step_status("answer").await, 0);
        assert_eq!(app.count(done_events).await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'task_done'")
                .await,
            1
        );

        // The tax office accepted the answer: `answer` is done too.
        let accepted = ingest_one(
            &app,
            &receipt(
                &app,
                "r2",
                "Ответ на требование принят налоговым органом",
                "Абонент: ООО «Лес-Групп», ИНН 7703703377\nОтвет на требование № 12-07/3311 от 09.02.2026 принят \
                 налоговым органом 18.02.2026.",
            ),
        )
        .await;
        assert_eq!(accepted.category.as_deref(), Some("notice"), "{accepted:?}");
        assert_eq!(step_status("answer").await, 1);
        assert_eq!(app.count(open).await, 0);
        assert_eq!(app.count(done_events).await, 2);
        // Each entry names the mail that proves it.
        let mut conn = app.app.store.acquire().await.unwrap();
        let payloads: Vec<(String,)> =
            sqlx::query_as("SELECT payload FROM audit_log WHERE event = 'task_done' ORDER BY seq")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        drop(conn);
        for (p,) in &payloads {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            assert!(v["proved_by_message"].as_i64().is_some(), "{p}");
        }
        // A second copy of the acceptance proves nothing new.
        ingest_one(
            &app,
            &receipt(
                &app,
                "r3",
                "Ответ на требование доставлен",
                "ИНН 7703703377. Ответ на требование № 12-07/3311 от 09.02.2026 доставлен в ИФНС России № 3.",
            ),
        )
        .await;
        assert_eq!(app.count(done_events).await, 2);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_demand_its_forward_and_a_reply_in_one_batch_give_the_case_they_give_one_by_one,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0001: the demand; 0002: the client's forward of it; 0005: a reply to 0002 — three mails, one batch.
        let reports = app
            .ingest(&[&holdout(1), &holdout(2), &holdout(5)], false)
            .await;
        let [first, forward, reply] = &reports[..] else {
            panic!("three reports: {reports:?}");
        };
        assert_eq!(first.status, Status::Processed, "{first:?}");
        assert_eq!(first.tasks.len(), 2);
        assert_eq!(forward.status, Status::Linked, "{forward:?}");
        assert_eq!(forward.joins, first.message_id);
        assert_eq!(reply.status, Status::Linked, "{reply:?}");
        assert_eq!(reply.joins, first.message_id);
        // The rows name each other by the ids the batch gave them before writing them.
        let first_id = first.id.expect("stored");
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM cases c JOIN messages m ON m.id = c.first_message AND m.case_id = c.id \
                 WHERE m.id = {first_id}"
            ))
            .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM messages m JOIN cases c ON c.id = m.case_id")
                .await,
            3
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM tasks t JOIN cases c ON c.id = t.case_id WHERE t.message = {first_id}"
            ))
            .await,
            2
        );
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM audit_log a JOIN messages m ON m.id = a.message AND m.sha256 = a.sha256"
            )
            .await,
            3
        );
        let notified = app.count("SELECT COUNT(*) FROM outbox").await;
        assert!(notified > 0);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox o JOIN tasks t ON t.id = o.task AND t.message = o.message")
                .await,
            notified
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    a_receipt_in_the_batch_of_its_demand_closes_the_step_after_the_tasks_are_announced,
    |engine| async move {
        let (app, _secret) = app_with_a_tracker(engine).await;
        let sent = receipt(
            &app,
            "r1",
            "Квитанция о приеме требования отправлена",
            "Абонент: ООО «Лес-Групп», ИНН 7703703377\nКвитанция о приеме требования № 12-07/3311 от 09.02.2026 \
             отправлена в ИФНС России № 3 по г. Москве.",
        );
        let reports = app.ingest(&[&holdout(1), &sent], false).await;
        assert_eq!(reports[0].tasks.len(), 2, "{:?}", reports[0]);
        assert_eq!(
            reports[1].category.as_deref(),
            Some("notice"),
            "{:?}",
            reports[1]
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM tasks WHERE step = 'acknowledge' AND status = 'done'")
                .await,
            1
        );
        // The tracker hears of both tasks, then of the step done: in that order.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sink_outbox WHERE event = 'created'")
                .await,
            2
        );
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM sink_outbox d WHERE d.event = 'done' AND d.id > \
                 (SELECT MAX(c.id) FROM sink_outbox c WHERE c.event = 'created')"
            )
            .await,
            1
        );
        app.cleanup().await;
    }
);
