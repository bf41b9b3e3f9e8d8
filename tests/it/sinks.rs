//! Task sinks against a real HTTP server on 127.0.0.1: a recorder that answers as a webhook receiver or as the
//! Bitrix24 REST API (`tasks.task.add` / `list` / `update` / `complete` / `get` over an incoming webhook URL), can
//! refuse (400), lose an answer, or be shut down and started again on the same port. Task events from the web view
//! (`done`, `reassigned`) go through the real web server, signed in as an accountant. Also the rest of issue #7's
//! scheduling: the digest's time of day and opt-outs, and the handover notice when an absence starts; and the
//! daemon's purge of expired web sessions.

use crate::helpers::*;
use crate::web::{Client, WebWorld, OTHER_ACCOUNTANT, PASSWORD};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{Duration, NaiveDate, Utc};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use taxinbox::notify::schedule::{self, DigestOptions, ScheduleContext};
use taxinbox::notify::sink::{self, SinkWorker};
use taxinbox::notify::{webhook, Templates};
use taxinbox::store;

/// One request as the recorder saw it.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn method(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// What the recorder knows and how it answers.
#[derive(Debug, Default)]
struct Recording {
    requests: Vec<Recorded>,
    /// Answer every request with 400 (a receiver that refuses what it is sent).
    refuse: bool,
    /// Create the next Bitrix24 task but answer 500, as when the answer is lost on the way.
    lose_next_add: bool,
    /// Complete the next Bitrix24 task but answer 500.
    lose_next_complete: bool,
    /// The Bitrix24 portal's tasks: (id, fields).
    tasks: Vec<(u64, serde_json::Value)>,
}

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Recording>>);

impl Recorder {
    fn requests(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().requests.clone()
    }
    fn calls(&self, method: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method() == method)
            .collect()
    }
}

async fn answer(
    State(rec): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    assert_eq!(method, Method::POST);
    let mut r = rec.0.lock().unwrap();
    r.requests.push(Recorded {
        path: uri.path().to_owned(),
        headers,
        body: body.clone(),
    });
    if r.refuse {
        return (StatusCode::BAD_REQUEST, "no such hook").into_response();
    }
    let params: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let time = serde_json::json!({"start": 1.0, "finish": 1.1, "duration": 0.1});
    match uri.path().rsplit('/').next().unwrap_or_default() {
        "tasks.task.add.json" => {
            let id = r.tasks.len() as u64 + 100;
            r.tasks.push((id, params["fields"].clone()));
            if std::mem::take(&mut r.lose_next_add) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
            }
            let title = params["fields"]["TITLE"].clone();
            axum::Json(serde_json::json!({"result": {"task": {"id": id.to_string(), "title": title}}, "time": time}))
                .into_response()
        }
        "tasks.task.list.json" => {
            let needle = params["filter"]["%TITLE"].as_str().unwrap_or_default();
            let found: Vec<_> = r
                .tasks
                .iter()
                .filter(|(_, f)| f["TITLE"].as_str().unwrap_or_default().contains(needle))
                .map(|(id, f)| serde_json::json!({"id": id.to_string(), "title": f["TITLE"]}))
                .collect();
            let total = found.len();
            axum::Json(
                serde_json::json!({"result": {"tasks": found}, "total": total, "time": time}),
            )
            .into_response()
        }
        "tasks.task.update.json" => {
            let id: u64 = params["taskId"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            let Some((_, fields)) = r.tasks.iter_mut().find(|(i, _)| *i == id) else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "ERROR_CORE", "error_description": "no such task"})),
                )
                    .into_response();
            };
            for (k, v) in params["fields"].as_object().cloned().unwrap_or_default() {
                fields[k] = v;
            }
            axum::Json(
                serde_json::json!({"result": {"task": {"id": id.to_string()}}, "time": time}),
            )
            .into_response()
        }
        "tasks.task.complete.json" | "tasks.task.get.json" => {
            let id: u64 = params["taskId"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            let completing = uri.path().ends_with("complete.json");
            let lose = completing && std::mem::take(&mut r.lose_next_complete);
            let Some((_, fields)) = r.tasks.iter_mut().find(|(i, _)| *i == id) else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "ERROR_CORE", "error_description": "no such task"})),
                )
                    .into_response();
            };
            if completing {
                if fields["STATUS"] == "5" {
                    // As the portal does: a completed task cannot be completed again.
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(serde_json::json!({"error": "ERROR_CORE", "error_description": "action not allowed"})),
                    )
                        .into_response();
                }
                fields["STATUS"] = "5".into();
                if lose {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
                }
            }
            let status = fields["STATUS"].as_str().unwrap_or("2").to_owned();
            axum::Json(serde_json::json!({"result": {"task": {"id": id.to_string(), "status": status}}, "time": time}))
                .into_response()
        }
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

