//! The web view over plain HTTP, on both engines: a real server on 127.0.0.1 (the daemon's router with the web
//! view mounted) over a store loaded with the corpus directory and mail. Roles and 403s, CSRF on every POST,
//! the sign-in rate limit, task done/reassign in the hash-chained log, the auditor's filters and export, the ICS
//! feed, the admin's playground and reprocess.

use crate::helpers::{corpus, on_both_engines, Engine, TestApp};
use std::collections::BTreeSet;
use std::sync::Arc;
use taxinbox::store;

pub const ADMIN: &str = "admin@debet-service.example";
pub const AUDITOR: &str = "auditor@debet-service.example";
pub const ACCOUNTANT: &str = "ivanova@debet-service.example";
pub const OTHER_ACCOUNTANT: &str = "kuznetsova@debet-service.example";
/// Heads the team of both accountants above (`manager` in the corpus's accountants.csv).
pub const MANAGER: &str = "belova@debet-service.example";
pub const PASSWORD: &str = "пароль-для-тестов-42";

/// A test's web server over its own store with the corpus in it.
pub struct WebWorld {
    pub app: TestApp,
    /// The web view the server runs (its counters: passwords checked).
    pub web: taxinbox::web::Web,
    pub server: taxinbox::http::Server,
    pub base: String,
}

impl WebWorld {
    pub async fn new(engine: Engine) -> WebWorld {
        WebWorld::with(engine, "", &[&corpus().join("mail")]).await
    }

