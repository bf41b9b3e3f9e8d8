//! `[[mailboxes]]` (IMAP) and `[[maildirs]]` (local folders), whose names share one namespace; the transport
//! security of a connection ([`Tls`]) and where a password is kept ([`PasswordSource`]), which `[notify]` uses too.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::check::{normalize, port_number, required, take};
use super::SettingsError;

/// The folder IMAP servers call the inbox.
const DEFAULT_IMAP_FOLDER: &str = "INBOX";
/// How often a mailbox is read even when its server pushes nothing during IDLE: the bound on how long new mail
/// waits (a tax demand's deadline is days; a minute costs the server one SELECT).
const DEFAULT_POLL_INTERVAL_SECS: i64 = 60;
/// The widest `poll_interval_secs` accepted: a mailbox read less than hourly is one nobody watches.
const MAX_POLL_INTERVAL_SECS: i64 = 3600;

/// Transport security of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS (IMAP 143, submission 587).
    Starttls,
    /// No encryption: only ever used when written out in the configuration.
    None,
}

impl Tls {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::Tls => "tls",
            Tls::Starttls => "starttls",
            Tls::None => "none",
        }
    }

    pub(super) fn parse(setting: &str, value: &str) -> Result<Tls, String> {
        match value {
            "tls" => Ok(Tls::Tls),
            "starttls" => Ok(Tls::Starttls),
            "none" => Ok(Tls::None),
            other => Err(format!(
                "{setting}: {other:?} is not one of tls, starttls, none"
            )),
        }
    }
}

impl fmt::Display for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a mailbox acknowledges a committed mail, so that it is not taken again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acknowledge {
    /// Move it out of the watched folder, to the processed or the quarantine folder (the default).
    #[default]
    Move,
    /// Leave it where it is and set a keyword on it: `$Taxinbox`, or `$TaxinboxQuarantine` for quarantined mail.
    /// Mail carrying either is never taken again. Needs a server that lets clients make keywords
    /// (`\*` in PERMANENTFLAGS); the mailbox refuses to start otherwise.
    Flag,
}

impl Acknowledge {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Acknowledge::Move => "move",
            Acknowledge::Flag => "flag",
        }
    }

    fn parse(setting: &str, value: &str) -> Result<Acknowledge, String> {
        match value {
            "move" => Ok(Acknowledge::Move),
            "flag" => Ok(Acknowledge::Flag),
            other => Err(format!("{setting}: {other:?} is not one of move, flag")),
        }
    }
}

impl fmt::Display for Acknowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a password is kept; the configuration never holds the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file holding the password (resolved path); a trailing newline is ignored.
    File(PathBuf),
    /// An environment variable holding the password.
    Env(String),
}

impl PasswordSource {
    /// Reads the password now. Called when connecting, so a rotated secret is picked up without a restart.
    pub fn resolve(&self) -> Result<SecretString, SettingsError> {
        match self {
            PasswordSource::File(path) => {
                let content =
                    std::fs::read_to_string(path).map_err(|error| SettingsError::Password {
                        setting: "password_file".to_owned(),
                        message: format!("{}: {error}", path.display()),
                    })?;
                // Secret files written by `echo` or editors end with a newline that is not part of the password.
                let password = content.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    return Err(SettingsError::Password {
                        setting: "password_file".to_owned(),
                        message: format!("{} is empty", path.display()),
                    });
                }
                Ok(SecretString::from(password.to_owned()))
            }
            PasswordSource::Env(name) => match std::env::var(name) {
                Ok(password) if !password.is_empty() => Ok(SecretString::from(password)),
                _ => Err(SettingsError::Password {
                    setting: "password_env".to_owned(),
                    message: format!("environment variable {name} is not set or empty"),
                }),
            },
        }
    }
}

