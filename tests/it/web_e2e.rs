//! The web view in a real browser: headless Chromium driven through chromedriver (started by the test on a free
//! port) with fantoccini, against the daemon's router on 127.0.0.1 over a SQLite store with the corpus in it.
//! An accountant sees exactly their tasks and a task's mail, and is refused another's task by URL; an auditor
//! filters the log; an admin's playground shows the decision for a pasted mail. Screenshots of the main pages go
//! to `target/screenshots/`. Chromium and chromedriver come from Debian (`scripts/test-services`).

use crate::helpers::{project_root, Engine};
use crate::web::{
    task_ids, WebWorld, ACCOUNTANT, ADMIN, AUDITOR, MANAGER, OTHER_ACCOUNTANT, PASSWORD,
};
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
    start_driver_sized(None).await
}

/// A Chromium session; `phone` emulates a phone screen that many CSS pixels wide (device metrics, so the page's
/// viewport is exactly that wide whatever the window manager allows).
async fn start_driver_sized(phone: Option<u32>) -> (Driver, Client) {
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
    let mut options = serde_json::json!({
        "binary": chromium,
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,1000",
            format!("--user-data-dir={}", driver._profile.path().display()),
        ],
    });
    if let Some(width) = phone {
        options["mobileEmulation"] = serde_json::json!({
            "deviceMetrics": { "width": width, "height": 844, "pixelRatio": 1.0, "touch": true },
        });
    }
    caps.insert("goog:chromeOptions".into(), options);
    // chromedriver listens on loopback: plain HTTP.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
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

/// A screenshot the README shows: also written to `docs/screenshots/`.
async fn documented_screenshot(client: &Client, name: &str) {
    screenshot(client, name).await;
    let dir = project_root().join("docs").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        screenshots().join(format!("{name}.png")),
        dir.join(format!("{name}.png")),
    )
    .unwrap();
}

async fn sign_in(client: &Client, base: &str, email: &str) {
    client.goto(&format!("{base}/login")).await.unwrap();
    sign_in_here(client, email).await;
}

