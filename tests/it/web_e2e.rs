//! The web view in a real browser: headless Chromium driven through chromedriver (started by the test on a free
//! port) with fantoccini, against the daemon's router on 127.0.0.1 over a SQLite store with the corpus in it.
//! An accountant sees exactly their tasks and a task's mail, and is refused another's task by URL; an auditor
//! filters the log; an admin's playground shows the decision for a pasted mail. Screenshots of the main pages go
//! to `target/screenshots/`. Chromium and chromedriver come from Debian (`scripts/test-services`).

use crate::helpers::{project_root, Engine};
use crate::web::{task_ids, WebWorld, ACCOUNTANT, ADMIN, AUDITOR, OTHER_ACCOUNTANT, PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};

/// chromedriver, killed when the test ends however it ends.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn executable(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
        .map(|p| (*p).to_owned())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} is installed: run scripts/test-services (Debian chromium, chromium-driver)")
        })
}

/// How many times the test asks chromedriver whether it is up (100 ms apart) before giving up.
const DRIVER_START_TRIES: u32 = 150;

async fn start_driver() -> (Driver, Client) {
    let chromedriver = executable(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let chromium = executable(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let status = format!("{}/status", driver.url);
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..DRIVER_START_TRIES {
        if http.get(&status).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "chromedriver did not answer on {status}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    // Two rustls crypto providers are linked in (ring, aws-lc via fantoccini): name one for the process.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

fn screenshots() -> std::path::PathBuf {
    let dir = project_root().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(client: &Client, base: &str, email: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    fill(client, "email", email).await;
    fill(client, "password", PASSWORD).await;
    click(client, "sign-in").await;
    // Signed in: every page then shows the sign-out form.
    client
        .wait()
        .for_element(Locator::Css("form.logout"))
        .await
        .unwrap();
}

async fn sign_out(client: &Client, base: &str) {
    client.goto(&format!("{base}/tasks")).await.unwrap();
    client
        .find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("sign-in"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accountants_auditors_and_admins_use_the_web_view_in_chromium() {
    let world = WebWorld::new(Engine::Sqlite).await;
    let base = world.base.clone();
    let (driver, client) = start_driver().await;

    // Accountant: exactly their tasks, one task with its mail.
    sign_in(&client, &base, ACCOUNTANT).await;
    client.goto(&format!("{base}/tasks")).await.unwrap();
    let page = client.source().await.unwrap();
    assert_eq!(task_ids(&page), world.expected_task_ids(ACCOUNTANT).await);
    screenshot(&client, "tasks").await;
    let first = client.find(Locator::Css("tr[data-task] a")).await.unwrap();
    first.click().await.unwrap();
    let mail = client
        .wait()
        .for_element(Locator::Id("mail"))
        .await
        .unwrap();
    assert!(!mail.text().await.unwrap().trim().is_empty());
    client.find(Locator::Id("provenance")).await.unwrap();
    screenshot(&client, "task").await;

    // Another accountant's task by URL: refused.
    let theirs = {
        let mut conn = world.app.app.store.acquire().await.unwrap();
        taxinbox::store::list_tasks(
            &mut conn,
            &taxinbox::store::TaskFilter {
                assignee: Some(OTHER_ACCOUNTANT.to_owned()),
                open_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()[0]
            .id
    };
    client
        .goto(&format!("{base}/tasks/{theirs}"))
        .await
        .unwrap();
    let h1 = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Someone else's task answers as no task at all.
    assert_eq!(h1, "404");
    sign_out(&client, &base).await;

    // Auditor: filter the log by category.
    sign_in(&client, &base, AUDITOR).await;
    client.goto(&format!("{base}/log")).await.unwrap();
    client
        .find(Locator::Css(
            "select[name=category] option[value=tax_demand]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&client, "apply-filters").await;
    // The answer page comes back with the filter chosen.
    client
        .wait()
        .for_element(Locator::Css(
            "select[name=category] option[value=tax_demand][selected]",
        ))
        .await
        .unwrap();
    let rows = client
        .find_all(Locator::Css("#log tbody tr[data-mail]"))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(row.text().await.unwrap().contains("tax_demand"));
    }
    screenshot(&client, "log").await;
    sign_out(&client, &base).await;

    // Admin: the playground decides on a pasted mail, exactly as the pipeline does.
    sign_in(&client, &base, ADMIN).await;
    client
        .goto(&format!("{base}/admin/playground"))
        .await
        .unwrap();
    let mail = "From: Петров <petrov@example.org>\nTo: buh@debet-service.example\nSubject: Вопрос по счёту\n\
        Date: Mon, 02 Mar 2026 10:00:00 +0300\nMessage-ID: <playground-1@example.org>\n\
        Content-Type: text/plain; charset=utf-8\n\nДобрый день! Пришлите, пожалуйста, акт сверки.\n";
    fill(&client, "mail", mail).await;
    click(&client, "evaluate").await;
    let shown = client
        .wait()
        .for_element(Locator::Id("decision-category"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Browsers send a textarea with CRLF line ends.
    let expected = taxinbox::web::admin::try_mail(
        &world.app.pipeline().await,
        mail.replace('\n', "\r\n").as_bytes(),
    );
    let expected_text = match (&expected.category, &expected.kind) {
        (Some(c), Some(k)) => format!("{c}/{k}"),
        (Some(c), None) => c.clone(),
        _ => format!("карантин: {}", expected.error.clone().unwrap_or_default()),
    };
    assert_eq!(shown.trim(), expected_text);
    screenshot(&client, "playground").await;
    client
        .goto(&format!("{base}/admin/quarantine"))
        .await
        .unwrap();
    screenshot(&client, "quarantine").await;

    client.close().await.unwrap();
    drop(driver);
    world.finish().await;
}

/// Types `text` into the element with id `id`.
async fn fill(client: &Client, id: &str, text: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element with id `id`.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}
