//! The web view's main pages over a log of 100,000 mails: each page's answer time, measured through a real HTTP
//! server on 127.0.0.1 (the daemon's router with the web view), against the 50 ms the pages must stay under.
//!
//! The log is generated quickly — bulk inserts through the store in one transaction, not real ingest: mails
//! spread over two years, five mailboxes, the corpus directory's clients and categories, a task for every other
//! mail (open for the last weeks, done before), some quarantined.
//!
//! Run: `cargo bench --bench web` (SQLite; PostgreSQL too when TAXINBOX_TEST_PG or the default
//! postgres://postgres@127.0.0.1:5432 answers). Prints p50 / p95 / max per page.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark stops at the first failure

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taxinbox::store::{self, MessageRecord, NewTask};

/// The size of the log the pages must stay fast over.
const MAILS: usize = 100_000;
/// Requests per page; the first few warm caches and are not counted.
const RUNS: usize = 40;
const WARMUP: usize = 5;
/// What a page may take (issue #10).
const BUDGET: Duration = Duration::from_millis(50);
const PASSWORD: &str = "benchmark-password-1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CATEGORIES: [&str; 5] = [
    "tax_demand",
    "client_request",
    "notice",
    "ignore",
    "unclassified",
];
const MAILBOXES: [&str; 5] = ["demands", "clients", "payroll", "hr", "legal"];

