//! `[[sinks]]`: the firm's task trackers told of task events — a signed webhook, a Bitrix24 portal, or people's
//! Telegram chats through a bot — with where
//! their URLs and secrets are kept, their timeouts and attempts, and Bitrix24's map of accountants to its users,
//! its pace (the portal's documented request limit: 2 requests/s with a burst of 50, 5/250 on Enterprise), what is
//! done with a task deleted on the portal, and the portal folder for attachments. A Bitrix24 URL must be
//! `https://<portal>/rest/<user id>/<code>/` (the portal refuses plain HTTP); only a loopback host, never a portal,
//! may be reached over `http://` (a local stand-in or a TLS-terminating proxy on the same machine). A Telegram sink
//! names its bot's token (`token_file` / `token_env`, never written in the configuration), the Bot API's address
//! (`api_url`, `https://api.telegram.org` unless a stand-in or a proxy; `http://` only on loopback) and each
//! person's chat: `chats_file`, a CSV `email,chat_id` with a header row, and `[sinks.chats]`, which overrides it.
//! The delivery itself is `notify::sink`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;
use serde::Deserialize;

use super::check::normalize;
use super::mailboxes::PasswordSource;

/// How long one HTTP exchange with a tracker may take unless configured.
const DEFAULT_TIMEOUT_SECS: i64 = 10;

/// Attempts before an event fails for good unless configured: the e-mail outbox's (about four days of back-off).
const DEFAULT_MAX_ATTEMPTS: i64 = 24;

/// Bitrix24's documented request rate for every plan but Enterprise: the portal's counter drains by 2 a second
/// (REST API limits, `limits.md` of the official documentation). Enterprise: 5.
const DEFAULT_REQUESTS_PER_SECOND: u32 = 2;

/// The Bot API's address unless `api_url` says otherwise.
pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// Bitrix24's documented burst for every plan but Enterprise: above 50 the portal answers 503
/// `QUERY_LIMIT_EXCEEDED`. Enterprise: 250.
const DEFAULT_BURST: u32 = 50;

/// Where a URL is: written in the configuration, or kept secret (a Bitrix24 webhook URL holds its token).
#[derive(Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the configuration.
    Plain(String),
    /// In a file or an environment variable, read at each pass.
    Secret(PasswordSource),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The path and query may hold a token: only the origin is shown.
            UrlSource::Plain(url) => match reqwest::Url::parse(url) {
                Ok(u) => write!(
                    f,
                    "Plain({}://{}/***)",
                    u.scheme(),
                    u.host_str().unwrap_or("")
                ),
                Err(_) => f.write_str("Plain(***)"),
            },
            UrlSource::Secret(source) => write!(f, "Secret({source:?})"),
        }
    }
}

impl UrlSource {
    /// The URL now, checked to be http(s).
    pub fn resolve(&self, at: &str) -> anyhow::Result<SecretString> {
        let url = match self {
            UrlSource::Plain(url) => url.clone(),
            UrlSource::Secret(source) => {
                use secrecy::ExposeSecret as _;
                source
                    .resolve()
                    .with_context(|| format!("{at}: read the URL"))?
                    .expose_secret()
                    .trim()
                    .to_owned()
            }
        };
        check_url(&url).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        Ok(SecretString::from(url))
    }

    /// The URL now, checked to be a Bitrix24 incoming webhook (`https://<portal>/rest/<user id>/<code>/`); `at`
    /// names the setting in an error.
    pub fn resolve_bitrix(&self, at: &str) -> anyhow::Result<SecretString> {
        let url = self.resolve(at)?;
        use secrecy::ExposeSecret as _;
        check_bitrix_url(url.expose_secret()).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        Ok(url)
    }

    /// The name of the setting that holds the URL (`url`, `url_env`, `url_file`).
    pub fn setting(&self) -> &'static str {
        match self {
            UrlSource::Plain(_) => "url",
            UrlSource::Secret(PasswordSource::Env(_)) => "url_env",
            UrlSource::Secret(_) => "url_file",
        }
    }
}

