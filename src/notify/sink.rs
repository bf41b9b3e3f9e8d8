//! Task sinks: the firm's task tracker hears of every task event — `created`, `linked` (a mail joined the task's
//! case), `escalated`, `done` and `reassigned` (a person in the web view) — through a signed webhook
//! ([`super::webhook`]) or Bitrix24 ([`super::bitrix`]).
//!
//! Events are queued in `sink_outbox`, one row per configured sink, in the transaction that creates the task, the
//! link, the escalation or the person's change (`store::queue_task_event`, `store::queue_task_change`), so none is
//! lost. This worker delivers them: per sink, the
//! oldest due event whose task has no earlier undelivered event (strictly in order per task), retried with the
//! e-mail outbox's back-off ([`super::retry_delay`]) after a network error, a timeout, 408, 429 or 5xx; failed for
//! good after any other 4xx or `max_attempts` attempts — a failed event holds back the later events of its task
//! and shows in `taxinbox sinks status` until an admin runs `taxinbox sinks retry`. An event is marked delivered
//! only after a 2xx answer: delivery is at-least-once (see the webhook and Bitrix24 modules for why a repeat is
//! harmless). Only the configured URLs are contacted; redirects are not followed.

use super::bitrix::Responsible;
use crate::settings::PasswordSource;
use crate::store::{self, PendingSinkEvent, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one HTTP exchange with a tracker may take unless configured.
const DEFAULT_TIMEOUT_SECS: i64 = 10;

/// Attempts before an event fails for good unless configured: the e-mail outbox's (about four days of back-off).
const DEFAULT_MAX_ATTEMPTS: i64 = 24;

/// The most events one pass delivers per sink: a bound on the loop; the rest waits for the next pass.
const MAX_PER_PASS: usize = 10_000;

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
    },
}

impl SinkKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Bitrix24 { .. } => "bitrix24",
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

/// `[[sinks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSink {
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
}