/// The recorder listening on a port; stopped and started again on the same port to play a receiver that is down.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(rec: &Recorder, port: u16) -> Server {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the recorder");
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(answer).with_state(rec.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    Server { addr, stop, task }
}

impl Server {
    async fn shut_down(self) -> u16 {
        let _ = self.stop.send(());
        self.task.await.expect("recorder stopped");
        self.addr.port()
    }
}

fn mails(numbers: &[u32]) -> Vec<PathBuf> {
    numbers
        .iter()
        .map(|i| corpus().join("mail").join(format!("{i:04}.eml")))
        .collect()
}

async fn ingest(app: &TestApp, numbers: &[u32]) {
    let paths = mails(numbers);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    app.ingest(&refs, false).await;
}

/// A test world with `sinks` (TOML) configured and registered, as `App::open` does.
async fn app_with_sinks(engine: Engine, sinks: &str) -> TestApp {
    let app = TestApp::with_extra_config(engine, sinks).await;
    sink::register(&app.app.store, &app.app.settings.sinks, Utc::now())
        .await
        .unwrap();
    app.import_corpus_register().await;
    app
}

async fn deliver(app: &TestApp, at: chrono::DateTime<Utc>) -> sink::SinkOutcome {
    SinkWorker::from_settings(&app.app.settings)
        .unwrap()
        .deliver_pending(&app.app.store, at)
        .await
        .unwrap()
}

async fn task_ids(app: &TestApp) -> Vec<i64> {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM tasks ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

const SECRET: &str = "webhook-secret-of-the-firm";

fn webhook_config(dir: &Path, addr: SocketAddr) -> String {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    format!(
        "[[sinks]]\nkind = \"webhook\"\nname = \"tracker\"\nurl = \"http://{addr}/hooks/taxinbox\"\nsecret_file = \"{}\"\n",
        secret.display()
    )
}

on_both_engines!(
    ingesting_mail_posts_one_signed_created_event_per_task,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let app = app_with_sinks(engine, &webhook_config(dir.path(), server.addr)).await;
        ingest(&app, &[1, 2, 3]).await;
        let tasks = task_ids(&app).await;
        assert_eq!(tasks.len(), 3, "0001 has two tasks, 0003 one, 0002 none");

        let outcome = deliver(&app, Utc::now()).await;
        assert_eq!(outcome.delivered, 3);
        let posts = rec.requests();
        assert_eq!(posts.len(), 3);
        let mut deliveries: Vec<String> = Vec::new();
        for post in &posts {
            assert_eq!(post.path, "/hooks/taxinbox");
            assert_eq!(post.header("x-taxinbox-event"), "created");
            assert_eq!(
                post.header("x-taxinbox-signature"),
                webhook::signature(SECRET.as_bytes(), &post.body),
                "signed over the exact body with the configured secret"
            );
            let body = post.json();
            assert_eq!(body["delivery"], post.header("x-taxinbox-delivery"));
            assert!(body["task"]["due"]
                .as_str()
                .is_some_and(|d| d.starts_with("2026-")));
            deliveries.push(post.header("x-taxinbox-delivery"));
        }
        let expected: Vec<String> = tasks.iter().map(|t| format!("created:{t}")).collect();
        assert_eq!(deliveries, expected);
        // A second pass has nothing left to send.
        assert_eq!(
            deliver(&app, Utc::now() + Duration::days(1)).await,
            sink::SinkOutcome::default()
        );
        assert_eq!(rec.requests().len(), 3);
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    events_wait_for_a_receiver_that_is_down_and_arrive_once_in_order_per_task,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let addr = server.addr;
        let dir = tempfile::tempdir().unwrap();
        let app = app_with_sinks(engine, &webhook_config(dir.path(), addr)).await;
        let port = server.shut_down().await;
        // 0014: a demand (one task); 0015 joins its case.
        ingest(&app, &[14, 15]).await;
        let tasks = task_ids(&app).await;
        assert_eq!(tasks.len(), 1);
        let now = Utc::now();
        let down = deliver(&app, now).await;
        assert_eq!(
            (down.delivered, down.retrying),
            (0, 1),
            "the linked event waits behind created"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sink_outbox WHERE status = 'pending'")
                .await,
            2
        );

        let server = serve(&rec, port).await;
        // Not yet due again: nothing is sent before the back-off ends.
        assert_eq!(deliver(&app, now).await, sink::SinkOutcome::default());
        let up = deliver(&app, now + Duration::hours(1)).await;
        assert_eq!(up.delivered, 2);
        assert_eq!(
            deliver(&app, now + Duration::days(1)).await,
            sink::SinkOutcome::default()
        );
        let order: Vec<String> = rec
            .requests()
            .iter()
            .map(|r| r.header("x-taxinbox-delivery"))
            .collect();
        let linked = app
            .count("SELECT id FROM messages WHERE status = 'linked'")
            .await;
        assert_eq!(
            order,
            vec![
                format!("created:{}", tasks[0]),
                format!("linked:{}:{linked}", tasks[0])
            ]
        );
        let linked_post = &rec.requests()[1];
        assert_eq!(linked_post.json()["linked_mail"]["id"], linked);
        server.shut_down().await;
        app.cleanup().await;
    }
);

