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

use crate::settings::{SinkKind, SinkSettings};
use crate::store::{self, PendingSinkEvent, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// The most events one pass delivers per sink: a bound on the loop; the rest waits for the next pass.
const MAX_PER_PASS: usize = 10_000;

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
}