async fn fill(app: &taxinbox::app::Instance) -> (String, i64, i64) {
    let mut conn = app.store.acquire().await.unwrap();
    let directory = store::load_directory(&mut conn).await.unwrap();
    drop(conn);
    let clients: Vec<_> = directory.clients().map(|c| c.inn.to_string()).collect();
    let accountants: Vec<_> = directory.accountants().map(|a| a.email.clone()).collect();
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Duration::days(730);
    let now = store::timestamp(chrono::Utc::now());
    let t0 = Instant::now();
    let mut tx = app.store.begin().await.unwrap();
    let mut a_task = 0;
    let mut a_mail = 0;
    for n in 0..MAILS {
        let day = start + chrono::Duration::days((n * 730 / MAILS) as i64);
        let client = &clients[n % clients.len()];
        let category = CATEGORIES[n % CATEGORIES.len()];
        let quarantined = n % 97 == 0;
        let raw = format!(
            "From: client{n}@example.org\r\nTo: buh@debet-service.example\r\nSubject: Письмо {n}\r\n\
             Message-ID: <bench-{n}@example.org>\r\nDate: {day}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Добрый день! Текст письма номер {n} для клиента {client}.\r\n"
        );
        let sha = taxinbox::store::sha256_hex(raw.as_bytes());
        store::put_raw(&mut tx, &sha, raw.as_bytes(), &now)
            .await
            .unwrap();
        let id = store::insert_message(
            &mut tx,
            &MessageRecord {
                sha256: sha,
                message_id: Some(format!("<bench-{n}@example.org>")),
                source: format!("bench:{n}"),
                mailbox: MAILBOXES[n % MAILBOXES.len()].to_owned(),
                fetched_at: now.clone(),
                received_date: day.to_string(),
                from_addr: format!("client{n}@example.org"),
                subject: format!("Письмо {n}"),
                status: if quarantined {
                    store::MessageStatus::Quarantined
                } else {
                    store::MessageStatus::Processed
                },
                category: (!quarantined).then(|| category.to_owned()),
                client_inn: Some(client.clone()),
                rule: Some("10-demands.rhai".into()),
                ruleset: Some("sha256:bench".into()),
                error: quarantined.then(|| "rule 10-demands.rhai: operation limit".to_owned()),
                facts: "{}".into(),
                processed_at: now.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        a_mail = id;
        if n % 2 == 0 && !quarantined {
            let assignee = accountants[(n / 2) % accountants.len()].clone();
            a_task = store::insert_tasks(
                &mut tx,
                &[NewTask {
                    message: id,
                    client_inn: Some(client.clone()),
                    step: "answer".into(),
                    title: format!("Ответить на письмо {n}"),
                    role: "accountant".into(),
                    assignee: Some(assignee),
                    due: (day + chrono::Duration::days(10)).to_string(),
                    priority: "normal".into(),
                    provenance: r#"{"base":"received","working_days":10,"calendar":"federal"}"#
                        .into(),
                    created_at: now.clone(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap()[0];
        }
    }
    let closed =
        store::close_tasks_due_before(&mut tx, &(today - chrono::Duration::days(30)).to_string())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let mut conn = app.store.acquire().await.unwrap();
    store::refresh_planner_statistics(&mut conn).await.unwrap();
    drop(conn);
    println!(
        "  generated {MAILS} mails, {} tasks ({closed} done) in {:.1} s",
        MAILS / 2,
        t0.elapsed().as_secs_f64()
    );
    let _ = a_task;
    (accountants[0].clone(), a_task, a_mail)
}

struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

async fn sign_in(base: &str, email: &str) -> Session {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = r.text().await.unwrap();
    let marker = "name=\"token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    let token = page[start..].split('"').next().unwrap().to_owned();
    let r = http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, login_cookie)
        .form(&[("email", email), ("password", PASSWORD), ("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "sign-in as {email}");
    let cookie = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("taxinbox_session="))
        .unwrap();
    Session {
        http,
        base: base.to_owned(),
        cookie,
    }
}

async fn time_page(s: &Session, path: &str) -> bool {
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + WARMUP {
        let t = Instant::now();
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header(reqwest::header::COOKIE, &s.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        if i >= WARMUP {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    let max = times[times.len() - 1];
    let ok = p95 <= BUDGET;
    println!(
        "  {path:<55} p50 {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms  {}",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        if ok { "ok" } else { "OVER 50 ms" }
    );
    ok
}

async fn run(engine: &str, url: String, dir: &std::path::Path) -> bool {
    println!("{engine}:");
    let config = dir.join(format!("{engine}.toml"));
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
             [web]\nadmins = [\"admin@debet-service.example\"]\nauditors = [\"auditor@debet-service.example\"]\n\
             secure_cookies = false\n{}",
            root().join("rules").display(),
            dir.join("outbox").display(),
            // The mailboxes the synthetic log came from, as the admin's liveness page lists them.
            MAILBOXES
                .iter()
                .map(|m| format!("[[maildirs]]\nname = \"{m}\"\npath = \"maildir-{m}\"\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    let app = taxinbox::app::Instance::open(Some(&config)).await.unwrap();
    let c = root().join("tests/corpus");
    taxinbox::directory_import::import_files(
        &app.store,
        &c.join("clients.csv"),
        Some(&c.join("accountants.csv")),
        Some(&c.join("absences.csv")),
        None,
    )
    .await
    .unwrap();
    let (accountant, task, mail) = fill(&app).await;
    for who in [
        accountant.as_str(),
        "auditor@debet-service.example",
        "admin@debet-service.example",
    ] {
        taxinbox::web::set_password(&app.store, &app.settings.web, who, PASSWORD)
            .await
            .unwrap();
    }
    let metrics = Arc::new(taxinbox::metrics::Metrics::new());
    let web = taxinbox::web::Web::new(
        app.store.clone(),
        app.settings.clone(),
        app.pipeline().await.unwrap(),
        metrics.clone(),
    );
    let server =
        taxinbox::http::Server::start_with_web("127.0.0.1:0".parse().unwrap(), metrics, Some(web))
            .await
            .unwrap();
    let base = format!("http://{}", server.address);
    let mut ok = true;
    let me = sign_in(&base, &accountant).await;
    ok &= time_page(&me, "/tasks").await;
    ok &= time_page(&me, "/tasks?q=4200&sort=client").await;
    ok &= time_page(&me, "/tasks?status=done&page=2").await;
    let auditor = sign_in(&base, "auditor@debet-service.example").await;
    ok &= time_page(&auditor, "/tasks").await;
    ok &= time_page(&auditor, "/tasks?queue=unassigned").await;
    ok &= time_page(&auditor, "/log?q=4200").await;
    ok &= time_page(&auditor, &format!("/log?after={}", mail / 2)).await;
    ok &= time_page(&auditor, &format!("/tasks/{task}")).await;
    ok &= time_page(&auditor, "/log").await;
    ok &= time_page(&auditor, &format!("/log?before={}", mail / 2)).await;
    ok &= time_page(&auditor, "/log?category=tax_demand&status=processed").await;
    ok &= time_page(
        &auditor,
        "/log?mailbox=payroll&from=2025-06-01&to=2025-06-30",
    )
    .await;
    let mut conn = app.store.acquire().await.unwrap();
    let directory = store::load_directory(&mut conn).await.unwrap();
    drop(conn);
    let client = directory.clients().next().unwrap().inn.to_string();
    ok &= time_page(&auditor, &format!("/log?client={client}")).await;
    ok &= time_page(&auditor, &format!("/mail/{mail}")).await;
    let admin = sign_in(&base, "admin@debet-service.example").await;
    ok &= time_page(&admin, "/admin/quarantine").await;
    ok &= time_page(&admin, "/admin/mailboxes").await;
    server.stop().await;
    app.store.close().await;
    ok
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: only a real bench run fills 100k mails.
    if !std::env::args().any(|a| a == "--bench") {
        println!("web benchmark: run with `cargo bench --bench web`");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ok = rt.block_on(run(
        "sqlite",
        format!("sqlite://{}", dir.path().join("web.db").display()),
        dir.path(),
    ));
    let server = std::env::var("TAXINBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("taxinbox_bench_web_{}", std::process::id());
    let created = rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/test"))
            .await
            .ok()?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .ok()?;
        Some(())
    });
    if created.is_some() {
        ok &= rt.block_on(run("postgres", format!("{server}/{name}"), dir.path()));
        rt.block_on(async {
            use sqlx::Connection as _;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{server}/test")).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    } else {
        println!("postgres: not reachable at {server}, skipped");
    }
    println!(
        "{}",
        if ok {
            "every page answered within 50 ms (p95)"
        } else {
            "some page took longer than 50 ms (p95)"
        }
    );
}