fn bitrix_config(dir: &Path, addr: SocketAddr) -> String {
    // The incoming-webhook URL holds the token: kept in a file, as a secret.
    let url = dir.join("bitrix.url");
    std::fs::write(&url, format!("http://{addr}/rest/7/t0ken/\n")).unwrap();
    format!(
        "[[sinks]]\nkind = \"bitrix24\"\nname = \"bitrix\"\nurl_file = \"{}\"\ndefault_responsible = 1\n\
         [sinks.responsible]\n\"morozova@debet-service.example\" = 42\n",
        url.display()
    )
}

on_both_engines!(
    a_linked_mail_updates_the_same_bitrix_task,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let app = app_with_sinks(engine, &bitrix_config(dir.path(), server.addr)).await;
        ingest(&app, &[14, 3]).await;
        let now = Utc::now();
        assert_eq!(deliver(&app, now).await.delivered, 2);
        let adds = rec.calls("tasks.task.add.json");
        assert_eq!(adds.len(), 2);
        assert!(adds.iter().all(|a| a.path.starts_with("/rest/7/t0ken/")));
        let morozova = adds
            .iter()
            .map(Recorded::json)
            .find(|f| f["fields"]["RESPONSIBLE_ID"] == 42)
            .expect("Morozova's task goes to her Bitrix24 user");
        assert_eq!(morozova["fields"]["DEADLINE"], "2026-02-19T23:59:59+03:00");
        let other = adds
            .iter()
            .map(Recorded::json)
            .find(|f| f["fields"]["RESPONSIBLE_ID"] == 1)
            .expect("Sokolova is not mapped: the default responsible");
        assert!(other["fields"]["DESCRIPTION"]
            .as_str()
            .unwrap()
            .contains("ответственному по умолчанию"));

        ingest(&app, &[15]).await;
        assert_eq!(deliver(&app, Utc::now()).await.delivered, 1);
        assert_eq!(rec.calls("tasks.task.add.json").len(), 2, "no second task");
        let updates = rec.calls("tasks.task.update.json");
        assert_eq!(updates.len(), 1);
        let task = task_ids(&app).await[0];
        let mut conn = app.app.store.acquire().await.unwrap();
        let remote = store::sink_remote_id(&mut conn, "bitrix", task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updates[0].json()["taskId"], remote.as_str());
        assert!(updates[0].json()["fields"]["DESCRIPTION"]
            .as_str()
            .unwrap()
            .contains("Ещё письмо по делу"));
        drop(conn);
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    a_lost_answer_to_a_bitrix_add_never_creates_a_second_task,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let app = app_with_sinks(engine, &bitrix_config(dir.path(), server.addr)).await;
        ingest(&app, &[14]).await;
        // Bitrix24 creates the task, but taxinbox never hears so (as if it died before marking the event).
        rec.0.lock().unwrap().lose_next_add = true;
        let now = Utc::now();
        let lost = deliver(&app, now).await;
        assert_eq!((lost.delivered, lost.retrying), (0, 1));
        let again = deliver(&app, now + Duration::hours(1)).await;
        assert_eq!(again.delivered, 1);
        assert_eq!(
            rec.calls("tasks.task.add.json").len(),
            1,
            "the retry found the task instead of adding one"
        );
        assert_eq!(rec.0.lock().unwrap().tasks.len(), 1);
        let portal_id = rec.0.lock().unwrap().tasks[0].0.to_string();
        let task = task_ids(&app).await[0];
        let mut conn = app.app.store.acquire().await.unwrap();
        assert_eq!(
            store::sink_remote_id(&mut conn, "bitrix", task)
                .await
                .unwrap(),
            Some(portal_id)
        );
        drop(conn);
        server.shut_down().await;
        app.cleanup().await;
    }
);