    /// A world with `extra` configuration (e.g. `[[sinks]]`, registered as `App::open` does before any mail) over
    /// the store holding `mail` (files or folders).
    pub async fn with(engine: Engine, extra: &str, mail: &[&std::path::Path]) -> WebWorld {
        let app = TestApp::with_extra_config(
            engine,
            &format!(
                "[web]\nadmins = [\"{ADMIN}\"]\nauditors = [\"{AUDITOR}\"]\nsecure_cookies = false\n{extra}"
            ),
        )
        .await;
        taxinbox::notify::sink::register(
            &app.app.store,
            &app.app.settings.sinks,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        app.import_corpus_register().await;
        app.ingest(mail, false).await;
        for who in [ADMIN, AUDITOR, ACCOUNTANT, OTHER_ACCOUNTANT, MANAGER] {
            taxinbox::web::set_password(&app.app.store, &app.app.settings.web, who, PASSWORD)
                .await
                .unwrap();
        }
        let metrics = Arc::new(taxinbox::metrics::Metrics::new());
        let web = taxinbox::web::Web::new(
            app.app.store.clone(),
            app.app.settings.clone(),
            app.pipeline().await,
            metrics.clone(),
        );
        let server = taxinbox::http::Server::start_with_web(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            Some(web.clone()),
        )
        .await
        .unwrap();
        let base = format!("http://{}", server.address);
        WebWorld {
            app,
            web,
            server,
            base,
        }
    }

    pub async fn finish(self) {
        self.server.stop().await;
        self.app.cleanup().await;
    }

    /// The open tasks the store lists for `person` and those they stand in for today (what their page must show).
    pub async fn expected_task_ids(&self, person: &str) -> BTreeSet<i64> {
        let mut conn = self.app.app.store.acquire().await.unwrap();
        let directory = store::load_directory(&mut conn).await.unwrap();
        let today = chrono::Utc::now()
            .with_timezone(&self.app.app.settings.general.timezone)
            .date_naive();
        let mut ids = BTreeSet::new();
        let mut people = vec![person.to_owned()];
        people.extend(
            directory
                .accountants()
                .filter(|a| a.manager.as_deref() == Some(person))
                .map(|a| a.email.clone()),
        );
        people.extend(
            directory
                .absences()
                .iter()
                .filter(|a| a.covers(today) && a.substitute.as_deref() == Some(person))
                .map(|a| a.email.clone()),
        );
        for p in people {
            let filter = store::TaskFilter {
                assignee: Some(p),
                open_only: true,
                ..Default::default()
            };
            ids.extend(
                store::list_tasks(&mut conn, &filter)
                    .await
                    .unwrap()
                    .iter()
                    .map(|t| t.id),
            );
        }
        for a in directory
            .absences()
            .iter()
            .filter(|a| a.covers(today) && a.substitute.is_none())
        {
            let filter = store::TaskFilter {
                assignee: Some(a.email.clone()),
                open_only: true,
                ..Default::default()
            };
            for t in store::list_tasks(&mut conn, &filter).await.unwrap() {
                let backup = t
                    .client_inn
                    .as_deref()
                    .and_then(|inn| directory.client(inn))
                    .and_then(|c| c.backup_accountant.clone());
                if backup.as_deref() == Some(person) {
                    ids.insert(t.id);
                }
            }
        }
        ids
    }
}

/// A browser-less client: keeps the cookies the server sets, follows no redirects.
pub struct Client {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
    /// The CSRF token of the signed-in session (read from a page).
    pub csrf: String,
}

pub fn attribute_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let rest = &html[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The `data-task="…"` ids of a page.
pub fn task_ids(html: &str) -> BTreeSet<i64> {
    html.split("data-task=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: Default::default(),
            csrf: String::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let c = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
            if c.value().is_empty() {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    pub async fn get_response(&mut self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Signs in; the status of the sign-in POST (303 on success).
    pub async fn sign_in(&mut self, email: &str, password: &str) -> u16 {
        let (status, page) = self.get("/login").await;
        assert_eq!(status, 200);
        let token = attribute_after(&page, "name=\"token\" value=\"").unwrap();
        let (status, _) = self
            .post(
                "/login",
                &[("email", email), ("password", password), ("token", &token)],
            )
            .await;
        if status == 303 {
            let (s, page) = self.get("/tasks").await;
            assert_eq!(s, 200, "{page}");
            self.csrf = attribute_after(&page, "name=\"csrf\" value=\"").unwrap();
        }
        status
    }
}

/// An open task of `person` whose mail is kept.
async fn a_task_of(world: &WebWorld, person: &str) -> store::Task {
    let mut conn = world.app.app.store.acquire().await.unwrap();
    store::list_tasks(
        &mut conn,
        &store::TaskFilter {
            assignee: Some(person.to_owned()),
            open_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .find(|t| t.message.is_some())
    .unwrap_or_else(|| panic!("the corpus gives {person} a task from a mail"))
}

on_both_engines!(
    an_accountant_sees_exactly_their_tasks_and_is_refused_anyone_elses,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(
            c.get("/tasks").await.0,
            303,
            "no session: to the sign-in page"
        );
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let (status, page) = c.get("/tasks").await;
        assert_eq!(status, 200);
        let expected = world.expected_task_ids(ACCOUNTANT).await;
        assert!(!expected.is_empty());
        assert_eq!(task_ids(&page), expected);

        let mine = a_task_of(&world, ACCOUNTANT).await;
        let (status, page) = c.get(&format!("/tasks/{}", mine.id)).await;
        assert_eq!(status, 200);
        assert!(page.contains(&mine.title.replace('"', "&quot;")) || page.contains("task-title"));
        assert!(page.contains("id=\"mail\""), "the task shows its mail");

        // Attachments of the accountant's mail download as attachments, never rendered.
        let mut downloaded = 0;
        for id in &expected {
            let (_, page) = c.get(&format!("/tasks/{id}")).await;
            let Some(href) = page
                .split("<a href=\"")
                .skip(1)
                .filter_map(|s| s.split('"').next())
                .find(|h| h.starts_with("/mail/") && h.contains("/attachments/"))
                .map(str::to_owned)
            else {
                continue;
            };
            let r = c.get_response(&href).await;
            assert_eq!(r.status().as_u16(), 200, "{href}");
            let disposition = r.headers()[reqwest::header::CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                disposition.starts_with("attachment; filename=\""),
                "{disposition}"
            );
            assert!(!disposition.contains('/'));
            assert!(!r.bytes().await.unwrap().is_empty());
            downloaded += 1;
            if downloaded == 3 {
                break;
            }
        }
        assert!(
            downloaded > 0,
            "the corpus gives the accountant mail with attachments"
        );

        let theirs = a_task_of(&world, OTHER_ACCOUNTANT).await;
        assert!(!expected.contains(&theirs.id));
        // Someone else's task answers as a task that does not exist: ids tell nothing about what exists.
        let missing = world.app.count("SELECT MAX(id) + 1000 FROM tasks").await;
        let (status, page) = c.get(&format!("/tasks/{}", theirs.id)).await;
        assert_eq!(status, 404);
        assert_eq!((status, page), c.get(&format!("/tasks/{missing}")).await);
        assert_eq!(
            c.get(&format!("/mail/{}/attachments/0", theirs.message.unwrap()))
                .await
                .0,
            404
        );
        let csrf = c.csrf.clone();
        assert_eq!(
            c.post(&format!("/tasks/{}/done", theirs.id), &[("csrf", &csrf)])
                .await
                .0,
            404
        );
        // Not an auditor's or admin's page either.
        assert_eq!(c.get("/log").await.0, 403);
        assert_eq!(c.get("/admin/quarantine").await.0, 403);
        // Someone else's mail answers exactly as a mail that does not exist (a 403 would say that it does).
        let missing_mail = world.app.count("SELECT MAX(id) + 1000 FROM messages").await;
        let (status, theirs_page) = c.get(&format!("/mail/{}", theirs.message.unwrap())).await;
        assert_eq!(status, 404);
        assert_eq!(
            (status, theirs_page),
            c.get(&format!("/mail/{missing_mail}")).await
        );
        // Their own mail opens as its task.
        let r = c
            .get_response(&format!("/mail/{}", mine.message.unwrap()))
            .await;
        assert_eq!(r.status().as_u16(), 303);
        assert!(r.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/tasks/"));
        world.finish().await;
    }
);

on_both_engines!(
    posts_need_the_sessions_csrf_token_and_task_events_go_to_the_chained_log,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let task = a_task_of(&world, ACCOUNTANT).await;
        let done = format!("/tasks/{}/done", task.id);
        assert_eq!(c.post(&done, &[]).await.0, 403, "no token");
        assert_eq!(
            c.post(&done, &[("csrf", "0123")]).await.0,
            403,
            "a wrong token"
        );
        let status_of =
            |id: i64| format!("SELECT COUNT(*) FROM tasks WHERE id = {id} AND status = 'open'");
        assert_eq!(
            world.app.count(&status_of(task.id)).await,
            1,
            "refused posts change nothing"
        );
        let csrf = c.csrf.clone();
        assert_eq!(c.post(&done, &[("csrf", &csrf)]).await.0, 303);
        assert_eq!(world.app.count(&status_of(task.id)).await, 0);
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE event = 'task_done' AND message = {}",
                    task.message.unwrap()
                ))
                .await,
            1
        );
        assert_eq!(c.post(&done, &[("csrf", &csrf)]).await.0, 400, "done twice");

        let other = store::list_tasks(
            &mut world.app.app.store.acquire().await.unwrap(),
            &store::TaskFilter {
                assignee: Some(ACCOUNTANT.to_owned()),
                open_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
        let (status, _) = c
            .post(
                &format!("/tasks/{}/reassign", other.id),
                &[("csrf", &csrf), ("to", OTHER_ACCOUNTANT)],
            )
            .await;
        assert_eq!(status, 303);
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE id = {} AND assignee = '{OTHER_ACCOUNTANT}'",
                    other.id
                ))
                .await,
            1
        );
        assert_eq!(
            world
                .app
                .count("SELECT COUNT(*) FROM audit_log WHERE event = 'task_reassigned'")
                .await,
            1
        );
        // The task is no longer the accountant's to see (the same answer as for no such task).
        assert_eq!(c.get(&format!("/tasks/{}", other.id)).await.0, 404);
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let v = taxinbox::audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        drop(conn);

        // Signing out ends the session for good.
        assert_eq!(c.post("/logout", &[("csrf", &csrf)]).await.0, 303);
        assert_eq!(c.get("/tasks").await.0, 303);
        world.finish().await;
    }
);

on_both_engines!(
    failed_sign_ins_are_limited_per_account_and_logged,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        for _ in 0..taxinbox::web::auth::MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(c.sign_in(ACCOUNTANT, "wrong password").await, 200);
        }
        // Even the right password waits now: the limit's last attempt started a delay (not a lockout for the
        // window; `a_correct_password_signs_in_after_the_delay_of_fifty_concurrent_wrong_ones` shows the end).
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 429);
        // Another account from the same address still signs in (the address limit is higher).
        assert_eq!(c.sign_in(OTHER_ACCOUNTANT, PASSWORD).await, 303);
        assert_eq!(
            world
                .app
                .count("SELECT COUNT(*) FROM web_login_failures")
                .await,
            taxinbox::web::auth::MAX_FAILURES_PER_ACCOUNT
        );
        assert_eq!(
            world
                .app
                .count("SELECT COUNT(*) FROM audit_log WHERE event = 'web_sign_in_failed'")
                .await,
            taxinbox::web::auth::MAX_FAILURES_PER_ACCOUNT
        );
        // A sign-in form posted without its token is refused.
        let (status, _) = Client::new(&world.base)
            .post("/login", &[("email", ACCOUNTANT), ("password", PASSWORD)])
            .await;
        assert_eq!(status, 403);
        // Unknown people cannot sign in and get the same answer as a wrong password.
        assert_eq!(
            Client::new(&world.base)
                .sign_in("stranger@example.org", PASSWORD)
                .await,
            200
        );
        // Per address: failures spread over many accounts stop every sign-in from that address too.
        // So far: the accountant's failures and the stranger's one.
        let so_far = taxinbox::web::auth::MAX_FAILURES_PER_ACCOUNT + 1;
        for n in 0..taxinbox::web::auth::MAX_FAILURES_PER_IP - so_far {
            let who = format!(
                "guess{}@example.org",
                n / taxinbox::web::auth::MAX_FAILURES_PER_ACCOUNT
            );
            assert_eq!(Client::new(&world.base).sign_in(&who, "x").await, 200);
        }
        assert_eq!(
            Client::new(&world.base).sign_in(AUDITOR, PASSWORD).await,
            429
        );
        world.finish().await;
    }
);

