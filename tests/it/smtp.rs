//! The notifier against a real SMTP server: `aiosmtpd` (Debian's python3-aiosmtpd, see scripts/test-services)
//! started per test on a free loopback port, writing every message it accepts into a Maildir that the test
//! parses with mail-parser. Covers new-task mail after ingestion, a server that is down and comes back, the
//! recipient policy and the daily cap, and digests and escalations for a fixed date.

use crate::helpers::{corpus, on_both_engines, project_root, Engine, TestApp};
use chrono::{NaiveDate, TimeZone as _, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use taxinbox::notify::schedule::{self, ScheduleContext};
use taxinbox::notify::{Delivery, Notifier, Policy, SmtpDelivery, Templates};
use taxinbox::settings::Tls;
use taxinbox::store;

/// A private aiosmtpd on 127.0.0.1, killed when dropped.
struct SmtpSink {
    child: Child,
    maildir: PathBuf,
}

fn python_with_aiosmtpd() -> String {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return python.to_owned();
        }
    }
    panic!("aiosmtpd is needed by the SMTP tests: run scripts/test-services (installs python3-aiosmtpd)");
}

/// How Python's standard `email` module reads a mail: its Content-Type (type and charset) and decoded body.
fn python_reads(raw: &[u8]) -> (String, String) {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, email, email.policy\n\
             m = email.message_from_binary_file(sys.stdin.buffer, policy=email.policy.default)\n\
             part = m.get_body(preferencelist=('plain',))\n\
             sys.stdout.write(part.get_content_type() + '; charset=' + str(part.get_content_charset()) + '\\n')\n\
             sys.stdout.write(part.get_content())\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not read the mail");
    let text = String::from_utf8(out.stdout).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    (first.to_owned(), rest.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    fn start(port: u16, maildir: &Path) -> SmtpSink {
        // A Maildir: Python's mailbox module creates the three folders only when the top one is missing.
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let child = Command::new(python_with_aiosmtpd())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let sink = SmtpSink {
            child,
            maildir: maildir.to_owned(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sink;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not listen on 127.0.0.1:{port} within 10 s");
    }

    /// Every message received so far, as raw bytes.
    fn received(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in entries.flatten() {
                    all.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
        all
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_notifier(port: u16, policy: Policy) -> Notifier {
    Notifier {
        delivery: Delivery::Smtp(Box::new(
            SmtpDelivery::new(
                "127.0.0.1",
                port,
                Tls::None,
                None,
                None,
                Duration::from_secs(5),
            )
            .unwrap(),
        )),
        from: "taxinbox@debet-service.example".to_owned(),
        templates: Templates::load(&project_root().join("rules").join("templates")).unwrap(),
        policy,
        web_base: Some("https://taxinbox.firm.example/".to_owned()),
    }
}

/// One received message, decoded.
struct Received {
    message_id: String,
    to: String,
    subject: String,
    body: String,
    headers: BTreeMap<String, String>,
}

fn parse(raw: &[u8]) -> Received {
    let m = mail_parser::MessageParser::default().parse(raw).unwrap();
    let headers = m
        .headers()
        .iter()
        .filter_map(|h| {
            let value = match h.value() {
                mail_parser::HeaderValue::Text(t) => t.to_string(),
                mail_parser::HeaderValue::TextList(l) => l.join(" "),
                _ => return None,
            };
            Some((h.name().to_lowercase(), value))
        })
        .collect();
    Received {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        to: m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_lowercase(),
        subject: m.subject().unwrap_or_default().to_owned(),
        body: m.body_text(0).unwrap_or_default().into_owned(),
        headers,
    }
}

fn corpus_mails(range: std::ops::RangeInclusive<usize>) -> Vec<PathBuf> {
    range
        .map(|i| corpus().join("mail").join(format!("{i:04}.eml")))
        .collect()
}

async fn rows(app: &TestApp, sql: &str) -> Vec<(i64, String, String)> {
    let mut conn = app.app.store.acquire().await.unwrap();
    sqlx::query_as::<_, (i64, String, String)>(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

on_both_engines!(
    ingested_corpus_mail_sends_one_new_task_mail_per_assigned_task_to_its_assignee,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let mails = corpus_mails(1..=25);
        let paths: Vec<&Path> = mails.iter().map(PathBuf::as_path).collect();
        app.ingest(&paths, false).await;
        let assigned = app
            .count("SELECT COUNT(*) FROM tasks WHERE assignee IS NOT NULL")
            .await;
        assert!(assigned > 5, "the corpus slice assigns tasks ({assigned})");

        let port = free_port();
        let sink = SmtpSink::start(port, &app.path("received"));
        let outcome = smtp_notifier(port, Policy::default())
            .send_pending(&app.app.store, Utc::now())
            .await
            .unwrap();
        let errors = rows(
            &app,
            "SELECT id, status, COALESCE(last_error, '') FROM outbox WHERE status <> 'sent'",
        )
        .await;
        assert_eq!(outcome.sent as i64, assigned, "{outcome:?}: {errors:?}");
        assert_eq!(outcome.failed + outcome.refused + outcome.held, 0);

        // What each notification should look like: its recipient and the Message-ID of the mail it is about.
        let expected: BTreeMap<String, (String, String)> = rows(
            &app,
            "SELECT o.id, o.recipient, COALESCE(m.message_id, '') FROM outbox o \
             LEFT JOIN messages m ON m.id = o.message WHERE o.kind = 'task_assigned'",
        )
        .await
        .into_iter()
        .map(|(id, to, original)| {
            (
                format!("taxinbox.notification.{id}@debet-service.example"),
                (to, original),
            )
        })
        .collect();
        let received: Vec<Received> = sink.received().iter().map(|r| parse(r)).collect();
        assert_eq!(received.len() as i64, assigned);
        for r in &received {
            let (to, original) = expected
                .get(&r.message_id)
                .unwrap_or_else(|| panic!("unexpected Message-ID {}", r.message_id));
            assert_eq!(&r.to, to);
            assert!(r.subject.starts_with("Новая задача до "), "{}", r.subject);
            assert!(r.body.contains("Вам назначена задача."), "{}", r.body);
            assert!(r.body.contains("Клиент: "), "{}", r.body);
            assert_eq!(r.headers["auto-submitted"], "auto-generated");
            assert_eq!(r.headers["x-taxinbox"], "notification");
            if !original.is_empty() {
                let bare = original.trim_matches(['<', '>']);
                assert!(
                    r.headers
                        .get("in-reply-to")
                        .is_some_and(|v| v.contains(bare)),
                    "{:?}",
                    r.headers
                );
            }
        }
        // Complete MIME: Python's standard `email` parser reads a text/plain UTF-8 body, the same text ours decodes.
        for raw in sink.received() {
            let (content_type, text) = python_reads(&raw);
            assert_eq!(content_type, "text/plain; charset=utf-8", "{text}");
            assert!(text.contains("Вам назначена задача."), "{text}");
            assert!(
                text.contains("Открыть задачу: https://taxinbox.firm.example/tasks/"),
                "every task mail links to its task: {text}"
            );
            let ours = taxinbox::mail::parse(&raw).unwrap().text;
            assert_eq!(
                text.trim().replace("\r\n", "\n"),
                ours.trim().replace("\r\n", "\n")
            );
        }
        // The row is marked only after the server accepted the mail, and logged.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
                .await,
            assigned
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'notification_sent'")
                .await,
            assigned
        );
        drop(sink);
        app.cleanup().await;
    }
);

on_both_engines!(
    notifications_wait_while_the_smtp_server_is_down_and_go_out_once_when_it_is_back,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let mails = corpus_mails(1..=6);
        let paths: Vec<&Path> = mails.iter().map(PathBuf::as_path).collect();
        app.ingest(&paths, false).await;
        let queued = app.count("SELECT COUNT(*) FROM outbox").await;
        assert!(queued > 0);

        let port = free_port();
        let notifier = smtp_notifier(port, Policy::default());
        let now = Utc::now();
        let down = notifier.send_pending(&app.app.store, now).await.unwrap();
        assert_eq!(down.sent, 0);
        assert_eq!(down.retrying as i64, queued, "{down:?}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts = 1 AND last_error IS NOT NULL")
                .await,
            queued
        );
        // Not due again before the back-off has passed.
        let early = notifier.send_pending(&app.app.store, now).await.unwrap();
        assert_eq!(early, Default::default());

        let sink = SmtpSink::start(port, &app.path("received"));
        let later = now + chrono::Duration::minutes(2);
        let back = notifier.send_pending(&app.app.store, later).await.unwrap();
        assert_eq!(back.sent as i64, queued, "{back:?}");
        let again = notifier
            .send_pending(&app.app.store, later + chrono::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(again, Default::default());
        let ids: std::collections::BTreeSet<String> = sink
            .received()
            .iter()
            .map(|r| parse(r).message_id)
            .collect();
        assert_eq!(sink.received().len() as i64, queued);
        assert_eq!(ids.len() as i64, queued, "each notification exactly once");
        drop(sink);
        app.cleanup().await;
    }
);

async fn queue(app: &TestApp, recipient: &str) -> i64 {
    let mut conn = app.app.store.acquire().await.unwrap();
    let now = store::timestamp(Utc::now());
    store::insert_notification(
        &mut conn,
        &store::NewNotification {
            kind: "escalation".into(),
            recipient: recipient.into(),
            subject: "Проверка".into(),
            body: "Текст".into(),
            not_before: now.clone(),
            created_at: now,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

on_both_engines!(
    mail_to_the_tax_authority_automated_or_unknown_addresses_is_refused_and_a_loop_is_held_at_the_cap,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        for to in [
            "ifns7703@nalog.ru",
            "noreply@debet-service.example",
            "stranger@elsewhere.example",
        ] {
            queue(&app, to).await;
        }
        for _ in 0..3 {
            queue(&app, "ivanova@debet-service.example").await;
        }
        queue(&app, "ops@partner.example").await;
        let port = free_port();
        let sink = SmtpSink::start(port, &app.path("received"));
        let policy = Policy {
            admins: vec![],
            allowed_recipients: vec!["@partner.example".into()],
            daily_cap_per_recipient: 2,
        };
        let outcome = smtp_notifier(port, policy)
            .send_pending(&app.app.store, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            (outcome.sent, outcome.refused, outcome.held),
            (3, 3, 1),
            "{outcome:?}"
        );
        let received: Vec<String> = sink.received().iter().map(|r| parse(r).to).collect();
        assert_eq!(received.len(), 3);
        assert!(received
            .iter()
            .all(|to| to == "ivanova@debet-service.example" || to == "ops@partner.example"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE status = 'refused' AND last_error IS NOT NULL")
                .await,
            3
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE status = 'held'")
                .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'notification_failed'")
                .await,
            4
        );
        drop(sink);
        app.cleanup().await;
    }
);

async fn schedule_context(app: &TestApp, admins: Vec<String>) -> ScheduleContext {
    let mut conn = app.app.store.acquire().await.unwrap();
    ScheduleContext {
        templates: Templates::builtin(),
        calendar: taxinbox::calendar::ProductionCalendar::load_dir(
            &project_root().join("rules/calendar/production"),
        )
        .unwrap(),
        directory: store::load_directory(&mut conn).await.unwrap(),
        escalation: app.app.settings.notify.escalation.clone(),
        admins,
    }
}

on_both_engines!(
    digest_and_escalation_for_a_fixed_date_are_queued_once_and_reach_the_right_people,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0001: a demand for Kuznetsova's client; "acknowledge" due 2026-01-19, "answer" due 2026-02-02.
        let mails = corpus_mails(1..=1);
        let paths: Vec<&Path> = mails.iter().map(PathBuf::as_path).collect();
        app.ingest(&paths, false).await;
        let ctx = schedule_context(&app, vec!["admin@debet-service.example".into()]).await;
        let now = store::timestamp(Utc::now());
        let mut conn = app.app.store.acquire().await.unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();

        // Wednesday 14 January: three working days (15, 16, 19) before the acknowledgement is due.
        assert_eq!(
            schedule::digest_due(&mut conn, &ctx, day(14), &now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            schedule::digest_due(&mut conn, &ctx, day(14), &now)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            schedule::escalations_due(&mut conn, &ctx, None, day(14), &now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            schedule::escalations_due(&mut conn, &ctx, None, day(14), &now)
                .await
                .unwrap(),
            0
        );
        // Sunday 18 January: no digest on a day off.
        assert_eq!(
            schedule::digest_due(&mut conn, &ctx, day(18), &now)
                .await
                .unwrap(),
            0
        );
        // Friday 16: one working day left, the manager; Monday 19: the due date, the manager again (next rung).
        assert_eq!(
            schedule::escalations_due(&mut conn, &ctx, None, day(16), &now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            schedule::escalations_due(&mut conn, &ctx, None, day(19), &now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            schedule::escalations_due(&mut conn, &ctx, None, day(19), &now)
                .await
                .unwrap(),
            0
        );
        drop(conn);

        let queued = rows(
            &app,
            "SELECT id, kind, recipient FROM outbox WHERE kind IN ('digest', 'escalation') ORDER BY id",
        )
        .await;
        let who: Vec<(&str, &str)> = queued
            .iter()
            .map(|(_, k, r)| (k.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            who,
            [
                ("digest", "kuznetsova@debet-service.example"),
                ("escalation", "kuznetsova@debet-service.example"),
                ("escalation", "belova@debet-service.example"),
                ("escalation", "belova@debet-service.example"),
            ]
        );

        let port = free_port();
        let sink = SmtpSink::start(port, &app.path("received"));
        let at = Utc.with_ymd_and_hms(2026, 1, 19, 6, 0, 0).unwrap();
        let outcome = smtp_notifier(port, Policy::default())
            .send_pending(&app.app.store, at.max(Utc::now()))
            .await
            .unwrap();
        assert_eq!(
            outcome.failed + outcome.refused + outcome.held,
            0,
            "{outcome:?}"
        );
        let received: Vec<Received> = sink.received().iter().map(|r| parse(r)).collect();
        let digest = received
            .iter()
            .find(|r| r.headers.get("x-taxinbox-kind").map(String::as_str) == Some("digest"))
            .expect("the digest was sent");
        assert_eq!(
            digest.subject,
            "Задачи на 14.01.2026: сегодня 0, просрочено 0"
        );
        assert!(
            digest.body.contains("Кузнецова Марина Алексеевна"),
            "{}",
            digest.body
        );
        assert!(digest.body.contains("19.01.2026"), "{}", digest.body);
        let escalation = received
            .iter()
            .find(|r| r.to == "belova@debet-service.example")
            .expect("the manager was told");
        assert!(
            escalation.subject.starts_with("Срок 19.01.2026: "),
            "{}",
            escalation.subject
        );
        assert!(escalation.headers.contains_key("in-reply-to"));
        drop(sink);
        app.cleanup().await;
    }
);

#[tokio::test]
async fn an_smtp_configuration_builds_an_smtp_notifier_and_plain_text_needs_to_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\ndir = \"{}\"\n[notify]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
             from = \"taxinbox@debet-service.example\"\nadmins = [\"Admin@Debet-Service.example\"]\n\
             daily_cap_per_recipient = 50\n\
             [notify.escalation]\ndefault = [{{ who = \"assignee\", working_days_before = 2 }}]\n\
             kinds.documents = [{{ who = \"manager\", working_days_before = 1 }}]\n",
            project_root().join("rules").display()
        ),
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    assert_eq!(settings.notify.admins, ["admin@debet-service.example"]);
    assert_eq!(settings.notify.daily_cap_per_recipient, 50);
    assert_eq!(settings.notify.escalation.ladder("documents").len(), 1);
    assert_eq!(
        settings.notify.escalation.ladder("other")[0].working_days_before,
        2
    );
    match &settings.notify.transport {
        taxinbox::settings::NotifyTransport::Smtp { port, tls, .. } => {
            assert_eq!((*port, *tls), (25, Tls::None));
        }
        other => panic!("{other:?}"),
    }
    let notifier = Notifier::from_settings(&settings).unwrap();
    assert!(matches!(notifier.delivery, Delivery::Smtp(_)));

    std::fs::write(
        &config,
        "[notify]\ntransport = \"smtp\"\nhost = \"mail.example\"\n",
    )
    .unwrap();
    let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
    match &settings.notify.transport {
        taxinbox::settings::NotifyTransport::Smtp { port, tls, .. } => {
            assert_eq!((*port, *tls), (587, Tls::Starttls));
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        &config,
        "[notify]\nadmins = [\"nobody\"]\n[notify.escalation]\ndefault = [{ who = \"boss\" }]\n",
    )
    .unwrap();
    let error = taxinbox::settings::Settings::from_sources(Some(&config), &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("notify.admins"), "{error}");
    assert!(
        error.contains("notify.escalation.default[0].who"),
        "{error}"
    );
}

on_both_engines!(
    admins_hear_once_sixty_days_before_2027_that_the_regional_days_of_16_and_02_are_pending,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let ctx = schedule_context(&app, vec!["admin@debet-service.example".into()]).await;
        let now = store::timestamp(Utc::now());
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let mut conn = app.app.store.acquire().await.unwrap();
        // 1 November 2026 is 61 days before the year: too early; from 2 November (60 days) on it is due.
        let early = schedule::calendar_notices_due(&mut conn, &ctx, day(2026, 11, 1), &now)
            .await
            .unwrap();
        assert_eq!(early, 0);
        // 6 December 2026: clients in 16 and 02 (the corpus directory), both with Ураза/Курбан 2027 pending.
        let outcome = schedule::run(&mut conn, &ctx, day(2026, 12, 6), &now)
            .await
            .unwrap();
        assert_eq!(outcome.calendar_notices, 2);
        let again = schedule::run(&mut conn, &ctx, day(2026, 12, 7), &now)
            .await
            .unwrap();
        assert_eq!(again.calendar_notices, 0, "once per year and region");
        drop(conn);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM outbox WHERE kind = 'admin_calendar' AND recipient = 'admin@debet-service.example'")
                .await,
            2
        );
        let subjects: Vec<(String, String)> = sqlx::query_as(
            "SELECT subject, body FROM outbox WHERE kind = 'admin_calendar' ORDER BY subject",
        )
        .fetch_all(&mut *app.app.store.acquire().await.unwrap())
        .await
        .unwrap();
        assert!(
            subjects[0].0.contains("2027") && subjects[0].0.contains("02"),
            "{subjects:?}"
        );
        assert!(subjects[1].0.contains("16"), "{subjects:?}");
        assert!(
            subjects[1].1.contains("Ураза-байрам, Курбан-байрам"),
            "{subjects:?}"
        );
        app.cleanup().await;
    }
);