on_both_engines!(
    a_refused_event_fails_for_good_holds_back_its_task_and_can_be_retried,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let app = app_with_sinks(engine, &webhook_config(dir.path(), server.addr)).await;
        ingest(&app, &[14, 15]).await;
        rec.0.lock().unwrap().refuse = true;
        let now = Utc::now();
        let refused = deliver(&app, now).await;
        assert_eq!(
            (refused.failed, refused.delivered, refused.retrying),
            (1, 0, 0)
        );
        assert_eq!(
            rec.requests().len(),
            1,
            "the linked event is held back, not sent"
        );
        let mut conn = app.app.store.acquire().await.unwrap();
        let lines = store::sink_status(&mut conn).await.unwrap();
        let failed = lines
            .iter()
            .find(|l| l.status == store::SinkEventStatus::Failed)
            .expect("a failed line");
        assert_eq!((failed.sink.as_str(), failed.count), ("tracker", 1));
        assert!(
            failed.last_error.as_deref().unwrap().contains("400"),
            "{failed:?}"
        );
        // Nothing more goes out until an admin retries.
        assert_eq!(
            deliver(&app, now + Duration::days(2)).await,
            sink::SinkOutcome::default()
        );
        rec.0.lock().unwrap().refuse = false;
        let now_s = store::timestamp(now);
        assert_eq!(
            store::retry_failed_sink_events(&mut conn, "", &now_s)
                .await
                .unwrap(),
            1
        );
        drop(conn);
        assert_eq!(deliver(&app, now).await.delivered, 2);
        server.shut_down().await;
        app.cleanup().await;
    }
);

const MOROZOVA: &str = "morozova@debet-service.example";

/// A web server over a store with `sinks` configured and mail 0001 in it (two open tasks of Kuznetsova).
async fn web_world_with_sinks(engine: Engine, sinks: &str) -> WebWorld {
    let mail = mails(&[1]);
    WebWorld::with(engine, sinks, &[mail[0].as_path()]).await
}

/// Kuznetsova, signed in through the web view, marks her first task done and gives the second to Morozova;
/// returns (done task, reassigned task).
async fn done_and_reassign_through_the_web(world: &WebWorld) -> (i64, i64) {
    let tasks = task_ids(&world.app).await;
    assert_eq!(tasks.len(), 2, "0001 gives Kuznetsova two tasks");
    let mut c = Client::new(&world.base);
    assert_eq!(c.sign_in(OTHER_ACCOUNTANT, PASSWORD).await, 303);
    let csrf = c.csrf.clone();
    let (status, page) = c
        .post(&format!("/tasks/{}/done", tasks[0]), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303, "{page}");
    let (status, page) = c
        .post(
            &format!("/tasks/{}/reassign", tasks[1]),
            &[("csrf", &csrf), ("to", MOROZOVA)],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    // Queued with the change itself, one row per event, before any delivery.
    for (event, task) in [("done", tasks[0]), ("reassigned", tasks[1])] {
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM sink_outbox WHERE event = '{event}' AND task = {task} AND status = 'pending'"
                ))
                .await,
            1,
            "{event}"
        );
    }
    (tasks[0], tasks[1])
}