on_both_engines!(
    an_auditor_filters_and_exports_the_log_but_changes_nothing,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(AUDITOR, PASSWORD).await, 303);
        let (status, page) = c.get("/log?category=tax_demand").await;
        assert_eq!(status, 200);
        let shown: Vec<&str> = page.split("data-mail=\"").skip(1).collect();
        let demands = world
            .app
            .count("SELECT COUNT(*) FROM messages WHERE category = 'tax_demand'")
            .await;
        assert_eq!(
            shown.len() as i64,
            demands.min(taxinbox::web::auditor::PAGE_SIZE)
        );
        assert!(!page.contains("<td>client_request</td>"));
        // Paging walks the whole filtered log once.
        let mut seen = shown.len() as i64;
        let mut next =
            attribute_after(&page, "id=\"next-page\" href=\"").map(|h| h.replace("&amp;", "&"));
        for _ in 0..100 {
            let Some(href) = next.take() else { break };
            let (_, page) = c.get(&href).await;
            seen += page.split("data-mail=\"").count() as i64 - 1;
            next =
                attribute_after(&page, "id=\"next-page\" href=\"").map(|h| h.replace("&amp;", "&"));
        }
        assert_eq!(seen, demands);

        let r = c
            .get_response("/log/export?format=csv-rfc&category=tax_demand")
            .await;
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment"));
        let csv = r.text().await.unwrap();
        let mut expected = Vec::new();
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let rows = taxinbox::audit::export_rows(
            &mut conn,
            &store::MailFilter {
                category: Some("tax_demand".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        taxinbox::audit::write_csv(&mut expected, &rows).unwrap();
        assert_eq!(
            csv.as_bytes(),
            expected.as_slice(),
            "the csv-rfc export is audit export's CSV"
        );
        // The default CSV is the one Russian Excel opens: a BOM, `;`, Russian headers, one line per mail.
        let excel = c
            .get_response("/log/export?format=csv&category=tax_demand")
            .await;
        assert_eq!(excel.status().as_u16(), 200);
        assert_eq!(excel.headers()[reqwest::header::CACHE_CONTROL], "no-store");
        let excel = excel.bytes().await.unwrap();
        assert!(excel.starts_with("\u{feff}".as_bytes()));
        let excel = String::from_utf8(excel[3..].to_vec()).unwrap();
        let header = excel.lines().next().unwrap();
        assert!(
            header.starts_with("№ письма;Получено;Ящик;От;Тема;ИНН клиента;Клиент;Категория"),
            "{header}"
        );
        assert_eq!(excel.matches("\r\n").count(), rows.len() + 1);
        assert!(excel.contains(";требование ФНС;"));
        // The mailbox filter narrows the export in the store's query, as it narrows the page.
        let jsonl_lines = |body: String| body.lines().count();
        let mailbox = &rows[0].mailbox;
        let same = c
            .get_response(&format!(
                "/log/export?format=jsonl&category=tax_demand&mailbox={mailbox}"
            ))
            .await;
        assert_eq!(jsonl_lines(same.text().await.unwrap()), rows.len());
        let other = c
            .get_response("/log/export?format=jsonl&category=tax_demand&mailbox=no-such-box")
            .await;
        assert_eq!(jsonl_lines(other.text().await.unwrap()), 0);

        let (status, page) = c.get("/verify").await;
        assert_eq!(status, 200);
        assert!(page.contains("class=\"ok\""), "{page}");
        let id = rows[0].id;
        let (status, page) = c.get(&format!("/mail/{id}")).await;
        assert_eq!(status, 200);
        assert!(page.contains("mail_processed") || page.contains("mail_linked"));
        // Its headers decoded for reading: the subject as the log stores it, no encoded words left.
        let decoded = page
            .split("id=\"decoded-headers\"")
            .nth(1)
            .and_then(|t| t.split("</table>").next())
            .expect("the mail page shows its headers decoded");
        let subject = rows[0]
            .subject
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            decoded.contains(&format!(
                "<th scope=\"row\">Subject</th><td>{}</td>",
                minijinja_escape(&subject)
            )),
            "{decoded}"
        );
        assert!(!decoded.to_lowercase().contains("=?utf-8?"), "{decoded}");

        // Read-only: no task changes, no admin pages.
        let task = a_task_of(&world, ACCOUNTANT).await;
        let csrf = c.csrf.clone();
        assert_eq!(
            c.post(&format!("/tasks/{}/done", task.id), &[("csrf", &csrf)])
                .await
                .0,
            403
        );
        assert_eq!(c.get("/admin/playground").await.0, 403);
        drop(conn);
        world.finish().await;
    }
);

