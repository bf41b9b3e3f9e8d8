//! Configuration: built-in defaults, then the TOML file (`taxinbox.toml`), then `TAXINBOX__SECTION__KEY`
//! environment variables, last wins; deserialised into raw structs that reject unknown keys, then validated
//! into [`Settings`], the only type the rest of the application sees.
//!
//! Every setting has a default except secrets, so an empty file is a valid configuration. Relative paths are
//! resolved against the configuration file's folder (the working directory when there is no file), so the same
//! file works whichever directory the daemon is started from. Passwords are never part of [`Settings`]: a
//! mailbox names where its password is ([`PasswordSource`]) and the password is read, as a
//! [`secrecy::SecretString`], only when a connection needs it. `Settings` deliberately has no `Serialize`, and
//! the database URL's `Debug` hides its password.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The file read when `--config` is not given, in the working directory; it is optional.
pub const DEFAULT_FILE: &str = "taxinbox.toml";

/// Prefix of the environment variables that override the file: `TAXINBOX__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "TAXINBOX";

/// Separates the prefix, the section and the key in an environment variable's name. Double, because keys
/// themselves contain single underscores (`max_operations`).
pub const ENV_SEPARATOR: &str = "__";

/// A SQLite file under the configuration's folder: works out of the box, no server to install.
const DEFAULT_DATABASE_URL: &str = "sqlite://data/taxinbox.db";
/// `mail/*.rhai`, `calendar/production/*.toml` and `demands.toml` live here.
const DEFAULT_RULES_DIR: &str = "rules";
/// Enough for any classification script over one mail; a runaway loop stops within about a second.
const DEFAULT_MAX_OPERATIONS: u64 = 1_000_000;
/// Deep enough for helper functions calling each other, shallow enough to stop unbounded recursion early.
const DEFAULT_MAX_CALL_DEPTH: usize = 64;
/// 1 MiB: larger than any mail body a script needs to look at as one string.
const DEFAULT_MAX_STRING_SIZE: usize = 1_048_576;
/// Larger than the line count of any realistic attachment.
const DEFAULT_MAX_ARRAY_SIZE: usize = 100_000;
/// Per mail: a script that needs longer is broken, and one slow mail must not hold up the mailbox.
const DEFAULT_TIME_BUDGET_MS: u64 = 1_000;
/// Mails per database commit: large enough to amortise the commit, small enough that a crash redoes little.
const DEFAULT_BATCH_SIZE: usize = 64;
/// A working day and then some: an accountant signs in once a day.
const DEFAULT_SESSION_HOURS: u32 = 12;
/// Russian tax deadlines are counted in Moscow dates (FORMAT.md convention 1).
const DEFAULT_TIMEZONE: &str = "Europe/Moscow";
/// The firm, its clients and the tax office write Russian.
const DEFAULT_LANGUAGE: &str = "ru";
/// Notifications as `.eml` files until someone configures SMTP: nothing leaves the machine by accident.
const DEFAULT_NOTIFY_DIR: &str = "data/outbox";
/// Sender of notifications until configured.
const DEFAULT_NOTIFY_FROM: &str = "taxinbox@localhost";
/// Far more than a person's real notifications in a day (tasks, a digest, escalations), few enough that a mail
/// loop is stopped after minutes rather than flooding a mailbox.
const DEFAULT_DAILY_CAP_PER_RECIPIENT: u32 = 200;
/// An SMTP server that has not answered in this long is treated as down; the notification waits for a later pass.
const DEFAULT_NOTIFY_TIMEOUT_SECS: u64 = 30;
/// The daily digest goes out from 08:00 in the firm's zone: in the inbox before the working day starts.
const DEFAULT_DIGEST_TIME: &str = "08:00";
/// Loopback only: the status page is not meant to face the network without a proxy in front.
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";
/// The data folder when the database is not a SQLite file (PostgreSQL, in-memory SQLite).
const DEFAULT_DATA_DIR: &str = "data";
/// The folder IMAP servers call the inbox.
const DEFAULT_IMAP_FOLDER: &str = "INBOX";
/// Where a processed mail is moved, under the inbox so every client shows it.
const DEFAULT_PROCESSED_FOLDER: &str = "INBOX/Processed";
/// Where a mail that could not be processed is moved for a person to look at.
const DEFAULT_QUARANTINE_FOLDER: &str = "INBOX/Quarantine";
/// Five years: the period Russian tax law lets the authority look back (NK RF art. 23: keep documents 5 years).
const DEFAULT_RETENTION_DAYS: i64 = 1825;

/// Why the configuration could not be loaded. Every message names the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration file could not be read (an explicitly given file must exist).
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        /// The file as given.
        file: String,
        /// 1-based line, when the TOML parser reports a position.
        line: Option<usize>,
        /// What is wrong, e.g. "unknown key `databse`, expected one of …".
        message: String,
    },
    /// A `TAXINBOX__…` environment variable names an unknown key or holds a value of the wrong type.
    #[error("{ENV_PREFIX}{ENV_SEPARATOR}… environment: {0}")]
    Environment(String),
    /// One or more settings have values that parse but make no sense, each named, e.g.
    /// `mailboxes[0].tls: "ssl" is not one of tls, starttls, none`.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A password could not be read from where the configuration says it is.
    #[error("{setting}: {message}")]
    Password {
        /// The setting naming the source, e.g. `mailboxes[demands].password_file`.
        setting: String,
        /// What went wrong (never the password).
        message: String,
    },
}

