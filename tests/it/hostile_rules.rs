//! Hostile rule files through the real ingest path: a rule that loops forever, recurses without end, builds a
//! 100 MB string or a million-item array, amplifies a string inside a helper, calls a function that does not exist,
//! returns the wrong type or throws fails for that one mail — quarantined with the reason, within the configured
//! budget — and the next mail is processed normally. And the sandbox's walls: no `eval`, no `import`, no file,
//! network, environment or process functions, and directory helpers that look one client up, never list them.

use crate::helpers::{on_both_engines, project_root, rules_folder, Engine, TestApp};
use std::path::Path;
use std::time::{Duration, Instant};

/// The rule every case sits in front of: it decides every mail the hostile rule lets through.
const NOTICE: &str = r#"fn classify(mail) { #{category: "notice", reason: "a normal mail"} }"#;

/// A hostile body that only runs on mail whose subject says so; everything else passes to the next file.
fn hostile(body: &str) -> String {
    format!(
        "fn classify(mail) {{\n    if !mail.subject.contains(\"HOSTILE\") {{ return (); }}\n    {body}\n}}\n"
    )
}

fn mail(dir: &Path, name: &str, subject: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "From: someone@client.example\r\nTo: buh@debet-service.example\r\nSubject: {subject}\r\n\
             Message-ID: <{name}@hostile-rules.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0300\r\n\r\nText.\r\n"
        ),
    )
    .unwrap();
    path
}

/// Each case: file name, the body of the hostile rule, and a piece of the reason the mail must be quarantined with.
const CASES: &[(&str, &str, &str)] = &[
    ("10-loop.rhai", "loop { }", "stopped"),
    (
        "10-while.rhai",
        "let x = 0; while true { x += 1; }",
        "stopped",
    ),
    (
        "10-recursion.rhai",
        "fn_deep(0)\n}\nfn fn_deep(n) { fn_deep(n + 1) }\nfn unused() {",
        "10-recursion.rhai",
    ),
    (
        "10-string.rhai",
        r#"let s = "0123456789"; while s.len() < 100000000 { s += s; } s"#,
        "10-string.rhai",
    ),
    (
        "10-array.rhai",
        "let a = []; for i in 0..1000000 { a.push(i); } a",
        "10-array.rhai",
    ),
    (
        "10-amplify.rhai",
        r#"let s = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; while s.len() < 500000 { s += s; }
           let t = regex_replace(s, ".", s); t.len()"#,
        "regex_replace: the result is longer than the limit",
    ),
    (
        "10-missing.rhai",
        "no_such_function(mail)",
        "no_such_function",
    ),
    (
        "10-string-return.rhai",
        r#""tax_demand""#,
        "10-string-return.rhai",
    ),
    ("10-int-return.rhai", "42", "10-int-return.rhai"),
    ("10-map-wrong-field.rhai", r#"#{category: 42}"#, "category"),
    (
        "10-tasks-wrong-type.rhai",
        r#"#{category: "tax_demand", kind: "documents", tasks: "all of them"}"#,
        "tasks",
    ),
    (
        "10-throw.rhai",
        r#"throw "deliberately thrown by the test""#,
        "deliberately thrown by the test",
    ),
    (
        "10-import.rhai",
        r#"import "/etc/passwd" as p; ()"#,
        "10-import.rhai",
    ),
];

async fn each_hostile_rule_fails_only_its_mail(engine: Engine) {
    let mut t = TestApp::new(engine).await;
    // A budget well below the default, so the wall-clock cases are quick; operations high enough that the
    // endless loops meet the clock, not the operation count.
    let budget = Duration::from_millis(300);
    t.app.settings.rules.limits.time_budget = budget;
    t.app.settings.rules.limits.max_operations = 1_000_000_000_000;
    let inbox = tempfile::tempdir().unwrap();
    let mut tried = 0;
    for (i, (file, body, reason)) in CASES.iter().enumerate() {
        let rules = rules_folder(&[(file, &hostile(body)), ("20-notice.rhai", NOTICE)]);
        t.app.settings.rules.dir = rules.path().to_path_buf();
        let bad = mail(inbox.path(), &format!("{i:02}-a.eml"), "HOSTILE case");
        let good = mail(inbox.path(), &format!("{i:02}-b.eml"), "Ordinary mail");
        let started = Instant::now();
        let reports = t.ingest(&[&bad, &good], false).await;
        let took = started.elapsed();
        assert_eq!(reports.len(), 2, "{file}: {reports:?}");
        let (b, g) = (&reports[0], &reports[1]);
        assert_eq!(b.status.as_str(), "quarantined", "{file}: {b:?}");
        let error = b.error.clone().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{file}: quarantined with {error:?}, expected it to mention {reason:?}"
        );
        assert_eq!(
            (g.status.as_str(), g.category.as_deref()),
            ("processed", Some("notice")),
            "{file}: the next mail was not processed normally: {g:?}"
        );
        // A hang detector, not a speed check: a stopped rule gives up within its budget plus the ingest's own work.
        assert!(took < budget + Duration::from_secs(60), "{file}: {took:?}");
        tried += 1;
    }
    assert_eq!(
        t.count("SELECT COUNT(*) FROM messages WHERE status = 'quarantined'")
            .await,
        tried
    );
    eprintln!("hostile rules: {tried} rule files tried, each quarantined only its own mail");
    t.cleanup().await;
}

on_both_engines!(
    a_hostile_rule_quarantines_its_mail_with_the_reason_and_the_next_mail_is_processed,
    each_hostile_rule_fails_only_its_mail
);