on_both_engines!(
    an_accountants_calendar_feed_lists_their_open_tasks_under_a_regenerable_token,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let csrf = c.csrf.clone();
        // The link is shown once, on creation; the task page only says that there is one.
        let (status, page) = c.post("/me/ics", &[("csrf", &csrf)]).await;
        assert_eq!(status, 200);
        let marker = "<code id=\"ics-url\">";
        let start = page.find(marker).expect("the page shows the feed link") + marker.len();
        let (_, tasks_page) = c.get("/tasks").await;
        assert!(!tasks_page.contains(marker) && tasks_page.contains("id=\"ics-created\""));
        let url = page[start..].split('<').next().unwrap().to_owned();
        let feed = Client::new(&world.base).get_response(&url).await;
        assert_eq!(feed.status().as_u16(), 200);
        assert!(feed.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/calendar"));
        let text = feed.text().await.unwrap();
        let open = world
            .app
            .count(&format!(
                "SELECT COUNT(*) FROM tasks WHERE assignee = '{ACCOUNTANT}' AND status = 'open'"
            ))
            .await;
        assert_eq!(text.matches("BEGIN:VEVENT").count() as i64, open);
        // Named after its owner, each event with a reminder the day before and its client's name.
        assert!(
            text.contains("X-WR-CALNAME:taxinbox — Иванова Ольга Петровна"),
            "{text}"
        );
        assert_eq!(text.matches("BEGIN:VALARM").count() as i64, open);
        assert_eq!(text.matches("TRIGGER:-PT15H").count() as i64, open);
        assert!(text.contains("DESCRIPTION:Клиент: "));
        // A new token retires the old link.
        let (status, page) = c.post("/me/ics", &[("csrf", &csrf)]).await;
        assert_eq!(status, 200);
        assert_eq!(Client::new(&world.base).get(&url).await.0, 404);
        // And the new one can be revoked.
        let start = page.find(marker).expect("the new link") + marker.len();
        let url = page[start..].split('<').next().unwrap().to_owned();
        assert_eq!(Client::new(&world.base).get(&url).await.0, 200);
        assert_eq!(c.post("/me/ics/revoke", &[("csrf", &csrf)]).await.0, 303);
        assert_eq!(Client::new(&world.base).get(&url).await.0, 404);
        world.finish().await;
    }
);

