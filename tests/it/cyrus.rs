//! A private Cyrus IMAP server (Debian's 3.6, `cyrus-imapd` + `cyrus-common`) for the tests that must not see
//! only Dovecot: its own configuration, SASL password file, spool and sockets in a temporary folder, IMAP on
//! 127.0.0.1 on a free port, mail delivered by LMTP on a Unix socket of its own, killed when dropped.
//!
//! Debian's IMAP servers conflict with one another (installing `cyrus-imapd` removes `dovecot-imapd`), so
//! `scripts/test-services` does not install Cyrus: it fetches the two packages with `apt-get download`, unpacks
//! them with `dpkg-deb -x` into `target/test-servers/cyrus` (or `$TAXINBOX_TEST_SERVERS/cyrus`) and installs only
//! the libraries they need and `sasl2-bin` (`saslpasswd2`), none of which conflicts. Every path Cyrus uses is set
//! in the test's own `imapd.conf` (`-C`), so nothing of the machine's is read or written.
//!
//! The configuration is the packaged one where it matters to a client: `.` as separator (`unixhierarchysep:
//! no`), personal folders below INBOX (`altnamespace: no`), INBOX made at first login. `suppress_capabilities`
//! hides capabilities (MOVE, UIDPLUS) for the tests of the COPY + EXPUNGE path.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::dovecot::{PASSWORD, USER};

/// A running Cyrus.
pub struct Cyrus {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Where `scripts/test-services` unpacked Cyrus.
fn root() -> PathBuf {
    let base = std::env::var_os("TAXINBOX_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers"));
    base.join("cyrus")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The user the server's processes run as: the unprivileged `mail` as root (Cyrus drops root), else oneself.
fn server_user() -> (String, u32, u32) {
    let id = |args: &[&str]| {
        let o = Command::new("id").args(args).output().expect("run id");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    if id(&["-u"]) == "0" {
        let uid = id(&["-u", "mail"]).parse().expect("the mail user exists");
        let gid = id(&["-g", "mail"]).parse().expect("the mail group exists");
        ("mail".to_owned(), uid, gid)
    } else {
        (
            id(&["-un"]),
            id(&["-u"]).parse().expect("uid"),
            id(&["-g"]).parse().expect("gid"),
        )
    }
}

impl Cyrus {
    /// Starts a server that hides `capabilities` (`suppress_capabilities`), e.g. `["MOVE", "UIDPLUS"]`; with none
    /// hidden it offers all it has (MOVE, UIDPLUS, IDLE…).
    pub fn start_hiding(capabilities: &[&str]) -> Cyrus {
        let root = root();
        let bin = root.join("usr/lib/cyrus/bin");
        assert!(
            bin.join("master").exists(),
            "no Cyrus in {} (run scripts/test-services to unpack it)",
            root.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for sub in ["conf", "spool", "lock", "proc", "sock", "sieve"] {
            std::fs::create_dir_all(d.join(sub)).expect("create cyrus dir");
        }
        let port = free_port();
        let (user, uid, gid) = server_user();
        let conf = d.join("imapd.conf");
        let suppress = if capabilities.is_empty() {
            String::new()
        } else {
            format!("suppress_capabilities: {}\n", capabilities.join(" "))
        };
        std::fs::write(
            &conf,
            format!(
                "# Private test server: nothing here is read from /etc.\n\
                 configdirectory: {d}/conf\npartition-default: {d}/spool\ndefaultpartition: default\n\
                 proc_path: {d}/proc\nmboxname_lockpath: {d}/lock\nsievedir: {d}/sieve\n\
                 lmtpsocket: {d}/sock/lmtp\nidlesocket: {d}/sock/idle\nnotifysocket: {d}/sock/notify\n\
                 altnamespace: no\nunixhierarchysep: no\nautocreate_quota: 0\nallowplaintext: yes\n\
                 sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\nsasl_sasldb_path: {d}/sasldb2\n\
                 sasl_mech_list: PLAIN LOGIN\nservername: localhost\nadmins: cyrus\n\
                 cyrus_user: {user}\ncyrus_group: {user}\nsyslog_prefix: taxinbox-test-cyrus\n\
                 duplicatesuppression: no\nmunge8bit: no\nreject8bit: no\n{suppress}",
                d = d.display()
            ),
        )
        .expect("write imapd.conf");
        let cmd = |name: &str| format!("{} -C {}", bin.join(name).display(), conf.display());
        std::fs::write(
            d.join("cyrus.conf"),
            format!(
                "START {{\n  recover cmd=\"{recover} -r\"\n}}\nSERVICES {{\n  \
                 imap cmd=\"{imapd}\" listen=\"127.0.0.1:{port}\" prefork=0 maxchild=50\n  \
                 lmtpunix cmd=\"{lmtpd}\" listen=\"{d}/sock/lmtp\" prefork=0 maxchild=5\n}}\nEVENTS {{\n}}\n",
                recover = cmd("ctl_cyrusdb"),
                imapd = cmd("imapd"),
                lmtpd = cmd("lmtpd"),
                d = d.display()
            ),
        )
        .expect("write cyrus.conf");
        for login in [USER, "cyrus"] {
            let mut child = Command::new("saslpasswd2")
                .args(["-p", "-c", "-u", "localhost", "-f"])
                .arg(d.join("sasldb2"))
                .arg(login)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run saslpasswd2 (scripts/test-services installs sasl2-bin)");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(PASSWORD.as_bytes())
                .expect("write the password");
            let out = child.wait_with_output().expect("saslpasswd2");
            assert!(out.status.success(), "saslpasswd2: {out:?}");
        }
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .expect("open the temp dir to the server user");
            chown_all(d, uid, gid);
        }
        let child = Command::new(bin.join("master"))
            .arg("-D")
            .arg("-C")
            .arg(&conf)
            .arg("-M")
            .arg(d.join("cyrus.conf"))
            .arg("-p")
            .arg(d.join("master.pid"))
            .env(
                "LD_LIBRARY_PATH",
                root.join("usr/lib/x86_64-linux-gnu").as_os_str(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("master.log")).expect("master log"))
            // Its own process group: the drop takes the master and every service it forked.
            .process_group(0)
            .spawn()
            .expect("start the Cyrus master");
        let mut cyrus = Cyrus {
            child: Some(child),
            port,
            dir,
        };
        cyrus.wait_listening();
        cyrus.first_login();
        cyrus
    }

    /// Logs in once, so that Cyrus makes the user's INBOX (`autocreate_quota`) before any delivery.
    fn first_login(&self) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect IMAP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("IMAP timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone IMAP stream"));
        let mut writer = stream;
        let mut until = |tag: &str| {
            // Bounded by the server's answer: every command ends with its tagged line.
            loop {
                let mut line = String::new();
                let n = reader.read_line(&mut line).expect("read IMAP");
                assert!(n > 0, "IMAP closed before {tag}");
                if let Some(rest) = line.strip_prefix(tag) {
                    assert!(rest.starts_with(" OK"), "IMAP: {line}");
                    return;
                }
            }
        };
        until("*");
        write!(writer, "a LOGIN {USER} \"{PASSWORD}\"\r\n").expect("LOGIN");
        until("a");
        writer.write_all(b"b LOGOUT\r\n").expect("LOGOUT");
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let lmtp = self.dir.path().join("sock/lmtp");
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && lmtp.exists() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("cyrus master exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cyrus did not listen within 20 s: {}", self.log());
    }

