//! People leave (issue 18): a register re-imported without a person takes away their sessions, their calendar
//! feed and their open tasks (handed over, logged), and works beside a running daemon at the first try;
//! `user disable|enable`; feed tokens stored only as hashes.

use crate::helpers::{corpus, on_both_engines, spawn_daemon, wait_until, Engine, TestApp};
use crate::web::{Client, WebWorld, ACCOUNTANT, OTHER_ACCOUNTANT, PASSWORD};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The corpus register without `gone`: their clients go to `ACCOUNTANT`, they are nobody's backup or substitute.
/// Returns (clients, accountants, absences) files in `dir`.
fn register_without(gone: &str, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let read = |name: &str| std::fs::read_to_string(corpus().join(name)).unwrap();
    let clients: Vec<String> = read("clients.csv")
        .lines()
        .map(|line| {
            let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            if cells[6] == gone {
                cells[6] = ACCOUNTANT.to_owned();
            }
            if cells[7] == gone {
                cells[7] = String::new();
            }
            cells.join(",")
        })
        .collect();
    let staff = read("accountants.csv");
    let staff: Vec<&str> = staff
        .lines()
        .filter(|l| !l.starts_with(&format!("{gone},")))
        .collect();
    let absences = read("absences.csv");
    let absences: Vec<String> = absences
        .lines()
        .filter(|l| !l.starts_with(&format!("{gone},")))
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            if cells.get(3) == Some(&gone) {
                cells[3] = "";
            }
            cells.join(",")
        })
        .collect();
    let files = (
        dir.join("clients-after.csv"),
        dir.join("accountants-after.csv"),
        dir.join("absences-after.csv"),
    );
    std::fs::write(&files.0, clients.join("\n") + "\n").unwrap();
    std::fs::write(&files.1, staff.join("\n") + "\n").unwrap();
    std::fs::write(&files.2, absences.join("\n") + "\n").unwrap();
    files
}

/// The feed link the creation page shows, once.
async fn new_feed(c: &mut Client) -> String {
    let csrf = c.csrf.clone();
    let (status, page) = c.post("/me/ics", &[("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    let marker = "<code id=\"ics-url\">";
    let start = page.find(marker).expect("the feed link") + marker.len();
    page[start..].split('<').next().unwrap().to_owned()
}

on_both_engines!(
    a_person_dropped_from_the_register_loses_access_and_their_open_tasks_are_handed_over,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut leaver = Client::new(&world.base);
        assert_eq!(leaver.sign_in(OTHER_ACCOUNTANT, PASSWORD).await, 303);
        let feed = new_feed(&mut leaver).await;
        assert_eq!(Client::new(&world.base).get(&feed).await.0, 200);
        assert_eq!(leaver.get("/tasks").await.0, 200);
        let open_sql = format!(
            "SELECT COUNT(*) FROM tasks WHERE assignee = '{OTHER_ACCOUNTANT}' AND status = 'open'"
        );
        let open = world.app.count(&open_sql).await;
        assert!(open > 0, "the corpus gives the leaver open tasks");
        let moves_sql = "SELECT COUNT(*) FROM audit_log WHERE event = 'task_reassigned'";
        let moves_before = world.app.count(moves_sql).await;

        let (clients, accountants, absences) =
            register_without(OTHER_ACCOUNTANT, world.app.dir.path());
        let imported = taxinbox::directory_import::import_files(
            &world.app.app.store,
            &clients,
            Some(&accountants),
            Some(&absences),
            None,
        )
        .await
        .unwrap();
        assert_eq!(imported.deactivated_people, [OTHER_ACCOUNTANT]);
        assert!(imported.deactivated_clients.is_empty());
        assert_eq!(imported.tasks_moved as i64, open);
        assert!(
            imported.to_string().contains(OTHER_ACCOUNTANT),
            "{imported}"
        );

        // The session they had is refused, their feed answers like no feed, their password opens nothing.
        assert_eq!(leaver.get("/tasks").await.0, 303);
        assert_eq!(Client::new(&world.base).get(&feed).await.0, 404);
        assert_eq!(
            Client::new(&world.base)
                .sign_in(OTHER_ACCOUNTANT, PASSWORD)
                .await,
            200
        );
        // Their open tasks went to each client's backup accountant or the unassigned queue, each move logged.
        assert_eq!(world.app.count(&open_sql).await, 0);
        assert_eq!(world.app.count(moves_sql).await - moves_before, open);
        let wrong_place = world
            .app
            .count(&format!(
                "SELECT COUNT(*) FROM tasks t JOIN audit_log l ON l.event = 'task_reassigned' \
                 AND l.payload LIKE '%\"from\":\"{OTHER_ACCOUNTANT}\"%' \
                 AND l.payload LIKE '%\"task\":' || t.id || ',%' \
                 LEFT JOIN clients c ON c.inn = t.client_inn \
                 WHERE NOT (t.assignee IS NULL OR t.assignee = c.backup_accountant)"
            ))
            .await;
        assert_eq!(wrong_place, 0);
        // History stays: the person is deactivated, not deleted, and the log is intact.
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM accountants WHERE email = '{OTHER_ACCOUNTANT}' AND active = 0"
                ))
                .await,
            1
        );
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let v = taxinbox::audit::verify(&mut conn).await.unwrap();
        assert!(v.is_intact(), "{v}");
        drop(conn);
        world.finish().await;
    }
);

