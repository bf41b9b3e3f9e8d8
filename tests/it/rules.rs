//! Rule tooling for admins: `rules check` (compile and lint), the fixtures of `rules/tests` through the one runner
//! behind `rules test`, `rules replay` on stored mail, and the decision trace in the log.

use crate::helpers::{copy_files, corpus, project_root, rules_folder, Engine, TestApp};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use taxinbox::pipeline::{fixtures, replay};
use taxinbox::rules::check::{self, Severity};
use taxinbox::rules::Limits;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;

/// A rules folder of its own: the shipped demand catalogue and calendars, the given rule files, and optionally
/// fixtures (copied from the shipped ones) with the shipped directory.
fn rules_dir(files: &[(&str, &str)], fixtures: &[&str]) -> tempfile::TempDir {
    let dir = rules_folder(files);
    let shipped = project_root().join("rules");
    if !fixtures.is_empty() {
        copy_files(
            &shipped.join("tests/register"),
            &dir.path().join("tests/register"),
        );
        for f in fixtures {
            for ext in ["eml", "expected.toml"] {
                std::fs::copy(
                    shipped.join("tests").join(format!("{f}.{ext}")),
                    dir.path().join("tests").join(format!("{f}.{ext}")),
                )
                .unwrap();
            }
        }
    }
    dir
}

#[test]
fn every_shipped_fixture_passes_and_covers_every_rule_file_kind_and_topic() {
    let rules = project_root().join("rules");
    let run = fixtures::run_fixtures(&rules, &rules.join("tests"), &Limits::default(), TZ).unwrap();
    assert_eq!(run.failed(), 0, "{run}");
    assert!(run.results.len() >= 30, "{} fixtures", run.results.len());
    let text = run.to_string();
    for rule in [
        "00-ignore",
        "10-notices",
        "20-demands",
        "30-internal",
        "40-requests",
        "50-bulk",
    ] {
        assert!(
            text.contains(&format!("by {rule}.rhai")),
            "no fixture for {rule}"
        );
    }
    for kind in [
        "documents",
        "counterparty_documents",
        "explanations",
        "payment",
        "summons",
        "freeze",
        "other",
    ] {
        assert!(
            text.contains(&format!("tax_demand/{kind} ")),
            "no demand {kind}"
        );
    }
    for topic in check::TOPICS {
        assert!(
            text.contains(&format!("client_request/{topic} ")),
            "no request {topic}"
        );
    }
}

