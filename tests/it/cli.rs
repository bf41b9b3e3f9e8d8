//! The command line as scripts and MTAs use it: the binary, its JSONL contract, stdin, exit codes.

use crate::helpers::{corpus, Engine, TestApp};
use std::io::Write as _;
use std::process::{Command, Stdio};

fn taxinbox(app: &TestApp) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taxinbox"));
    c.arg("--config").arg(&app.config).env_remove("RUST_LOG");
    c
}

const REQUIRED_FIELDS: [&str; 12] = [
    "source",
    "message_id",
    "status",
    "category",
    "kind",
    "client_inn",
    "demand",
    "joins",
    "rule",
    "ruleset",
    "tasks",
    "error",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_prints_the_jsonl_contract_and_reads_stdin() {
    let app = TestApp::new(Engine::Sqlite).await;
    let import = taxinbox(&app)
        .args(["directory", "import"])
        .arg(corpus().join("clients.csv"))
        .arg("--accountants")
        .arg(corpus().join("accountants.csv"))
        .arg("--absences")
        .arg(corpus().join("absences.csv"))
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("60 client(s)"));

    let out = taxinbox(&app)
        .args(["ingest", "--format", "jsonl"])
        .arg(corpus().join("mail/0007.eml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    for field in REQUIRED_FIELDS {
        assert!(line.get(field).is_some(), "field {field} missing in {line}");
    }
    assert_eq!(line["status"], "processed");
    assert_eq!(line["category"], "tax_demand");
    assert_eq!(line["kind"], "documents");
    assert_eq!(line["client_inn"], "1686203469");
    assert_eq!(line["demand"]["number"], "14-13/8809@");
    assert!(line["ruleset"].as_str().unwrap().starts_with("sha256:"));
    let tasks = line["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    for t in tasks {
        for f in ["step", "title", "role", "assignee", "due"] {
            assert!(t.get(f).is_some(), "task field {f} missing");
        }
    }

    // An MTA pipes one message on stdin.
    let mut child = taxinbox(&app)
        .args(["ingest", "--format", "jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(corpus().join("mail/0003.eml")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["source"], "-");
    assert_eq!(line["category"], "client_request");
    assert_eq!(
        line["tasks"][0]["assignee"],
        "sokolova@debet-service.example"
    );

    let verify = taxinbox(&app).args(["audit", "verify"]).output().unwrap();
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));
    app.cleanup().await;
}

#[test]
fn a_bad_setting_is_named_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(&config, "[bogus]\nkey = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&config)
        .args(["rules", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exit codes the README documents: 64 usage, 65 bad input data, 78 configuration, 3 a log that does not
/// verify, and 0 when a reader closes the pipe early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_usage_data_configuration_and_a_closed_pipe_apart() {
    let bin = env!("CARGO_BIN_EXE_taxinbox");
    let usage = Command::new(bin)
        .args(["ingest", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(64));
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(&config, "[bogus]\nkey = 1\n").unwrap();
    let bad_config = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["tasks"])
        .output()
        .unwrap();
    assert_eq!(bad_config.status.code(), Some(78));

    let app = TestApp::new(Engine::Sqlite).await;
    let csv = app.path("clients.csv");
    std::fs::write(&csv, "name,inn\nООО «Опечатка»,7707083894\n").unwrap();
    let bad_data = taxinbox(&app)
        .args(["directory", "import"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(
        bad_data.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&bad_data.stderr)
    );

    // `calendar | head -1`: the reader goes away after one line; taxinbox ends quietly with 0.
    app.import_corpus_register().await;
    let mut child = taxinbox(&app)
        .args(["calendar", "--format", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.cleanup().await;
}

/// `taxinbox backup` while another process ingests the corpus gives a file `audit verify` accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_mail_is_processed_verifies() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.import_corpus_register().await;
    let mut ingesting = taxinbox(&app)
        .args(["ingest", "--format", "jsonl"])
        .arg(corpus().join("mail"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the ingest has committed something, so the copy is taken mid-run.
    for _ in 0..200 {
        if app.count("SELECT COUNT(*) FROM messages").await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let copy = app.path("backup.db");
    let out = taxinbox(&app).arg("backup").arg(&copy).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ingesting.wait().unwrap().success());
    // A second backup to the same file is refused rather than overwriting it.
    let again = taxinbox(&app).arg("backup").arg(&copy).output().unwrap();
    assert!(!again.status.success());

    let config = app.path("backup.toml");
    let original = std::fs::read_to_string(&app.config).unwrap();
    let pointed: Vec<String> = original
        .lines()
        .map(|l| {
            if l.starts_with("url = \"sqlite") {
                format!("url = \"sqlite://{}\"", copy.display())
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_ne!(
        pointed.join("\n"),
        original.trim_end(),
        "the copy's configuration points at the copy"
    );
    std::fs::write(&config, pointed.join("\n")).unwrap();
    let verify = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&config)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(text.contains("intact"), "{text}");
    app.cleanup().await;
}