/// One IMAP mailbox to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSettings {
    /// Short unique name, used in logs and the store (`demands`).
    pub name: String,
    /// IMAP server host name.
    pub host: String,
    /// IMAP port (default 993 with `tls`, 143 otherwise).
    pub port: u16,
    /// Transport security (default `tls`).
    pub tls: Tls,
    /// Login.
    pub user: String,
    /// Where the password is.
    pub password: PasswordSource,
    /// Folder to read new mail from.
    pub folder: String,
    /// Folder a processed mail is moved to, as written (`/` between levels is translated to the server's
    /// separator at connect). `None`: `Processed` below INBOX, named with the separator the server reports.
    pub processed_folder: Option<String>,
    /// Folder a mail that failed processing is moved to; `None`: `Quarantine` below INBOX, as above.
    pub quarantine_folder: Option<String>,
    /// New mail waits at most this long: IDLE is left and the folder read again this often, whatever the server
    /// pushes (default 60 s).
    pub poll_interval: std::time::Duration,
    /// A PEM file of the certificate authority (or authorities) to trust instead of the public roots, for a
    /// server with a private CA (resolved path). `None`: the public web roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Mail received (its `Date:` header) before this day is taken as history (archive mode): logged and joined to
    /// cases, its tasks stored already done, nobody notified, nothing pushed. `None`: all mail is live.
    pub archive_before: Option<chrono::NaiveDate>,
    /// Only mail whose INTERNALDATE (when the server received it) falls on or after this day is taken (`UID SEARCH
    /// SINCE`, which RFC 3501 compares by the date alone, disregarding time and time zone). Older mail is left
    /// untouched: not fetched, not acknowledged, not logged, not counted. `None`: all mail in the folder.
    pub since: Option<chrono::NaiveDate>,
    /// How a committed mail is acknowledged: moved out of the folder (default) or flagged where it is.
    pub acknowledge: Acknowledge,
}

/// One local Maildir to process (for a mail server that delivers to disk, and for the sample).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirSettings {
    /// Short unique name, used in logs and the store.
    pub name: String,
    /// The Maildir folder (resolved), holding `new/`, `cur/` and `tmp/`.
    pub path: PathBuf,
    /// As a mailbox's `archive_before`: mail received before this day is history.
    pub archive_before: Option<chrono::NaiveDate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMailbox {
    name: Option<String>,
    host: Option<String>,
    /// Wider than `u16` so an out-of-range port is reported by name rather than as a type error.
    port: Option<i64>,
    tls: Option<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    folder: Option<String>,
    processed_folder: Option<String>,
    quarantine_folder: Option<String>,
    tls_ca_file: Option<PathBuf>,
    poll_interval_secs: Option<i64>,
    archive_before: Option<String>,
    since: Option<String>,
    acknowledge: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMaildir {
    name: Option<String>,
    path: Option<PathBuf>,
    archive_before: Option<String>,
}

/// Validates `[[mailboxes]]` and `[[maildirs]]`: a name is unique among both, as it names the mail's source.
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw_mailboxes: Vec<RawMailbox>,
    raw_maildirs: Vec<RawMaildir>,
    base: &Path,
) -> (Vec<MailboxSettings>, Vec<MaildirSettings>) {
    let mut names = BTreeSet::new();
    let mut mailboxes = Vec::new();
    for (index, mailbox) in raw_mailboxes.into_iter().enumerate() {
        if let Some(valid) = validate_mailbox(problems, &mut names, index, mailbox, base) {
            mailboxes.push(valid);
        }
    }
    let mut maildirs = Vec::new();
    for (index, maildir) in raw_maildirs.into_iter().enumerate() {
        let at = format!("maildirs[{index}]");
        let name = required(problems, &format!("{at}.name"), maildir.name);
        unique_name(problems, &mut names, &at, name.as_deref());
        let path = match maildir.path {
            Some(path) if !path.as_os_str().is_empty() => Some(normalize(&base.join(path))),
            _ => {
                problems.push(format!("{at}.path: missing"));
                None
            }
        };
        let archive_before = archive_before(problems, &at, maildir.archive_before.as_deref());
        if let (Some(name), Some(path), Some(archive_before)) = (name, path, archive_before) {
            maildirs.push(MaildirSettings {
                name,
                path,
                archive_before,
            });
        }
    }
    (mailboxes, maildirs)
}