/// The validated configuration the application uses. No `Serialize`: it is never written out.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where tasks, cases and the register are stored.
    pub database: DatabaseSettings,
    /// Classification scripts, calendars and the demand catalogue, and the limits of the script sandbox.
    pub rules: RulesSettings,
    /// IMAP mailboxes to poll, in file order; names are unique among mailboxes and maildirs.
    pub mailboxes: Vec<MailboxSettings>,
    /// Local Maildir folders to process, in file order.
    pub maildirs: Vec<MaildirSettings>,
    /// How notifications to people are delivered.
    pub notify: NotifySettings,
    /// The status/API HTTP listener.
    pub http: HttpSettings,
    /// Batching of mail processing.
    pub ingest: IngestSettings,
    /// Time zone and language.
    pub general: GeneralSettings,
    /// Folder for files the application writes (next to the SQLite file, else `data` beside the configuration).
    pub data_dir: PathBuf,
    /// Register files `taxinbox run` imports at start (a firm exporting its register from a CRM as CSV).
    pub directory: DirectorySettings,
    /// How long the processed-mail log keeps raw mail.
    pub audit: AuditSettings,
    /// The firm's task trackers (`[[sinks]]`: webhook, Bitrix24) told of task events, in file order.
    pub sinks: Vec<crate::notify::sink::SinkSettings>,
    /// The web view: who administers and audits, cookie and session policy.
    pub web: WebSettings,
}

/// The web view served on `[http] listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// E-mails (lower-case) of the admins: they see everything and may reprocess and try rules.
    pub admins: Vec<String>,
    /// E-mails (lower-case) of the auditors: they see everything, read-only.
    pub auditors: Vec<String>,
    /// Whether session cookies carry `Secure` (only sent over HTTPS); `false` for plain-HTTP loopback use.
    pub secure_cookies: bool,
    /// How long a sign-in lasts.
    pub session_hours: u32,
}

/// The processed-mail log's retention of raw mail. The log itself and every hash are kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// Days after which a raw mail's content may be purged (its SHA-256 and size stay); `None` keeps it forever
    /// (`retention_days = 0` in the file).
    pub retention_days: Option<u32>,
}

/// Register CSV files kept in sync by the daemon; all optional (the register may be imported by hand instead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectorySettings {
    /// clients CSV (resolved); when set, `run` imports it, with the two below, before processing mail.
    pub clients: Option<PathBuf>,
    /// accountants CSV (resolved).
    pub accountants: Option<PathBuf>,
    /// absences CSV (resolved).
    pub absences: Option<PathBuf>,
}

/// Database connection.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (a relative path already resolved against the configuration's folder) or
    /// `postgres://user:password@host/db`. May hold a password: print it with [`DatabaseSettings::redacted_url`].
    pub url: String,
}

impl DatabaseSettings {
    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Whether the database is SQLite (as opposed to PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .finish()
    }
}

/// Where the rules are and how much a classification script may spend on one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesSettings {
    /// The rules folder (resolved): `mail/*.rhai`, `calendar/production/*.toml`, `demands.toml`.
    pub dir: PathBuf,
    /// Script operations per mail before the script is stopped.
    pub max_operations: u64,
    /// Nested function calls before the script is stopped.
    pub max_call_depth: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Longest array a script may build.
    pub max_array_size: usize,
    /// Wall-clock time a script may take per mail.
    pub time_budget: Duration,
    /// Shadow mode (resolved): a candidate rules folder (with `mail/`, or of `*.rhai` alone) that decides live mail
    /// beside the live rules without acting; what it would decide differently is stored (`rules shadow`). `None`: off.
    pub shadow_dir: Option<PathBuf>,
    /// Shadow mode stores a row also when the candidate decides as the live rules do (not only differences).
    pub shadow_record_equal: bool,
}

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

    fn parse(setting: &str, value: &str) -> Result<Tls, String> {
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
    /// Folder a processed mail is moved to.
    pub processed_folder: String,
    /// Folder a mail that failed processing is moved to.
    pub quarantine_folder: String,
    /// A PEM file of the certificate authority (or authorities) to trust instead of the public roots, for a
    /// server with a private CA (resolved path). `None`: the public web roots.
    pub tls_ca_file: Option<PathBuf>,
}

/// One local Maildir to process (for a mail server that delivers to disk, and for the sample).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirSettings {
    /// Short unique name, used in logs and the store.
    pub name: String,
    /// The Maildir folder (resolved), holding `new/`, `cur/` and `tmp/`.
    pub path: PathBuf,
}

/// How notifications reach people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The delivery mechanism.
    pub transport: NotifyTransport,
    /// `From:` address of notifications.
    pub from: String,
    /// Addresses (lower-case) told about quarantined mail and unassigned tasks; always allowed recipients.
    pub admins: Vec<String>,
    /// Further allowed recipients besides the register's staff and the admins: addresses or `@domain`
    /// (lower-case). Anyone else is refused, whatever a rule or the register says.
    pub allowed_recipients: Vec<String>,
    /// Notifications one recipient may get in 24 hours; beyond, they are held (a loop guard).
    pub daily_cap_per_recipient: u32,
    /// Connect and command timeout of the SMTP conversation.
    pub timeout: Duration,
    /// Who is reminded of an open task, how many working days before its due date.
    pub escalation: EscalationSettings,
    /// The firm's time of day (in `general.timezone`) before which no daily digest is queued.
    pub digest_time: chrono::NaiveTime,
    /// Staff (lower-case addresses) who get no daily digest.
    pub digest_opt_out: Vec<String>,
}

/// Who is told about an open task and when: a ladder of rungs per demand kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationSettings {
    /// The ladder of every kind without its own.
    pub default: Vec<EscalationRung>,
    /// Ladders by demand kind (`demands.toml` id, or `calendar` for tax-calendar tasks).
    pub kinds: std::collections::BTreeMap<String, Vec<EscalationRung>>,
}

impl EscalationSettings {
    /// The ladder for tasks of `kind`.
    pub fn ladder(&self, kind: &str) -> &[EscalationRung] {
        self.kinds.get(kind).unwrap_or(&self.default)
    }
}

/// One rung: tell `who` when `working_days_before` working days are left until the due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationRung {
    /// Whom to tell.
    pub who: EscalationTarget,
    /// Working days before the due date (0 = on the due date).
    pub working_days_before: u32,
}

/// Whom an escalation rung tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EscalationTarget {
    /// The task's assignee.
    Assignee,
    /// Whoever works the client's tasks when the assignee is away (the substitute, else the backup accountant).
    Substitute,
    /// The assignee's manager in the register.
    Manager,
    /// The configured admins.
    Admins,
}

