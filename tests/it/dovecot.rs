//! A private Dovecot for the IMAP tests: its own configuration, state, logs and mail in a temporary folder,
//! listening on 127.0.0.1 on a free port, started in the foreground and killed when dropped.
//!
//! Mail is delivered by writing files into the user's Maildir `new/`, the way an MDA does; Dovecot sees them at
//! the next SELECT. `scripts/test-services` installs Dovecot (Debian's `dovecot-imapd`) when it is missing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The one user of every test server.
pub const USER: &str = "buh";
/// Its password; the tests check it never shows in an error.
pub const PASSWORD: &str = "Pa55-word-for-tests";

/// A running Dovecot.
pub struct Dovecot {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    conf: PathBuf,
    delivered: u32,
    /// The CA that signed the server's certificate, when the server speaks TLS.
    pub ca_file: Option<PathBuf>,
}

/// A port the kernel just handed out and that nobody listens on (the window until Dovecot binds is tiny).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn dovecot_binary() -> String {
    for candidate in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    "dovecot".to_owned()
}

fn id(args: &[&str]) -> String {
    let o = Command::new("id").args(args).output().expect("run id");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Who the server's processes and the mail run as, as configuration lines, and the mail's uid and gid.
/// As root, Dovecot's own unprivileged users (it refuses root for logins and mail); otherwise the current user.
fn server_users() -> (String, u32, u32) {
    static USERS: std::sync::OnceLock<(String, u32, u32)> = std::sync::OnceLock::new();
    USERS.get_or_init(read_server_users).clone()
}

fn read_server_users() -> (String, u32, u32) {
    let uid: u32 = id(&["-u"]).parse().expect("uid");
    if uid == 0 {
        let mail_uid = id(&["-u", "dovecot"])
            .parse()
            .expect("the dovecot user exists");
        let mail_gid = id(&["-g", "dovecot"])
            .parse()
            .expect("the dovecot group exists");
        (String::new(), mail_uid, mail_gid)
    } else {
        let name = id(&["-un"]);
        let gid = id(&["-g"]).parse().expect("gid");
        (
            format!("default_internal_user = {name}\ndefault_login_user = {name}\n"),
            uid,
            gid,
        )
    }
}

impl Dovecot {
    /// Starts a plain-text server (`ssl = no`): the mailbox must say `tls = "none"`.
    pub fn start() -> Dovecot {
        Self::start_with(false, "")
    }

    /// Starts a plain-text server with the ACL plugins (`acl`, `imap_acl`: the ACL capability, MYRIGHTS) where the
    /// user's own rights on INBOX are `rights` (RFC 4314 letters, in INBOX's `dovecot-acl` file): without `w`, the
    /// server keeps no keyword the user sets, and its PERMANENTFLAGS has no `\*`.
    pub fn start_with_inbox_rights(rights: &str) -> Dovecot {
        let plugins = "mail_plugins = $mail_plugins acl\nprotocol imap {\n  mail_plugins = $mail_plugins imap_acl\n}\nplugin {\n  acl = vfile\n}\n";
        let mut dovecot = Self::start_with(false, plugins);
        let acl = dovecot.maildir().join("dovecot-acl");
        std::fs::write(&acl, format!("owner {rights}\n")).expect("write dovecot-acl");
        let (_, uid, gid) = server_users();
        std::os::unix::fs::chown(&acl, Some(uid), Some(gid)).expect("chown dovecot-acl");
        dovecot.restart();
        dovecot
    }

    /// Starts a server that speaks TLS from the first byte, with a certificate for `localhost` signed by a CA
    /// made for this test ([`Dovecot::ca_file`]).
    pub fn start_tls() -> Dovecot {
        Self::start_with(true, "")
    }

    /// `extra`: configuration lines appended to the generated file.
    fn start_with(tls: bool, extra: &str) -> Dovecot {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("dovecot.conf");
        let d = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).expect("create dovecot dir");
            p
        };
        let (base, state, mail) = (d("run"), d("state"), d("mail"));
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n")).expect("passwd");
        let (users, uid, gid) = server_users();
        // The mail folders belong to the mail user; the test (maybe root) only drops files into them.
        let maildir = mail.join(USER).join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
        }
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open the temp dir to the mail user");
            for p in [
                mail.clone(),
                mail.join(USER),
                maildir.clone(),
                maildir.join("new"),
                maildir.join("cur"),
                maildir.join("tmp"),
            ] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown Maildir");
            }
        }
        let text = format!(
            r#"# Private test server: nothing here is read from /etc/dovecot.
base_dir = {base}
state_dir = {state}
log_path = {log}
info_log_path = {log}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# A refused login answers at once: the tests check refusals, not brute-force protection.
auth_failure_delay = 0
{users}first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{mail}/%u/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
{extra}"#,
            base = base.display(),
            state = state.display(),
            log = dir.path().join("dovecot.log").display(),
            mail = mail.display(),
            passwd = passwd.display(),
        );
        let (text, ca_file) = if tls {
            let (ca, cert, key) = make_certificates(dir.path());
            let text = text
                .replace("ssl = no\n", &format!("ssl = required\nssl_cert = <{}\nssl_key = <{}\n", cert.display(), key.display()))
                .replace(&format!("    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n"),
                    &format!("    port = 0\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n    ssl = yes\n"));
            (text, Some(ca))
        } else {
            (text, None)
        };
        std::fs::write(&conf, text).expect("write dovecot.conf");
        let mut dovecot = Dovecot {
            child: None,
            port,
            dir,
            conf,
            delivered: 0,
            ca_file,
        };
        dovecot.launch();
        dovecot
    }

    fn launch(&mut self) {
        let child = Command::new(dovecot_binary())
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start dovecot (run scripts/test-services to install it): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "dovecot exited with {status}; log:\n{}\nstderr:\n{}",
                    self.log(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dovecot did not listen within 20 s; log:\n{}", self.log());
    }

    fn stderr(&mut self) -> String {
        use std::io::Read as _;
        let mut s = String::new();
        if let Some(err) = self.child.as_mut().and_then(|c| c.stderr.as_mut()) {
            let _ = err.read_to_string(&mut s);
        }
        s
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Kills the server (connections drop at once, as in a crash or a network cut).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Dovecot's helper processes follow the master; wait until the port is free and none of them still
        // answers on the run folder's sockets, or the restart finds them and refuses ("already running?").
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && (TcpStream::connect(("127.0.0.1", self.port)).is_ok() || self.a_socket_answers())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a process still listens on one of the sockets of the run folder (or its `login/`).
    fn a_socket_answers(&self) -> bool {
        use std::os::unix::fs::FileTypeExt as _;
        let run = self.dir.path().join("run");
        [run.clone(), run.join("login")].iter().any(|folder| {
            std::fs::read_dir(folder)
                .into_iter()
                .flatten()
                .flatten()
                .any(|entry| {
                    entry.file_type().is_ok_and(|t| t.is_socket())
                        && std::os::unix::net::UnixStream::connect(entry.path()).is_ok()
                })
        })
    }

    /// Starts the server again on the same port with the same mail.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The user's Maildir.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join(USER).join("Maildir")
    }

    /// Delivers one mail into INBOX, as an MDA does.
    pub fn deliver(&mut self, raw: &[u8]) {
        self.delivered += 1;
        let name = format!(
            "{}.M{}P{}.taxinbox-test",
            1_700_000_000 + self.delivered,
            self.delivered,
            std::process::id()
        );
        deliver_into(&self.maildir(), &name, raw);
    }

    /// Writes `password` to a file in the server's folder and returns its path (for `password_file`).
    pub fn password_file(&self, name: &str, password: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{password}\n")).expect("write password file");
        path
    }

    /// A `[[mailboxes]]` section for this server, with the password in `password_file`.
    pub fn mailbox_config(&self, name: &str, password_file: &Path) -> String {
        format!(
            "[[mailboxes]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"{USER}\"\npassword_file = \"{}\"\n",
            self.port,
            password_file.display()
        )
    }
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it, made with the openssl command.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .expect("write san.ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=taxinbox test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Corpus mail number `n` of a load: the corpus mail `(n - 1) % 400 + 1` made unique by a `Message-ID` of its
/// own and `[load n]` in front of its subject, so that every copy is a new mail (no content or Message-ID
/// duplicate) that rules still classify like the original.
pub fn numbered_mail(corpus: &Path, n: usize) -> Vec<u8> {
    let template = std::fs::read(corpus.join(format!("mail/{:04}.eml", (n - 1) % 400 + 1)))
        .expect("read a corpus mail");
    let crlf = template.windows(2).any(|w| w == b"\r\n");
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let blank: &[u8] = if crlf { b"\r\n\r\n" } else { b"\n\n" };
    let split = template
        .windows(blank.len())
        .position(|w| w == blank)
        .map_or(template.len(), |p| p + eol.len());
    let (head, body) = template.split_at(split);
    let mut out = format!("Message-ID: <load-{n}@taxinbox.test>").into_bytes();
    out.extend_from_slice(eol);
    let mut in_message_id = false;
    let mut has_subject = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation && in_message_id {
            continue;
        }
        in_message_id = lower.starts_with("message-id:");
        if in_message_id {
            continue;
        }
        if lower.starts_with("subject:") {
            has_subject = true;
            out.extend_from_slice(b"Subject: [load ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"] ");
            out.extend_from_slice(line[8..].trim_ascii_start());
            continue;
        }
        out.extend_from_slice(line);
    }
    if !has_subject {
        out.extend_from_slice(format!("Subject: [load {n}]").as_bytes());
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(body);
    out
}

/// Writes `raw` into the Maildir `maildir` as file `name`, as an MDA does: into `tmp/`, owned by the mail user, then
/// renamed into `new/`. The owner matters: Dovecot moves mail between folders by hard link, and the kernel refuses
/// its user a link to a file it does not own (`fs.protected_hardlinks`), so mail left to root would be copied byte by
/// byte on every MOVE, as no real server's mail is.
pub fn deliver_into(maildir: &Path, name: &str, raw: &[u8]) {
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, raw).expect("write mail");
    let (_, uid, gid) = server_users();
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).expect("give the mail to the mail user");
    std::fs::rename(&tmp, maildir.join("new").join(name)).expect("deliver mail");
}