fn validate_mailbox(
    problems: &mut Vec<String>,
    names: &mut BTreeSet<String>,
    index: usize,
    raw: RawMailbox,
    base: &Path,
) -> Option<MailboxSettings> {
    let at = format!("mailboxes[{index}]");
    let name = required(problems, &format!("{at}.name"), raw.name);
    unique_name(problems, names, &at, name.as_deref());
    let host = required(problems, &format!("{at}.host"), raw.host);
    let user = required(problems, &format!("{at}.user"), raw.user);
    // `none` is never a default: a plain-text password on the network has to be asked for in writing.
    let tls = match raw.tls.as_deref().map(str::trim) {
        None => Some(Tls::Tls),
        Some(value) => take(problems, Tls::parse(&format!("{at}.tls"), value)),
    };
    let port = match (raw.port, tls) {
        (Some(port), _) => take(problems, port_number(&format!("{at}.port"), port)),
        (None, Some(Tls::Tls)) => Some(993),
        (None, _) => Some(143),
    };
    // Required, so a success is always `Some(Some(_))`.
    let password = password_source(
        problems,
        &at,
        raw.password_file,
        raw.password_env,
        base,
        true,
    )
    .flatten();
    let folder = |value: Option<String>, default: &str, key: &str, problems: &mut Vec<String>| {
        let value = value.unwrap_or_else(|| default.to_owned());
        if value.trim().is_empty() {
            problems.push(format!("{at}.{key}: empty"));
        }
        value
    };
    let folder_name = folder(raw.folder, DEFAULT_IMAP_FOLDER, "folder", problems);
    let mut written = |value: Option<String>, key: &str| {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            problems.push(format!("{at}.{key}: empty"));
        }
        value
    };
    let processed_folder = written(raw.processed_folder, "processed_folder");
    let quarantine_folder = written(raw.quarantine_folder, "quarantine_folder");
    let poll_interval = match raw.poll_interval_secs {
        None => std::time::Duration::from_secs(DEFAULT_POLL_INTERVAL_SECS.unsigned_abs()),
        Some(secs) if (1..=MAX_POLL_INTERVAL_SECS).contains(&secs) => {
            std::time::Duration::from_secs(secs.unsigned_abs())
        }
        Some(secs) => {
            problems.push(format!(
                "{at}.poll_interval_secs: {secs} is not between 1 and {MAX_POLL_INTERVAL_SECS} seconds"
            ));
            std::time::Duration::from_secs(DEFAULT_POLL_INTERVAL_SECS.unsigned_abs())
        }
    };
    let archive_before = archive_before(problems, &at, raw.archive_before.as_deref());
    let since = since(problems, &at, raw.since.as_deref());
    let acknowledge = match raw.acknowledge.as_deref().map(str::trim) {
        None => Some(Acknowledge::Move),
        Some(value) => take(
            problems,
            Acknowledge::parse(&format!("{at}.acknowledge"), value),
        ),
    };
    Some(MailboxSettings {
        name: name?,
        host: host?,
        port: port?,
        tls: tls?,
        user: user?,
        password: password?,
        folder: folder_name,
        processed_folder,
        quarantine_folder,
        poll_interval,
        tls_ca_file: raw.tls_ca_file.map(|file| normalize(&base.join(file))),
        archive_before: archive_before?,
        since: since?,
        acknowledge: acknowledge?,
    })
}

/// The earliest `since` accepted: IMAP dates have four-digit years, and no mailbox holds mail from before 1970.
const EARLIEST_SINCE: (i32, u32, u32) = (1970, 1, 1);

