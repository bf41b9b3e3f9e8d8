//! What a mail is, decided by its evidence rather than by which rule runs first: a demand pasted into a reply about
//! salary is a demand; an operator's alert that mentions receipts is a demand and a receipt that names a demand a
//! notice; a decision lifting a freeze is a notice linked to the freeze's case; a forward attached as a message
//! joins the case of the original; and the safety net — in the engine, not in the rules — gives a review task to a
//! mail whose own document is a demand whatever the rules decided.

use crate::helpers::{on_both_engines, rules_folder, Engine, TestApp};
use std::path::PathBuf;
use taxinbox::pipeline::{Report, Status};

/// ООО «Волжский Парус» of the corpus directory (accountant Иванова, federal calendar), and its mail domain.
const CLIENT_INN: &str = "7703714749";
const CLIENT: &str = "galieva@volzhskiy-parus.example";
const ACCOUNTANT: &str = "ivanova@debet-service.example";

/// Writes a mail into the test's folder (CRLF line ends) and returns its path.
fn mail(app: &TestApp, name: &str, text: &str) -> PathBuf {
    let path = app.path(name);
    std::fs::write(&path, text.replace('\n', "\r\n")).unwrap();
    path
}

async fn ingest_one(app: &TestApp, path: &std::path::Path) -> Report {
    let mut reports = app.ingest(&[path], false).await;
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

fn steps(r: &Report) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .tasks
        .iter()
        .map(|t| (t.step.clone(), t.due.to_string()))
        .collect();
    v.sort();
    v
}

fn pair(step: &str, due: &str) -> (String, String) {
    (step.to_owned(), due.to_owned())
}

/// A client's reply in an old thread about salary whose body holds a new demand's full text, as the statutory form
/// lays it out (the number under the head word, the date alone on its line).
fn demand_in_a_salary_thread() -> String {
    format!(
        "From: Галиева Лилия <{CLIENT}>\nTo: buh@debet-service.example\nSubject: Re: зарплата за март\n\
Date: Tue, 14 Apr 2026 10:00:00 +0300\nMessage-ID: <salary-2@volzhskiy-parus.example>\n\
In-Reply-To: <salary-1@debet-service.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
Ольга Петровна, и ещё вот это пришло, скопировала из кабинета:\n\n\
ТРЕБОВАНИЕ № 4410\nо представлении пояснений\n\n«10» апреля 2026 г.\n\n\
ООО «Волжский Парус», ИНН {CLIENT_INN}\n\
В ходе камеральной налоговой проверки налоговой декларации по НДС за 4 квартал 2025 года выявлены противоречия.\n\
На основании пункта 3 статьи 88 Налогового кодекса Российской Федерации необходимо в течение пяти дней представить\n\
пояснения или внести соответствующие исправления.\n\nДата отправки: 13.04.2026\n\n\
Лилия\n\n\
В пн, 6 апр. 2026 г. в 09:12, Иванова Ольга <{ACCOUNTANT}> написал:\n\
> Лилия, добрый день! Зарплату за март начислили, ведомость во вложении.\n"
    )
}

on_both_engines!(
    a_demand_pasted_into_a_reply_about_salary_gets_its_legal_tasks,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let r = ingest_one(&app, &mail(&app, "a.eml", &demand_in_a_salary_thread())).await;
        assert_eq!(r.category.as_deref(), Some("tax_demand"), "{r:?}");
        assert_eq!(r.kind.as_deref(), Some("explanations"));
        assert_eq!(r.client_inn.as_deref(), Some(CLIENT_INN));
        let d = r.demand.clone().unwrap();
        assert_eq!(d.number.as_deref(), Some("4410"));
        assert_eq!(d.date.map(|x| x.to_string()).as_deref(), Some("2026-04-10"));
        // Sent 13.04.2026: received on the 6th working day (21.04), explanations 5 working days later (28.04).
        assert_eq!(
            steps(&r),
            [
                pair("acknowledge", "2026-04-21"),
                pair("answer", "2026-04-28")
            ]
        );
        assert!(r
            .tasks
            .iter()
            .all(|t| t.assignee.as_deref() == Some(ACCOUNTANT)));
        app.cleanup().await;
    }
);