/// Whether `host` is this machine (a stand-in or a proxy), never a portal.
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A Bitrix24 incoming webhook: HTTPS (the portal answers `INVALID_REQUEST` "Https required" otherwise; plain
/// HTTP only to a loopback address), and the path `/rest/<user id>/<code>/` the portal issues. Never echoes the
/// URL (it holds the code).
pub fn check_bitrix_url(url: &str) -> Result<(), String> {
    check_url(url)?;
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(
            "Bitrix24 requires https:// (plain http:// is refused by the portal)".to_owned(),
        );
    }
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let shaped = matches!(segments.as_slice(), ["rest", user, code]
        if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())
            && code.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !shaped || parsed.query().is_some() {
        return Err(
            "not an incoming-webhook URL of the shape https://<portal>/rest/<user id>/<code>/"
                .to_owned(),
        );
    }
    Ok(())
}

/// The Bot API's address: an http(s) origin without a path (`https://api.telegram.org`), `https://` unless the host
/// is loopback (the token travels in the request's path).
pub fn check_telegram_url(url: &str) -> Result<(), String> {
    check_url(url)?;
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a URL".to_owned())?;
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(
            "the Bot API takes https:// (plain http:// only to a loopback address)".to_owned(),
        );
    }
    if !parsed.path().trim_matches('/').is_empty() || parsed.query().is_some() {
        return Err(
            "give the Bot API's address without a path, e.g. https://api.telegram.org".to_owned(),
        );
    }
    Ok(())
}

/// A Telegram chat id: a number (a person's private chat; negative for a group) or `@channelusername`.
pub fn check_chat_id(chat: &str) -> Result<(), String> {
    let number = chat.strip_prefix('-').unwrap_or(chat);
    let is_number =
        !number.is_empty() && number.len() <= 20 && number.bytes().all(|b| b.is_ascii_digit());
    let is_username = chat.strip_prefix('@').is_some_and(|u| {
        (5..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if is_number || is_username {
        Ok(())
    } else {
        Err(format!(
            "{chat:?} is not a Telegram chat id (a number, or @channelusername)"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        // Never echo the URL: it may be the secret one.
        _ => Err("the URL is not an http(s) URL with a host".to_owned()),
    }
}

/// What kind of tracker a sink talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// POST of signed JSON.
    Webhook {
        url: UrlSource,
        /// The HMAC key of `X-Taxinbox-Signature`; `None`: unsigned.
        secret: Option<PasswordSource>,
    },
    /// A Bitrix24 portal's incoming webhook.
    Bitrix24 {
        url: UrlSource,
        responsible: Responsible,
        portal: PortalSettings,
    },
    /// A Telegram bot writing to each person's chat (Bot API `sendMessage`).
    Telegram {
        /// The bot's token (from @BotFather), read at each pass; it goes in the request path and is never logged.
        token: PasswordSource,
        /// The Bot API's address, without a path (`https://api.telegram.org`).
        api_url: String,
        /// Person (lower-case directory e-mail) → chat id (a number, or `@channelusername`).
        chats: BTreeMap<String, String>,
    },
}

impl SinkKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Bitrix24 { .. } => "bitrix24",
            SinkKind::Telegram { .. } => "telegram",
        }
    }
}

/// One configured sink (`[[sinks]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// Unique name, in logs and the store.
    pub name: String,
    pub kind: SinkKind,
    /// Connect + answer timeout of one HTTP exchange.
    pub timeout: Duration,
    /// Attempts before an event fails for good.
    pub max_attempts: i64,
}

/// Who works a task in Bitrix24.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responsible {
    /// Accountant e-mail (lower-case) → Bitrix24 user id.
    pub by_email: BTreeMap<String, u64>,
    /// The user a task goes to when its assignee is not mapped (or nobody is assigned).
    pub default: u64,
}

/// What is done with a task deleted on the portal or no longer visible to the webhook's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLostTask {
    /// Add a new Bitrix24 task (the default: nobody's work is lost silently).
    Recreate,
    /// Send none of the task's later events (the firm deletes what it does not want in Bitrix24).
    Drop,
}

/// How a Bitrix24 portal is worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSettings {
    /// Requests per second the portal's counter drains by (2; 5 on Enterprise).
    pub requests_per_second: u32,
    /// Requests above the pace the portal accepts before it answers 503 (50; 250 on Enterprise).
    pub burst: u32,
    pub on_lost_task: OnLostTask,
    /// The Bitrix24 Drive folder (id) the original mail and its XML are uploaded to (scope `disk`); `None`: no
    /// attachments.
    pub attachments_folder: Option<u64>,
}

