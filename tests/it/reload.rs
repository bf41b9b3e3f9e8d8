//! Rules that change while the service runs: the real `taxinbox run` picks up a changed rule file and SIGHUP, refuses
//! a broken set (file:line in its log) and keeps deciding with the previous one; shadow mode stores what a candidate
//! set would have decided differently, without touching the live decisions and tasks.

use crate::dovecot::{Dovecot, PASSWORD};
use crate::helpers::{corpus, on_both_engines, project_root, Engine, TestApp};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a step the daemon takes in the background may take before the test fails (a loaded machine is slow).
const WAIT: Duration = Duration::from_secs(20);

/// A copy of the project's rules folder (mail/, calendars, demands.toml, templates) under `to`.
fn copy_rules(to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    copy_dir(&project_root().join("rules"), to);
}

/// A daemon world: `app`'s database, a configuration of its own (`rules` as the rules folder, one Maildir `inbox`,
/// HTTP on a free port), and the running `taxinbox run`.
struct Daemon {
    child: Child,
    log: PathBuf,
    maildir: PathBuf,
}

/// Drops a mail with `subject` into the Maildir's `new/` (written in `tmp/`, then renamed, as an MTA does).
fn deliver(maildir: &Path, id: &str, subject: &str) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mail = format!(
        "From: Клиент <client@example.com>\r\nTo: buh@debet-service.example\r\nSubject: {subject}\r\n\
         Date: Mon, 02 Mar 2026 10:00:00 +0300\r\nMessage-ID: <{id}@test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nДобрый день.\r\n"
    );
    let tmp = maildir.join("tmp").join(id);
    std::fs::write(&tmp, mail).unwrap();
    std::fs::rename(&tmp, maildir.join("new").join(id)).unwrap();
}