impl Dovecot {
    /// Delivers the load mails `range` ([`numbered_mail`]) into INBOX.
    pub fn deliver_numbered(&mut self, corpus: &Path, range: std::ops::RangeInclusive<usize>) {
        for n in range {
            self.deliver(&numbered_mail(corpus, n));
        }
    }
}

#[allow(dead_code)] // used by the benchmarks (benches/load.rs, benches/peers.rs), which include this file
impl Dovecot {
    /// The master process's id (its session processes are its children).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Takes the whole server down — the master and every process it started, so that every client connection
    /// drops (killing only the master, as [`Dovecot::stop`] does, leaves running IMAP sessions served) — waits
    /// until the port is free, and starts it again on the same port with the same mail after `down`.
    pub fn restart_after(&mut self, down: Duration) {
        if let Some(mut child) = self.child.take() {
            let mut pids = vec![child.id()];
            let mut i = 0;
            // Bounded by the process table: each pid is visited once.
            while i < pids.len() {
                pids.extend(children_of(pids[i]));
                i += 1;
            }
            for pid in pids.iter().rev() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.wait();
        }
        self.stop();
        std::thread::sleep(down);
        self.launch();
    }

    /// The server's configuration file (for Dovecot's own tools: `sieve-filter -c`, `doveadm -c`).
    pub fn config_file(&self) -> &Path {
        &self.conf
    }