/// `[[sinks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSink {
    kind: Option<String>,
    name: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    timeout_secs: Option<i64>,
    max_attempts: Option<i64>,
    /// Bitrix24: accountant e-mail → user id.
    responsible: BTreeMap<String, i64>,
    /// Bitrix24: a CSV file `email,user_id` (header row), merged with `responsible`.
    responsible_file: Option<PathBuf>,
    /// Bitrix24: the user id of tasks whose assignee is not mapped.
    default_responsible: Option<i64>,
    /// Bitrix24: the pace, requests per second (2; 5 on Enterprise).
    requests_per_second: Option<i64>,
    /// Bitrix24: the burst (50; 250 on Enterprise).
    burst: Option<i64>,
    /// Bitrix24: `recreate` or `drop` a task deleted on the portal.
    on_lost_task: Option<String>,
    /// Bitrix24: the Drive folder id for the original mail and its XML.
    attachments_folder: Option<i64>,
    /// Telegram: the file holding the bot's token.
    token_file: Option<PathBuf>,
    /// Telegram: the environment variable holding the bot's token.
    token_env: Option<String>,
    /// Telegram: the Bot API's address (`https://api.telegram.org`).
    api_url: Option<String>,
    /// Telegram: person (e-mail) → chat id.
    chats: BTreeMap<String, ChatRef>,
    /// Telegram: a CSV file `email,chat_id` (header row), under `chats`.
    chats_file: Option<PathBuf>,
}

/// A chat id as written in `[sinks.chats]`: a number or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ChatRef {
    Id(i64),
    Name(String),
}