/// A rules folder whose only rule files every mail as a client's request: the rules get the demand wrong.
fn rules_that_miss_every_demand() -> tempfile::TempDir {
    rules_folder(&[(
        "10-all.rhai",
        r#"fn classify(mail) {
    #{ category: "client_request", kind: "other",
       tasks: [#{ step: "request", role: "accountant", due_in_working_days: 2 }] }
}"#,
    )])
}

on_both_engines!(
    the_safety_net_gives_a_review_task_when_the_rules_file_a_demand_as_something_else,
    |engine| async move {
        let rules = rules_that_miss_every_demand();
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let mut pipeline = app.pipeline().await;
        pipeline = taxinbox::pipeline::Pipeline::load(
            rules.path(),
            &Default::default(),
            pipeline.ctx().directory.as_ref().clone(),
            pipeline.timezone,
        )
        .unwrap();
        let path = mail(&app, "a.eml", &demand_in_a_salary_thread());
        let reports = app.ingest_with(&pipeline, &[&path], false).await;
        let r = &reports[0];
        assert_eq!(r.category.as_deref(), Some("client_request"));
        // The request the rule asked for, and the review the engine adds: due when the acknowledgement would be,
        // the 6th working day after the document's date (10.04.2026 → 20.04.2026).
        assert_eq!(
            steps(r),
            [pair("request", "2026-04-16"), pair("review", "2026-04-20")]
        );
        let review = r.tasks.iter().find(|t| t.step == "review").unwrap();
        assert!(
            review.title.contains("документ налогового органа"),
            "{}",
            review.title
        );
        assert_eq!(review.assignee.as_deref(), Some(ACCOUNTANT));
        assert!(
            r.reason
                .as_deref()
                .unwrap_or_default()
                .contains("safety net"),
            "{r:?}"
        );
        // The decision trace says why, for auditors.
        let payload = app
            .count("SELECT COUNT(*) FROM audit_log WHERE payload LIKE '%safety net%'")
            .await;
        assert_eq!(payload, 1);
        app.cleanup().await;
    }
);

/// An operator's alert of a documents demand (number 77 of 02.03.2026, sent 03.03.2026) that, as operators do,
/// also explains that the receipt is sent automatically.
fn operator_alert() -> String {
    format!(
        "From: Контур.Экстерн <extern-notify@kontur.ru>\nTo: buh@debet-service.example\n\
Subject: Поступил документ из налоговой — ООО «Волжский Парус»\nDate: Tue, 03 Mar 2026 12:00:00 +0300\n\
Message-ID: <alert-77@kontur.ru>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
Квитанция о приеме будет отправлена автоматически, отвечать на требование нужно в установленный срок.\n\n\
Организация: ООО «Волжский Парус», ИНН {CLIENT_INN}\n\
Документ: Требование о представлении документов (информации) № 77 от 02.03.2026\n\
Дата отправки налоговым органом: 03.03.2026\n"
    )
}

fn receipt_for_the_alert() -> String {
    format!(
        "From: Контур.Экстерн <extern-notify@kontur.ru>\nTo: buh@debet-service.example\n\
Subject: Квитанция о приеме требования № 77 от 02.03.2026 отправлена\nDate: Wed, 04 Mar 2026 09:00:00 +0300\n\
Message-ID: <receipt-77@kontur.ru>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
Квитанция о приеме требования о представлении документов № 77 от 02.03.2026 подписана и отправлена в налоговый\n\
орган. Организация: ООО «Волжский Парус», ИНН {CLIENT_INN}.\n"
    )
}