on_both_engines!(
    an_admins_playground_decides_without_storing_and_reprocess_uses_the_pipeline,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ADMIN, PASSWORD).await, 303);
        let before = world.app.count("SELECT COUNT(*) FROM messages").await;
        let entries = world.app.count("SELECT COUNT(*) FROM audit_log").await;
        let mail = std::fs::read_to_string(corpus().join("mail").join("0001.eml")).unwrap();
        let csrf = c.csrf.clone();
        let (status, page) = post_playground(
            &c,
            &world.base,
            &[("csrf", &csrf), ("mail", &mail), ("rules_dir", "")],
        )
        .await;
        assert_eq!(status, 200);
        assert!(page.contains("id=\"decision-category\""), "{page}");
        assert!(page.contains("id=\"trace\""));
        assert_eq!(
            world.app.count("SELECT COUNT(*) FROM messages").await,
            before
        );
        assert_eq!(
            world.app.count("SELECT COUNT(*) FROM audit_log").await,
            entries
        );

        for page in [
            "/admin/quarantine",
            "/admin/rules",
            "/admin/mailboxes",
            "/log",
            "/tasks",
        ] {
            let (status, body) = c.get(page).await;
            assert_eq!(status, 200, "{page}: {body}");
        }
        let (_, rules) = c.get("/admin/rules").await;
        assert!(rules.contains("sha256:"));
        // A refused form comes back with what it held: the pasted mail and the folder typed, beside the reason.
        let subject_line = mail
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("the corpus mail has a subject")
            .to_owned();
        for (fields, why) in [
            (
                vec![
                    ("csrf", csrf.as_str()),
                    ("mail", mail.as_str()),
                    ("rules_dir", "../elsewhere"),
                ],
                "",
            ),
            (
                vec![
                    ("csrf", "stale-token"),
                    ("mail", mail.as_str()),
                    ("rules_dir", ""),
                ],
                "Форма устарела",
            ),
        ] {
            let (status, page) = post_playground(&c, &world.base, &fields).await;
            assert_eq!(status, 400, "{page}");
            assert!(page.contains("id=\"form-error\""), "{page}");
            assert!(page.contains(why));
            assert!(
                page.contains(&minijinja_escape(&subject_line)),
                "the pasted mail is kept: {page}"
            );
            assert!(page.contains("form class=\"logout\""), "the menu stays");
            if fields[2].1 == "../elsewhere" {
                assert!(page.contains(&format!("value=\"{}\"", minijinja_escape("../elsewhere"))));
            }
            assert!(!page.contains("id=\"decision-category\""));
        }
        assert_eq!(
            world.app.count("SELECT COUNT(*) FROM messages").await,
            before
        );

        // Reprocess: a stored mail without tasks goes through the current rules again, logged as such.
        let id = world
            .app
            .count("SELECT MIN(m.id) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.message = m.id)")
            .await;
        let csrf = c.csrf.clone();
        assert_eq!(
            c.post(&format!("/admin/reprocess/{id}"), &[("csrf", &csrf)])
                .await
                .0,
            303
        );
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM audit_log WHERE event = 'mail_reprocessed' AND message = {id}"
                ))
                .await,
            1
        );
        world.finish().await;
    }
);