impl EscalationTarget {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationTarget::Assignee => "assignee",
            EscalationTarget::Substitute => "substitute",
            EscalationTarget::Manager => "manager",
            EscalationTarget::Admins => "admins",
        }
    }
}

/// The ladder used when the configuration gives none: the assignee three working days ahead, the substitute two,
/// the manager one and on the day itself.
fn default_ladder() -> Vec<EscalationRung> {
    [
        (EscalationTarget::Assignee, 3),
        (EscalationTarget::Substitute, 2),
        (EscalationTarget::Manager, 1),
        (EscalationTarget::Manager, 0),
    ]
    .into_iter()
    .map(|(who, working_days_before)| EscalationRung {
        who,
        working_days_before,
    })
    .collect()
}

/// The delivery mechanism of notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTransport {
    /// Write each message as an `.eml` file into `dir` (resolved) — for trying things out and for tests.
    File {
        /// The outbox folder.
        dir: PathBuf,
    },
    /// Send through an SMTP server.
    Smtp {
        /// Server host name.
        host: String,
        /// Port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
        port: u16,
        /// Transport security (default `starttls`).
        tls: Tls,
        /// Login, when the server wants one.
        user: Option<String>,
        /// Where the password is, when there is a login.
        password: Option<PasswordSource>,
        /// PEM file of CA certificates to trust besides the public roots (a relay with the firm's own CA).
        tls_ca_file: Option<PathBuf>,
    },
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
}

/// Batching of mail processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    /// Mails processed per database commit (at least 1).
    pub batch_size: usize,
}

/// Time zone and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralSettings {
    /// The zone a mail's `Date:` header is converted to for its received date.
    pub timezone: chrono_tz::Tz,
    /// Language of notifications and messages (`ru`).
    pub language: String,
}