impl Daemon {
    /// Starts the daemon on `app`'s database with the rules folder `rules`; mail delivered before (to
    /// `app.path("inbox")`) is taken by its first pass.
    fn start(app: &TestApp, rules: &Path) -> Daemon {
        let maildir = app.path("inbox");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let config = app.path("daemon.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[rules]\ndir = \"{}\"\n[notify]\ntransport = \"file\"\ndir = \"{}\"\n\
                 from = \"taxinbox@debet-service.example\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [[maildirs]]\nname = \"inbox\"\npath = \"{}\"\n",
                app.app.settings.database.url,
                rules.display(),
                app.path("outbox").display(),
                maildir.display()
            ),
        )
        .unwrap();
        let log = app.path("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start taxinbox run");
        let daemon = Daemon {
            child,
            log,
            maildir,
        };
        daemon.wait_for_log("rules are reloaded on change", 1);
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `text` occurs `times` times in the daemon's log.
    fn wait_for_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{text:?} ({times}×) not in the daemon's log within {WAIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn deliver(&self, id: &str, subject: &str) {
        deliver(&self.maildir, id, subject);
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(rule, ruleset, category)` of the stored mail `id`, once it is stored (waits for the daemon's pass).
async fn decision(app: &TestApp, daemon: &Daemon, id: &str) -> (Option<String>, String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut conn = app.app.store.acquire().await.unwrap();
        let row: Option<(Option<String>, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT rule, ruleset, category FROM messages WHERE message_id = $1")
                .bind(format!("<{id}@test>"))
                .fetch_optional(&mut *conn)
                .await
                .unwrap();
        if let Some((rule, ruleset, category)) = row {
            return (rule, ruleset.unwrap(), category.unwrap_or_default());
        }
        drop(conn);
        assert!(
            Instant::now() < deadline,
            "mail {id} not stored within {WAIT:?}; the daemon's log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `sha256:…` versions the audit log recorded as loaded, in order.
async fn loaded_versions(app: &TestApp) -> Vec<String> {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM audit_log WHERE event = 'ruleset_loaded' ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    rows.iter()
        .map(|(p,)| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            v["version"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Saves a rule file as an editor that saves atomically does (a temporary file renamed over it): a pass that starts
/// meanwhile reads the old file or the new one, never one half written.
fn save_rule(path: &std::path::Path, text: &str) {
    let saving = path.with_extension("rhai.saving");
    std::fs::write(&saving, text).unwrap();
    std::fs::rename(&saving, path).unwrap();
}

/// A rule that claims the test's mails (subject "Горячая загрузка …") as a notice.
const HOT_RULE: &str = r#"fn classify(mail) {
    if mail.subject.contains("Горячая загрузка") {
        return #{category: "notice", reason: "hot-reloaded rule"};
    }
    ()
}
"#;

on_both_engines!(
    a_changed_rule_file_is_picked_up_and_a_broken_one_refused_while_the_daemon_runs,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let rules = app.path("rules");
        copy_rules(&rules);
        deliver(&app.path("inbox"), "before", "Горячая загрузка 1");
        let daemon = Daemon::start(&app, &rules);
        let (rule, old_version, _) = decision(&app, &daemon, "before").await;
        assert_ne!(rule.as_deref(), Some("05-hot.rhai"));

        // A new rule file while the daemon runs: mail waiting now is decided by the new set.
        daemon.deliver("after", "Горячая загрузка 2");
        save_rule(&rules.join("mail/05-hot.rhai"), HOT_RULE);
        let (rule, new_version, category) = decision(&app, &daemon, "after").await;
        assert_eq!(rule.as_deref(), Some("05-hot.rhai"), "{}", daemon.log());
        assert_eq!(category, "notice");
        assert_ne!(new_version, old_version);
        assert!(
            daemon
                .log()
                .contains(&format!("{old_version} → {new_version}")),
            "the reload names old → new version:\n{}",
            daemon.log()
        );
        assert_eq!(
            loaded_versions(&app).await,
            [old_version.clone(), new_version.clone()]
        );

        // A broken file: refused with file:line in the log, the previous set still decides.
        daemon.deliver("broken", "Горячая загрузка 3");
        save_rule(
            &rules.join("mail/05-hot.rhai"),
            "fn classify(mail) {\n    let = 1;\n}\n",
        );
        daemon.wait_for_log("05-hot.rhai:2:", 1);
        let (rule, version, _) = decision(&app, &daemon, "broken").await;
        assert_eq!(rule.as_deref(), Some("05-hot.rhai"));
        assert_eq!(version, new_version, "the previous ruleset stays in force");
        assert!(daemon.log().contains("refused"), "{}", daemon.log());

        // Fixed: reloaded (back to the version of the same text, which the log records again as loaded).
        daemon.deliver("fixed", "Горячая загрузка 4");
        save_rule(
            &rules.join("mail/05-hot.rhai"),
            &HOT_RULE.replace("notice", "ignore"),
        );
        let (rule, fixed_version, category) = decision(&app, &daemon, "fixed").await;
        assert_eq!(rule.as_deref(), Some("05-hot.rhai"));
        assert_eq!(category, "ignore");
        assert_ne!(fixed_version, new_version);
        assert_eq!(
            loaded_versions(&app).await,
            [old_version, new_version, fixed_version]
        );
        daemon.stop();
        app.cleanup().await;
    }
);

on_both_engines!(
    sighup_reloads_rules_the_file_watch_cannot_see,
    |engine| async move {
        let app = TestApp::new(engine).await;
        // The configured rules folder is a symlink (a deploy that swaps a link to a new release): the watch is on the
        // release it pointed at when the daemon started, so only SIGHUP tells the daemon about the new one.
        let (first, second) = (app.path("release-1"), app.path("release-2"));
        copy_rules(&first);
        copy_rules(&second);
        std::fs::write(second.join("mail/05-hot.rhai"), HOT_RULE).unwrap();
        let link = app.path("rules");
        std::os::unix::fs::symlink(&first, &link).unwrap();
        deliver(&app.path("inbox"), "before", "Горячая загрузка 1");
        let daemon = Daemon::start(&app, &link);
        let (rule, old_version, _) = decision(&app, &daemon, "before").await;
        assert_ne!(rule.as_deref(), Some("05-hot.rhai"));

        let staged = app.path("rules.new");
        std::os::unix::fs::symlink(&second, &staged).unwrap();
        std::fs::rename(&staged, &link).unwrap();
        daemon.deliver("after", "Горячая загрузка 2");
        daemon.hangup();
        let (rule, new_version, _) = decision(&app, &daemon, "after").await;
        assert_eq!(rule.as_deref(), Some("05-hot.rhai"), "{}", daemon.log());
        assert_ne!(new_version, old_version);
        daemon.wait_for_log(&format!("{old_version} → {new_version}"), 1);
        // The daemon lives on after SIGHUP (its default action would end the process).
        daemon.deliver("still", "Горячая загрузка 3");
        daemon.hangup();
        let (_, version, _) = decision(&app, &daemon, "still").await;
        assert_eq!(version, new_version);
        daemon.stop();
        app.cleanup().await;
    }
);

/// The candidate: the live rules plus a first rule that calls every "Требование" a notice and fails on mail that
/// mentions "акт сверки".
const CANDIDATE_RULE: &str = r#"fn classify(mail) {
    if mail.subject.to_lower().contains("акт сверки") { throw "candidate rule failed"; }
    if mail.subject.contains("Требование") { return #{category: "notice", reason: "candidate"}; }
    ()
}
"#;

/// The first `n` corpus mails.
fn corpus_mails(n: usize) -> Vec<PathBuf> {
    let mut mails: Vec<PathBuf> = std::fs::read_dir(corpus().join("mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort();
    mails.truncate(n);
    mails
}

/// Tasks and decisions of the live path, to compare a run with shadow mode against one without.
async fn live_state(app: &TestApp) -> Vec<(String, String, Option<String>, Option<String>)> {
    let mut conn = app.app.store.acquire().await.unwrap();
    sqlx::query_as(
        "SELECT m.sha256, m.status, m.rule, t.step FROM messages m LEFT JOIN tasks t ON t.message = m.id \
         ORDER BY m.sha256, t.step",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

fn run_cli(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&app.config)
        .args(args)
        .output()
        .expect("run taxinbox");
    assert!(
        out.status.success(),
        "taxinbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

on_both_engines!(
    shadow_rules_record_exactly_the_mails_they_decide_differently_and_change_nothing_live,
    |engine| async move {
        let mails = corpus_mails(60);
        let paths: Vec<&Path> = mails.iter().map(PathBuf::as_path).collect();

        // Without shadow mode.
        let plain = TestApp::new(engine).await;
        plain.import_corpus_register().await;
        plain.ingest(&paths, false).await;

        // With shadow mode: the candidate is a folder of *.rhai (the live files plus one).
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let (candidate, pipeline) = shadow_pipeline(&app, false).await;
        let shadow = pipeline.rules.shadow().expect("shadow mode is on");
        assert_ne!(shadow.rules.version(), pipeline.rules.version());
        // A dry run records nothing.
        let inputs = taxinbox::source::collect(
            &mails
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for dry_run in [true, false] {
            taxinbox::ingest::ingest(
                &app.app.store,
                &pipeline,
                &inputs,
                &taxinbox::ingest::IngestOptions {
                    archive: taxinbox::pipeline::batch::Archive::No,
                    dry_run,
                    batch_size: 16,
                    max_batch_bytes: taxinbox::pipeline::budget::MAX_BATCH_BYTES,
                    mailbox: None,
                },
                &chrono::Utc::now,
                |_| {},
            )
            .await
            .unwrap();
            if dry_run {
                assert_eq!(app.count("SELECT COUNT(*) FROM shadow_decisions").await, 0);
            }
        }

        // The live path is the same as without shadow mode.
        assert_eq!(live_state(&app).await, live_state(&plain).await);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM tasks").await,
            plain.count("SELECT COUNT(*) FROM tasks").await
        );

        // `rules shadow` lists exactly the mails `rules replay` of the same candidate finds changed.
        let (shadowed, replayed) = shadowed_and_replayed(
            &app,
            &candidate,
            &pipeline.rules.version(),
            shadow.rules.version(),
        );
        assert!(!shadowed.is_empty(), "the candidate changes some decisions");
        assert!(
            shadowed.len() < mails.len(),
            "and leaves others as they are"
        );
        assert_eq!(shadowed, replayed);
        // A failing candidate rule is the shadow side's error, never the live mail's.
        assert!(
            app.count("SELECT COUNT(*) FROM shadow_decisions WHERE shadow_error LIKE '%candidate rule failed%'")
                .await
                > 0
        );
        let text = run_cli(&app, &["rules", "shadow"]);
        assert!(text.contains("category  tax_demand → notice"), "{text}");
        assert!(
            text.contains(&format!("{} mail(s) decided differently", shadowed.len())),
            "{text}"
        );
        app.cleanup().await;
        plain.cleanup().await;
    }
);

on_both_engines!(
    with_shadow_record_equal_every_committed_mail_gets_one_shadow_row,
    |engine| async move {
        let mails = corpus_mails(30);
        let app = TestApp::new(engine).await;
        app.import_corpus_register().await;
        let (_, pipeline) = shadow_pipeline(&app, true).await;
        let inputs = taxinbox::source::collect(
            &mails
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        // Twice: the second delivery of the same mails is a duplicate and records nothing more.
        for _ in 0..2 {
            taxinbox::ingest::ingest(
                &app.app.store,
                &pipeline,
                &inputs,
                &taxinbox::ingest::IngestOptions {
                    archive: taxinbox::pipeline::batch::Archive::No,
                    dry_run: false,
                    batch_size: 7,
                    max_batch_bytes: taxinbox::pipeline::budget::MAX_BATCH_BYTES,
                    mailbox: None,
                },
                &chrono::Utc::now,
                |_| {},
            )
            .await
            .unwrap();
        }
        let messages = app.count("SELECT COUNT(*) FROM messages").await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM shadow_decisions").await,
            messages
        );
        assert_eq!(
            app.count("SELECT COUNT(DISTINCT message) FROM shadow_decisions")
                .await,
            messages
        );
        let differing = app
            .count("SELECT COUNT(*) FROM shadow_decisions WHERE differs = 1")
            .await;
        assert!(differing > 0 && differing < messages);
        // `rules shadow` prints the differences only.
        let lines = run_cli(&app, &["rules", "shadow", "--format", "jsonl"]);
        assert_eq!(lines.lines().count() as i64, differing);
        app.cleanup().await;
    }
);

/// The messages `rules shadow --format jsonl` lists (checking each names the live and the shadow version), and those
/// `rules replay` of the same candidate over the same stored mail finds changed.
fn shadowed_and_replayed(
    app: &TestApp,
    candidate: &Path,
    live_version: &str,
    shadow_version: &str,
) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let lines = run_cli(app, &["rules", "shadow", "--format", "jsonl"]);
    let shadowed = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["live"]["ruleset"], live_version);
            assert_eq!(v["shadow"]["ruleset"], shadow_version);
            assert!(v["differs"].as_bool().unwrap());
            v["message"].as_i64().unwrap()
        })
        .collect();
    let candidate = candidate.display().to_string();
    let replay = run_cli(
        app,
        &[
            "rules",
            "replay",
            "--since",
            "2000-01-01",
            "--rules",
            &candidate,
        ],
    );
    let replayed = replay
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    (shadowed, replayed)
}

/// `app`'s pipeline with shadow mode on, the candidate being [`candidate_folder`]; `record_equal` as
/// `rules.shadow_record_equal`. Returns the candidate folder too.
async fn shadow_pipeline(
    app: &TestApp,
    record_equal: bool,
) -> (PathBuf, taxinbox::pipeline::Pipeline) {
    let candidate = candidate_folder(app);
    let mut settings = app.app.settings.clone();
    settings.rules.shadow_dir = Some(candidate.clone());
    settings.rules.shadow_record_equal = record_equal;
    let directory = {
        let mut conn = app.app.store.acquire().await.unwrap();
        taxinbox::store::load_directory(&mut conn).await.unwrap()
    };
    let pipeline = taxinbox::app::build_pipeline(&settings, directory).unwrap();
    (candidate, pipeline)
}

/// The live rules with the candidate's first rule added, as a folder of `*.rhai` under `app`'s folder.
fn candidate_folder(app: &TestApp) -> PathBuf {
    let candidate = app.path("rules-candidate");
    crate::helpers::copy_files(&project_root().join("rules/mail"), &candidate);
    std::fs::write(candidate.join("0-candidate.rhai"), CANDIDATE_RULE).unwrap();
    candidate
}

on_both_engines!(
    shadow_mode_runs_on_imap_mail_in_the_pass_that_commits_it,
    |engine| async move {
        let mut dovecot = Dovecot::start();
        let password = dovecot.password_file("imap-password", PASSWORD);
        let app =
            TestApp::with_extra_config(engine, &dovecot.mailbox_config("demands", &password)).await;
        app.import_corpus_register().await;
        for mail in corpus_mails(24) {
            dovecot.deliver(&std::fs::read(mail).unwrap());
        }
        let (candidate, pipeline) = shadow_pipeline(&app, false).await;
        let shadow = pipeline.rules.shadow().expect("shadow mode is on");
        let ctx = taxinbox::imap::PollContext::new(&app.app.store, &pipeline, 5);
        let outcome = taxinbox::imap::poll_mailbox_once(&ctx, &app.app.settings.mailboxes[0])
            .await
            .expect("a pass over the mailbox");
        assert_eq!(outcome.reports.len(), 24);
        let (shadowed, replayed) = shadowed_and_replayed(
            &app,
            &candidate,
            &pipeline.rules.version(),
            shadow.rules.version(),
        );
        assert!(!shadowed.is_empty());
        assert_eq!(shadowed, replayed);
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM shadow_decisions s JOIN messages m ON m.id = s.message \
                 WHERE m.source LIKE 'imap:demands:%'"
            )
            .await,
            shadowed.len() as i64
        );
        app.cleanup().await;
    }
);

/// A rule that makes the test's client mails (subject "Горячая загрузка …") a request with one task for the client's
/// accountant, and its demands (subject "Требование горячее …") an `explanations` demand whose tasks come from
/// `demands.toml` (one demand number per mail, so that none joins another's case).
const CONTEXT_RULE: &str = r#"fn classify(mail) {
    if mail.subject.contains("Горячая загрузка") {
        return #{category: "client_request", reason: "context test",
                 tasks: [#{step: "answer", title: "Ответить клиенту", role: "accountant", due_in_working_days: 2}]};
    }
    if mail.subject.contains("Требование горячее") {
        return #{category: "tax_demand", kind: "explanations", reason: "context test",
                 demand: #{number: mail.subject, date: "2026-03-02"}};
    }
    ()
}
"#;

/// `(client_inn, [(step, assignee, due)])` of the stored mail `id`, once it is stored.
async fn client_and_tasks(
    app: &TestApp,
    daemon: &Daemon,
    id: &str,
) -> (Option<String>, Vec<(String, Option<String>, String)>) {
    decision(app, daemon, id).await;
    let mut conn = app.app.store.acquire().await.unwrap();
    let (message, client): (i64, Option<String>) =
        sqlx::query_as("SELECT id, client_inn FROM messages WHERE message_id = $1")
            .bind(format!("<{id}@test>"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let tasks =
        sqlx::query_as("SELECT step, assignee, due FROM tasks WHERE message = $1 ORDER BY step")
            .bind(message)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    (client, tasks)
}

/// The payloads of the `context_loaded` entries of the audit log, in order.
async fn context_entries(app: &TestApp) -> Vec<serde_json::Value> {
    let mut conn = app.app.store.acquire().await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT payload FROM audit_log WHERE event = 'context_loaded' ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    rows.iter()
        .map(|(p,)| serde_json::from_str(p).unwrap())
        .collect()
}

on_both_engines!(
    a_directory_import_while_the_daemon_runs_is_in_force_for_the_next_mail,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let rules = app.path("rules");
        copy_rules(&rules);
        save_rule(&rules.join("mail/05-context.rhai"), CONTEXT_RULE);
        deliver(&app.path("inbox"), "before", "Горячая загрузка 1");
        let daemon = Daemon::start(&app, &rules);
        // The sender is nobody's client yet: the task waits in the unassigned queue.
        let (client, tasks) = client_and_tasks(&app, &daemon, "before").await;
        assert_eq!(client, None);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].1, None);

        // The admin adds the client (and its accountant) with `directory import` while the daemon runs.
        let clients = app.path("clients.csv");
        std::fs::write(
            &clients,
            "name,inn,kpp,regime,has_employees,vat_payer,accountant,backup_accountant,emails,region\n\
             ООО «Новый клиент»,7728997898,772801001,usn_income,false,false,ivanova@debet-service.example,,\
             client@example.com,77\n",
        )
        .unwrap();
        let accountants = app.path("accountants.csv");
        std::fs::write(
            &accountants,
            "email,name,role,manager\nivanova@debet-service.example,Иванова Анна Петровна,accountant,\n",
        )
        .unwrap();
        daemon.deliver("after", "Горячая загрузка 2");
        let out = run_cli(
            &app,
            &[
                "directory",
                "import",
                &clients.display().to_string(),
                "--accountants",
                &accountants.display().to_string(),
            ],
        );
        assert!(out.contains("1 client(s)"), "{out}");
        // No restart, no signal: the daemon sees the directory generation move and the next mail is the client's.
        let (client, tasks) = client_and_tasks(&app, &daemon, "after").await;
        assert_eq!(client.as_deref(), Some("7728997898"), "{}", daemon.log());
        assert_eq!(
            tasks.iter().map(|t| t.1.as_deref()).collect::<Vec<_>>(),
            [Some("ivanova@debet-service.example")]
        );
        daemon.wait_for_log("directory reloaded: generation 0 → generation 1", 1);
        let entries = context_entries(&app).await;
        assert_eq!(
            entries
                .iter()
                .map(|e| e["register_generation"].as_i64())
                .collect::<Vec<_>>(),
            [Some(0), Some(1)],
            "one audit entry at start, one for the import"
        );
        daemon.stop();
        app.cleanup().await;
    }
);

/// The port the daemon's HTTP endpoint listens on, from its log (it binds port 0).
fn http_port(daemon: &Daemon) -> u16 {
    daemon.wait_for_log("HTTP endpoint up", 1);
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("HTTP endpoint up"))
        .unwrap();
    let after = &line[line
        .find("127.0.0.1:")
        .expect("the listen address in the log")
        + 10..];
    after
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// `/healthz` of the daemon, as JSON.
fn healthz(port: u16) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to HTTP");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap()
}

/// The `answer` task's due date of the stored demand `id`.
async fn answer_due(app: &TestApp, daemon: &Daemon, id: &str) -> String {
    let (_, tasks) = client_and_tasks(app, daemon, id).await;
    tasks
        .into_iter()
        .find(|t| t.0 == "answer")
        .unwrap_or_else(|| panic!("no answer task for {id}:\n{}", daemon.log()))
        .2
}

on_both_engines!(
    an_edited_demand_term_decides_the_next_demand_and_a_broken_catalogue_is_refused,
    |engine| async move {
        let app = TestApp::new(engine).await;
        let rules = app.path("rules");
        copy_rules(&rules);
        save_rule(&rules.join("mail/05-context.rhai"), CONTEXT_RULE);
        deliver(&app.path("inbox"), "first", "Требование горячее 1");
        let daemon = Daemon::start(&app, &rules);
        let port = http_port(&daemon);
        let first = answer_due(&app, &daemon, "first").await;
        let health = healthz(port);
        assert_eq!(health["rules"]["last_error"], serde_json::Value::Null);
        let context = health["rules"]["context"].as_str().unwrap().to_owned();
        assert!(context.starts_with("sha256:"), "{health}");

        // The admin lengthens the term of an explanations answer by five working days.
        let demands = rules.join("demands.toml");
        let text = std::fs::read_to_string(&demands).unwrap();
        let old_term = "working_days = 11, title = \"Представить пояснения";
        assert_eq!(text.matches(old_term).count(), 1);
        daemon.deliver("second", "Требование горячее 2");
        std::fs::write(
            &demands,
            text.replace(
                old_term,
                "working_days = 16, title = \"Представить пояснения",
            ),
        )
        .unwrap();
        let second = answer_due(&app, &daemon, "second").await;
        let (first_due, second_due) = (
            chrono::NaiveDate::parse_from_str(&first, "%Y-%m-%d").unwrap(),
            chrono::NaiveDate::parse_from_str(&second, "%Y-%m-%d").unwrap(),
        );
        // Five working days are at least a week later (the same sent date, the same calendar).
        assert!(
            second_due - first_due >= chrono::Duration::days(7),
            "{first} → {second}"
        );
        daemon.wait_for_log(&format!("{context} → "), 1);
        let edited = healthz(port)["rules"]["context"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(edited, context);

        // A broken catalogue: refused with file:line, the edited terms stay, and /healthz says so.
        daemon.deliver("third", "Требование горячее 3");
        std::fs::write(&demands, format!("{text}\n[kinds.explanations\n")).unwrap();
        daemon.wait_for_log("demands.toml:", 1);
        let third = answer_due(&app, &daemon, "third").await;
        assert_eq!(third, second, "the previous catalogue stays in force");
        let health = healthz(port);
        let error = health["rules"]["last_error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("context: ") && error.contains("demands.toml:"),
            "{health}"
        );
        assert_eq!(health["rules"]["context"], edited.as_str());
        assert!(health["rules"]["reload_failures"].as_u64() >= Some(1));
        let log = daemon.log();
        let refused = log
            .lines()
            .find(|l| l.contains("refused") && l.contains("demands.toml:"))
            .unwrap_or_else(|| panic!("no refusal naming demands.toml:line in the log:\n{log}"));
        assert!(refused.contains("stays in force"), "{refused}");

        // Fixed again: in force, and the error is gone.
        daemon.deliver("fourth", "Требование горячее 4");
        std::fs::write(&demands, &text).unwrap();
        let fourth = answer_due(&app, &daemon, "fourth").await;
        assert_eq!(fourth, first);
        let health = healthz(port);
        assert_eq!(
            health["rules"]["last_error"],
            serde_json::Value::Null,
            "{health}"
        );
        assert_eq!(health["rules"]["context"], context.as_str());
        // Start, edit, back: three contexts recorded, none for the refused file.
        assert_eq!(
            context_entries(&app)
                .await
                .iter()
                .map(|e| e["context"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>(),
            [context.clone(), edited, context]
        );
        daemon.stop();
        app.cleanup().await;
    }
);