    /// The master's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    /// Delivers `mails` into the user's INBOX over one LMTP connection, as an MTA does.
    pub fn deliver_all(&self, mails: impl IntoIterator<Item = Vec<u8>>) {
        let stream = UnixStream::connect(self.dir.path().join("sock/lmtp")).expect("connect LMTP");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("LMTP timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone LMTP stream"));
        let mut writer = stream;
        let mut reply = |expect: &str| {
            // A reply is lines "NNN-…" then "NNN …"; bounded by the server's reply.
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("read LMTP reply");
                assert!(
                    line.starts_with(expect),
                    "LMTP: expected {expect}, got {line:?}"
                );
                if line.as_bytes().get(3) != Some(&b'-') {
                    return;
                }
            }
        };
        reply("220");
        writer.write_all(b"LHLO localhost\r\n").expect("LHLO");
        reply("250");
        for raw in mails {
            writer
                .write_all(format!("MAIL FROM:<>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes())
                .expect("envelope");
            reply("250");
            reply("250");
            reply("354");
            writer.write_all(&dot_stuffed(&raw)).expect("data");
            reply("250");
        }
        writer.write_all(b"QUIT\r\n").expect("QUIT");
    }

    /// Delivers the load mails `range` ([`crate::dovecot::numbered_mail`]) into INBOX.
    pub fn deliver_numbered(&self, corpus: &Path, range: std::ops::RangeInclusive<usize>) {
        self.deliver_all(range.map(|n| crate::dovecot::numbered_mail(corpus, n)));
    }

    /// Writes `password` to a file in the server's folder and returns its path (for `password_file`).
    pub fn password_file(&self, name: &str, password: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{password}\n")).expect("write password file");
        path
    }

    /// A `[[mailboxes]]` section for this server, without folder names (the server's defaults are used).
    pub fn mailbox_config(&self, name: &str, password_file: &Path) -> String {
        format!(
            "[[mailboxes]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{USER}\"\npassword_file = \"{}\"\n",
            self.port,
            password_file.display()
        )
    }
}

/// CRLF line ends (LMTP wants them, bare LF is refused), a dot doubled at a line start, the final `.` line.
fn dot_stuffed(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20 + 5);
    let mut line_start = true;
    let mut previous = 0u8;
    for &b in raw {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        line_start = b == b'\n';
        previous = b;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_all(&entry.path(), uid, gid);
        }
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: the master and the imapd/lmtpd processes it forked.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