#[tokio::test]
async fn eval_is_refused_when_the_rules_load_naming_file_and_line() {
    let mut t = TestApp::new(Engine::Sqlite).await;
    let rules = rules_folder(&[(
        "10-eval.rhai",
        "fn classify(mail) {\n    eval(\"40 + 2\")\n}\n",
    )]);
    t.app.settings.rules.dir = rules.path().to_path_buf();
    let err = format!("{:#}", t.app.pipeline().await.unwrap_err());
    assert!(
        err.contains("10-eval.rhai:2"),
        "the load error names neither file nor line: {err}"
    );
    t.cleanup().await;
}

/// Names a rule might try for files, sockets, processes, the environment or the whole directory.
const FORBIDDEN: &[&str] = &[
    "open",
    "open_file",
    "read_file",
    "write_file",
    "read_dir",
    "File",
    "socket",
    "connect",
    "http_get",
    "fetch",
    "system",
    "exec",
    "spawn",
    "env",
    "getenv",
    "sleep",
    "clients",
    "all_clients",
    "list_clients",
    "accountants",
    "directory",
    "timestamp",
];

#[tokio::test]
async fn no_function_reaches_files_sockets_processes_or_the_whole_register() {
    let mut t = TestApp::new(Engine::Sqlite).await;
    t.import_corpus_register().await;
    let inbox = tempfile::tempdir().unwrap();
    let (mut unknown, mut refused_at_load) = (0, 0);
    for (i, name) in FORBIDDEN.iter().enumerate() {
        let rules = rules_folder(&[
            ("10-try.rhai", &hostile(&format!("{name}(\"/etc/passwd\")"))),
            ("20-notice.rhai", NOTICE),
        ]);
        t.app.settings.rules.dir = rules.path().to_path_buf();
        // Either the name cannot even be written (a reserved word refuses the whole rule set at load, naming the
        // file), or calling it fails that mail as an unknown function.
        if let Err(e) = t.app.pipeline().await {
            let e = format!("{e:#}");
            assert!(e.contains("10-try.rhai:3"), "{name}: {e}");
            refused_at_load += 1;
            continue;
        }
        let bad = mail(inbox.path(), &format!("{i:02}.eml"), "HOSTILE probe");
        let reports = t.ingest(&[&bad], false).await;
        let error = reports[0].error.clone().unwrap_or_default();
        assert!(
            reports[0].status.as_str() == "quarantined" && error.contains("not found"),
            "{name}(…) did not fail as an unknown function: {:?}",
            reports[0]
        );
        unknown += 1;
    }
    assert_eq!(refused_at_load + unknown, FORBIDDEN.len());
    eprintln!("sandbox probes: {unknown} unknown functions, {refused_at_load} reserved words refused at load");
    // The directory helpers answer one lookup: empty, wildcard and pattern-like keys find nobody.
    let probe = r#"
        let found = [];
        for key in ["", " ", "*", "%", "@", ".*", "0000000000"] {
            if client_by_inn(key) != () || client_by_email(key) != () || clients_by_email(key).len() > 0 {
                found.push(key);
            }
        }
        if found.len() > 0 { throw `a lookup of ${found} found clients`; }
        #{category: "notice", reason: "nothing leaked"}
    "#;
    let rules = rules_folder(&[("10-probe.rhai", &hostile(probe))]);
    t.app.settings.rules.dir = rules.path().to_path_buf();
    let m = mail(inbox.path(), "probe.eml", "HOSTILE register probe");
    let reports = t.ingest(&[&m], false).await;
    assert_eq!(
        (reports[0].status.as_str(), reports[0].category.as_deref()),
        ("processed", Some("notice")),
        "{:?}",
        reports[0]
    );
    t.cleanup().await;
}

#[test]
fn every_helper_a_rule_can_call_is_a_reviewed_pure_function_or_a_single_lookup() {
    // A new helper must be added here by someone who checked that it neither touches the outside world nor
    // hands a rule more of the directory than one lookup.
    const REVIEWED: &[&str] = &[
        "is_valid_inn",
        "find_inns",
        "parse_date",
        "find_dates",
        "find_dates_at",
        "add_working_days",
        "next_working_day",
        "is_working_day",
        "client_by_inn",
        "client_by_email",
        "clients_by_email",
        "is_staff",
        "is_firm_address",
        "demand_phrases",
        "demand_kind",
        "demand_kinds",
        "earliest_phrase",
        "contains_any",
        "regex_match",
        "regex_capture",
        "regex_captures",
        "regex_find_all",
        "squash",
        "regex_replace",
        "find_date_after",
        "inn_roles",
        "fail",
        // Read the compiled vocabulary (topics.toml) and the mail map they are given; nothing else.
        "request_topic",
        "topic_scores",
        "topic_role",
        // Compiles the phrase list it is given (bounded cache), searches the text it is given.
        "count_phrases",
    ];
    let source = std::fs::read_to_string(project_root().join("src/rules/helpers.rs")).unwrap();
    let re = regex::Regex::new(r#"register_fn\(\s*"([A-Za-z_0-9]+)""#).unwrap();
    let registered: std::collections::BTreeSet<&str> = re
        .captures_iter(&source)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    assert!(registered.len() >= 20, "{registered:?}");
    let unreviewed: Vec<&&str> = registered
        .iter()
        .filter(|n| !REVIEWED.contains(n))
        .collect();
    assert!(
        unreviewed.is_empty(),
        "helpers nobody reviewed for the sandbox: {unreviewed:?}"
    );
    for word in ["std::fs", "std::net", "std::process", "std::env", "tokio::"] {
        assert!(
            !source.contains(word),
            "src/rules/helpers.rs uses {word}: rules must do no I/O"
        );
    }
}