/// `since = "YYYY-MM-DD"`: `Some(None)` when not given, `None` on a problem (recorded).
fn since(
    problems: &mut Vec<String>,
    at: &str,
    value: Option<&str>,
) -> Option<Option<chrono::NaiveDate>> {
    let text = match value.map(str::trim) {
        None => return Some(None),
        Some(text) => text,
    };
    let earliest =
        chrono::NaiveDate::from_ymd_opt(EARLIEST_SINCE.0, EARLIEST_SINCE.1, EARLIEST_SINCE.2);
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        // `%Y` takes any number of digits: a five-digit year cannot be written in an IMAP SEARCH.
        Ok(day) if chrono::Datelike::year(&day) > 9999 || earliest.is_some_and(|e| day < e) => {
            problems.push(format!(
                "{at}.since: {text:?} is not a day between 1970-01-01 and 9999-12-31"
            ));
            None
        }
        Ok(day) => Some(Some(day)),
        Err(_) => {
            problems.push(format!(
                "{at}.since: {text:?} is not a date (YYYY-MM-DD): only mail received on or after that day is taken"
            ));
            None
        }
    }
}

/// `archive_before = "YYYY-MM-DD"`: `Some(None)` when not given, `None` on a problem (recorded).
fn archive_before(
    problems: &mut Vec<String>,
    at: &str,
    value: Option<&str>,
) -> Option<Option<chrono::NaiveDate>> {
    match value.map(str::trim) {
        None => Some(None),
        Some(text) => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(day) => Some(Some(day)),
            Err(_) => {
                problems.push(format!(
                    "{at}.archive_before: {text:?} is not a date (YYYY-MM-DD)"
                ));
                None
            }
        },
    }
}

/// `password_file` xor `password_env`. Returns `None` on a problem (recorded), `Some(None)` when neither is
/// given and that is allowed.
pub(super) fn password_source(
    problems: &mut Vec<String>,
    at: &str,
    file: Option<PathBuf>,
    env: Option<String>,
    base: &Path,
    required: bool,
) -> Option<Option<PasswordSource>> {
    match (file, env.map(|name| name.trim().to_owned())) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{at}: give either password_file or password_env, not both"
            ));
            None
        }
        (Some(file), None) if file.as_os_str().is_empty() => {
            problems.push(format!("{at}.password_file: empty"));
            None
        }
        (Some(file), None) => Some(Some(PasswordSource::File(normalize(&base.join(file))))),
        (None, Some(name)) if name.is_empty() => {
            problems.push(format!("{at}.password_env: empty"));
            None
        }
        (None, Some(name)) => Some(Some(PasswordSource::Env(name))),
        (None, None) if required => {
            problems.push(format!("{at}: password_file or password_env is required"));
            None
        }
        (None, None) => Some(None),
    }
}