on_both_engines!(
    a_merge_import_deactivates_nobody_and_a_register_import_deactivates_missing_clients,
    |engine| async move {
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let all = app
            .count("SELECT COUNT(*) FROM clients WHERE active = 1")
            .await;
        let text = std::fs::read_to_string(corpus().join("clients.csv")).unwrap();
        let partial = app.path("some-clients.csv");
        std::fs::write(
            &partial,
            text.lines().take(3).collect::<Vec<_>>().join("\n") + "\n",
        )
        .unwrap();
        let merged = taxinbox::directory_import::import_files_as(
            taxinbox::directory_import::Mode::Merge,
            &app.app.store,
            &partial,
            None,
            None,
            None,
        )
        .await
        .unwrap();
        assert!(merged.deactivated_clients.is_empty());
        assert_eq!(
            app.count("SELECT COUNT(*) FROM clients WHERE active = 1")
                .await,
            all
        );
        let whole =
            taxinbox::directory_import::import_files(&app.app.store, &partial, None, None, None)
                .await
                .unwrap();
        assert_eq!(whole.deactivated_clients.len() as i64, all - 2);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM clients WHERE active = 1")
                .await,
            2
        );
        // Nothing is deleted, and the register the service works with holds only the two.
        assert_eq!(app.count("SELECT COUNT(*) FROM clients").await, all);
        let mut conn = app.app.store.acquire().await.unwrap();
        let directory = taxinbox::store::load_directory(&mut conn).await.unwrap();
        assert_eq!(directory.clients().count(), 2);
        drop(conn);
        app.cleanup().await;
    }
);

on_both_engines!(
    user_disable_ends_access_at_once_and_enable_restores_the_person,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(OTHER_ACCOUNTANT, PASSWORD).await, 303);
        let feed = new_feed(&mut c).await;
        let cli = |verb: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_taxinbox"))
                .arg("--config")
                .arg(&world.app.config)
                .args(["user", verb, OTHER_ACCOUNTANT])
                .output()
                .unwrap()
        };
        let out = cli("disable");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"));
        assert_eq!(c.get("/tasks").await.0, 303);
        assert_eq!(Client::new(&world.base).get(&feed).await.0, 404);
        assert_eq!(
            world
                .app
                .count(&format!(
                    "SELECT COUNT(*) FROM tasks WHERE assignee = '{OTHER_ACCOUNTANT}' AND status = 'open'"
                ))
                .await,
            0
        );
        // Twice is an error that changes nothing; enable brings the person back (with their password).
        assert!(!cli("disable").status.success());
        assert!(cli("enable").status.success());
        assert_eq!(
            Client::new(&world.base)
                .sign_in(OTHER_ACCOUNTANT, PASSWORD)
                .await,
            303
        );
        assert_eq!(
            world
                .app
                .count(
                    "SELECT COUNT(*) FROM audit_log WHERE event IN ('person_disabled', 'person_enabled')"
                )
                .await,
            2
        );
        world.finish().await;
    }
);