on_both_engines!(
    done_and_reassign_in_the_web_reach_the_webhook_signed_and_in_order_after_created,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let world = web_world_with_sinks(engine, &webhook_config(dir.path(), server.addr)).await;
        let (done, moved) = done_and_reassign_through_the_web(&world).await;

        assert_eq!(deliver(&world.app, Utc::now()).await.delivered, 4);
        let posts = rec.requests();
        for post in &posts {
            assert_eq!(
                post.header("x-taxinbox-signature"),
                webhook::signature(SECRET.as_bytes(), &post.body)
            );
            assert_eq!(post.json()["event"], post.header("x-taxinbox-event"));
        }
        let keys: Vec<String> = posts
            .iter()
            .map(|p| p.header("x-taxinbox-delivery"))
            .collect();
        let done_seq = world
            .app
            .count("SELECT MAX(seq) FROM audit_log WHERE event = 'task_done'")
            .await;
        let moved_seq = world
            .app
            .count("SELECT MAX(seq) FROM audit_log WHERE event = 'task_reassigned'")
            .await;
        assert_eq!(
            keys,
            vec![
                format!("created:{done}"),
                format!("created:{moved}"),
                format!("done:{done}:{done_seq}"),
                format!("reassigned:{moved}:{moved_seq}"),
            ],
            "each task's change after its created event"
        );
        let done_body = posts[2].json();
        assert_eq!(done_body["event"], "done");
        assert_eq!(done_body["task"]["id"], done);
        assert_eq!(done_body["task"]["status"], "done");
        assert_eq!(done_body["change"]["status"], "done");
        assert_eq!(done_body["change"]["by"], OTHER_ACCOUNTANT);
        assert_eq!(done_body["change"]["assignee"], OTHER_ACCOUNTANT);
        let moved_body = posts[3].json();
        assert_eq!(moved_body["event"], "reassigned");
        assert_eq!(moved_body["task"]["assignee"], MOROZOVA);
        assert_eq!(moved_body["change"]["assignee"], MOROZOVA);
        assert_eq!(moved_body["change"]["previous_assignee"], OTHER_ACCOUNTANT);
        assert_eq!(moved_body["change"]["by"], OTHER_ACCOUNTANT);
        assert!(posts[0].json()["change"].is_null(), "created has no change");
        // Once each: nothing is left for a later pass.
        assert_eq!(
            deliver(&world.app, Utc::now() + Duration::days(1)).await,
            sink::SinkOutcome::default()
        );
        server.shut_down().await;
        world.finish().await;
    }
);

on_both_engines!(
    done_in_the_web_completes_the_bitrix_task_and_reassign_gives_it_the_new_responsible,
    |engine| async move {
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let world = web_world_with_sinks(engine, &bitrix_config(dir.path(), server.addr)).await;
        let now = Utc::now();
        assert_eq!(deliver(&world.app, now).await.delivered, 2);
        let adds = rec.calls("tasks.task.add.json");
        assert!(
            adds.iter()
                .all(|a| a.json()["fields"]["RESPONSIBLE_ID"] == 1),
            "Kuznetsova is not mapped: the default responsible"
        );
        let (done, moved) = done_and_reassign_through_the_web(&world).await;
        let remote = |task: i64| {
            let store = world.app.app.store.clone();
            async move {
                let mut conn = store.acquire().await.unwrap();
                store::sink_remote_id(&mut conn, "bitrix", task)
                    .await
                    .unwrap()
                    .expect("the Bitrix24 id is stored")
            }
        };
        let (done_remote, moved_remote) = (remote(done).await, remote(moved).await);

        // The portal completes the task but its answer is lost: the retry sees it completed and is done.
        rec.0.lock().unwrap().lose_next_complete = true;
        let now = Utc::now();
        let first = deliver(&world.app, now).await;
        assert_eq!((first.delivered, first.retrying), (1, 1));
        let again = deliver(&world.app, now + Duration::hours(1)).await;
        assert_eq!((again.delivered, again.retrying, again.failed), (1, 0, 0));

        let completes = rec.calls("tasks.task.complete.json");
        assert_eq!(completes.len(), 2, "the first attempt and its retry");
        assert!(completes
            .iter()
            .all(|c| c.json()["taskId"] == done_remote.as_str()));
        let portal = rec.0.lock().unwrap().tasks.clone();
        let status_of = |id: &str| {
            portal
                .iter()
                .find(|(i, _)| i.to_string() == id)
                .map(|(_, f)| f["STATUS"].clone())
                .unwrap()
        };
        assert_eq!(status_of(&done_remote), "5", "completed in Bitrix24");
        assert_ne!(status_of(&moved_remote), "5");
        let updates = rec.calls("tasks.task.update.json");
        assert_eq!(updates.len(), 1);
        let update = updates[0].json();
        assert_eq!(update["taskId"], moved_remote.as_str());
        assert_eq!(
            update["fields"]["RESPONSIBLE_ID"], 42,
            "Morozova's Bitrix24 user"
        );
        assert!(update["fields"]["DESCRIPTION"]
            .as_str()
            .unwrap()
            .contains(MOROZOVA));
        assert_eq!(rec.calls("tasks.task.add.json").len(), 2, "no new task");
        server.shut_down().await;
        world.finish().await;
    }
);