// ---- raw: what the file and environment may say, every field optional so "not written" is visible ----

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    database: RawDatabase,
    rules: RawRules,
    mailboxes: Vec<RawMailbox>,
    maildirs: Vec<RawMaildir>,
    notify: RawNotify,
    http: RawHttp,
    ingest: RawIngest,
    general: RawGeneral,
    directory: RawDirectory,
    audit: RawAudit,
    sinks: Vec<crate::notify::sink::RawSink>,
    web: RawWeb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWeb {
    admins: Vec<String>,
    auditors: Vec<String>,
    secure_cookies: Option<bool>,
    session_hours: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAudit {
    /// Wider than `u32` so a negative or huge value is reported by name rather than as a type error.
    retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDirectory {
    clients: Option<PathBuf>,
    accountants: Option<PathBuf>,
    absences: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRules {
    dir: Option<PathBuf>,
    max_operations: Option<u64>,
    max_call_depth: Option<usize>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    time_budget_ms: Option<u64>,
    shadow_dir: Option<PathBuf>,
    shadow_record_equal: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMailbox {
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMaildir {
    name: Option<String>,
    path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNotify {
    transport: Option<String>,
    dir: Option<PathBuf>,
    from: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    tls: Option<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    tls_ca_file: Option<PathBuf>,
    admins: Option<Vec<String>>,
    allowed_recipients: Option<Vec<String>>,
    /// Wider than `u32` so a negative value is reported by name rather than as a type error.
    daily_cap_per_recipient: Option<i64>,
    timeout_secs: Option<i64>,
    escalation: RawEscalation,
    digest_time: Option<String>,
    digest_opt_out: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEscalation {
    default: Option<Vec<RawRung>>,
    kinds: std::collections::BTreeMap<String, Vec<RawRung>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRung {
    who: Option<String>,
    working_days_before: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawIngest {
    batch_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawGeneral {
    timezone: Option<String>,
    language: Option<String>,
}

impl Settings {
    /// Load from an explicit file (must exist) or the default `taxinbox.toml` in the working dir (optional), then
    /// the process environment.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, SettingsError> {
        let default = Path::new(DEFAULT_FILE);
        let file = match explicit {
            Some(path) => Some(path),
            None if default.is_file() => Some(default),
            None => None,
        };
        // Variables that are not Unicode cannot be ours (our names are ASCII); skip them rather than fail.
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Settings::from_sources(file, &env)
    }

    /// Same, but from given pieces (for tests: no process environment involved). A given file must exist.
    pub fn from_sources(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, SettingsError> {
        let (base, content, file_name) = match file {
            Some(path) => {
                let content =
                    std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let base = normalize(&path.parent().map(Path::to_path_buf).unwrap_or_default());
                (base, content, path.display().to_string())
            }
            None => (PathBuf::new(), String::new(), String::new()),
        };
        // The file alone first, with the toml parser: it reports unknown keys and type errors with a line number,
        // which the layered parse below cannot. Every raw field is optional, so the file alone always fits.
        if file.is_some() {
            toml::from_str::<RawSettings>(&content).map_err(|error| SettingsError::File {
                file: file_name.clone(),
                line: error.span().map(|span| line_of(&content, span.start)),
                message: error.message().replacen("unknown field", "unknown key", 1),
            })?;
        }
        let ours: config::Map<String, String> = env
            .iter()
            .filter(|(key, _)| {
                key.to_ascii_uppercase()
                    .starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}"))
            })
            .cloned()
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(&content, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator(ENV_SEPARATOR)
                    .separator(ENV_SEPARATOR)
                    .source(Some(ours)),
            )
            .build()
            .map_err(|error| SettingsError::Environment(error.to_string()))?;
        let raw: RawSettings = layered.try_deserialize().map_err(|error| {
            SettingsError::Environment(error.to_string().replacen(
                "unknown field",
                "unknown key",
                1,
            ))
        })?;
        validate(raw, &base)
    }
}

/// E-mail addresses as the register keeps them: trimmed, lower-case.
fn lower_case_addresses(addresses: &[String]) -> Vec<String> {
    addresses.iter().map(|e| e.trim().to_lowercase()).collect()
}

/// Turns the raw layers into [`Settings`], collecting every problem so an administrator fixes them in one go.
fn validate(raw: RawSettings, base: &Path) -> Result<Settings, SettingsError> {
    let mut problems = Vec::new();

    let url = raw
        .database
        .url
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let (url, sqlite_file) = match resolve_database_url(url.trim(), base) {
        Ok(resolved) => resolved,
        Err(message) => {
            problems.push(message);
            (url, None)
        }
    };
    let data_dir = match &sqlite_file {
        Some(path) => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            // `sqlite://x.db` with no configuration file: the working directory, spelt so it is not empty.
            _ => PathBuf::from("."),
        },
        None => normalize(&base.join(DEFAULT_DATA_DIR)),
    };

    let rules = RulesSettings {
        dir: normalize(
            &base.join(
                raw.rules
                    .dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_RULES_DIR)),
            ),
        ),
        max_operations: positive(
            &mut problems,
            "rules.max_operations",
            raw.rules.max_operations,
            DEFAULT_MAX_OPERATIONS,
        ),
        max_call_depth: positive(
            &mut problems,
            "rules.max_call_depth",
            raw.rules.max_call_depth,
            DEFAULT_MAX_CALL_DEPTH,
        ),
        max_string_size: positive(
            &mut problems,
            "rules.max_string_size",
            raw.rules.max_string_size,
            DEFAULT_MAX_STRING_SIZE,
        ),
        max_array_size: positive(
            &mut problems,
            "rules.max_array_size",
            raw.rules.max_array_size,
            DEFAULT_MAX_ARRAY_SIZE,
        ),
        time_budget: Duration::from_millis(positive(
            &mut problems,
            "rules.time_budget_ms",
            raw.rules.time_budget_ms,
            DEFAULT_TIME_BUDGET_MS,
        )),
        // Empty means off, so that `TAXINBOX__RULES__SHADOW_DIR=` switches shadow mode off.
        shadow_dir: raw
            .rules
            .shadow_dir
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| normalize(&base.join(d))),
        shadow_record_equal: raw.rules.shadow_record_equal.unwrap_or(false),
    };

    let mut names = BTreeSet::new();
    let mut mailboxes = Vec::new();
    for (index, mailbox) in raw.mailboxes.into_iter().enumerate() {
        if let Some(valid) = validate_mailbox(&mut problems, &mut names, index, mailbox, base) {
            mailboxes.push(valid);
        }
    }
    let mut maildirs = Vec::new();
    for (index, maildir) in raw.maildirs.into_iter().enumerate() {
        let at = format!("maildirs[{index}]");
        let name = required(&mut problems, &format!("{at}.name"), maildir.name);
        unique_name(&mut problems, &mut names, &at, name.as_deref());
        let path = match maildir.path {
            Some(path) if !path.as_os_str().is_empty() => Some(normalize(&base.join(path))),
            _ => {
                problems.push(format!("{at}.path: missing"));
                None
            }
        };
        if let (Some(name), Some(path)) = (name, path) {
            maildirs.push(MaildirSettings { name, path });
        }
    }

    let notify = validate_notify(&mut problems, raw.notify, base);

    let resolve = |p: Option<PathBuf>| {
        p.filter(|p| !p.as_os_str().is_empty())
            .map(|p| normalize(&base.join(p)))
    };
    let directory = DirectorySettings {
        clients: resolve(raw.directory.clients),
        accountants: resolve(raw.directory.accountants),
        absences: resolve(raw.directory.absences),
    };
    if directory.clients.is_none()
        && (directory.accountants.is_some() || directory.absences.is_some())
    {
        problems.push("directory.clients: missing (accountants and absences are imported with the clients file)".to_owned());
    }

    let listen_text = raw
        .http
        .listen
        .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let listen = match listen_text.trim().parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            problems.push(format!(
                "http.listen: {listen_text:?} is not an address:port such as 127.0.0.1:9187"
            ));
            None
        }
    };

    let batch_size = positive(
        &mut problems,
        "ingest.batch_size",
        raw.ingest.batch_size,
        DEFAULT_BATCH_SIZE,
    );

    let timezone_text = raw
        .general
        .timezone
        .unwrap_or_else(|| DEFAULT_TIMEZONE.to_owned());
    let timezone = match timezone_text.trim().parse::<chrono_tz::Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            problems.push(format!(
                "general.timezone: {timezone_text:?} is not an IANA time zone such as Europe/Moscow"
            ));
            None
        }
    };
    let language = raw
        .general
        .language
        .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned())
        .trim()
        .to_owned();
    if language.is_empty() {
        problems.push("general.language: empty".to_owned());
    }

    let retention_days = raw.audit.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let audit = match u32::try_from(retention_days) {
        Ok(0) => AuditSettings {
            retention_days: None,
        },
        Ok(days) => AuditSettings {
            retention_days: Some(days),
        },
        Err(_) => {
            problems.push(format!(
                "audit.retention_days: {retention_days} is not a number of days (0 keeps raw mail forever)"
            ));
            AuditSettings {
                retention_days: None,
            }
        }
    };

    let web = WebSettings {
        admins: lower_case_addresses(&raw.web.admins),
        auditors: lower_case_addresses(&raw.web.auditors),
        secure_cookies: raw.web.secure_cookies.unwrap_or(true),
        session_hours: raw.web.session_hours.unwrap_or(DEFAULT_SESSION_HOURS),
    };
    for email in web.admins.iter().chain(&web.auditors) {
        if !email.contains('@') {
            problems.push(format!("web: {email:?} is not an e-mail address"));
        }
    }
    if web.session_hours == 0 {
        problems.push("web.session_hours: must be at least 1".to_owned());
    }

    let sinks = crate::notify::sink::validate_sinks(&mut problems, raw.sinks, base);

    match (notify, listen, timezone) {
        (Some(notify), Some(listen), Some(timezone)) if problems.is_empty() => Ok(Settings {
            database: DatabaseSettings { url },
            rules,
            mailboxes,
            maildirs,
            notify,
            http: HttpSettings { listen },
            ingest: IngestSettings { batch_size },
            general: GeneralSettings { timezone, language },
            data_dir,
            directory,
            audit,
            sinks,
            web,
        }),
        _ => Err(SettingsError::Invalid(problems)),
    }
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
    let processed_folder = folder(
        raw.processed_folder,
        DEFAULT_PROCESSED_FOLDER,
        "processed_folder",
        problems,
    );
    let quarantine_folder = folder(
        raw.quarantine_folder,
        DEFAULT_QUARANTINE_FOLDER,
        "quarantine_folder",
        problems,
    );
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
        tls_ca_file: raw.tls_ca_file.map(|file| normalize(&base.join(file))),
    })
}