/// Validates `[[sinks]]`, recording every problem by name (`sinks[0].url: …`).
pub fn validate_sinks(
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
        let url = match (sink.url, sink.url_env, sink.url_file) {
            (Some(url), None, None) => {
                let url = url.trim().to_owned();
                match check_url(&url) {
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
                PasswordSource::File(crate::settings::normalize(&base.join(file))),
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
        let timeout = match sink.timeout_secs {
            None => Duration::from_secs(DEFAULT_TIMEOUT_SECS.unsigned_abs()),
            Some(s) if (1..=300).contains(&s) => Duration::from_secs(s.unsigned_abs()),
            Some(s) => {
                problems.push(format!(
                    "{at}.timeout_secs: {s} is not between 1 and 300 seconds"
                ));
                Duration::from_secs(DEFAULT_TIMEOUT_SECS.unsigned_abs())
            }
        };
        let max_attempts = match sink.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n) if (1..=1000).contains(&n) => n,
            Some(n) => {
                problems.push(format!("{at}.max_attempts: {n} is not between 1 and 1000"));
                DEFAULT_MAX_ATTEMPTS
            }
        };
        let bitrix_keys = !sink.responsible.is_empty()
            || sink.responsible_file.is_some()
            || sink.default_responsible.is_some();
        let kind = match sink.kind.as_deref().map(str::trim) {
            Some("webhook") => {
                if bitrix_keys {
                    problems.push(format!(
                        "{at}: responsible, responsible_file and default_responsible are only used with kind = \"bitrix24\""
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
                    (None, Some(file)) if !file.as_os_str().is_empty() => Some(
                        PasswordSource::File(crate::settings::normalize(&base.join(file))),
                    ),
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
                    let path = crate::settings::normalize(&base.join(file));
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
                match (url, default) {
                    (Some(url), Some(default)) => Some(SinkKind::Bitrix24 {
                        url,
                        responsible: Responsible { by_email, default },
                    }),
                    _ => None,
                }
            }
            Some(other) => {
                problems.push(format!(
                    "{at}.kind: {other:?} is not one of webhook, bitrix24"
                ));
                None
            }
            None => {
                problems.push(format!("{at}.kind: missing (webhook or bitrix24)"));
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

/// Why an event was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth another try later: network, timeout, 408, 429, 5xx, a rate limit.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: another 4xx, a refused request.
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// A transport error, without its URL (a Bitrix24 URL holds the token).
pub fn http_error(e: reqwest::Error) -> SinkError {
    SinkError::Transient(format!("{:#}", anyhow::Error::new(e.without_url())))
}

/// A non-2xx answer: 408, 429 and 5xx are worth another try, the rest (other 4xx, 3xx: redirects are not followed)
/// is not.
pub fn status_error(status: reqwest::StatusCode, body: &str) -> SinkError {
    let message = format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        SinkError::Transient(message)
    } else {
        SinkError::Permanent(message)
    }
}

/// Records the configured sinks in the store, so events queued from now on reach them (see `store::register_sinks`).
pub async fn register(
    store: &Store,
    sinks: &[SinkSettings],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let list: Vec<(String, String)> = sinks
        .iter()
        .map(|s| (s.name.clone(), s.kind.as_str().to_owned()))
        .collect();
    let mut conn = store.acquire().await?;
    store::register_sinks(&mut conn, &list, &store::timestamp(now)).await
}

/// What a delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkOutcome {
    /// Answered 2xx.
    pub delivered: usize,
    /// Failed for now; queued again with a later `not_before`.
    pub retrying: usize,
    /// Failed for good.
    pub failed: usize,
}

impl SinkOutcome {
    fn add(&mut self, o: SinkOutcome) {
        self.delivered += o.delivered;
        self.retrying += o.retrying;
        self.failed += o.failed;
    }
}

/// One sink ready to deliver: its settings and HTTP client.
#[derive(Debug, Clone)]
struct Sink {
    settings: SinkSettings,
    client: reqwest::Client,
}

/// The delivery worker over every configured sink.
#[derive(Debug, Clone)]
pub struct SinkWorker {
    sinks: Vec<Sink>,
    /// The firm's zone, for deadlines.
    zone: chrono_tz::Tz,
}

impl SinkWorker {
    /// A worker for `sinks`; deadlines are written in `zone`.
    pub fn new(sinks: &[SinkSettings], zone: chrono_tz::Tz) -> anyhow::Result<SinkWorker> {
        let sinks = sinks
            .iter()
            .map(|s| {
                let client = reqwest::Client::builder()
                    .timeout(s.timeout)
                    .connect_timeout(s.timeout)
                    // Only the configured URL is contacted.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("taxinbox/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .with_context(|| format!("sinks[{}]: build the HTTP client", s.name))?;
                Ok(Sink {
                    settings: s.clone(),
                    client,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SinkWorker { sinks, zone })
    }

    /// The worker of the settings.
    pub fn from_settings(settings: &crate::settings::Settings) -> anyhow::Result<SinkWorker> {
        SinkWorker::new(&settings.sinks, settings.general.timezone)
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Delivers every due event of every sink (bounded by [`MAX_PER_PASS`] per sink). A sink whose URL or secret
    /// cannot be read is reported and skipped; the others go on.
    pub async fn deliver_pending(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<SinkOutcome> {
        let mut total = SinkOutcome::default();
        for sink in &self.sinks {
            let secrets = match self.secrets(sink) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(sink = %sink.settings.name, "sink skipped: {e:#}");
                    continue;
                }
            };
            for _ in 0..MAX_PER_PASS {
                match self.deliver_next(store, sink, &secrets, now).await? {
                    Some(o) => total.add(o),
                    None => break,
                }
            }
        }
        Ok(total)
    }

    /// The URL and secret of `sink`, read now (a rotated secret is picked up without a restart).
    fn secrets(&self, sink: &Sink) -> anyhow::Result<(SecretString, Option<SecretString>)> {
        let at = format!("sinks[{}]", sink.settings.name);
        match &sink.settings.kind {
            SinkKind::Webhook { url, secret } => Ok((
                url.resolve(&at)?,
                secret
                    .as_ref()
                    .map(|s| {
                        s.resolve()
                            .with_context(|| format!("{at}: read the secret"))
                    })
                    .transpose()?,
            )),
            SinkKind::Bitrix24 { url, .. } => Ok((url.resolve(&at)?, None)),
        }
    }

    /// Delivers the next due event of `sink`, if any: the worker's step. On PostgreSQL the row stays locked
    /// (`FOR UPDATE SKIP LOCKED`) in a transaction during the HTTP exchange, so several instances never deliver
    /// the same event; on SQLite the row is read, delivered, then marked in a transaction of its own (a write
    /// transaction held during a slow tracker would stall ingestion) — as the e-mail outbox does.
    async fn deliver_next(
        &self,
        store: &Store,
        sink: &Sink,
        secrets: &(SecretString, Option<SecretString>),
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<SinkOutcome>> {
        let now_s = store::timestamp(now);
        let name = &sink.settings.name;
        match store.engine() {
            store::Engine::Postgres => {
                let mut tx = store.begin().await?;
                let Some(event) =
                    store::claim_sink_event(&mut tx, store.engine(), name, &now_s).await?
                else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let result = self.attempt(&mut tx, sink, secrets, &event).await?;
                let outcome = record(&mut tx, sink, &event, result, now).await?;
                tx.commit().await?;
                Ok(Some(outcome))
            }
            store::Engine::Sqlite => {
                let mut conn = store.acquire().await?;
                let Some(event) =
                    store::claim_sink_event(&mut conn, store.engine(), name, &now_s).await?
                else {
                    return Ok(None);
                };
                let result = self.attempt(&mut conn, sink, secrets, &event).await?;
                drop(conn);
                let mut tx = store.begin().await?;
                let outcome = record(&mut tx, sink, &event, result, now).await?;
                tx.commit().await?;
                Ok(Some(outcome))
            }
        }
    }

    /// One delivery attempt; `Ok(Some(id))` carries the tracker's task id when it has one.
    async fn attempt(
        &self,
        conn: &mut sqlx::AnyConnection,
        sink: &Sink,
        secrets: &(SecretString, Option<SecretString>),
        event: &PendingSinkEvent,
    ) -> anyhow::Result<Result<Option<String>, SinkError>> {
        let Some(task) = store::sink_task(conn, event.task).await? else {
            return Ok(Err(SinkError::Permanent(format!(
                "task {} does not exist",
                event.task
            ))));
        };
        let change = store::sink_task_change(conn, event).await?;
        let (url, secret) = secrets;
        Ok(match &sink.settings.kind {
            SinkKind::Webhook { .. } => super::webhook::deliver(
                &sink.client,
                url,
                secret.as_ref(),
                &sink.settings.name,
                event,
                &task,
                change.as_ref(),
            )
            .await
            .map(|()| None),
            SinkKind::Bitrix24 { responsible, .. } => {
                let known = store::sink_remote_id(conn, &sink.settings.name, event.task).await?;
                super::bitrix::deliver(
                    super::bitrix::Portal {
                        client: &sink.client,
                        base: url,
                        responsible,
                        zone: self.zone,
                    },
                    event,
                    &task,
                    change.as_ref(),
                    known,
                )
                .await
                .map(Some)
            }
        })
    }
}

/// Marks the event after an attempt (and stores the tracker's task id), in the caller's transaction.
async fn record(
    conn: &mut sqlx::AnyConnection,
    sink: &Sink,
    event: &PendingSinkEvent,
    result: Result<Option<String>, SinkError>,
    now: DateTime<Utc>,
) -> anyhow::Result<SinkOutcome> {
    let now_s = store::timestamp(now);
    let name = &sink.settings.name;
    let mut outcome = SinkOutcome::default();
    match result {
        Ok(remote) => {
            if let Some(remote) = remote {
                store::set_sink_remote_id(conn, name, event.task, &remote, &now_s).await?;
            }
            store::mark_sink_delivered(conn, event.id, &now_s).await?;
            tracing::info!(sink = %name, task_id = event.task, event = %event.event_key, "task event delivered");
            outcome.delivered += 1;
        }
        Err(e) => {
            let error = e.to_string();
            let retry_at = (e.is_retryable() && event.attempts + 1 < sink.settings.max_attempts)
                .then(|| {
                    let delay = chrono::Duration::from_std(super::retry_delay(event.attempts))
                        .unwrap_or_else(|_| chrono::Duration::hours(6));
                    store::timestamp(now + delay)
                });
            match &retry_at {
                Some(at) => {
                    tracing::warn!(sink = %name, task_id = event.task, event = %event.event_key,
                        attempts = event.attempts + 1, retry_at = %at, "task event not delivered, will retry: {error}");
                    outcome.retrying += 1;
                }
                None => {
                    tracing::error!(sink = %name, task_id = event.task, event = %event.event_key,
                        attempts = event.attempts + 1, "task event failed for good (see `taxinbox sinks status`): {error}");
                    outcome.failed += 1;
                }
            }
            store::mark_sink_failed(conn, event.id, &error, retry_at.as_deref()).await?;
        }
    }
    Ok(outcome)
}

/// `taxinbox sinks status`: one line per sink and state, with the newest error.
pub async fn status_lines(store: &Store) -> anyhow::Result<Vec<String>> {
    let mut conn = store.acquire().await?;
    Ok(store::sink_status(&mut conn)
        .await?
        .into_iter()
        .map(|l| match l.last_error {
            Some(e) if l.status != store::SinkEventStatus::Delivered => {
                format!("{}\t{}\t{}\t{e}", l.sink, l.status, l.count)
            }
            _ => format!("{}\t{}\t{}", l.sink, l.status, l.count),
        })
        .collect())
}

/// The daemon's (and `run --once`'s) sink step: registers the configured sinks, delivers what is due, logs it.
pub async fn deliver_pass(
    store: &Store,
    settings: &crate::settings::Settings,
    now: DateTime<Utc>,
) -> anyhow::Result<SinkOutcome> {
    let worker = SinkWorker::from_settings(settings)?;
    if worker.is_empty() {
        return Ok(SinkOutcome::default());
    }
    let outcome = worker.deliver_pending(store, now).await?;
    if outcome != SinkOutcome::default() {
        tracing::info!(
            delivered = outcome.delivered,
            retrying = outcome.retrying,
            failed = outcome.failed,
            "task events to sinks"
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timeouts_rate_limits_and_server_errors_are_retried() {
        use reqwest::StatusCode as S;
        for s in [
            S::REQUEST_TIMEOUT,
            S::TOO_MANY_REQUESTS,
            S::SERVICE_UNAVAILABLE,
            S::INTERNAL_SERVER_ERROR,
        ] {
            assert!(status_error(s, "").is_retryable(), "{s}");
        }
        for s in [
            S::BAD_REQUEST,
            S::UNAUTHORIZED,
            S::NOT_FOUND,
            S::MOVED_PERMANENTLY,
        ] {
            assert!(!status_error(s, "").is_retryable(), "{s}");
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