on_both_engines!(
    a_done_task_without_a_bitrix_task_is_added_then_completed,
    |engine| async move {
        // The sink is configured after the task was created: `done` is the first event it hears of the task.
        let world = web_world_with_sinks(engine, "").await;
        let rec = Recorder::default();
        let server = serve(&rec, 0).await;
        let dir = tempfile::tempdir().unwrap();
        let settings_text = bitrix_config(dir.path(), server.addr);
        let config = dir.path().join("later.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n{settings_text}",
                std::fs::read_to_string(&world.app.config).unwrap()
            ),
        )
        .unwrap();
        let settings = taxinbox::settings::Settings::from_sources(Some(&config), &[]).unwrap();
        sink::register(&world.app.app.store, &settings.sinks, Utc::now())
            .await
            .unwrap();
        let (done, _) = done_and_reassign_through_the_web(&world).await;
        let outcome = SinkWorker::from_settings(&settings)
            .unwrap()
            .deliver_pending(&world.app.app.store, Utc::now())
            .await
            .unwrap();
        assert_eq!(outcome.delivered, 2);
        assert_eq!(
            rec.calls("tasks.task.add.json").len(),
            2,
            "each task added once, with the state of now"
        );
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let remote = store::sink_remote_id(&mut conn, "bitrix", done)
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        let completes = rec.calls("tasks.task.complete.json");
        assert_eq!(completes.len(), 1);
        assert_eq!(completes[0].json()["taskId"], remote.as_str());
        let moved = rec
            .calls("tasks.task.add.json")
            .iter()
            .map(Recorded::json)
            .find(|a| a["fields"]["RESPONSIBLE_ID"] == 42);
        assert!(moved.is_some(), "the reassigned task is added for Morozova");
        server.shut_down().await;
        world.finish().await;
    }
);