fn validate_notify(
    problems: &mut Vec<String>,
    raw: RawNotify,
    base: &Path,
) -> Option<NotifySettings> {
    let from = raw
        .from
        .unwrap_or_else(|| DEFAULT_NOTIFY_FROM.to_owned())
        .trim()
        .to_owned();
    if !from.contains('@') {
        problems.push(format!("notify.from: {from:?} is not an e-mail address"));
    }
    let transport = match raw.transport.as_deref().map(str::trim).unwrap_or("file") {
        "file" => {
            // SMTP keys under a file transport mean the administrator thinks mail is being sent; it is not.
            let smtp_keys = [
                ("host", raw.host.is_some()),
                ("port", raw.port.is_some()),
                ("tls", raw.tls.is_some()),
                ("user", raw.user.is_some()),
                ("password_file", raw.password_file.is_some()),
                ("password_env", raw.password_env.is_some()),
                ("tls_ca_file", raw.tls_ca_file.is_some()),
            ];
            for (key, _) in smtp_keys.iter().filter(|(_, written)| *written) {
                problems.push(format!("notify.{key}: only used with transport = \"smtp\""));
            }
            let dir = raw.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_NOTIFY_DIR));
            Some(NotifyTransport::File {
                dir: normalize(&base.join(dir)),
            })
        }
        "smtp" => {
            if raw.dir.is_some() {
                problems.push("notify.dir: only used with transport = \"file\"".to_owned());
            }
            let host = required(problems, "notify.host", raw.host);
            let tls = match raw.tls.as_deref().map(str::trim) {
                None => Some(Tls::Starttls),
                Some(value) => take(problems, Tls::parse("notify.tls", value)),
            };
            let port = match (raw.port, tls) {
                (Some(port), _) => take(problems, port_number("notify.port", port)),
                (None, Some(Tls::Tls)) => Some(465),
                (None, Some(Tls::None)) => Some(25),
                (None, _) => Some(587),
            };
            let user = raw
                .user
                .map(|user| user.trim().to_owned())
                .filter(|user| !user.is_empty());
            let password = password_source(
                problems,
                "notify",
                raw.password_file,
                raw.password_env,
                base,
                false,
            );
            // A login without a password (or the reverse) cannot authenticate; say so now, not at the first send.
            if let Some(password) = &password {
                if user.is_some() != password.is_some() {
                    problems.push(
                        "notify: `user` and a password (password_file or password_env) go together"
                            .to_owned(),
                    );
                }
            }
            if raw.tls_ca_file.is_some() && tls == Some(Tls::None) {
                problems.push(
                    "notify.tls_ca_file: only used with tls = \"tls\" or \"starttls\"".to_owned(),
                );
            }
            let tls_ca_file = raw.tls_ca_file.map(|file| normalize(&base.join(file)));
            match (host, tls, port, password) {
                (Some(host), Some(tls), Some(port), Some(password)) => {
                    Some(NotifyTransport::Smtp {
                        host,
                        port,
                        tls,
                        user,
                        password,
                        tls_ca_file,
                    })
                }
                _ => None,
            }
        }
        other => {
            problems.push(format!(
                "notify.transport: {other:?} is not one of file, smtp"
            ));
            None
        }
    };
    let addresses = |key: &str, list: Option<Vec<String>>, problems: &mut Vec<String>| {
        let mut valid = Vec::new();
        for entry in list.unwrap_or_default() {
            let entry = entry.trim().to_lowercase();
            match entry.split_once('@') {
                Some((_, domain)) if !domain.is_empty() && !domain.contains('@') => {
                    valid.push(entry)
                }
                _ => problems.push(format!(
                    "notify.{key}: {entry:?} is not an e-mail address or @domain"
                )),
            }
        }
        valid
    };
    let admins = addresses("admins", raw.admins, problems);
    if let Some(domain_only) = admins.iter().find(|a| a.starts_with('@')) {
        problems.push(format!(
            "notify.admins: {domain_only:?} is a domain; admins are addresses"
        ));
    }
    let allowed_recipients = addresses("allowed_recipients", raw.allowed_recipients, problems);
    let daily_cap_per_recipient = match raw.daily_cap_per_recipient {
        None => DEFAULT_DAILY_CAP_PER_RECIPIENT,
        Some(cap) => match u32::try_from(cap) {
            Ok(cap) if cap > 0 => cap,
            _ => {
                problems.push(format!(
                    "notify.daily_cap_per_recipient: {cap} is not a positive number"
                ));
                DEFAULT_DAILY_CAP_PER_RECIPIENT
            }
        },
    };
    let timeout = match raw.timeout_secs {
        None => Duration::from_secs(DEFAULT_NOTIFY_TIMEOUT_SECS),
        Some(secs) if (1..=600).contains(&secs) => Duration::from_secs(secs.unsigned_abs()),
        Some(secs) => {
            problems.push(format!(
                "notify.timeout_secs: {secs} is not between 1 and 600 seconds"
            ));
            Duration::from_secs(DEFAULT_NOTIFY_TIMEOUT_SECS)
        }
    };
    let ladder = |at: &str, rungs: Vec<RawRung>, problems: &mut Vec<String>| {
        let mut valid = Vec::new();
        for (index, rung) in rungs.into_iter().enumerate() {
            let at = format!("{at}[{index}]");
            let who = match rung.who.as_deref().map(str::trim) {
                Some("assignee") => Some(EscalationTarget::Assignee),
                Some("substitute") => Some(EscalationTarget::Substitute),
                Some("manager") => Some(EscalationTarget::Manager),
                Some("admins") => Some(EscalationTarget::Admins),
                Some(other) => {
                    problems.push(format!(
                        "{at}.who: {other:?} is not one of assignee, substitute, manager, admins"
                    ));
                    None
                }
                None => {
                    problems.push(format!("{at}.who: missing"));
                    None
                }
            };
            let days = match rung.working_days_before.map(u32::try_from) {
                Some(Ok(days)) if days <= 60 => Some(days),
                Some(_) => {
                    problems.push(format!(
                        "{at}.working_days_before: not a number of working days from 0 to 60"
                    ));
                    None
                }
                None => {
                    problems.push(format!("{at}.working_days_before: missing"));
                    None
                }
            };
            if let (Some(who), Some(working_days_before)) = (who, days) {
                valid.push(EscalationRung {
                    who,
                    working_days_before,
                });
            }
        }
        valid
    };
    let escalation = EscalationSettings {
        default: match raw.escalation.default {
            Some(rungs) => ladder("notify.escalation.default", rungs, problems),
            None => default_ladder(),
        },
        kinds: raw
            .escalation
            .kinds
            .into_iter()
            .map(|(kind, rungs)| {
                let rungs = ladder(&format!("notify.escalation.kinds.{kind}"), rungs, problems);
                (kind, rungs)
            })
            .collect(),
    };
    let digest_time_text = raw
        .digest_time
        .unwrap_or_else(|| DEFAULT_DIGEST_TIME.to_owned());
    let digest_time = chrono::NaiveTime::parse_from_str(digest_time_text.trim(), "%H:%M")
        .unwrap_or_else(|_| {
            problems.push(format!(
                "notify.digest_time: {digest_time_text:?} is not a time of day such as 08:00"
            ));
            chrono::NaiveTime::MIN
        });
    let digest_opt_out = addresses("digest_opt_out", raw.digest_opt_out, problems);
    Some(NotifySettings {
        transport: transport?,
        from,
        admins,
        allowed_recipients,
        daily_cap_per_recipient,
        timeout,
        escalation,
        digest_time,
        digest_opt_out,
    })
}

