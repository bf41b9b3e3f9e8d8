//! What the Debian package and its users rely on beyond the package itself (built, installed and verified by
//! `scripts/test` through `scripts/package-deb` and `scripts/check-package`): the real binary speaks systemd's
//! notify protocol the way its `Type=notify` unit expects, and the command line documents every flag, in `--help`
//! and in `docs/cli.md`.

use crate::helpers::{project_root, Engine, TestApp};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The next message systemd would receive, within `limit`.
fn next_notification(socket: &UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {limit:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_ready_once_serving_reloading_around_sighup_and_stopping() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::with_extra_config(
        Engine::Sqlite,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .await;
    // systemd's side: a datagram socket named in NOTIFY_SOCKET.
    let socket_path = app.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let log = std::fs::File::create(app.path("daemon.log")).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_taxinbox"))
        .arg("--config")
        .arg(&app.config)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = daemon.id();

    // Start-up loads the rules and migrates the database: READY only once the web view answers.
    let ready = next_notification(&socket, Duration::from_secs(120));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS="), "{ready}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "READY=1 before the web view listens"
    );

    // `systemctl reload`: RELOADING=1 with the monotonic time of its start, then READY=1 when the rules are in force.
    signal(pid, "HUP");
    let reloading = next_notification(&socket, Duration::from_secs(30));
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    let reloaded = next_notification(&socket, Duration::from_secs(60));
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded}");
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon lives on after SIGHUP"
    );

    // `systemctl stop`: STOPPING=1, then a clean exit.
    signal(pid, "TERM");
    let stopping = next_notification(&socket, Duration::from_secs(60));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "taxinbox run did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    app.cleanup().await;
}

#[test]
fn every_flag_has_help_and_a_place_in_the_cli_reference() {
    use clap::CommandFactory as _;
    let reference = std::fs::read_to_string(project_root().join("docs/cli.md")).unwrap();
    let mut undocumented = Vec::new();
    let mut missing_from_reference = Vec::new();
    let mut commands = vec![(String::from("taxinbox"), taxinbox::cli::Cli::command())];
    let mut seen = 0;
    while let Some((path, command)) = commands.pop() {
        if path != "taxinbox" && !reference.contains(&format!("`{path}")) {
            missing_from_reference.push(path.clone());
        }
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            seen += 1;
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                undocumented.push(format!("{path} {id}"));
            }
            if let Some(long) = arg.get_long() {
                if !reference.contains(&format!("--{long}")) {
                    missing_from_reference.push(format!("{path} --{long}"));
                }
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            commands.push((format!("{path} {}", sub.get_name()), sub.clone()));
        }
    }
    assert!(seen > 30, "only {seen} arguments found: the walk is broken");
    assert!(
        undocumented.is_empty(),
        "arguments without help: {undocumented:?}"
    );
    assert!(
        missing_from_reference.is_empty(),
        "not in docs/cli.md: {missing_from_reference:?}"
    );
}
