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
//!
//! One file per section holds its raw struct (what the file may say), its valid struct and its validation;
//! `check` has the small checks they share.

mod audit;
mod check;
mod database;
mod directory;
mod general;
mod http;
mod ingest;
mod mailboxes;
mod notify;
mod rules;
mod sinks;
mod web;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::audit::AuditSettings;
use self::check::normalize;
pub use self::database::DatabaseSettings;
pub use self::directory::DirectorySettings;
pub use self::general::GeneralSettings;
pub use self::http::{HttpSettings, DEFAULT_HEADER_READ_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_SECS};
pub use self::ingest::{IngestSettings, DEFAULT_MEMORY_MB};
pub use self::mailboxes::{Acknowledge, MailboxSettings, MaildirSettings, PasswordSource, Tls};
pub use self::notify::{
    EscalationRung, EscalationSettings, EscalationTarget, NotifySettings, NotifyTransport,
};
pub use self::rules::{RulesSettings, SandboxLimits};
pub use self::sinks::{
    check_bitrix_url, OnLostTask, PortalSettings, Responsible, SinkKind, SinkSettings, UrlSource,
};
pub use self::web::{IpNet, WebSettings};

/// The file read when `--config` is not given, in the working directory; it is optional.
pub const DEFAULT_FILE: &str = "taxinbox.toml";

/// Prefix of the environment variables that override the file: `TAXINBOX__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "TAXINBOX";

/// Separates the prefix, the section and the key in an environment variable's name. Double, because keys
/// themselves contain single underscores (`max_operations`).
pub const ENV_SEPARATOR: &str = "__";

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
    /// Where tasks, cases and the directory are stored.
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
    /// Directory files `taxinbox run` imports at start (a firm exporting its directory from a CRM as CSV).
    pub directory: DirectorySettings,
    /// How long the processed-mail log keeps raw mail.
    pub audit: AuditSettings,
    /// The firm's task trackers (`[[sinks]]`: webhook, Bitrix24) told of task events, in file order.
    pub sinks: Vec<SinkSettings>,
    /// The web view: who administers and audits, cookie and session policy.
    pub web: WebSettings,
}

// ---- raw: what the file and environment may say, every field optional so "not written" is visible ----

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    database: database::RawDatabase,
    rules: rules::RawRules,
    mailboxes: Vec<mailboxes::RawMailbox>,
    maildirs: Vec<mailboxes::RawMaildir>,
    notify: self::notify::RawNotify,
    http: http::RawHttp,
    ingest: ingest::RawIngest,
    general: general::RawGeneral,
    directory: directory::RawDirectory,
    audit: audit::RawAudit,
    sinks: Vec<sinks::RawSink>,
    web: web::RawWeb,
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
                line: crate::toml_file::error_line(&content, &error),
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