fn unique_name(
    problems: &mut Vec<String>,
    names: &mut BTreeSet<String>,
    at: &str,
    name: Option<&str>,
) {
    if let Some(name) = name {
        // Mailboxes and maildirs share one namespace: the name identifies the mail's source in the store.
        if !names.insert(name.to_owned()) {
            problems.push(format!(
                "{at}.name: {name:?} is used by another mailbox or maildir"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::{error_text, load, MAILBOX};
    use secrecy::ExposeSecret;

    #[test]
    fn a_mailbox_with_defaults_uses_implicit_tls_on_993() {
        let (_dir, settings) = load(MAILBOX, &[]);
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!((mailbox.tls, mailbox.port), (Tls::Tls, 993));
        assert_eq!(
            mailbox.password,
            PasswordSource::Env("IMAP_PASSWORD".to_owned())
        );
        // The folder names are asked of the server at connect (its separator): none is assumed here.
        assert_eq!(
            (
                mailbox.folder.as_str(),
                mailbox.processed_folder.as_deref(),
                mailbox.quarantine_folder.as_deref()
            ),
            ("INBOX", None, None)
        );
        assert_eq!(mailbox.poll_interval, std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_poll_interval_outside_a_second_to_an_hour_is_refused_by_name() {
        let message = error_text(&format!("{MAILBOX}poll_interval_secs = 0\n"), &[]);
        assert_eq!(
            message,
            "mailboxes[0].poll_interval_secs: 0 is not between 1 and 3600 seconds"
        );
        let (_dir, settings) = load(&format!("{MAILBOX}poll_interval_secs = 5\n"), &[]);
        assert_eq!(
            settings.expect("valid").mailboxes[0].poll_interval,
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn a_mailbox_ca_file_is_resolved_against_the_config_folder() {
        let (dir, settings) = load(&format!("{MAILBOX}tls_ca_file = \"certs/ca.pem\"\n"), &[]);
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!(
            mailbox.tls_ca_file.as_deref(),
            Some(dir.path().join("certs").join("ca.pem").as_path())
        );
        let (_dir, settings) = load(MAILBOX, &[]);
        assert_eq!(settings.expect("valid").mailboxes[0].tls_ca_file, None);
    }

    #[test]
    fn since_and_acknowledge_default_to_all_mail_moved() {
        let (_dir, settings) = load(MAILBOX, &[]);
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!(
            (mailbox.since, mailbox.acknowledge),
            (None, Acknowledge::Move)
        );
        let (_dir, settings) = load(
            &format!("{MAILBOX}since = \"2026-02-01\"\nacknowledge = \"flag\"\n"),
            &[],
        );
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!(
            (mailbox.since, mailbox.acknowledge),
            (
                chrono::NaiveDate::from_ymd_opt(2026, 2, 1),
                Acknowledge::Flag
            )
        );
    }

    #[test]
    fn a_bad_since_or_acknowledge_is_refused_by_name() {
        let message = error_text(
            &format!("{MAILBOX}since = \"01.02.2026\"\nacknowledge = \"keyword\"\n"),
            &[],
        );
        for expected in [
            "mailboxes[0].since: \"01.02.2026\" is not a date (YYYY-MM-DD)",
            "mailboxes[0].acknowledge: \"keyword\" is not one of move, flag",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in {message}"
            );
        }
        let message = error_text(&format!("{MAILBOX}since = \"1969-12-31\"\n"), &[]);
        assert!(
            message.contains("mailboxes[0].since: \"1969-12-31\" is not a day between"),
            "{message}"
        );
        let message = error_text(&format!("{MAILBOX}since = \"2026-02-30\"\n"), &[]);
        assert!(message.contains("is not a date"), "{message}");
    }

    #[test]
    fn a_bad_tls_value_is_named_with_its_mailbox() {
        let message = error_text(&format!("{MAILBOX}tls = \"ssl\"\n"), &[]);
        assert_eq!(
            message,
            "mailboxes[0].tls: \"ssl\" is not one of tls, starttls, none"
        );
    }

    #[test]
    fn plain_text_imap_is_accepted_only_when_written_out() {
        let (_dir, settings) = load(&format!("{MAILBOX}tls = \"none\"\n"), &[]);
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!((mailbox.tls, mailbox.port), (Tls::None, 143));
    }

    #[test]
    fn mailbox_problems_are_all_reported_by_name() {
        let content = format!(
            "{MAILBOX}port = 70000\npassword_file = \"secret\"\n[[mailboxes]]\nname = \"demands\"\nhost = \"\"\nuser = \"u\"\n"
        );
        let message = error_text(&content, &[]);
        for expected in [
            "mailboxes[0].port: 70000 is not a port number",
            "mailboxes[0]: give either password_file or password_env, not both",
            "mailboxes[1].name: \"demands\" is used by another mailbox or maildir",
            "mailboxes[1].host: empty",
            "mailboxes[1]: password_file or password_env is required",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in {message}"
            );
        }
    }

    #[test]
    fn a_password_file_is_read_only_when_resolved_and_without_its_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("imap");
        std::fs::write(&path, "hunter2\n").expect("write secret");
        let secret = PasswordSource::File(path).resolve().expect("readable");
        assert_eq!(secret.expose_secret(), "hunter2");
        let missing = PasswordSource::File(dir.path().join("absent"))
            .resolve()
            .expect_err("missing");
        assert!(
            missing.to_string().starts_with("password_file:"),
            "{missing}"
        );
    }
}