/// Posts the playground form as a browser does (multipart/form-data); the status and the page.
async fn post_playground(c: &Client, base: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let boundary = "----taxinbox-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let r = c
        .http
        .post(format!("{base}/admin/playground"))
        .header(reqwest::header::COOKIE, c.cookie_header())
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Text as the templates escape it (minijinja's HTML escaping).
fn minijinja_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_password_reads_standard_input_and_refuses_people_the_firm_does_not_know() {
    use std::io::Write as _;
    let app =
        TestApp::with_extra_config(Engine::Sqlite, &format!("[web]\nadmins = [\"{ADMIN}\"]\n"))
            .await;
    app.import_corpus_register().await;
    let run = |email: &str, input: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_taxinbox"))
            .args([
                "--config",
                app.config.to_str().unwrap(),
                "user",
                "set-password",
                email,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(ACCOUNTANT, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(ADMIN, &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("stranger@example.org", &format!("{PASSWORD}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stranger@example.org"));
    let out = run(OTHER_ACCOUNTANT, "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
    let mut conn = app.app.store.acquire().await.unwrap();
    let hash = store::password_hash(&mut conn, ACCOUNTANT)
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(PASSWORD));
    assert!(store::password_hash(&mut conn, OTHER_ACCOUNTANT)
        .await
        .unwrap()
        .is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM web_users").await, 2);
    drop(conn);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documents_demands_list_is_the_answer_tasks_checklist_on_its_page_and_in_its_mail() {
    // Corpus 0111 (1С-Отчетность): "…необходимо представить следующие документы: товарно-транспортные накладные;
    // договоры поставки с приложениями и спецификациями."
    let world = WebWorld::with(Engine::Sqlite, "", &[&corpus().join("mail/0111.eml")]).await;
    let app = &world.app;
    assert_eq!(app.count("SELECT COUNT(*) FROM case_checklist").await, 2);
    let answer = app
        .count("SELECT id FROM tasks WHERE step = 'answer'")
        .await;
    let acknowledge = app
        .count("SELECT id FROM tasks WHERE step = 'acknowledge'")
        .await;
    let mut admin = Client::new(&world.base);
    assert_eq!(admin.sign_in(ADMIN, PASSWORD).await, 303);
    let (status, page) = admin.get(&format!("/tasks/{answer}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Что запрошено"), "{page}");
    assert!(page.contains("товарно-транспортные накладные"), "{page}");
    assert!(
        page.contains("договоры поставки с приложениями и спецификациями"),
        "{page}"
    );
    // The acknowledgement is no place for the list.
    let (_, page) = admin.get(&format!("/tasks/{acknowledge}")).await;
    assert!(!page.contains("Что запрошено"));

    // Ticked and unticked, each logged with who did it.
    let csrf = admin.csrf.clone();
    let (status, _) = admin
        .post(
            &format!("/tasks/{answer}/checklist/1"),
            &[("csrf", &csrf), ("done", "1")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page) = admin.get(&format!("/tasks/{answer}")).await;
    assert!(page.contains("class=\"done\""), "{page}");
    assert!(page.contains(ADMIN), "{page}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM case_checklist WHERE done_by IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE event = 'checklist_ticked'")
            .await,
        1
    );
    let (status, _) = admin
        .post(
            &format!("/tasks/{answer}/checklist/1"),
            &[("csrf", &csrf), ("done", "0")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM case_checklist WHERE done_by IS NOT NULL")
            .await,
        0
    );

    // The task mail of the answer lists it too; the acknowledgement's does not.
    let outbox = app.path("outbox");
    taxinbox::notify::send_pending(
        &app.app.store,
        &taxinbox::notify::Delivery::Files(outbox.clone()),
        "taxinbox@debet-service.example",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let mails: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 2);
    let decoded: Vec<String> = mails
        .iter()
        .map(|m| {
            let parsed = taxinbox::mail::parse(m.as_bytes()).unwrap();
            parsed.text
        })
        .collect();
    let with_list: Vec<_> = decoded
        .iter()
        .filter(|t| {
            t.contains("Что запрошено:\n1. товарно-транспортные накладные\n2. договоры поставки")
        })
        .collect();
    assert_eq!(with_list.len(), 1, "{decoded:#?}");
    world.finish().await;
}

/// The `Location` of an answer.
fn location(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs in with a `next` of its own; the `Location` the sign-in answers with.
async fn sign_in_then(base: &str, next: &str) -> String {
    let mut c = Client::new(base);
    let (_, page) = c.get("/login").await;
    let token = attribute_after(&page, "name=\"token\" value=\"").unwrap();
    let r = c
        .http
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, c.cookie_header())
        .form(&[
            ("email", ACCOUNTANT),
            ("password", PASSWORD),
            ("token", token.as_str()),
            ("next", next),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "{next}");
    location(&r)
}

on_both_engines!(
    a_deep_link_returns_after_sign_in_but_only_to_a_local_path,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mine = a_task_of(&world, ACCOUNTANT).await;
        let path = format!("/tasks/{}?done=0", mine.id);
        // Signed out, the link leads to the sign-in page carrying the way back …
        let r = Client::new(&world.base).get_response(&path).await;
        assert_eq!(r.status().as_u16(), 303);
        let to_login = location(&r);
        assert_eq!(
            to_login,
            format!("/login?next=%2Ftasks%2F{}%3Fdone%3D0", mine.id)
        );
        let (status, page) = Client::new(&world.base).get(&to_login).await;
        assert_eq!(status, 200);
        // (minijinja writes `/` in attributes as `&#x2f;`.)
        assert!(page.replace("&#x2f;", "/").contains(&format!(
            "name=\"next\" value=\"/tasks/{}?done=0\"",
            mine.id
        )));
        // … and signing in goes there.
        assert_eq!(sign_in_then(&world.base, &path).await, path);
        // Anything that is not a path on this server goes to the start page instead.
        for hostile in [
            "//evil.example/tasks",
            "http://evil.example/",
            "https:evil.example",
            "/\\evil.example",
            "\\\\evil.example\\x",
            "/tasks\\..\\..\\evil",
            "javascript:alert(1)",
            "tasks",
        ] {
            assert_eq!(sign_in_then(&world.base, hostile).await, "/", "{hostile}");
            let (_, page) = Client::new(&world.base)
                .get(&format!(
                    "/login?next={}",
                    form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>()
                ))
                .await;
            assert!(!page.contains("name=\"next\""), "{hostile}");
        }
        world.finish().await;
    }
);

on_both_engines!(
    signed_in_pages_exports_and_feeds_are_never_cached,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let mine = a_task_of(&world, ACCOUNTANT).await;
        let csrf = c.csrf.clone();
        let (_, page) = c.post("/me/ics", &[("csrf", &csrf)]).await;
        let marker = "<code id=\"ics-url\">";
        let start = page.find(marker).unwrap() + marker.len();
        let feed = page[start..].split('<').next().unwrap().to_owned();
        for path in [
            "/tasks".to_owned(),
            format!("/tasks/{}", mine.id),
            "/tasks?queue=unassigned".to_owned(),
            feed,
            "/no/such/page".to_owned(),
        ] {
            let r = c.get_response(&path).await;
            assert_eq!(
                r.headers()[reqwest::header::CACHE_CONTROL],
                "no-store",
                "{path}"
            );
        }
        let mut auditor = Client::new(&world.base);
        assert_eq!(auditor.sign_in(AUDITOR, PASSWORD).await, 303);
        for path in ["/log", "/log/export?format=csv", "/log/export?format=jsonl"] {
            let r = auditor.get_response(path).await;
            assert_eq!(r.status().as_u16(), 200, "{path}");
            assert_eq!(
                r.headers()[reqwest::header::CACHE_CONTROL],
                "no-store",
                "{path}"
            );
        }
        // The stylesheet is the same for everyone and may be kept.
        let r = c.get_response("/static/style.css").await;
        assert_ne!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
        world.finish().await;
    }
);

on_both_engines!(
    errors_are_russian_pages_inside_the_layout,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        for path in ["/tasks/abc", "/no/such/page", "/tasks/99999999"] {
            let (status, page) = c.get(path).await;
            assert_eq!(status, 404, "{path}");
            assert!(page.contains("<h1>404</h1>"), "{path}: {page}");
            assert!(page.contains("Такой страницы нет"), "{path}");
            assert!(
                page.contains("form class=\"logout\""),
                "{path}: the menu stays"
            );
            assert!(
                !page.contains("Invalid URL") && !page.contains("Cannot parse"),
                "{path}"
            );
        }
        let (status, page) = c.get("/log").await;
        assert_eq!(status, 403);
        assert!(page.contains("Нет доступа") && page.contains("form class=\"logout\""));
        let (status, page) = c.get("/tasks?kind=nonsense").await;
        assert_eq!(status, 400);
        assert!(page.contains("Вид задачи") && page.contains("form class=\"logout\""));
        // A mistyped filter keeps what was typed: the log's form comes back filled, with the reason.
        let mut auditor = Client::new(&world.base);
        assert_eq!(auditor.sign_in(AUDITOR, PASSWORD).await, 303);
        let (status, page) = auditor
            .get("/log?from=2026-13-45&q=%D0%B0%D0%BA%D1%82&mailbox=payroll")
            .await;
        assert_eq!(status, 400);
        assert!(page.contains("id=\"form-error\"") && page.contains("ГГГГ-ММ-ДД"));
        assert!(page.contains("value=\"акт\"") && page.contains("value=\"payroll\""));
        assert!(page.contains("value=\"2026-13-45\""));
        assert!(page.contains("form class=\"logout\""));
        // Signed out, an unknown page is still a page, with the way to sign in.
        let (status, page) = Client::new(&world.base).get("/no/such/page").await;
        assert_eq!(status, 404);
        assert!(page.contains("Ко входу"));
        world.finish().await;
    }
);

on_both_engines!(
    done_says_so_offers_undo_and_records_who_and_when,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let task = a_task_of(&world, ACCOUNTANT).await;
        let csrf = c.csrf.clone();
        let r = c
            .http
            .post(format!("{}/tasks/{}/done", world.base, task.id))
            .header(reqwest::header::COOKIE, c.cookie_header())
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        let back = location(&r);
        assert_eq!(back, format!("/tasks/{}?done=1#flash", task.id));
        let (status, page) = c.get(back.trim_end_matches("#flash")).await;
        assert_eq!(status, 200);
        assert!(page.contains("id=\"flash\"") && page.contains("Задача отмечена выполненной"));
        assert!(
            page.contains("Иванова Ольга Петровна"),
            "who marked it done"
        );
        assert!(page.contains("id=\"undo\""));
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE id = {} AND done_by = '{ACCOUNTANT}' AND done_at IS NOT NULL",
                    task.id
                ))
                .await,
            1
        );
        // Undo: open again, as before, and in the log.
        let (status, _) = c
            .post(&format!("/tasks/{}/reopen", task.id), &[("csrf", &csrf)])
            .await;
        assert_eq!(status, 303);
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE id = {} AND status = 'open' AND done_by IS NULL",
                    task.id
                ))
                .await,
            1
        );
        assert_eq!(
            world
                .app
                .count("SELECT COUNT(*) FROM audit_log WHERE event = 'task_reopened'")
                .await,
            1
        );
        assert_eq!(
            c.post(&format!("/tasks/{}/reopen", task.id), &[("csrf", &csrf)])
                .await
                .0,
            400,
            "an open task is not reopened"
        );
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let v = taxinbox::audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        drop(conn);
        world.finish().await;
    }
);