#[test]
fn a_failing_fixture_names_what_differs() {
    let dir = rules_dir(
        &[(
            "10-all.rhai",
            r#"fn classify(mail) { #{category: "notice", client_inn: ()} }"#,
        )],
        &["own-demand-xml-only"],
    );
    let run = fixtures::run_fixtures(
        dir.path(),
        &dir.path().join("tests"),
        &Limits::default(),
        TZ,
    )
    .unwrap();
    assert_eq!(run.failed(), 1);
    let text = run.to_string();
    assert!(
        text.contains(r#"category: got "notice", want "tax_demand""#),
        "{text}"
    );
    assert!(text.contains("rule: got \"10-all.rhai\""), "{text}");
    // The rule files the demand as a notice; the engine's safety net still gives it a review task.
    assert!(text.contains("tasks: got [review "), "{text}");
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}

#[test]
fn check_passes_the_shipped_rules_without_errors() {
    let report = check::check(&project_root().join("rules"), &Limits::default(), TZ).unwrap();
    assert_eq!(report.errors(), 0, "{report}");
    assert!(report.fixtures >= 30);
    assert!(
        report.to_string().contains("rules OK: 6 file(s)"),
        "{report}"
    );
}

#[test]
fn check_names_file_line_and_column_of_every_syntax_error() {
    let dir = rules_dir(
        &[
            ("10-bad.rhai", "fn classify(mail) {\n    let = 1;\n}\n"),
            ("20-good.rhai", "fn classify(mail) { () }\n"),
            ("30-bad.rhai", "fn classify(mail) {\n  ()\n  x +\n"),
            ("40-nofn.rhai", "fn other(mail) { () }\n"),
        ],
        &[],
    );
    let report = check::check(dir.path(), &Limits::default(), TZ).unwrap();
    let text = report.to_string();
    assert_eq!(report.errors(), 3, "{text}");
    assert!(text.contains("10-bad.rhai:2:9: error:"), "{text}");
    assert!(text.contains("30-bad.rhai:"), "{text}");
    assert!(
        text.contains("40-nofn.rhai:1:1: error: a rule file must define `fn classify(mail)`"),
        "{text}"
    );
    assert!(text.contains("rules NOT OK"), "{text}");
}

#[test]
fn check_lints_unknown_category_kind_role_key_and_a_task_without_deadline() {
    // Literals are caught in the text; computed values only when the rule runs on a fixture.
    let dir = rules_dir(
        &[
            (
                "10-static.rhai",
                "fn classify(mail) {\n    if mail.subject == \"never\" { return #{category: \"tax_demmand\"}; }\n    ()\n}\n",
            ),
            (
                "20-dynamic.rhai",
                r#"fn classify(mail) {
    let c = "not" + "ice";
    if mail.from.contains("1c.ru") { return #{category: "tax_" + "demand", kind: "docs" + "s"}; }
    if mail.from.contains("taxcom") { return #{category: c, tasks: [#{step: "x", role: "boss" + "", due_in_working_days: 1}]}; }
    if mail.from.contains("veter") { return #{category: c, resaon: "typo"}; }
    if mail.from.contains("saby") { return #{category: c, tasks: [#{step: "call"}]}; }
    if mail.from.contains("bank") { return #{category: "spam" + ""}; }
    ()
}
"#,
            ),
        ],
        &[
            "own-demand-xml-only",
            "own-demand-koi8r-plain-text",
            "own-demand-outlook-forward-english-headers",
            "own-bulk-operator-service-news",
            "own-bulk-bank-precedence-list",
        ],
    );
    let report = check::check(dir.path(), &Limits::default(), TZ).unwrap();
    let text = report.to_string();
    let errors: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    assert_eq!(errors.len(), 6, "{text}");
    assert!(
        text.contains("10-static.rhai:2:43: error: unknown category `tax_demmand`"),
        "{text}"
    );
    assert!(
        text.contains("20-dynamic.rhai: error: unknown demand kind `docss`: not in demands.toml"),
        "{text}"
    );
    assert!(text.contains("unknown role `boss`"), "{text}");
    assert!(text.contains("unknown decision key `resaon`"), "{text}");
    assert!(
        text.contains("task `call` has neither `due_in_working_days` nor `due_date`"),
        "{text}"
    );
    assert!(text.contains("unknown category `spam`"), "{text}");
    assert!(
        text.contains("(on own-bulk-bank-precedence-list.eml)"),
        "{text}"
    );
}

#[test]
fn rules_check_and_rules_test_exit_non_zero_on_a_failure() {
    let dir = rules_dir(
        &[("10-bad.rhai", "fn classify(mail) {\n    let = 1;\n}\n")],
        &["own-demand-xml-only"],
    );
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/t.db\"\n[rules]\ndir = \"{}\"\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_taxinbox"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let check = run(&["rules", "check"]);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).contains("10-bad.rhai:2:9: error:"));
    std::fs::write(
        dir.path().join("mail/10-bad.rhai"),
        "fn classify(mail) { () }\n",
    )
    .unwrap();
    assert!(run(&["rules", "check"]).status.success());
    let test = run(&["rules", "test"]);
    assert!(
        !test.status.success(),
        "an unclassified mail fails its fixture"
    );
    assert!(String::from_utf8_lossy(&test.stdout).contains("FAIL  own-demand-xml-only"));
}

fn truth_files_with_category(category: &str) -> BTreeSet<String> {
    std::fs::read_to_string(corpus().join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["category"] == category)
        .map(|t| {
            t["file"]
                .as_str()
                .unwrap()
                .trim_start_matches("mail/")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_lists_exactly_the_mail_whose_decision_changes_and_writes_nothing() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let reports = app.ingest(&[&corpus().join("mail")], false).await;
    assert_eq!(reports.len(), 400);
    let log_before = app.count("SELECT COUNT(*) FROM audit_log").await;

    // The candidate: the shipped rules with notices ignored instead.
    let candidate = tempfile::tempdir().unwrap();
    copy_files(&project_root().join("rules/mail"), candidate.path());
    let notices = candidate.path().join("10-notices.rhai");
    let text = std::fs::read_to_string(&notices).unwrap();
    std::fs::write(
        &notices,
        text.replace(r#"category: "notice""#, r#"category: "ignore""#),
    )
    .unwrap();

    let store = taxinbox::store::Store::connect_read_only(&app.app.settings.database.url)
        .await
        .unwrap();
    let directory = {
        let mut conn = store.acquire().await.unwrap();
        taxinbox::store::load_directory(&mut conn).await.unwrap()
    };
    let settings = &app.app.settings;
    let pipeline = replay::candidate_pipeline(
        &settings.rules.dir,
        Some(candidate.path()),
        &settings.rules.limits.clone(),
        directory.clone(),
        settings.general.timezone,
    )
    .unwrap();
    let since = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let outcome = replay::replay(&store, &pipeline, since).await.unwrap();
    assert_eq!(outcome.examined, 400);
    let changed: BTreeSet<String> = outcome
        .changes
        .iter()
        .map(|c| {
            Path::new(&c.source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(changed, truth_files_with_category("notice"), "{outcome}");
    assert!(outcome
        .changes
        .iter()
        .all(|c| c.old.category.as_deref() == Some("notice")
            && c.new.category.as_deref() == Some("ignore")));
    assert!(outcome.to_string().contains("category  notice → ignore"));

    // The ruleset in force changes nothing; the replay wrote nothing.
    let same = replay::candidate_pipeline(
        &settings.rules.dir,
        None,
        &settings.rules.limits.clone(),
        directory,
        settings.general.timezone,
    )
    .unwrap();
    let unchanged = replay::replay(&store, &same, since).await.unwrap();
    assert!(unchanged.changes.is_empty(), "{unchanged}");
    store.close().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log").await,
        log_before
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_each_mails_decision_trace_and_audit_show_prints_it() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let fixture = project_root().join("rules/tests/own-demand-xml-only.eml");
    let reports = app.ingest(&[&fixture], false).await;
    let id = reports[0].id.unwrap();
    let mut conn = app.app.store.acquire().await.unwrap();
    let story = taxinbox::audit::story(&mut conn, id)
        .await
        .unwrap()
        .unwrap();
    let trace = &story.history.last().unwrap().payload["trace"];
    assert_eq!(
        trace["passed"],
        serde_json::json!(["00-ignore.rhai", "10-notices.rhai"])
    );
    assert_eq!(trace["decided"], "20-demands.rhai");
    // The rule chose the client; the trace says where in the mail that INN stands.
    assert_eq!(trace["client_from"], "xml_taxpayer");
    let shown = taxinbox::audit::render_story(&story, TZ);
    assert!(
        shown.contains("returned (): 00-ignore.rhai, 10-notices.rhai"),
        "{shown}"
    );
    assert!(shown.contains("decided by:  20-demands.rhai"), "{shown}");
    assert!(
        shown.contains("client:      7715401684 (from xml_taxpayer)"),
        "{shown}"
    );
    assert!(
        shown.contains("deadline:    answer 2026-03-25 ←"),
        "{shown}"
    );
    drop(conn);
    app.cleanup().await;
}

#[test]
fn check_warns_of_the_pending_2027_regional_days_naming_file_and_region_without_failing() {
    let report = check::check(&project_root().join("rules"), &Limits::default(), TZ).unwrap();
    assert_eq!(report.errors(), 0, "{report}");
    let text = report.to_string();
    for region in ["16", "02"] {
        assert!(
            text.contains(&format!(
                "calendar/production/2027.toml: warning: region {region}: [regions.{region}] of 2027: the dates of Ураза-байрам, Курбан-байрам are not fixed yet"
            )),
            "{text}"
        );
    }
}