on_both_engines!(
    a_feed_token_read_from_the_database_does_not_open_the_feed,
    |engine| async move {
        let world = WebWorld::new(engine).await;
        let mut c = Client::new(&world.base);
        assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
        let feed = new_feed(&mut c).await;
        let token = feed
            .trim_start_matches("/ics/")
            .trim_end_matches(".ics")
            .to_owned();
        let mut conn = world.app.app.store.acquire().await.unwrap();
        let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM web_feed_tokens")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(stored.len(), 1);
        assert_ne!(stored[0].0, token, "the token itself is not stored");
        assert_eq!(
            Client::new(&world.base)
                .get(&format!("/ics/{}.ics", stored[0].0))
                .await
                .0,
            404
        );
        assert_eq!(Client::new(&world.base).get(&feed).await.0, 200);
        world.finish().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_password_ends_the_persons_sessions() {
    let world = WebWorld::new(Engine::Sqlite).await;
    let mut c = Client::new(&world.base);
    assert_eq!(c.sign_in(ACCOUNTANT, PASSWORD).await, 303);
    let mut other = Client::new(&world.base);
    assert_eq!(other.sign_in(OTHER_ACCOUNTANT, PASSWORD).await, 303);
    taxinbox::web::set_password(
        &world.app.app.store,
        &world.app.app.settings.web,
        ACCOUNTANT,
        "новый-пароль-для-тестов",
    )
    .await
    .unwrap();
    assert_eq!(c.get("/tasks").await.0, 303);
    // Only that person's sessions.
    assert_eq!(other.get("/tasks").await.0, 200);
    world.finish().await;
}

/// Re-imports the register with the real binary while `taxinbox run` keeps committing mail delivered to its
/// Maildir: every import succeeds at its first try, and the daemon keeps committing between the imports. On SQLite
/// a deferred transaction on either side would read a snapshot and fail its first write with "database is locked"
/// once the other process committed in between: the daemon's batches then failed pass after pass (seen once in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_reimported_at_the_first_try_while_run_is_working() {
    let app = TestApp::with_extra_config(
        Engine::Sqlite,
        "[http]\nlisten = \"127.0.0.1:0\"\n[[maildirs]]\nname = \"inbox\"\npath = \"inbox\"\n",
    )
    .await;
    app.import_corpus_register().await;
    let inbox = app.path("inbox");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(inbox.join(sub)).unwrap();
    }
    let mut mails: Vec<PathBuf> = std::fs::read_dir(corpus().join("mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort();
    for m in &mails {
        std::fs::copy(m, inbox.join("new").join(m.file_name().unwrap())).unwrap();
    }
    let mut daemon = spawn_daemon(&app, 0);
    wait_until(
        Duration::from_secs(60),
        "the daemon commits mail",
        || async { app.count("SELECT COUNT(*) FROM messages").await > 0 },
    )
    .await;
    // Mail keeps arriving while the register is imported (for about 10 s); the daemon takes it at each pass, and
    // each import wakes a pass once the daemon sees the register generation move (every 5 s at most).
    let delivery = {
        let inbox = inbox.clone();
        std::thread::spawn(move || {
            for n in 0..600 {
                let id = format!("arriving-{n}");
                let mail = format!(
                    "From: Клиент <client@example.com>\r\nTo: buh@debet-service.example\r\nSubject: Письмо {n}\r\n\
                     Date: Mon, 02 Mar 2026 10:00:00 +0300\r\nMessage-ID: <{id}@test>\r\nMIME-Version: 1.0\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\r\nДобрый день.\r\n"
                );
                let tmp = inbox.join("tmp").join(&id);
                std::fs::write(&tmp, mail).unwrap();
                std::fs::rename(&tmp, inbox.join("new").join(&id)).unwrap();
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let c = corpus();
    // What the daemon writes: mail, and a log entry each time it takes in a new register.
    let daemon_writes = "SELECT (SELECT COUNT(*) FROM messages) + \
                         (SELECT COUNT(*) FROM audit_log WHERE event = 'context_loaded')";
    let before = app.count(daemon_writes).await;
    for round in 0..12 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_taxinbox"))
            .arg("--config")
            .arg(&app.config)
            .args(["directory", "import"])
            .arg(c.join("clients.csv"))
            .arg("--accountants")
            .arg(c.join("accountants.csv"))
            .arg("--absences")
            .arg(c.join("absences.csv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import {round} beside the running daemon: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = app.count(daemon_writes).await;
    delivery.join().unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        after > before,
        "the daemon wrote while the register was imported ({before} → {after}); its log:\n{}",
        std::fs::read_to_string(app.path("daemon-0.log")).unwrap_or_default()
    );
    app.cleanup().await;
}