/// Validates `[[sinks]]`, recording every problem by name (`sinks[0].url: …`).
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw: Vec<RawSink>,
    base: &Path,
) -> Vec<SinkSettings> {
    let mut names = BTreeSet::new();
    let mut valid = Vec::new();
    for (index, sink) in raw.into_iter().enumerate() {
        let at = format!("sinks[{index}]");
        let before = problems.len();
        let name = sink
            .name
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            problems.push(format!("{at}.name: missing"));
        } else if !names.insert(name.clone()) {
            problems.push(format!("{at}.name: {name:?} is used by another sink"));
        }
        let telegram_keys = sink.token_file.is_some()
            || sink.token_env.is_some()
            || sink.api_url.is_some()
            || !sink.chats.is_empty()
            || sink.chats_file.is_some();
        if sink.kind.as_deref().map(str::trim) == Some("telegram") {
            if let Some(kind) = telegram(problems, &at, sink, base) {
                if problems.len() == before {
                    valid.push(SinkSettings {
                        name,
                        kind: kind.0,
                        timeout: kind.1,
                        max_attempts: kind.2,
                    });
                }
            }
            continue;
        }
        if telegram_keys {
            problems.push(format!(
                "{at}: token_file, token_env, api_url, chats and chats_file are only used with kind = \"telegram\""
            ));
        }
        let url = match (sink.url, sink.url_env, sink.url_file) {
            (Some(url), None, None) => {
                let url = url.trim().to_owned();
                let checked = if sink.kind.as_deref().map(str::trim) == Some("bitrix24") {
                    check_bitrix_url(&url)
                } else {
                    check_url(&url)
                };
                match checked {
                    Ok(()) => Some(UrlSource::Plain(url)),
                    Err(e) => {
                        problems.push(format!("{at}.url: {e}"));
                        None
                    }
                }
            }
            (None, Some(env), None) if !env.trim().is_empty() => Some(UrlSource::Secret(
                PasswordSource::Env(env.trim().to_owned()),
            )),
            (None, None, Some(file)) if !file.as_os_str().is_empty() => Some(UrlSource::Secret(
                PasswordSource::File(normalize(&base.join(file))),
            )),
            (None, None, None) => {
                problems.push(format!("{at}: url, url_env or url_file is required"));
                None
            }
            _ => {
                problems.push(format!(
                    "{at}: give one of url, url_env, url_file (not empty)"
                ));
                None
            }
        };
        let (timeout, max_attempts) =
            timeout_and_attempts(problems, &at, sink.timeout_secs, sink.max_attempts);
        let bitrix_keys = !sink.responsible.is_empty()
            || sink.responsible_file.is_some()
            || sink.default_responsible.is_some();
        let portal_keys = sink.requests_per_second.is_some()
            || sink.burst.is_some()
            || sink.on_lost_task.is_some()
            || sink.attachments_folder.is_some();
        let kind = match sink.kind.as_deref().map(str::trim) {
            Some("webhook") => {
                if bitrix_keys {
                    problems.push(format!(
                        "{at}: responsible, responsible_file and default_responsible are only used with kind = \"bitrix24\""
                    ));
                }
                if portal_keys {
                    problems.push(format!(
                        "{at}: requests_per_second, burst, on_lost_task and attachments_folder are only used with kind = \"bitrix24\""
                    ));
                }
                let secret = match (sink.secret_env, sink.secret_file) {
                    (Some(_), Some(_)) => {
                        problems.push(format!(
                            "{at}: give either secret_env or secret_file, not both"
                        ));
                        None
                    }
                    (Some(env), None) if !env.trim().is_empty() => {
                        Some(PasswordSource::Env(env.trim().to_owned()))
                    }
                    (None, Some(file)) if !file.as_os_str().is_empty() => {
                        Some(PasswordSource::File(normalize(&base.join(file))))
                    }
                    (None, None) => None,
                    _ => {
                        problems.push(format!("{at}: secret_env / secret_file is empty"));
                        None
                    }
                };
                url.map(|url| SinkKind::Webhook { url, secret })
            }
            Some("bitrix24") => {
                if sink.secret_env.is_some() || sink.secret_file.is_some() {
                    problems.push(format!(
                        "{at}: secret_env / secret_file are only used with kind = \"webhook\" (the Bitrix24 token is in its URL)"
                    ));
                }
                let mut by_email = BTreeMap::new();
                let mut add = |email: &str, id: i64, where_: &str, problems: &mut Vec<String>| {
                    let email = email.trim().to_lowercase();
                    match u64::try_from(id) {
                        Ok(id) if id > 0 && email.contains('@') => {
                            by_email.insert(email, id);
                        }
                        _ => problems.push(format!(
                            "{where_}: {email:?} → {id} is not an e-mail and a positive Bitrix24 user id"
                        )),
                    }
                };
                for (email, id) in &sink.responsible {
                    add(email, *id, &format!("{at}.responsible"), problems);
                }
                if let Some(file) = &sink.responsible_file {
                    let path = normalize(&base.join(file));
                    match read_responsible_csv(&path) {
                        Ok(rows) => {
                            for (line, email, id) in rows {
                                add(&email, id, &format!("{}:{line}", path.display()), problems);
                            }
                        }
                        Err(e) => problems.push(format!("{at}.responsible_file: {e}")),
                    }
                }
                let default = match sink.default_responsible.map(u64::try_from) {
                    Some(Ok(id)) if id > 0 => Some(id),
                    Some(_) => {
                        problems.push(format!(
                            "{at}.default_responsible: not a positive Bitrix24 user id"
                        ));
                        None
                    }
                    None => {
                        problems.push(format!(
                            "{at}.default_responsible: required (the Bitrix24 user who gets tasks of unmapped accountants)"
                        ));
                        None
                    }
                };
                let portal = portal_settings(
                    problems,
                    &at,
                    sink.requests_per_second,
                    sink.burst,
                    sink.on_lost_task.as_deref(),
                    sink.attachments_folder,
                );
                match (url, default) {
                    (Some(url), Some(default)) => Some(SinkKind::Bitrix24 {
                        url,
                        responsible: Responsible { by_email, default },
                        portal,
                    }),
                    _ => None,
                }
            }
            Some(other) => {
                problems.push(format!(
                    "{at}.kind: {other:?} is not one of webhook, bitrix24, telegram"
                ));
                None
            }
            None => {
                problems.push(format!(
                    "{at}.kind: missing (webhook, bitrix24 or telegram)"
                ));
                None
            }
        };
        if let Some(kind) = kind {
            if problems.len() == before {
                valid.push(SinkSettings {
                    name,
                    kind,
                    timeout,
                    max_attempts,
                });
            }
        }
    }
    valid
}