on_both_engines!(
    the_task_list_filters_searches_and_fixes_the_no_client_link,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(AUDITOR, PASSWORD).await, 303);
        let all = task_ids(&c.get("/tasks").await.1);
        let without_client = world
            .app
            .count("SELECT COUNT(*) FROM tasks WHERE status = 'open' AND client_inn IS NULL")
            .await;
        let (status, page) = c.get("/tasks?client=none").await;
        assert_eq!(status, 200);
        let shown = task_ids(&page);
        assert_eq!(
            shown.len() as i64,
            without_client.min(taxinbox::web::tasks::LIST_PAGE_SIZE as i64)
        );
        assert!(shown.len() < all.len() || all.len() == taxinbox::web::tasks::LIST_PAGE_SIZE);
        for id in &shown {
            assert_eq!(
                world
                    .app
                    .count(&format!(
                        "SELECT COUNT(*) FROM tasks WHERE id = {id} AND client_inn IS NULL"
                    ))
                    .await,
                1
            );
        }
        // The search finds a demand's task and mail by its number, whatever the case of the letters typed.
        let (id, message, number): (i64, i64, String) = {
            let mut conn = world.app.app.store.acquire().await.unwrap();
            sqlx::query_as(
                "SELECT t.id, t.message, k.number FROM tasks t JOIN cases k ON k.id = t.case_id \
                 WHERE t.status = 'open' ORDER BY t.id LIMIT 1",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap()
        };
        let q = form_urlencoded::byte_serialize(number.as_bytes()).collect::<String>();
        let found = task_ids(&c.get(&format!("/tasks?q={q}")).await.1);
        assert!(found.contains(&id), "{number}: {found:?}");
        assert!(found.len() < all.len() || all.len() == taxinbox::web::tasks::LIST_PAGE_SIZE);
        let (_, log) = c.get(&format!("/log?q={q}")).await;
        assert!(
            log.contains(&format!("data-mail=\"{message}\"")),
            "{number}"
        );
        let (_, nothing) = c
            .get("/tasks?q=%D0%BD%D0%B5%D1%82-%D1%82%D0%B0%D0%BA%D0%BE%D0%B3%D0%BE")
            .await;
        assert!(task_ids(&nothing).is_empty());
        let ooo = task_ids(&c.get("/tasks?q=%D0%BE%D0%BE%D0%BE&status=all").await.1);
        let upper = task_ids(&c.get("/tasks?q=%D0%9E%D0%9E%D0%9E&status=all").await.1);
        assert!(!ooo.is_empty(), "«ооо» finds the ООО clients");
        assert_eq!(ooo, upper);
        // The tax calendar's tasks are the calendar kind; a demand's are not.
        let (_, page) = c.get("/tasks?kind=calendar&status=all").await;
        for id in task_ids(&page) {
            assert_eq!(
                world
                    .app
                    .count(&format!(
                        "SELECT COUNT(*) FROM tasks WHERE id = {id} AND event IS NOT NULL"
                    ))
                    .await,
                1
            );
        }
        world.finish().await;
    }
);