/// `password_file` xor `password_env`. Returns `None` on a problem (recorded), `Some(None)` when neither is
/// given and that is allowed.
fn password_source(
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

fn required(problems: &mut Vec<String>, setting: &str, value: Option<String>) -> Option<String> {
    match value.map(|value| value.trim().to_owned()) {
        Some(value) if !value.is_empty() => Some(value),
        Some(_) => {
            problems.push(format!("{setting}: empty"));
            None
        }
        None => {
            problems.push(format!("{setting}: missing"));
            None
        }
    }
}

fn positive<T: PartialOrd + Default + Copy + fmt::Display>(
    problems: &mut Vec<String>,
    setting: &str,
    value: Option<T>,
    default: T,
) -> T {
    let value = value.unwrap_or(default);
    if value <= T::default() {
        problems.push(format!("{setting}: must be greater than 0, not {value}"));
        return default;
    }
    value
}

fn port_number(setting: &str, port: i64) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("{setting}: {port} is not a port number (1–65535)"))
}

fn take<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(message) => {
            problems.push(message);
            None
        }
    }
}

/// Resolves a relative SQLite path against `base`; returns the URL and, for SQLite files, the file's path.
fn resolve_database_url(url: &str, base: &Path) -> Result<(String, Option<PathBuf>), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), None));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(format!(
            "database.url: {:?} is neither sqlite://… nor postgres://…",
            redact_url(url)
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err("database.url: the SQLite URL names no file".to_owned());
    }
    if path.starts_with(":memory:") {
        return Ok((url.to_owned(), None));
    }
    let file = normalize(&base.join(path));
    let mut resolved = format!("sqlite://{}", file.display());
    if let Some(query) = query {
        resolved.push('?');
        resolved.push_str(query);
    }
    Ok((resolved, Some(file)))
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut redacted = match head.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
                    None => head.to_owned(),
                },
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
    }
    redacted
}