/// `timeout_secs` and `max_attempts`, checked.
fn timeout_and_attempts(
    problems: &mut Vec<String>,
    at: &str,
    timeout_secs: Option<i64>,
    max_attempts: Option<i64>,
) -> (Duration, i64) {
    let timeout = match timeout_secs {
        None => Duration::from_secs(DEFAULT_TIMEOUT_SECS.unsigned_abs()),
        Some(s) if (1..=300).contains(&s) => Duration::from_secs(s.unsigned_abs()),
        Some(s) => {
            problems.push(format!(
                "{at}.timeout_secs: {s} is not between 1 and 300 seconds"
            ));
            Duration::from_secs(DEFAULT_TIMEOUT_SECS.unsigned_abs())
        }
    };
    let max_attempts = match max_attempts {
        None => DEFAULT_MAX_ATTEMPTS,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(n) => {
            problems.push(format!("{at}.max_attempts: {n} is not between 1 and 1000"));
            DEFAULT_MAX_ATTEMPTS
        }
    };
    (timeout, max_attempts)
}

/// A `kind = "telegram"` sink: its token source, the Bot API's address and the chats; with its timeout and
/// attempts. `None` when something is wrong (recorded in `problems`).
fn telegram(
    problems: &mut Vec<String>,
    at: &str,
    sink: RawSink,
    base: &Path,
) -> Option<(SinkKind, Duration, i64)> {
    let before = problems.len();
    let (timeout, max_attempts) =
        timeout_and_attempts(problems, at, sink.timeout_secs, sink.max_attempts);
    let foreign = sink.url.is_some()
        || sink.url_env.is_some()
        || sink.url_file.is_some()
        || sink.secret_env.is_some()
        || sink.secret_file.is_some()
        || !sink.responsible.is_empty()
        || sink.responsible_file.is_some()
        || sink.default_responsible.is_some()
        || sink.requests_per_second.is_some()
        || sink.burst.is_some()
        || sink.on_lost_task.is_some()
        || sink.attachments_folder.is_some();
    if foreign {
        problems.push(format!(
            "{at}: a telegram sink takes token_file or token_env, api_url, chats, chats_file, timeout_secs and max_attempts only"
        ));
    }
    let token = match (sink.token_file, sink.token_env) {
        (Some(file), None) if !file.as_os_str().is_empty() => {
            Some(PasswordSource::File(normalize(&base.join(file))))
        }
        (None, Some(env)) if !env.trim().is_empty() => {
            Some(PasswordSource::Env(env.trim().to_owned()))
        }
        (None, None) => {
            problems.push(format!(
                "{at}: token_file or token_env is required (the bot's token from @BotFather; never written here)"
            ));
            None
        }
        _ => {
            problems.push(format!(
                "{at}: give one of token_file, token_env (not empty)"
            ));
            None
        }
    };
    let api_url = sink
        .api_url
        .as_deref()
        .map_or(TELEGRAM_API_URL, str::trim)
        .trim_end_matches('/')
        .to_owned();
    if let Err(e) = check_telegram_url(&api_url) {
        problems.push(format!("{at}.api_url: {e}"));
    }
    let mut chats = BTreeMap::new();
    let mut add = |email: &str, chat: String, where_: &str, problems: &mut Vec<String>| {
        let email = email.trim().to_lowercase();
        let chat = chat.trim().to_owned();
        if !email.contains('@') {
            problems.push(format!(
                "{where_}: {email:?} is not an e-mail of the directory"
            ));
        } else if let Err(e) = check_chat_id(&chat) {
            problems.push(format!("{where_}: {email}: {e}"));
        } else {
            chats.insert(email, chat);
        }
    };
    if let Some(file) = &sink.chats_file {
        let path = normalize(&base.join(file));
        match read_pairs_csv(&path) {
            Ok(rows) => {
                for (line, email, chat) in rows {
                    add(
                        &email,
                        chat,
                        &format!("{}:{line}", path.display()),
                        problems,
                    );
                }
            }
            Err(e) => problems.push(format!("{at}.chats_file: {e}")),
        }
    }
    // `[sinks.chats]` overrides the file.
    for (email, chat) in sink.chats {
        let chat = match chat {
            ChatRef::Id(id) => id.to_string(),
            ChatRef::Name(name) => name,
        };
        add(&email, chat, &format!("{at}.chats"), problems);
    }
    match token {
        Some(token) if problems.len() == before => Some((
            SinkKind::Telegram {
                token,
                api_url,
                chats,
            },
            timeout,
            max_attempts,
        )),
        _ => None,
    }
}