on_both_engines!(
    an_alert_that_mentions_receipts_is_a_demand_and_a_receipt_that_names_the_demand_is_a_notice,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let alert = ingest_one(&app, &mail(&app, "a.eml", &operator_alert())).await;
        assert_eq!(alert.category.as_deref(), Some("tax_demand"), "{alert:?}");
        assert_eq!(alert.kind.as_deref(), Some("documents"));
        assert_eq!(
            steps(&alert),
            [
                pair("acknowledge", "2026-03-12"),
                pair("answer", "2026-03-26")
            ]
        );
        let receipt = ingest_one(&app, &mail(&app, "b.eml", &receipt_for_the_alert())).await;
        assert_eq!(receipt.category.as_deref(), Some("notice"), "{receipt:?}");
        assert!(receipt.tasks.is_empty());
        assert_eq!(receipt.client_inn.as_deref(), Some(CLIENT_INN));
        assert_eq!(receipt.joins, None);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_second_copy_forwarded_as_an_attached_message_joins_the_first_copys_case,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let first = ingest_one(&app, &mail(&app, "a.eml", &operator_alert())).await;
        let forward = format!(
            "From: Галиева Лилия <{CLIENT}>\nTo: buh@debet-service.example\nSubject: Fwd: Поступил документ из налоговой\n\
Date: Thu, 05 Mar 2026 18:00:00 +0300\nMessage-ID: <fwd-77@volzhskiy-parus.example>\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain; charset=utf-8\n\n\
Ольга Петровна, это то же, что вам приходило?\n--B\nContent-Type: message/rfc822\n\n{}\n--B--\n",
            operator_alert()
        );
        let second = ingest_one(&app, &mail(&app, "b.eml", &forward)).await;
        assert_eq!(second.status, Status::Linked, "{second:?}");
        assert_eq!(second.joins, first.message_id);
        assert!(second.tasks.is_empty());
        assert_eq!(app.count("SELECT COUNT(*) FROM cases").await, 1);
        app.cleanup().await;
    }
);

on_both_engines!(
    a_decision_lifting_a_freeze_is_a_notice_linked_to_the_freeze_case,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let freeze = format!(
            "From: 1С-Отчетность <noreply@1c-report.ru>\nTo: buh@debet-service.example\n\
Subject: Решение о приостановлении операций по счетам № 1311 от 26.05.2026\nDate: Wed, 27 May 2026 10:00:00 +0300\n\
Message-ID: <freeze-1311@1c-report.ru>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
Получен документ: Решение № 1311 от 26.05.2026 о приостановлении операций по счетам налогоплательщика в банке.\n\
Налогоплательщик: ООО «Волжский Парус», ИНН {CLIENT_INN}\n"
        );
        let lifted = format!(
            "From: 1С-Отчетность <noreply@1c-report.ru>\nTo: buh@debet-service.example\n\
Subject: Решение об отмене приостановления операций по счетам\nDate: Tue, 02 Jun 2026 10:00:00 +0300\n\
Message-ID: <lift-1402@1c-report.ru>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n\
Получен документ: Решение № 1402 от 01.06.2026 об отмене приостановления операций по счетам налогоплательщика в\n\
банке, принятого решением № 1311 от 26.05.2026.\nНалогоплательщик: ООО «Волжский Парус», ИНН {CLIENT_INN}\n"
        );
        let first = ingest_one(&app, &mail(&app, "a.eml", &freeze)).await;
        assert_eq!(first.kind.as_deref(), Some("freeze"), "{first:?}");
        assert_eq!(first.tasks.len(), 1);
        let second = ingest_one(&app, &mail(&app, "b.eml", &lifted)).await;
        assert_eq!(second.category.as_deref(), Some("notice"), "{second:?}");
        assert!(second.tasks.is_empty());
        // Not a second copy of the freeze (`joins` is for that), but linked to its case.
        assert_eq!(second.joins, None);
        assert_eq!(second.closes, first.message_id);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM messages WHERE case_id IS NOT NULL")
                .await,
            2
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
        app.cleanup().await;
    }
);