/// Fills in and sends the sign-in form of the page the browser is on.
async fn sign_in_here(client: &Client, email: &str) {
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
        assert!(row.text().await.unwrap().contains("требование ФНС"));
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

/// Runs SQL against the world's store (the test arranges a deadline or a queue).
async fn execute(world: &WebWorld, sql: &str) {
    let mut conn = world.app.app.store.acquire().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .expect(sql);
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_is_a_work_tool_for_accountants_managers_and_auditors_in_chromium() {
    let world = WebWorld::new(Engine::Sqlite).await;
    let base = world.base.clone();
    let today = chrono::Utc::now()
        .with_timezone(&world.app.app.settings.general.timezone)
        .date_naive();
    // One of the accountant's demand tasks is twelve days overdue; another task waits in the unassigned queue.
    let (demand_task, number): (i64, String) = {
        let mut conn = world.app.app.store.acquire().await.unwrap();
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.id, k.number FROM tasks t JOIN cases k ON k.id = t.case_id \
             WHERE t.assignee = '{ACCOUNTANT}' AND t.status = 'open' ORDER BY t.id LIMIT 1"
        )))
        .fetch_one(&mut *conn)
        .await
        .expect("the corpus gives the accountant an open demand task")
    };
    let overdue = today - chrono::Duration::days(12);
    execute(
        &world,
        &format!("UPDATE tasks SET due = '{overdue}' WHERE id = {demand_task}"),
    )
    .await;
    let queued = world
        .app
        .count(&format!(
            "SELECT MIN(id) FROM tasks WHERE status = 'open' AND assignee = '{OTHER_ACCOUNTANT}'"
        ))
        .await;
    execute(
        &world,
        &format!("UPDATE tasks SET assignee = NULL WHERE id = {queued}"),
    )
    .await;

    let (driver, client) = start_driver().await;

    // A link from a notification, opened while signed out, lands on its task after sign-in.
    let deep = format!("{base}/tasks/{demand_task}");
    client.goto(&deep).await.unwrap();
    client
        .wait()
        .for_element(Locator::Id("sign-in"))
        .await
        .unwrap();
    sign_in_here(&client, ACCOUNTANT).await;
    assert_eq!(client.current_url().await.unwrap().as_str(), deep);
    // The demand's page: number in the header, the deadline in one sentence, no raw codes.
    let header = text_of(&client, "#task-header").await;
    assert!(
        header.contains(&format!("Требование № {number}")),
        "{header}"
    );
    let sentence = text_of(&client, "#deadline-sentence").await;
    assert!(
        sentence.contains(&overdue.format("%d.%m.%Y").to_string()),
        "{sentence}"
    );
    let due = text_of(&client, "#due").await;
    assert!(due.contains("просрочено на 12 дн."), "{due}");
    documented_screenshot(&client, "task-demand").await;

    // The list: Russian dates, how overdue, no column repeating the accountant.
    client.goto(&format!("{base}/tasks")).await.unwrap();
    let row = text_of(&client, &format!("tr[data-task=\"{demand_task}\"]")).await;
    assert!(
        row.contains(&overdue.format("%d.%m.%Y").to_string()),
        "{row}"
    );
    assert!(row.contains("просрочено на 12 дн."), "{row}");
    let page = client.source().await.unwrap();
    assert!(!page.contains(&format!("<td class=\"who\">{ACCOUNTANT}")));
    assert!(
        !page.contains(&today.to_string()),
        "no ISO dates on the list"
    );
    documented_screenshot(&client, "tasks-desktop").await;

    // The search box finds the task by its demand number.
    fill(&client, "search", &number).await;
    click(&client, "apply-filters").await;
    // The task is on the page before the search too: wait for the answer itself, the list narrowed (bounded).
    let all = world.expected_task_ids(ACCOUNTANT).await.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let found = task_ids(&client.source().await.unwrap());
        if (found.contains(&demand_task) && found.len() < all)
            || std::time::Instant::now() > deadline
        {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(found.contains(&demand_task));
    assert!(found.len() < all);

    // Reassigning ends in the list with a confirmation, not a 403.
    client.goto(&deep).await.unwrap();
    client
        .find(Locator::Css(&format!(
            "#to option[value=\"{OTHER_ACCOUNTANT}\"]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&client, "reassign").await;
    let flash = text_of(&client, "#flash").await;
    assert!(
        flash.contains("передана") && flash.contains("Кузнецова"),
        "{flash}"
    );
    assert_ne!(text_of(&client, "h1").await, "403");
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/tasks"));
    client.close().await.unwrap();
    drop(driver);

    // On a phone the list is cards: nothing wider than the 390 px screen.
    let (phone_driver, phone) = start_driver_sized(Some(390)).await;
    sign_in(&phone, &base, ACCOUNTANT).await;
    phone.goto(&format!("{base}/tasks")).await.unwrap();
    let widths = phone
        .execute(
            "return [window.innerWidth, document.documentElement.scrollWidth];",
            vec![],
        )
        .await
        .unwrap();
    let inner = widths[0].as_i64().unwrap();
    let scroll = widths[1].as_i64().unwrap();
    assert_eq!(inner, 390, "the phone's viewport");
    assert!(
        scroll <= 390,
        "the list is {scroll} px wide on a 390 px phone"
    );
    documented_screenshot(&phone, "tasks-phone").await;
    phone.close().await.unwrap();
    drop(phone_driver);

    let (driver, client) = start_driver().await;
    // The manager sees the unassigned queue and assigns from it.
    sign_in(&client, &base, MANAGER).await;
    client
        .goto(&format!("{base}/tasks?queue=unassigned"))
        .await
        .unwrap();
    let row = format!("tr[data-task=\"{queued}\"]");
    client.wait().for_element(Locator::Css(&row)).await.unwrap();
    documented_screenshot(&client, "manager-queue").await;
    client
        .find(Locator::Css(&format!(
            "{row} select[name=to] option[value=\"{ACCOUNTANT}\"]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css(&format!("{row} button.assign-to")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = text_of(&client, "#flash").await;
    assert!(
        flash.contains(&format!("№ {queued}")) && flash.contains("Иванова"),
        "{flash}"
    );
    assert_eq!(
        world
            .app
            .count(&format!(
                "SELECT COUNT(*) FROM tasks WHERE id = {queued} AND assignee = '{ACCOUNTANT}'"
            ))
            .await,
        1
    );
    assert!(!task_ids(&client.source().await.unwrap()).contains(&queued));
    sign_out(&client, &base).await;

    // The auditor's log, and its CSV as Russian Excel opens it.
    sign_in(&client, &base, AUDITOR).await;
    client.goto(&format!("{base}/log")).await.unwrap();
    client
        .wait()
        .for_element(Locator::Id("log-total"))
        .await
        .unwrap();
    documented_screenshot(&client, "auditor-log").await;
    let csv = client
        .execute(
            "return fetch('/log/export?format=csv').then(r => r.arrayBuffer()).then(b => \
             Array.from(new Uint8Array(b.slice(0, 400))));",
            vec![],
        )
        .await
        .unwrap();
    let bytes: Vec<u8> = csv
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "a UTF-8 BOM");
    let text = String::from_utf8_lossy(&bytes[3..]);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("№ письма;Получено;Ящик;От;Тема"),
        "{header}"
    );

    client.close().await.unwrap();
    drop(driver);
    world.finish().await;
}