    /// The Maildir of `folder` (`INBOX`, or a folder below the root like `load3`), created and given to the mail
    /// user if missing: mail written into its `new/` is there at the next SELECT.
    pub fn folder_maildir(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            return self.maildir();
        }
        // Maildir++: folder `a/b` lives in `.a.b` beside INBOX's cur/new/tmp.
        let dir = self
            .maildir()
            .join(format!(".{}", folder.replace('/', ".")));
        let (_, uid, gid) = server_users();
        for p in [
            dir.clone(),
            dir.join("new"),
            dir.join("cur"),
            dir.join("tmp"),
        ] {
            std::fs::create_dir_all(&p).expect("create folder Maildir");
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown folder Maildir");
        }
        dir
    }
}

/// The processes whose parent is `pid` (from /proc).
#[allow(dead_code)] // used through Dovecot::restart_after
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Mails in `folder` of `mailbox` (0 when the folder does not exist), seen through a session of its own.
pub async fn folder_count(mailbox: &taxinbox::settings::MailboxSettings, folder: &str) -> u32 {
    let mut session = taxinbox::imap::connect(mailbox)
        .await
        .expect("connect to count");
    let n = match session.examine(folder).await {
        Ok(m) => m.exists,
        Err(_) => 0,
    };
    let _ = session.logout().await;
    n
}

/// The processed folder `mailbox` acknowledges into on Dovecot (`/` separator): the configured one, else the
/// default the server's separator gives.
pub fn processed(mailbox: &taxinbox::settings::MailboxSettings) -> String {
    mailbox
        .processed_folder
        .clone()
        .unwrap_or_else(|| "INBOX/Processed".to_owned())
}

/// The quarantine folder, as [`processed`].
pub fn quarantine(mailbox: &taxinbox::settings::MailboxSettings) -> String {
    mailbox
        .quarantine_folder
        .clone()
        .unwrap_or_else(|| "INBOX/Quarantine".to_owned())
}
