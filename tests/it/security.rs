//! Security promises checked end to end with the real binary and real servers: a password (IMAP from a file or the
//! environment, SMTP, the database URL's) never shows in what `taxinbox` prints, even at debug verbosity; TLS
//! certificates are verified (a private CA only when `tls_ca_file` names it); leaving `tls` out means TLS, so
//! plain text happens only when `tls = "none"` is written.

use crate::dovecot::{Dovecot, PASSWORD};
use crate::helpers::{corpus, project_root, Engine, TestApp};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A run still going after this long is taken to hang (a hang detector, not a speed check).
const GUARD: Duration = Duration::from_secs(120);

/// Runs the binary with `args` and `env` at debug verbosity, returning its exit status and stdout + stderr.
fn taxinbox(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start taxinbox");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GUARD {
            child.kill().ok();
            child.wait().ok();
            panic!("taxinbox {args:?} still running after {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    (status, text)
}

/// The test's configuration file, written whole: its database, the shipped rules, the given `[notify]` section
/// (the file outbox when empty) and further sections.
fn write_config(t: &TestApp, notify: &str, extra: &str) {
    let notify = if notify.is_empty() {
        format!(
            "[notify]\ntransport = \"file\"\ndir = \"{}\"\nfrom = \"taxinbox@debet-service.example\"\n",
            t.path("outbox").display()
        )
    } else {
        notify.to_owned()
    };
    std::fs::write(
        &t.config,
        format!(
            "[database]\nurl = \"{}\"\n[rules]\ndir = \"{}\"\n{notify}{extra}\n",
            t.app.settings.database.url,
            project_root().join("rules").display(),
        ),
    )
    .unwrap();
}

fn assert_hidden(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "the secret {secret:?} was printed:\n{output}"
        );
    }
}

fn corpus_mail(n: usize) -> Vec<u8> {
    std::fs::read(corpus().join("mail").join(format!("{n:04}.eml"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_imap_password_from_a_file_or_the_environment_never_shows_in_run_once_output() {
    let t = TestApp::new(Engine::Sqlite).await;
    let mut dovecot = Dovecot::start();
    dovecot.deliver(&corpus_mail(1));
    let wrong = "Wr0ng-imap-secret-7f3a";
    let file = dovecot.password_file("wrong-password", wrong);
    let from_file = dovecot.mailbox_config("demands", &file);
    let from_env = from_file.replace(
        &format!("password_file = \"{}\"", file.display()),
        "password_env = \"TAXINBOX_TEST_IMAP_SECRET\"",
    );
    assert_ne!(from_file, from_env);
    for (how, mailbox) in [("password_file", from_file), ("password_env", from_env)] {
        write_config(&t, "", &mailbox);
        let (status, output) = taxinbox(
            &t.config,
            &["run", "--once"],
            &[("TAXINBOX_TEST_IMAP_SECRET", wrong)],
        );
        assert!(
            !status.success(),
            "{how}: a refused login must fail the run"
        );
        assert!(
            output.contains("demands") && output.to_lowercase().contains("auth"),
            "{how}: the error should name the mailbox and the refused login:\n{output}"
        );
        assert_hidden(&output, &[wrong, PASSWORD]);
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM messages").await, 0);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_shows_in_an_error() {
    let secret = "Db-Secret-Value-42";
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxinbox.toml");
    std::fs::write(&config, "").unwrap();
    for url in [
        // Nobody listens: connection refused.
        format!("postgres://taxinbox:{secret}@127.0.0.1:{closed}/taxinbox"),
        // The server answers: no such role or database.
        format!("postgres://nobody_here:{secret}@127.0.0.1:5432/taxinbox_no_such_database"),
    ] {
        let (status, output) = taxinbox(
            &config,
            &["tasks"],
            &[("TAXINBOX__DATABASE__URL", url.as_str())],
        );
        assert!(!status.success(), "{url}: {output}");
        assert!(
            output.contains("127.0.0.1"),
            "the error should say which server:\n{output}"
        );
        assert_hidden(&output, &[secret]);
    }
}

/// An aiosmtpd controller run by one of the scripts below on a free port (`argv[1]`), killed when dropped.
struct PythonSmtp {
    child: std::process::Child,
    port: u16,
}

const REFUSING_SMTP: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

def refuse(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=False, handled=False)

controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), authenticator=refuse,
                        auth_require_tls=False, auth_required=True)
controller.start()
while True:
    time.sleep(3600)
"#;

/// A server with STARTTLS required, certificate and key in `argv[2]` and `argv[3]`, writing each message it accepts
/// into the folder `argv[4]`.
const STARTTLS_SMTP: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller

class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(sys.argv[4]))
        with open(os.path.join(sys.argv[4], "%06d.eml" % n), "wb") as f:
            f.write(envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode())
        return "250 OK"

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(sys.argv[2], sys.argv[3])
controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), tls_context=context,
                        require_starttls=True)
