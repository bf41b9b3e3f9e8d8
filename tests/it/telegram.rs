//! The Telegram sink against the Bot API stand-in of `telegram_api.rs`: new tasks reach the assignee's chat with
//! their link; an API that is down, then back, gets every message once and in order; a lost answer is sent again
//! (at least once, as documented in `notify::telegram`); flood control's `retry_after` holds the whole bot; a
//! blocked person and an unknown chat fail alone and are reported; the digest goes out, by mail and in Telegram,
//! with its links; `sinks check` asks `getMe`; the settings name their problems.

use crate::helpers::*;
use crate::telegram_api::{BotApi, Server, TOKEN};
use chrono::{Duration, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use taxinbox::notify::schedule::{self, DigestOptions, ScheduleContext};
use taxinbox::notify::sink::{self, SinkOutcome, SinkWorker};
use taxinbox::notify::Templates;
use taxinbox::store;

const KUZNETSOVA: &str = "kuznetsova@debet-service.example";
const SOKOLOVA: &str = "sokolova@debet-service.example";
const KUZNETSOVA_CHAT: i64 = 500_001;
const SOKOLOVA_CHAT: i64 = 500_002;
const BASE: &str = "https://taxinbox.firm.example";

/// `[web] base_url` and a Telegram sink on the stand-in at `addr`: the token in a file, the chats in a CSV file
/// (`chats`: e-mail → chat id).
fn telegram_config(dir: &Path, addr: std::net::SocketAddr, chats: &[(&str, i64)]) -> String {
    let token = dir.join("bot.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let file = dir.join("telegram-chats.csv");
    let mut csv = String::from("email,chat_id\n");
    for (email, chat) in chats {
        csv.push_str(&format!("{email},{chat}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    format!(
        "[web]\nbase_url = \"{BASE}/\"\n[[sinks]]\nkind = \"telegram\"\nname = \"telegram\"\ntoken_file = \"{}\"\napi_url = \"http://{addr}\"\nchats_file = \"{}\"\n",
        token.display(),
        file.display()
    )
}

async fn app_with_telegram(engine: Engine, config: &str) -> TestApp {
    let app = TestApp::with_extra_config(engine, config).await;
    sink::register(&app.app.store, &app.app.settings.sinks, Utc::now())
        .await
        .unwrap();
    app.import_corpus_register().await;
    app
}

async fn ingest(app: &TestApp, numbers: &[u32]) {
    let paths: Vec<PathBuf> = numbers
        .iter()
        .map(|i| corpus().join("mail").join(format!("{i:04}.eml")))
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    app.ingest(&refs, false).await;
}

async fn deliver(app: &TestApp, at: chrono::DateTime<Utc>) -> SinkOutcome {
    SinkWorker::from_settings(&app.app.settings)
        .unwrap()
        .deliver_pending(&app.app.store, at)
        .await
        .unwrap()
}

/// (task id, assignee) of every task, by id.
async fn tasks(app: &TestApp) -> Vec<(i64, Option<String>)> {
    let mut conn = app.app.store.acquire().await.unwrap();
    sqlx::query_as("SELECT id, assignee FROM tasks ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

/// (event_key, status, attempts, not_before) of the sink's events, by id.
async fn events(app: &TestApp) -> Vec<(String, String, i64, String)> {
    let mut conn = app.app.store.acquire().await.unwrap();
    sqlx::query_as(
        "SELECT event_key, status, attempts, not_before FROM sink_outbox WHERE sink = 'telegram' ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

fn link(task: i64) -> String {
    format!("{BASE}/tasks/{task}")
}

on_both_engines!(
    new_tasks_reach_the_assignees_chat_as_plain_text_with_their_link,
    |engine| async move {
        let api = BotApi::with_chats(&[KUZNETSOVA_CHAT, SOKOLOVA_CHAT]);
        let server = api.serve(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = telegram_config(
            dir.path(),
            server.addr,
            &[(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)],
        );
        let app = app_with_telegram(engine, &config).await;
        // 0001: two tasks of Kuznetsova; 0003: one of Sokolova.
        ingest(&app, &[1, 3]).await;
        let tasks = tasks(&app).await;
        assert_eq!(tasks.len(), 3);

        let outcome = deliver(&app, Utc::now()).await;
        assert_eq!(outcome.delivered, 3, "{outcome:?}");
        let sent = api.sent();
        assert_eq!(sent.len(), 3);
        for (message, (task, assignee)) in sent.iter().zip(&tasks) {
            let chat = match assignee.as_deref() {
                Some(KUZNETSOVA) => KUZNETSOVA_CHAT,
                Some(SOKOLOVA) => SOKOLOVA_CHAT,
                other => panic!("unexpected assignee {other:?}"),
            };
            assert_eq!(message.chat_id, chat, "task {task} goes to its assignee");
            assert!(
                message.text.starts_with("Новая задача до "),
                "{}",
                message.text
            );
            assert!(message.text.contains(&link(*task)), "{}", message.text);
            assert_eq!(message.parse_mode, None, "plain text: nothing to escape");
        }
        // Nothing is sent twice.
        assert_eq!(
            deliver(&app, Utc::now() + Duration::days(1)).await,
            SinkOutcome::default()
        );
        assert_eq!(api.sent().len(), 3);
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    an_api_that_is_down_then_back_gets_every_message_once_in_order,
    |engine| async move {
        let api = BotApi::with_chats(&[KUZNETSOVA_CHAT, SOKOLOVA_CHAT]);
        let server = api.serve(0).await;
        let addr = server.addr;
        let dir = tempfile::tempdir().unwrap();
        let config = telegram_config(
            dir.path(),
            addr,
            &[(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)],
        );
        let app = app_with_telegram(engine, &config).await;
        let port = server.shut_down().await;
        ingest(&app, &[1, 3]).await;
        let start = Utc::now();
        let down = deliver(&app, start).await;
        assert_eq!(down.retrying, 3, "{down:?}");
        assert!(api.sent().is_empty());
        // Still down at the retry: a second attempt is used, nothing lost.
        let again = deliver(&app, start + Duration::minutes(2)).await;
        assert_eq!(again.retrying, 3, "{again:?}");

        let server: Server = api.serve(port).await;
        let back = deliver(&app, start + Duration::hours(1)).await;
        assert_eq!(back.delivered, 3, "{back:?}");
        let order: Vec<String> = api.sent().iter().map(|m| m.text.clone()).collect();
        let tasks = tasks(&app).await;
        assert_eq!(order.len(), 3);
        for (text, (task, _)) in order.iter().zip(&tasks) {
            assert!(text.contains(&link(*task)), "in the order of the events");
        }
        for (key, status, attempts, _) in events(&app).await {
            assert_eq!(status, "delivered", "{key}");
            assert_eq!(
                attempts, 3,
                "{key}: two failed attempts and the one that went through"
            );
        }
        assert_eq!(
            deliver(&app, start + Duration::days(2)).await,
            SinkOutcome::default()
        );
        assert_eq!(api.sent().len(), 3, "once each");
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    a_lost_answer_is_sent_again_so_the_person_may_see_it_twice_but_never_not_at_all,
    |engine| async move {
        let api = BotApi::with_chats(&[KUZNETSOVA_CHAT, SOKOLOVA_CHAT]);
        let server = api.serve(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = telegram_config(
            dir.path(),
            server.addr,
            &[(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)],
        );
        let app = app_with_telegram(engine, &config).await;
        ingest(&app, &[1, 3]).await;
        api.state().lose_next = true;
        let start = Utc::now();
        let first = deliver(&app, start).await;
        assert_eq!((first.delivered, first.retrying), (2, 1), "{first:?}");
        let lost = api.sent()[0].clone();
        assert!(
            lost.answer_lost,
            "the stand-in accepted it and broke the connection"
        );

        let retry = deliver(&app, start + Duration::minutes(2)).await;
        assert_eq!(retry.delivered, 1, "{retry:?}");
        let sent = api.sent();
        assert_eq!(sent.len(), 4);
        let copies: Vec<_> = sent
            .iter()
            .filter(|m| m.text == lost.text && m.chat_id == lost.chat_id)
            .collect();
        assert_eq!(
            copies.len(),
            2,
            "at least once: the lost answer's message goes again"
        );
        assert!(!copies[1].answer_lost);
        for (key, status, ..) in events(&app).await {
            assert_eq!(status, "delivered", "{key}");
        }
        assert_eq!(
            deliver(&app, start + Duration::days(1)).await,
            SinkOutcome::default()
        );
        assert_eq!(api.sent().len(), 4, "no third copy");
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    flood_control_holds_the_whole_bot_for_retry_after_without_using_an_attempt,
    |engine| async move {
        let api = BotApi::with_chats(&[KUZNETSOVA_CHAT, SOKOLOVA_CHAT]);
        let server = api.serve(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = telegram_config(
            dir.path(),
            server.addr,
            &[(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)],
        );
        let app = app_with_telegram(engine, &config).await;
        ingest(&app, &[1, 3]).await;
        api.flood_next(2);
        let start = Utc::now();
        let flooded = deliver(&app, start).await;
        assert_eq!(
            flooded,
            SinkOutcome {
                deferred: 1,
                ..SinkOutcome::default()
            }
        );
        let events_now = events(&app).await;
        let (_, status, attempts, not_before) = &events_now[0];
        assert_eq!(
            (status.as_str(), *attempts),
            ("pending", 0),
            "no attempt used"
        );
        assert_eq!(not_before, &store::timestamp(start + Duration::seconds(2)));
        assert_eq!(api.state().answered.get(&429), Some(&1));

        // Within retry_after nothing is asked, not even for the other people's events.
        let requests = api.state().requests.len();
        let held = deliver(&app, start + Duration::seconds(1)).await;
        assert_eq!(held.delivered, 0, "{held:?}");
        assert_eq!(api.state().requests.len(), requests, "the bot is held");

        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let after = deliver(&app, start + Duration::seconds(5)).await;
        assert_eq!(after.delivered, 3, "{after:?}");
        assert_eq!(api.sent().len(), 3);
        assert_eq!(
            api.state().answered.get(&429),
            Some(&1),
            "the pace keeps off 429s"
        );
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    a_blocked_bot_and_an_unknown_chat_fail_alone_are_reported_and_can_be_retried,
    |engine| async move {
        const BLOCKED: i64 = 500_003;
        const UNKNOWN: i64 = 999_999;
        let api = BotApi::with_chats(&[BLOCKED]);
        api.state().chats.get_mut(&BLOCKED).unwrap().blocked = true;
        let server = api.serve(0).await;
        let dir = tempfile::tempdir().unwrap();
        // Everyone else of the register gets a chat of their own.
        let accountants = std::fs::read_to_string(corpus().join("accountants.csv")).unwrap();
        let others: Vec<String> = accountants
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').next())
            .filter(|e| *e != KUZNETSOVA && *e != SOKOLOVA)
            .map(str::to_owned)
            .collect();
        let mut chats: Vec<(&str, i64)> = vec![(KUZNETSOVA, BLOCKED), (SOKOLOVA, UNKNOWN)];
        for (n, email) in others.iter().enumerate() {
            let chat = 600_000 + i64::try_from(n).unwrap();
            api.state().chats.insert(chat, Default::default());
            chats.push((email, chat));
        }
        let app =
            app_with_telegram(engine, &telegram_config(dir.path(), server.addr, &chats)).await;
        ingest(&app, &(1..=12).collect::<Vec<_>>()).await;
        let tasks = tasks(&app).await;
        let of = |who: &str| {
            tasks
                .iter()
                .filter(|(_, a)| a.as_deref() == Some(who))
                .count()
        };
        let (blocked, unknown) = (of(KUZNETSOVA), of(SOKOLOVA));
        let assigned = tasks.iter().filter(|(_, a)| a.is_some()).count();
        assert!(
            blocked > 0 && unknown > 0 && assigned > blocked + unknown,
            "{tasks:?}"
        );

        let outcome = deliver(&app, Utc::now()).await;
        assert_eq!(outcome.failed, blocked + unknown, "{outcome:?}");
        assert!(
            outcome.delivered >= tasks.len() - blocked - unknown,
            "{outcome:?}"
        );
        assert_eq!(
            api.sent().len(),
            assigned - blocked - unknown,
            "everyone else got theirs"
        );
        assert_eq!(api.state().answered.get(&403), Some(&blocked));
        assert_eq!(api.state().answered.get(&400), Some(&unknown));
        let status = sink::status_lines(&app.app.store).await.unwrap().join("\n");
        assert!(
            status.contains("telegram\tfailed")
                && (status.contains("bot was blocked by the user")
                    || status.contains("chat not found")),
            "{status}"
        );

        // The person unblocks the bot; the admin queues the failed events again.
        api.state().chats.get_mut(&BLOCKED).unwrap().blocked = false;
        let mut conn = app.app.store.acquire().await.unwrap();
        let again =
            store::retry_failed_sink_events(&mut conn, "telegram", &store::timestamp(Utc::now()))
                .await
                .unwrap();
        drop(conn);
        assert_eq!(again, u64::try_from(blocked + unknown).unwrap());
        let retried = deliver(&app, Utc::now() + Duration::seconds(1)).await;
        assert_eq!(retried.failed, unknown, "{retried:?}");
        assert!(retried.delivered >= blocked, "{retried:?}");
        let to_blocked = api.sent().iter().filter(|m| m.chat_id == BLOCKED).count();
        assert_eq!(to_blocked, blocked);
        server.shut_down().await;
        app.cleanup().await;
    }
);

async fn schedule_context(app: &TestApp) -> ScheduleContext {
    let mut conn = app.app.store.acquire().await.unwrap();
    ScheduleContext {
        templates: Templates::builtin(),
        calendar: taxinbox::calendar::ProductionCalendar::load_dir(
            &project_root().join("rules/calendar/production"),
        )
        .unwrap(),
        directory: store::load_directory(&mut conn).await.unwrap(),
        escalation: app.app.settings.notify.escalation.clone(),
        admins: vec![],
    }
}

on_both_engines!(
    the_digest_goes_out_by_mail_and_in_telegram_with_a_link_per_task,
    |engine| async move {
        let api = BotApi::with_chats(&[KUZNETSOVA_CHAT, SOKOLOVA_CHAT]);
        let server = api.serve(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = telegram_config(
            dir.path(),
            server.addr,
            &[(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)],
        );
        let app = app_with_telegram(engine, &config).await;
        ingest(&app, &[1, 3]).await;
        let tasks = tasks(&app).await;
        let ctx = schedule_context(&app).await;
        let options = DigestOptions {
            web_base: app.app.settings.web.base_url.clone(),
            ..DigestOptions::default()
        };
        let day = NaiveDate::from_ymd_opt(2026, 1, 14).unwrap();
        let now = Utc::now();
        {
            let mut conn = app.app.store.acquire().await.unwrap();
            let outcome = schedule::run_at(
                &mut conn,
                &ctx,
                &options,
                day.and_hms_opt(9, 0, 0).unwrap(),
                &store::timestamp(now),
            )
            .await
            .unwrap();
            assert_eq!(outcome.digests, 2, "{outcome:?}");
            // 0001's tasks are due 19.01, three working days ahead: the assignee's rung.
            assert!(outcome.escalations >= 1, "{outcome:?}");
        }
        // The mail digest links every task.
        let mut conn = app.app.store.acquire().await.unwrap();
        let mails: Vec<(String, String)> = sqlx::query_as(
            "SELECT recipient, body FROM outbox WHERE kind = 'digest' ORDER BY recipient",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        let digests: BTreeMap<String, String> = mails.into_iter().collect();
        // Every task line is followed by the link of a task of that person.
        let mut linked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (who, body) in &digests {
            let lines: Vec<&str> = body.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                if !line.starts_with("— ") || *line == "— нет" {
                    continue;
                }
                let next = lines.get(n + 1).copied().unwrap_or_default();
                let id: i64 = next
                    .trim()
                    .strip_prefix(&format!("{BASE}/tasks/"))
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_else(|| panic!("no link after {line:?} in {body}"));
                assert!(
                    tasks.contains(&(id, Some(who.clone()))),
                    "task {id} is {who}'s"
                );
                linked.entry(who.clone()).or_default().push(link(id));
            }
        }
        assert_eq!(linked.len(), 2, "{digests:?}");

        let outcome = deliver(&app, now).await;
        assert_eq!(outcome.failed + outcome.retrying, 0, "{outcome:?}");
        let sent = api.sent();
        let digest_of = |chat: i64| {
            sent.iter()
                .filter(|m| m.chat_id == chat && m.text.starts_with("Задачи на 14.01.2026"))
                .map(|m| m.text.clone())
                .collect::<Vec<_>>()
        };
        for (who, chat) in [(KUZNETSOVA, KUZNETSOVA_CHAT), (SOKOLOVA, SOKOLOVA_CHAT)] {
            let got = digest_of(chat);
            assert_eq!(got.len(), 1, "one digest for {who}: {sent:?}");
            for link in &linked[who] {
                assert!(got[0].contains(link), "{link} in {}", got[0]);
            }
            let greeting = digests[who].lines().next().unwrap_or_default().to_owned();
            assert!(
                !greeting.is_empty() && got[0].contains(&greeting),
                "{}",
                got[0]
            );
        }
        // The escalation's message reaches the assignee too, with the task's link, after the task's own message.
        let to_kuznetsova: Vec<&str> = sent
            .iter()
            .filter(|m| m.chat_id == KUZNETSOVA_CHAT)
            .map(|m| m.text.as_str())
            .collect();
        let escalation = to_kuznetsova
            .iter()
            .position(|t| t.starts_with("Срок 19.01.2026"))
            .unwrap_or_else(|| panic!("no escalation in {to_kuznetsova:?}"));
        let task_link = to_kuznetsova[escalation]
            .lines()
            .find(|l| l.starts_with(&format!("Открыть задачу: {BASE}/tasks/")))
            .expect("the escalation links its task")
            .trim_start_matches("Открыть задачу: ")
            .to_owned();
        let created = to_kuznetsova
            .iter()
            .position(|t| t.starts_with("Новая задача") && t.contains(&task_link))
            .expect("the task's own message");
        assert!(created < escalation, "in order per task");
        // A second scheduling pass the same day queues nothing more for anyone.
        {
            let mut conn = app.app.store.acquire().await.unwrap();
            schedule::run_at(
                &mut conn,
                &ctx,
                &options,
                day.and_hms_opt(10, 0, 0).unwrap(),
                &store::timestamp(now),
            )
            .await
            .unwrap();
        }
        let before = api.sent().len();
        deliver(&app, now + Duration::minutes(1)).await;
        assert_eq!(api.sent().len(), before);
        server.shut_down().await;
        app.cleanup().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_check_asks_get_me_and_lists_who_has_a_chat() {
    let api = BotApi::with_chats(&[KUZNETSOVA_CHAT]);
    let server = api.serve(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = telegram_config(
        dir.path(),
        server.addr,
        &[
            (KUZNETSOVA, KUZNETSOVA_CHAT),
            ("gone@debet-service.example", 1),
        ],
    );
    let app = app_with_telegram(Engine::Sqlite, &config).await;
    let lines = sink::check(&app.app.store, &app.app.settings)
        .await
        .unwrap()
        .join("\n");
    for expected in [
        "telegram\tbot\t@taxinbox_test_bot (id 123456789)",
        &format!("telegram\tmapped\t{KUZNETSOVA} → chat {KUZNETSOVA_CHAT}"),
        &format!("telegram\tmissing\t{SOKOLOVA}: no chat"),
        "telegram\tunused\tgone@debet-service.example → chat 1: not in the directory",
        "telegram\tsummary\t12 accountant(s), 1 with a chat, 11 without",
    ] {
        assert!(lines.contains(expected), "{expected:?} missing in\n{lines}");
    }
    let requests = api.state().requests.clone();
    assert_eq!(
        requests,
        vec![("getme".to_owned(), String::new())],
        "sends nothing"
    );
    assert!(api.sent().is_empty());

    // A revoked token: the check says so, without the token.
    std::fs::write(dir.path().join("bot.token"), "123456789:wrongSecret\n").unwrap();
    let error = format!(
        "{:#}",
        sink::check(&app.app.store, &app.app.settings)
            .await
            .unwrap_err()
    );
    assert!(error.contains("401 Unauthorized"), "{error}");
    assert!(
        !error.contains("wrongSecret"),
        "the token is never shown: {error}"
    );
    server.shut_down().await;
    app.cleanup().await;
}

#[test]
fn telegram_settings_name_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("chats.csv"),
        "email,chat_id\nivanova@debet-service.example,12345\nkuznetsova@debet-service.example,@ab\n",
    )
    .unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(
        &config,
        "[[sinks]]\nkind = \"telegram\"\nname = \"t\"\napi_url = \"http://api.telegram.org\"\nchats_file = \"chats.csv\"\n\
         [[sinks]]\nkind = \"telegram\"\nname = \"u\"\ntoken_env = \"TG\"\nurl = \"https://x.example/\"\n[sinks.chats]\n\"sokolova\" = 5\n\
         [[sinks]]\nkind = \"webhook\"\nname = \"w\"\nurl = \"https://x.example/\"\ntoken_file = \"t\"\n",
    )
    .unwrap();
    let error = taxinbox::settings::Settings::from_sources(Some(&config), &[])
        .unwrap_err()
        .to_string();
    for expected in [
        "sinks[0]: token_file or token_env is required",
        "sinks[0].api_url: the Bot API takes https://",
        "chats.csv:3: kuznetsova@debet-service.example: \"@ab\" is not a Telegram chat id",
        "sinks[1]: a telegram sink takes token_file or token_env, api_url, chats, chats_file",
        "sinks[1].chats: \"sokolova\" is not an e-mail of the directory",
        "sinks[2]: token_file, token_env, api_url, chats and chats_file are only used with kind = \"telegram\"",
    ] {
        assert!(error.contains(expected), "{expected:?} missing in {error}");
    }
}