/// `key,value` rows (after a header row) with their line numbers.
fn read_pairs_csv(path: &Path) -> Result<Vec<(usize, String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|e| format!("{}:{line}: {e}", path.display()))?;
        rows.push((
            line,
            record.get(0).unwrap_or_default().to_owned(),
            record.get(1).unwrap_or_default().to_owned(),
        ));
    }
    Ok(rows)
}

/// The pace, the lost-task policy and the attachments folder of a Bitrix24 sink.
fn portal_settings(
    problems: &mut Vec<String>,
    at: &str,
    requests_per_second: Option<i64>,
    burst: Option<i64>,
    on_lost_task: Option<&str>,
    attachments_folder: Option<i64>,
) -> PortalSettings {
    let mut count = |key: &str, value: Option<i64>, default: u32, max: i64| match value {
        None => default,
        Some(n) if (1..=max).contains(&n) => u32::try_from(n).unwrap_or(default),
        Some(n) => {
            problems.push(format!("{at}.{key}: {n} is not between 1 and {max}"));
            default
        }
    };
    let requests_per_second = count(
        "requests_per_second",
        requests_per_second,
        DEFAULT_REQUESTS_PER_SECOND,
        1000,
    );
    let burst = count("burst", burst, DEFAULT_BURST, 10_000);
    let on_lost_task = match on_lost_task.map(str::trim) {
        None | Some("recreate") => OnLostTask::Recreate,
        Some("drop") => OnLostTask::Drop,
        Some(other) => {
            problems.push(format!(
                "{at}.on_lost_task: {other:?} is not one of recreate, drop"
            ));
            OnLostTask::Recreate
        }
    };
    let attachments_folder = match attachments_folder.map(u64::try_from) {
        None => None,
        Some(Ok(id)) if id > 0 => Some(id),
        Some(_) => {
            problems.push(format!(
                "{at}.attachments_folder: not a positive Bitrix24 Drive folder id"
            ));
            None
        }
    };
    PortalSettings {
        requests_per_second,
        burst,
        on_lost_task,
        attachments_folder,
    }
}

/// `email,user_id` rows (after a header row) with their line numbers.
fn read_responsible_csv(path: &Path) -> Result<Vec<(usize, String, i64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|e| format!("{}:{line}: {e}", path.display()))?;
        let email = record.get(0).unwrap_or_default().to_owned();
        let id = record
            .get(1)
            .unwrap_or_default()
            .parse::<i64>()
            .map_err(|_| format!("{}:{line}: user_id is not a number", path.display()))?;
        rows.push((line, email, id));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bitrix_url_is_https_and_an_incoming_webhook() {
        assert_eq!(
            check_bitrix_url("https://firm.bitrix24.ru/rest/7/abc123xyz/"),
            Ok(())
        );
        assert_eq!(
            check_bitrix_url("http://127.0.0.1:8080/rest/7/t0ken/"),
            Ok(())
        );
        let refused = check_bitrix_url("http://firm.bitrix24.ru/rest/7/abc123xyz/").unwrap_err();
        assert!(refused.contains("https"), "{refused}");
        for bad in [
            "https://firm.bitrix24.ru/",
            "https://firm.bitrix24.ru/rest/abc/def/",
            "https://firm.bitrix24.ru/rest/7/",
            "https://firm.bitrix24.ru/rest/7/abc/tasks.task.add.json",
            "firm.bitrix24.ru/rest/7/abc/",
        ] {
            let e = check_bitrix_url(bad).unwrap_err();
            assert!(!e.contains("firm.bitrix24"), "never echoed: {e}");
        }
    }

    #[test]
    fn the_bot_api_is_https_except_on_loopback_and_chat_ids_are_numbers_or_usernames() {
        assert_eq!(check_telegram_url("https://api.telegram.org"), Ok(()));
        assert_eq!(check_telegram_url("http://127.0.0.1:8081"), Ok(()));
        assert!(check_telegram_url("http://api.telegram.org").is_err());
        assert!(check_telegram_url("https://api.telegram.org/bot1:x").is_err());
        for ok in ["123456789", "-1001234567890", "@firm_channel"] {
            assert_eq!(check_chat_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-", "12a", "@ab", "ivanova"] {
            assert!(check_chat_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_debug_form_of_a_url_shows_only_its_origin() {
        let url = UrlSource::Plain("https://firm.bitrix24.ru/rest/1/s3cr3t/".to_owned());
        let shown = format!("{url:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("firm.bitrix24.ru"), "{shown}");
    }
}