on_both_engines!(
    the_daily_purge_forgets_expired_sessions_and_old_failed_sign_ins,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let now = Utc::now();
        let at = |hours: i64| store::timestamp(now + Duration::hours(hours));
        let mut conn = app.app.store.acquire().await.unwrap();
        store::create_session(
            &mut conn,
            "expired",
            OTHER_ACCOUNTANT,
            "c1",
            &at(-10),
            &at(-1),
        )
        .await
        .unwrap();
        store::create_session(&mut conn, "live", OTHER_ACCOUNTANT, "c2", &at(-1), &at(7))
            .await
            .unwrap();
        store::record_login_failure(&mut conn, OTHER_ACCOUNTANT, "127.0.0.1", &at(-48))
            .await
            .unwrap();
        store::record_login_failure(&mut conn, OTHER_ACCOUNTANT, "127.0.0.1", &at(0))
            .await
            .unwrap();
        drop(conn);
        let purged = taxinbox::daemon::purge_web_state(&app.app.store, now)
            .await
            .unwrap();
        assert_eq!(
            purged,
            store::WebPurged {
                sessions: 1,
                login_failures: 1
            }
        );
        let mut conn = app.app.store.acquire().await.unwrap();
        assert!(store::session(&mut conn, "live", &at(0))
            .await
            .unwrap()
            .is_some());
        drop(conn);
        assert_eq!(app.count("SELECT COUNT(*) FROM web_sessions").await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM web_login_failures").await,
            1,
            "the recent failure still counts towards the rate limit"
        );
        // A second purge finds nothing more.
        assert_eq!(
            taxinbox::daemon::purge_web_state(&app.app.store, now)
                .await
                .unwrap(),
            store::WebPurged::default()
        );
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

async fn recipients(app: &TestApp, kind: &str) -> Vec<String> {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT recipient FROM outbox WHERE kind = $1 ORDER BY recipient")
            .bind(kind)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

on_both_engines!(
    the_digest_waits_for_its_time_and_skips_who_opted_out,
    |engine| async move {
        let app = TestApp::with_extra_config(
            engine,
            "digest_time = \"08:00\"\ndigest_opt_out = [\"Kuznetsova@debet-service.example\"]\n",
        )
        .await;
        app.import_corpus_register().await;
        // 0001: Kuznetsova's tasks (due 19.01), 0003: Sokolova's (due 15.01).
        ingest(&app, &[1, 3]).await;
        let ctx = schedule_context(&app).await;
        let notify = &app.app.settings.notify;
        let options = DigestOptions {
            not_before: Some(notify.digest_time),
            opt_out: notify.digest_opt_out.clone(),
        };
        let now = store::timestamp(Utc::now());
        let day = NaiveDate::from_ymd_opt(2026, 1, 14).unwrap();
        let mut conn = app.app.store.acquire().await.unwrap();
        let early = schedule::run_at(
            &mut conn,
            &ctx,
            &options,
            day.and_hms_opt(7, 59, 0).unwrap(),
            &now,
        )
        .await
        .unwrap();
        assert_eq!(early.digests, 0, "not before 08:00");
        let on_time = schedule::run_at(
            &mut conn,
            &ctx,
            &options,
            day.and_hms_opt(8, 0, 0).unwrap(),
            &now,
        )
        .await
        .unwrap();
        assert_eq!(on_time.digests, 1);
        drop(conn);
        assert_eq!(
            recipients(&app, "digest").await,
            vec!["sokolova@debet-service.example"]
        );
        app.cleanup().await;
    }
);

on_both_engines!(
    an_absence_start_tells_the_substitute_once_per_task,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        // 0001: two open tasks of Kuznetsova, who is away 01.09–04.09.2026 (no substitute named: the backup).
        ingest(&app, &[1]).await;
        let ctx = schedule_context(&app).await;
        let client = ctx.directory.client("7703703377").unwrap().clone();
        let backup = client
            .backup_accountant
            .clone()
            .expect("a backup accountant");
        let now = store::timestamp(Utc::now());
        let mut conn = app.app.store.acquire().await.unwrap();
        let day =
            |d: u32| NaiveDate::from_ymd_opt(2026, 8, 31).unwrap() + Duration::days(i64::from(d));
        assert_eq!(
            schedule::absence_handovers_due(&mut conn, &ctx, day(0), &now)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            schedule::absence_handovers_due(&mut conn, &ctx, day(1), &now)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            schedule::absence_handovers_due(&mut conn, &ctx, day(1), &now)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            schedule::absence_handovers_due(&mut conn, &ctx, day(2), &now)
                .await
                .unwrap(),
            0
        );
        drop(conn);
        assert_eq!(
            recipients(&app, "absence_handover").await,
            vec![backup.clone(), backup]
        );
        app.cleanup().await;
    }
);

#[test]
fn sink_settings_name_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(
        &config,
        "[[sinks]]\nkind = \"bitrix24\"\nname = \"b\"\nurl = \"ftp://x\"\n[[sinks]]\nkind = \"webhook\"\nname = \"b\"\nurl_env = \"X\"\ndefault_responsible = 3\n[[sinks]]\nkind = \"jira\"\nname = \"c\"\nurl = \"https://t.example/\"\n",
    )
    .unwrap();
    let error = taxinbox::settings::Settings::from_sources(Some(&config), &[])
        .unwrap_err()
        .to_string();
    for expected in [
        "sinks[0].url: the URL is not an http(s) URL with a host",
        "sinks[0].default_responsible: required",
        "sinks[1].name: \"b\" is used by another sink",
        "sinks[1]: responsible, responsible_file and default_responsible are only used with kind = \"bitrix24\"",
        "sinks[2].kind: \"jira\" is not one of webhook, bitrix24",
    ] {
        assert!(error.contains(expected), "{expected:?} missing in {error}");
    }
}