/// The ids of every page of a list, following its "next" links (at most `bound` pages), and the total it states.
async fn every_page(c: &mut Client, first: &str, bound: usize) -> (Vec<i64>, i64) {
    let (status, page) = c.get(first).await;
    assert_eq!(status, 200, "{first}");
    const TOTAL: &str = "<strong id=\"total\">";
    let start = page.find(TOTAL).expect("the list states its total") + TOTAL.len();
    let total: i64 = page[start..]
        .split('<')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number");
    let mut ids: Vec<i64> = ids_in_order(&page);
    let mut next = attribute_after(&page, "id=\"next-page\" href=\"");
    let mut pages = 1;
    while let Some(href) = next {
        assert!(pages < bound, "{first}: more than {bound} pages");
        let (status, page) = c.get(&href.replace("&amp;", "&")).await;
        assert_eq!(status, 200, "{href}");
        ids.extend(ids_in_order(&page));
        next = attribute_after(&page, "id=\"next-page\" href=\"");
        pages += 1;
    }
    (ids, total)
}

/// Task ids in the order the page lists them.
fn ids_in_order(html: &str) -> Vec<i64> {
    html.split("data-task=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

on_both_engines!(
    the_task_list_pages_in_sql_through_every_task_in_either_order,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(AUDITOR, PASSWORD).await, 303);
        let all = world.app.count("SELECT COUNT(*) FROM tasks").await;
        assert!(
            all > 2 * taxinbox::web::tasks::LIST_PAGE_SIZE as i64,
            "the corpus gives more than two pages of tasks: {all}"
        );
        let bound = all as usize / taxinbox::web::tasks::LIST_PAGE_SIZE + 2;
        for first in ["/tasks?status=all", "/tasks?status=all&sort=client"] {
            let (ids, total) = every_page(&mut c, first, bound).await;
            assert_eq!(total, all, "{first}");
            let distinct: BTreeSet<i64> = ids.iter().copied().collect();
            assert_eq!(distinct.len(), ids.len(), "{first}: a task on two pages");
            assert_eq!(ids.len() as i64, all, "{first}: every task on some page");
        }
        // By due date across the pages: each page continues where the one before ended.
        let (ids, _) = every_page(&mut c, "/tasks?status=all", bound).await;
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let in_order: Vec<i64> = sqlx::query_scalar("SELECT id FROM tasks ORDER BY due, id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(ids, in_order);
        // A page past the end shows the last one.
        let last = c.get("/tasks?status=all&page=100000").await.1;
        assert_eq!(
            ids_in_order(&last),
            ids[(ids.len() - 1) / taxinbox::web::tasks::LIST_PAGE_SIZE
                * taxinbox::web::tasks::LIST_PAGE_SIZE..]
                .to_vec()
        );

        // The manager's team table: each person's open and overdue tasks, as the store counts them.
        let mut m = Client::new(&world.base);
        assert_eq!(m.sign_in(MANAGER, PASSWORD).await, 303);
        let (_, page) = m.get("/tasks").await;
        let today = chrono::Utc::now()
            .with_timezone(&world.app.app.settings.general.timezone)
            .date_naive()
            .to_string();
        let directory = {
            let mut conn = world.app.app.store.acquire().await.unwrap();
            store::load_directory(&mut conn).await.unwrap()
        };
        let mut checked = 0;
        for row in page.split("<tr data-person=\"").skip(1) {
            let email = row.split('"').next().unwrap().to_owned();
            // Their team (an absent colleague's tasks count only for the clients the manager backs up).
            if directory
                .accountant(&email)
                .and_then(|a| a.manager.as_deref())
                != Some(MANAGER)
            {
                continue;
            }
            let cells: Vec<i64> = row
                .split("</tr>")
                .next()
                .unwrap()
                .split("<td")
                .skip(2)
                .filter_map(|td| td.split('>').nth(1)?.split('<').next()?.parse().ok())
                .collect();
            let open = world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE assignee = '{email}' AND status = 'open'"
                ))
                .await;
            let overdue = world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE assignee = '{email}' AND status = 'open' \
                     AND due < '{today}'"
                ))
                .await;
            assert_eq!(cells, vec![open, overdue], "{email}");
            checked += 1;
        }
        assert!(checked > 0, "the manager sees their team");
        world.finish().await;
    }
);