/// 1-based line number of a byte offset.
fn line_of(content: &str, offset: usize) -> usize {
    let end = offset.min(content.len());
    content.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The path without `.` and with `name/..` pairs folded (lexically; a leading `..` stays), so that paths joined to
/// the configuration's folder read plainly in logs and open the same everywhere (SQLite refuses some `..` forms).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() && !path.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// Writes `content` as `taxinbox.toml` into a fresh temporary folder and loads it with `env`.
    fn load(
        content: &str,
        env: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Settings, SettingsError>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("taxinbox.toml");
        std::fs::write(&path, content).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let settings = Settings::from_sources(Some(&path), &env);
        (dir, settings)
    }

    fn error_text(content: &str, env: &[(&str, &str)]) -> String {
        match load(content, env).1 {
            Ok(settings) => panic!("expected an error, got {settings:?}"),
            Err(error) => error.to_string(),
        }
    }

    const MAILBOX: &str = "[[mailboxes]]\nname = \"demands\"\nhost = \"imap.firm.example\"\nuser = \"buh@firm.example\"\npassword_env = \"IMAP_PASSWORD\"\n";

    #[test]
    fn an_empty_file_is_valid_and_gives_the_defaults_beside_the_file() {
        let (dir, settings) = load("", &[]);
        let settings = settings.expect("empty file is valid");
        let base = dir.path();
        assert_eq!(
            settings.database.url,
            format!("sqlite://{}", base.join("data/taxinbox.db").display())
        );
        assert_eq!(settings.data_dir, base.join("data"));
        assert_eq!(settings.rules.dir, base.join("rules"));
        assert_eq!(settings.rules.max_operations, 1_000_000);
        assert_eq!(settings.rules.max_call_depth, 64);
        assert_eq!(settings.rules.max_string_size, 1_048_576);
        assert_eq!(settings.rules.max_array_size, 100_000);
        assert_eq!(settings.rules.time_budget, Duration::from_secs(1));
        assert!(settings.mailboxes.is_empty() && settings.maildirs.is_empty());
        assert_eq!(
            settings.notify.transport,
            NotifyTransport::File {
                dir: base.join("data/outbox")
            }
        );
        assert_eq!(
            settings.http.listen,
            "127.0.0.1:9187".parse().expect("address")
        );
        assert_eq!(settings.ingest.batch_size, 64);
        assert_eq!(settings.general.timezone, chrono_tz::Europe::Moscow);
        assert_eq!(settings.general.language, "ru");
    }

    #[test]
    fn web_cookies_are_secure_unless_said_and_admin_addresses_are_lower_cased() {
        let (_dir, settings) = load("", &[]);
        let web = settings.expect("valid").web;
        assert!(web.secure_cookies && web.admins.is_empty() && web.auditors.is_empty());
        assert_eq!(web.session_hours, 12);
        let (_dir, settings) = load(
            "[web]\nadmins = [\" Admin@Firm.example \"]\nauditors = [\"audit@firm.example\"]\nsecure_cookies = false\n",
            &[],
        );
        let web = settings.expect("valid").web;
        assert_eq!(web.admins, ["admin@firm.example"]);
        assert_eq!(web.auditors, ["audit@firm.example"]);
        assert!(!web.secure_cookies);
        assert!(error_text("[web]\nadmins = [\"nobody\"]\n", &[]).contains("web:"));
    }

    #[test]
    fn raw_mail_is_kept_five_years_unless_configured_and_zero_keeps_it_forever() {
        let (_dir, settings) = load("", &[]);
        assert_eq!(settings.expect("valid").audit.retention_days, Some(1825));
        let (_dir, settings) = load("[audit]\nretention_days = 30\n", &[]);
        assert_eq!(settings.expect("valid").audit.retention_days, Some(30));
        let (_dir, settings) = load("", &[("TAXINBOX__AUDIT__RETENTION_DAYS", "0")]);
        assert_eq!(settings.expect("valid").audit.retention_days, None);
        let error = error_text("[audit]\nretention_days = -1\n", &[]);
        assert!(error.contains("audit.retention_days: -1"), "{error}");
    }

    #[test]
    fn no_file_at_all_gives_the_defaults_relative_to_the_working_directory() {
        let settings = Settings::from_sources(None, &[]).expect("defaults");
        assert_eq!(settings.database.url, "sqlite://data/taxinbox.db");
        assert_eq!(settings.rules.dir, PathBuf::from("rules"));
        assert_eq!(settings.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn the_environment_alone_configures_without_a_file() {
        let env = [(
            "TAXINBOX__DATABASE__URL".to_owned(),
            "sqlite://x.db".to_owned(),
        )];
        let settings = Settings::from_sources(None, &env).expect("valid");
        assert_eq!(settings.database.url, "sqlite://x.db");
        assert_eq!(settings.data_dir, PathBuf::from("."));
    }

    #[test]
    fn an_explicit_file_that_does_not_exist_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.toml");
        let error = Settings::from_sources(Some(&missing), &[]).expect_err("missing file");
        assert!(matches!(error, SettingsError::Read { .. }));
        assert!(error.to_string().contains("nope.toml"), "{error}");
    }

    #[test]
    fn the_shipped_sample_parses_with_paths_beside_the_project() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/taxinbox.toml");
        let settings = Settings::from_sources(Some(&path), &[]).expect("sample is valid");
        let samples = path.parent().expect("samples folder");
        let root = samples.parent().expect("project folder");
        assert_eq!(settings.rules.dir, root.join("rules"));
        assert_eq!(settings.data_dir, root.join("data"));
        assert_eq!(settings.maildirs.len(), 1);
        assert_eq!(settings.maildirs[0].name, "sample");
        assert_eq!(settings.maildirs[0].path, root.join("data/inbox"));
        assert_eq!(settings.notify.from, "taxinbox@firm.example");
    }

    #[test]
    fn an_environment_variable_wins_over_the_file() {
        let (_dir, settings) = load(
            "[database]\nurl = \"sqlite://a.db\"\n[rules]\nmax_operations = 5\n[ingest]\nbatch_size = 8\n",
            &[
                ("TAXINBOX__DATABASE__URL", "postgres://taxinbox@127.0.0.1/taxinbox"),
                ("TAXINBOX__RULES__MAX_OPERATIONS", "7"),
                ("UNRELATED__INGEST__BATCH_SIZE", "9"),
            ],
        );
        let settings = settings.expect("valid");
        assert_eq!(
            settings.database.url,
            "postgres://taxinbox@127.0.0.1/taxinbox"
        );
        assert_eq!(settings.rules.max_operations, 7);
        assert_eq!(settings.ingest.batch_size, 8);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_key_file_and_line() {
        let message = error_text(
            "[general]\nlanguage = \"ru\"\n\n[databse]\nurl = \"sqlite://x.db\"\n",
            &[],
        );
        assert!(message.contains("unknown key `databse`"), "{message}");
        assert!(message.contains("taxinbox.toml:4:"), "{message}");
        let nested = error_text("[rules]\nmax_operation = 5\n", &[]);
        assert!(
            nested.contains("unknown key `max_operation`") && nested.contains(":2:"),
            "{nested}"
        );
    }

    #[test]
    fn an_unknown_key_in_the_environment_is_an_error_naming_it() {
        let message = error_text("", &[("TAXINBOX__DATABASE__ULR", "sqlite://x.db")]);
        assert!(message.contains("ulr"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_names_file_and_line() {
        let message = error_text("[ingest]\nbatch_size = \"many\"\n", &[]);
        assert!(message.contains("taxinbox.toml:2:"), "{message}");
    }

    #[test]
    fn a_mailbox_with_defaults_uses_implicit_tls_on_993() {
        let (_dir, settings) = load(MAILBOX, &[]);
        let mailbox = &settings.expect("valid").mailboxes[0];
        assert_eq!((mailbox.tls, mailbox.port), (Tls::Tls, 993));
        assert_eq!(
            mailbox.password,
            PasswordSource::Env("IMAP_PASSWORD".to_owned())
        );
        assert_eq!(
            (
                mailbox.folder.as_str(),
                mailbox.processed_folder.as_str(),
                mailbox.quarantine_folder.as_str()
            ),
            ("INBOX", "INBOX/Processed", "INBOX/Quarantine")
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
    fn relative_paths_resolve_against_the_configuration_files_folder() {
        let content = format!(
            "{MAILBOX}\n[database]\nurl = \"sqlite://db/x.db?mode=rwc\"\n[rules]\ndir = \"my-rules\"\n\
             [[maildirs]]\nname = \"local\"\npath = \"mail/in\"\n[notify]\ndir = \"out\"\n"
        )
        .replace("password_env = \"IMAP_PASSWORD\"", "password_file = \"secrets/imap\"");
        let (dir, settings) = load(&content, &[]);
        let settings = settings.expect("valid");
        let base = dir.path();
        assert_eq!(
            settings.database.url,
            format!("sqlite://{}?mode=rwc", base.join("db/x.db").display())
        );
        assert_eq!(settings.data_dir, base.join("db"));
        assert_eq!(settings.rules.dir, base.join("my-rules"));
        assert_eq!(settings.maildirs[0].path, base.join("mail/in"));
        assert_eq!(
            settings.notify.transport,
            NotifyTransport::File {
                dir: base.join("out")
            }
        );
        assert_eq!(
            settings.mailboxes[0].password,
            PasswordSource::File(base.join("secrets/imap"))
        );
    }

    #[test]
    fn shadow_mode_is_off_by_default_and_its_folder_resolves_like_the_rules() {
        let (_dir, settings) = load("", &[]);
        let settings = settings.expect("valid");
        assert_eq!(settings.rules.shadow_dir, None);
        assert!(!settings.rules.shadow_record_equal);
        let (dir, settings) = load(
            "[rules]\nshadow_dir = \"rules-candidate\"\nshadow_record_equal = true\n",
            &[],
        );
        let settings = settings.expect("valid");
        assert_eq!(
            settings.rules.shadow_dir,
            Some(dir.path().join("rules-candidate"))
        );
        assert!(settings.rules.shadow_record_equal);
        // Empty means off, so the environment can switch it off.
        let (_dir, settings) = load("[rules]\nshadow_dir = \"\"\n", &[]);
        assert_eq!(settings.expect("valid").rules.shadow_dir, None);
    }

    #[test]
    fn absolute_paths_are_kept_as_written() {
        let (_dir, settings) = load("[database]\nurl = \"sqlite:///var/lib/taxinbox/t.db\"\n[rules]\ndir = \"/etc/taxinbox/rules\"\n", &[]);
        let settings = settings.expect("valid");
        assert_eq!(settings.database.url, "sqlite:///var/lib/taxinbox/t.db");
        assert_eq!(settings.data_dir, PathBuf::from("/var/lib/taxinbox"));
        assert_eq!(settings.rules.dir, PathBuf::from("/etc/taxinbox/rules"));
    }

    #[test]
    fn a_postgres_database_keeps_its_url_and_puts_data_beside_the_file() {
        let (dir, settings) = load(
            "[database]\nurl = \"postgres://taxinbox@127.0.0.1/taxinbox\"\n",
            &[],
        );
        let settings = settings.expect("valid");
        assert!(!settings.database.is_sqlite());
        assert_eq!(settings.data_dir, dir.path().join("data"));
    }

    #[test]
    fn the_debug_output_of_a_postgres_url_hides_its_password() {
        let (_dir, settings) = load(
            "[database]\nurl = \"postgres://buh:s3cr3t@db.firm.example:5432/taxinbox\"\n",
            &[],
        );
        let settings = settings.expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("postgres://buh:***@db.firm.example:5432/taxinbox"),
            "{debug}"
        );
        assert_eq!(
            redact_url("postgres://buh@db/taxinbox?sslmode=require&password=s3cr3t"),
            "postgres://buh@db/taxinbox?sslmode=require&password=***"
        );
    }

    #[test]
    fn an_unknown_database_scheme_is_named() {
        let message = error_text("[database]\nurl = \"mysql://root:pw@localhost/x\"\n", &[]);
        assert!(message.starts_with("database.url:"), "{message}");
        assert!(!message.contains("pw@"), "{message}");
    }

    #[test]
    fn smtp_notification_defaults_to_starttls_on_587_and_needs_a_host() {
        let (_dir, settings) = load(
            "[notify]\ntransport = \"smtp\"\nhost = \"smtp.firm.example\"\nuser = \"t@firm.example\"\npassword_env = \"SMTP_PASSWORD\"\n",
            &[],
        );
        assert_eq!(
            settings.expect("valid").notify.transport,
            NotifyTransport::Smtp {
                host: "smtp.firm.example".to_owned(),
                port: 587,
                tls: Tls::Starttls,
                user: Some("t@firm.example".to_owned()),
                password: Some(PasswordSource::Env("SMTP_PASSWORD".to_owned())),
                tls_ca_file: None,
            }
        );
        let message = error_text("[notify]\ntransport = \"smtp\"\n", &[]);
        assert!(message.contains("notify.host: missing"), "{message}");
    }

    #[test]
    fn an_smtp_ca_file_is_resolved_against_the_config_folder_and_needs_tls() {
        let smtp = "[notify]\ntransport = \"smtp\"\nhost = \"smtp.firm.example\"\ntls_ca_file = \"certs/ca.pem\"\n";
        let (dir, settings) = load(smtp, &[]);
        match settings.expect("valid").notify.transport {
            NotifyTransport::Smtp { tls_ca_file, .. } => {
                assert_eq!(tls_ca_file, Some(dir.path().join("certs/ca.pem")));
            }
            other => panic!("{other:?}"),
        }
        let message = error_text(&format!("{smtp}tls = \"none\"\n"), &[]);
        assert!(message.contains("notify.tls_ca_file"), "{message}");
    }

    #[test]
    fn smtp_keys_under_the_file_transport_are_an_error() {
        let message = error_text("[notify]\nhost = \"smtp.firm.example\"\n", &[]);
        assert!(
            message.contains("notify.host: only used with transport = \"smtp\""),
            "{message}"
        );
    }

    #[test]
    fn bad_scalar_settings_are_named() {
        let message = error_text(
            "[http]\nlisten = \"localhost\"\n[general]\ntimezone = \"Moscow\"\n[ingest]\nbatch_size = 0\n",
            &[],
        );
        for expected in [
            "http.listen:",
            "general.timezone:",
            "ingest.batch_size: must be greater than 0",
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