/// Turns the raw layers into [`Settings`], collecting every problem so an administrator fixes them in one go.
fn validate(raw: RawSettings, base: &Path) -> Result<Settings, SettingsError> {
    let mut problems = Vec::new();
    let (database, data_dir) = database::validate(&mut problems, raw.database, base);
    let rules = rules::validate(&mut problems, raw.rules, base);
    let (mailboxes, maildirs) =
        mailboxes::validate(&mut problems, raw.mailboxes, raw.maildirs, base);
    let notify = self::notify::validate(&mut problems, raw.notify, base);
    let directory = directory::validate(&mut problems, raw.directory, base);
    let http = http::validate(&mut problems, raw.http);
    let ingest = ingest::validate(&mut problems, raw.ingest);
    let general = general::validate(&mut problems, raw.general);
    let audit = audit::validate(&mut problems, raw.audit, base);
    let web = web::validate(&mut problems, raw.web, base);
    let sinks = sinks::validate(&mut problems, raw.sinks, base);

    match (notify, http, general) {
        (Some(notify), Some(http), Some(general)) if problems.is_empty() => Ok(Settings {
            database,
            rules,
            mailboxes,
            maildirs,
            notify,
            http,
            ingest,
            general,
            data_dir,
            directory,
            audit,
            sinks,
            web,
        }),
        _ => Err(SettingsError::Invalid(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Writes `content` as `taxinbox.toml` into a fresh temporary folder and loads it with `env`.
    pub(super) fn load(
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

    pub(super) fn error_text(content: &str, env: &[(&str, &str)]) -> String {
        match load(content, env).1 {
            Ok(settings) => panic!("expected an error, got {settings:?}"),
            Err(error) => error.to_string(),
        }
    }

    pub(super) const MAILBOX: &str = "[[mailboxes]]\nname = \"demands\"\nhost = \"imap.firm.example\"\nuser = \"buh@firm.example\"\npassword_env = \"IMAP_PASSWORD\"\n";

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
        assert_eq!(settings.rules.limits.max_operations, 1_000_000);
        assert_eq!(settings.rules.limits.max_call_depth, 64);
        assert_eq!(settings.rules.limits.max_string_size, 1_048_576);
        assert_eq!(settings.rules.limits.max_array_size, 100_000);
        assert_eq!(settings.rules.limits.time_budget, Duration::from_secs(1));
        assert!(settings.mailboxes.is_empty() && settings.maildirs.is_empty());
        assert_eq!(
            settings.notify.transport,
            NotifyTransport::File {
                dir: base.join("data/outbox")
            }
        );
        assert_eq!(
            settings.http.listen,
            "127.0.0.1:8437".parse().expect("address")
        );
        assert_eq!(settings.ingest.batch_size, 64);
        assert_eq!(settings.ingest.memory_mb, 64);
        assert_eq!(settings.general.timezone, chrono_tz::Europe::Moscow);
        assert_eq!(settings.general.language, "ru");
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
    fn the_shipped_sample_and_deploy_configurations_parse_with_paths_beside_them() {
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
        // The sample writes the sandbox limits out: they are the defaults.
        assert_eq!(settings.rules.limits, SandboxLimits::default());

        // The production example: PostgreSQL, absolute paths kept, relative ones beside the file; no secret needed.
        let path = root.join("deploy/taxinbox.toml");
        let settings = Settings::from_sources(Some(&path), &[]).expect("deploy example is valid");
        let deploy = root.join("deploy");
        assert!(!settings.database.is_sqlite());
        assert_eq!(
            settings.database.url,
            "postgres://taxinbox@127.0.0.1/taxinbox"
        );
        assert_eq!(settings.data_dir, deploy.join("data"));
        assert_eq!(settings.rules.dir, deploy.join("rules"));
        assert_eq!(
            settings.directory.clients.as_deref(),
            Some(Path::new("/var/lib/taxinbox/register/clients.csv"))
        );
        // One IMAP mailbox and the SMTP relay, their passwords named, not written; the web view behind a proxy.
        assert!(settings.maildirs.is_empty());
        assert_eq!(settings.mailboxes.len(), 1);
        assert_eq!(settings.mailboxes[0].name, "buh");
        assert!(matches!(
            &settings.notify.transport,
            NotifyTransport::Smtp { host, port: 587, password: Some(PasswordSource::Env(var)), .. }
                if host == "smtp.firm.example" && var == "SMTP_PASSWORD"
        ));
        assert_eq!(settings.notify.from, "taxinbox@firm.example");
        assert_eq!(
            settings.web.base_url.as_deref(),
            Some("https://taxinbox.firm.example")
        );
    }

    #[test]
    fn an_environment_variable_wins_over_the_file() {
        let (_dir, settings) = load(
            "[database]\nurl = \"sqlite://a.db\"\n[rules]\nmax_operations = 5\n[ingest]\nbatch_size = 8\n",
            &[
                ("TAXINBOX__DATABASE__URL", "postgres://taxinbox@127.0.0.1/taxinbox"),
                ("TAXINBOX__RULES__MAX_OPERATIONS", "7"),
                ("UNRELATED__INGEST__BATCH_SIZE", "9"),
                ("TAXINBOX__INGEST__MEMORY_MB", "32"),
            ],
        );
        let settings = settings.expect("valid");
        assert_eq!(
            settings.database.url,
            "postgres://taxinbox@127.0.0.1/taxinbox"
        );
        assert_eq!(settings.rules.limits.max_operations, 7);
        assert_eq!(settings.ingest.batch_size, 8);
        assert_eq!(settings.ingest.memory_mb, 32);
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
    fn absolute_paths_are_kept_as_written() {
        let (_dir, settings) = load("[database]\nurl = \"sqlite:///var/lib/taxinbox/t.db\"\n[rules]\ndir = \"/etc/taxinbox/rules\"\n", &[]);
        let settings = settings.expect("valid");
        assert_eq!(settings.database.url, "sqlite:///var/lib/taxinbox/t.db");
        assert_eq!(settings.data_dir, PathBuf::from("/var/lib/taxinbox"));
        assert_eq!(settings.rules.dir, PathBuf::from("/etc/taxinbox/rules"));
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
}