controller.start()
while True:
    time.sleep(3600)
"#;

impl PythonSmtp {
    fn start(script: &str, args: &[&Path]) -> PythonSmtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Debian's python3-aiosmtpd lives with the system Python, which a version manager may shadow on PATH.
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("aiosmtpd is needed: run scripts/test-services (installs python3-aiosmtpd)");
        let child = Command::new(python)
            .args(["-c", script])
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (python3-aiosmtpd, see scripts/test-services)");
        let server = PythonSmtp { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not listen on 127.0.0.1:{port} within 10 s");
    }
}

impl Drop for PythonSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Imports the corpus directory and ingests corpus mail, one by one, until a notification is queued; returns how
/// many are.
async fn queue_notifications(t: &TestApp) -> i64 {
    t.import_corpus_register().await;
    for n in 1..=40 {
        let path = corpus().join("mail").join(format!("{n:04}.eml"));
        t.ingest(&[&path], false).await;
        let queued = t.count("SELECT COUNT(*) FROM outbox").await;
        if queued > 0 {
            return queued;
        }
    }
    panic!("40 corpus mails queued no notification");
}

/// Nothing went out, nothing was given up on, and every notification queued before still waits for the next try
/// (the pass may queue more of its own).
async fn assert_unsent(t: &TestApp, queued: i64, what: &str) {
    assert_eq!(
        t.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL OR status <> 'pending'")
            .await,
        0,
        "{what}: a notification was marked sent or failed for good"
    );
    assert!(
        t.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .await
            >= queued,
        "{what}: a queued notification was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_smtp_password_never_shows_and_the_notification_stays_queued() {
    let t = TestApp::new(Engine::Sqlite).await;
    let queued = queue_notifications(&t).await;
    let smtp = PythonSmtp::start(REFUSING_SMTP, &[]);
    let secret = "Smtp-Secret-Value-99";
    write_config(
        &t,
        &format!(
            "[notify]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             user = \"taxinbox@debet-service.example\"\npassword_env = \"TAXINBOX_TEST_SMTP_SECRET\"\n\
             from = \"taxinbox@debet-service.example\"\n",
            smtp.port
        ),
        "",
    );
    let (_status, output) = taxinbox(
        &t.config,
        &["run", "--once"],
        &[("TAXINBOX_TEST_SMTP_SECRET", secret)],
    );
    assert!(
        output.contains("SMTP"),
        "the refused login should be reported:\n{output}"
    );
    assert_hidden(&output, &[secret]);
    assert_unsent(&t, queued, "a refused login").await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_tls_refuses_a_private_certificate_unless_tls_ca_file_names_its_ca() {
    let t = TestApp::new(Engine::Sqlite).await;
    let mut dovecot = Dovecot::start_tls();
    dovecot.deliver(&corpus_mail(1));
    let password = dovecot.password_file("imap-password", PASSWORD);
    let ca = dovecot.ca_file.clone().unwrap();
    let mailbox = |ca_line: &str| {
        format!(
            "[[mailboxes]]\nname = \"demands\"\nhost = \"localhost\"\nport = {}\ntls = \"tls\"\n{ca_line}user = \"buh\"\npassword_file = \"{}\"\n",
            dovecot.port,
            password.display()
        )
    };
    write_config(&t, "", &mailbox(""));
    let (status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(!status.success(), "{output}");
    assert!(
        output.to_lowercase().contains("certificate"),
        "an unknown issuer should be reported as a certificate problem:\n{output}"
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM messages").await, 0);

    write_config(
        &t,
        "",
        &mailbox(&format!("tls_ca_file = \"{}\"\n", ca.display())),
    );
    let (status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(status.success(), "{output}");
    assert_eq!(t.count("SELECT COUNT(*) FROM messages").await, 1);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_tls_out_means_tls_so_a_plain_text_imap_server_is_refused() {
    let t = TestApp::new(Engine::Sqlite).await;
    let mut dovecot = Dovecot::start();
    dovecot.deliver(&corpus_mail(1));
    let password = dovecot.password_file("imap-password", PASSWORD);
    let explicit = dovecot.mailbox_config("demands", &password);
    let implicit = explicit.replace("tls = \"none\"\n", "");
    assert_ne!(explicit, implicit);

    write_config(&t, "", &implicit);
    let (status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(
        !status.success(),
        "a plain-text server must not be used without tls = \"none\":\n{output}"
    );
    assert!(
        output.contains("TLS") || output.to_lowercase().contains("tls"),
        "the error should point at TLS:\n{output}"
    );
    assert_hidden(&output, &[PASSWORD]);
    assert_eq!(t.count("SELECT COUNT(*) FROM messages").await, 0);

    write_config(&t, "", &explicit);
    let (status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(status.success(), "{output}");
    assert_eq!(t.count("SELECT COUNT(*) FROM messages").await, 1);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_tls_out_of_smtp_means_starttls_so_a_plain_text_server_gets_nothing() {
    let t = TestApp::new(Engine::Sqlite).await;
    let queued = queue_notifications(&t).await;
    // aiosmtpd without TLS: it offers no STARTTLS.
    let smtp = PythonSmtp::start(REFUSING_SMTP, &[]);
    write_config(
        &t,
        &format!(
            "[notify]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"taxinbox@debet-service.example\"\n",
            smtp.port
        ),
        "",
    );
    let (_status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(output.contains("SMTP"), "{output}");
    assert_unsent(&t, queued, "a plain-text server without tls = \"none\"").await;
    t.cleanup().await;
}

/// A private CA and a certificate for `localhost` / 127.0.0.1 signed by it, as PEM files in `dir`: (ca, cert, key).
fn private_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_starttls_refuses_a_private_certificate_unless_tls_ca_file_names_its_ca() {
    let t = TestApp::new(Engine::Sqlite).await;
    let queued = queue_notifications(&t).await;
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path());
    let received = tempfile::tempdir().unwrap();
    let smtp = PythonSmtp::start(STARTTLS_SMTP, &[&cert, &key, received.path()]);
    let notify = |ca_line: &str| {
        format!(
            "[notify]\ntransport = \"smtp\"\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\n{ca_line}\
             from = \"taxinbox@debet-service.example\"\n",
            smtp.port
        )
    };
    write_config(&t, &notify(""), "");
    let (_status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    assert!(
        output.to_lowercase().contains("certificate"),
        "an unknown issuer should be reported as a certificate problem:\n{output}"
    );
    assert_unsent(&t, queued, "a certificate of an unknown CA").await;
    assert_eq!(std::fs::read_dir(received.path()).unwrap().count(), 0);

    // The failed try put the notifications off for a while; the next pass is "later".
    let mut conn = t.app.store.acquire().await.unwrap();
    sqlx::query("UPDATE outbox SET not_before = created_at")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    write_config(
        &t,
        &notify(&format!("tls_ca_file = \"{}\"\n", ca.display())),
        "",
    );
    let (_status, output) = taxinbox(&t.config, &["run", "--once"], &[]);
    let sent = t
        .count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
        .await;
    assert!(sent >= queued, "{sent} of {queued} sent:\n{output}");
    assert_eq!(
        std::fs::read_dir(received.path()).unwrap().count() as i64,
        sent
    );
    t.cleanup().await;
}
