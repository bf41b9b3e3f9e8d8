//! Task sinks: the firm's task tracker hears of every task event — `created`, `linked` (a mail joined the task's
//! case), `escalated`, `done` and `reassigned` (a person in the web view) — through a signed webhook
//! ([`super::webhook`]) or Bitrix24 ([`super::bitrix`]); and people hear of new tasks, escalations and their
//! digest in Telegram ([`super::telegram`]).
//!
//! Events are queued in `sink_outbox`, one row per configured sink, in the transaction that creates the task, the
//! link, the escalation or the person's change (`store::queue_task_event`, `store::queue_task_change`), so none is
//! lost; a Telegram sink also gets notices to one person (the digest, an escalation's message:
//! `store::queue_person_notice`), queued with the mail that says the same. This worker delivers them: per sink, the
//! oldest due event whose task has no earlier undelivered event (strictly in order per task), retried with the
//! e-mail outbox's back-off ([`super::retry_delay`]) after a network error, a timeout, 408, 429 or 5xx; failed for
//! good after any other 4xx or `max_attempts` attempts — a failed event holds back the later events of its task
//! and shows in `taxinbox sinks status` until an admin runs `taxinbox sinks retry`. A tracker that asks to wait
//! (Bitrix24's rate and time limits, a refused webhook: [`SinkError::Wait`]) puts the event off without using up
//! an attempt and ends the sink's pass. An event is marked delivered only after a 2xx answer: delivery is
//! at-least-once (see the webhook and Bitrix24 modules for why a repeat is harmless). Only the configured URLs are
//! contacted; redirects are not followed.
//!
//! For Bitrix24 the worker also reads, once per pass and only when an event is due, the webhook's scopes and the
//! users found by e-mail (`user.get`, cached in `sink_users`, refreshed daily; the static map overrides them), and
//! records a task lost on the portal (`sink_lost_tasks`: re-created or dropped by `on_lost_task`). [`check`] is
//! `taxinbox sinks check`: who maps to whom, who is missing, and the scopes, changing nothing.

use super::{bitrix, telegram};
use crate::settings::{SinkKind, SinkSettings};
use crate::store::{self, PendingSinkEvent, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How long the users found by e-mail are trusted before `user.get` is asked again.
const USERS_REFRESH: chrono::Duration = chrono::Duration::hours(24);

/// How many lost tasks `taxinbox sinks status` lists (the newest).
const LOST_SHOWN: i64 = 50;

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
    /// The tracker asked to wait (a rate or time limit, a refused webhook): again after `wait`, without using up
    /// an attempt.
    #[error("{message}")]
    Wait {
        message: String,
        wait: std::time::Duration,
    },
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Transient(_) | SinkError::Wait { .. })
    }
}

/// A transport error, without its URL (a Bitrix24 URL holds the token).
pub fn http_error(e: reqwest::Error) -> SinkError {
    SinkError::Transient(format!("{:#}", anyhow::Error::new(e.without_url())))
}

/// POSTs `params` as JSON to a tracker's or messenger's API and reads the answer: its status, its text, and the text
/// as JSON (`Null` when it is not JSON). Transport failures are transient, their URL left out ([`http_error`]).
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    params: &serde_json::Value,
) -> Result<(reqwest::StatusCode, String, serde_json::Value), SinkError> {
    let response = client
        .post(url)
        .json(params)
        .send()
        .await
        .map_err(http_error)?;
    let status = response.status();
    let text = response.text().await.map_err(http_error)?;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok((status, text, json))
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

/// Checks that every sink's URL can be read and has the right shape (a Bitrix24 webhook: `https://…/rest/<user
/// id>/<code>/`); the error names the setting. The daemon calls it at start, so a broken URL kept in a file or the
/// environment stops it there instead of failing every event.
pub fn check_urls(sinks: &[SinkSettings]) -> anyhow::Result<()> {
    for sink in sinks {
        let at = format!("sinks[{}]", sink.name);
        match &sink.kind {
            SinkKind::Webhook { url, .. } => url.resolve(&at).map(drop)?,
            SinkKind::Bitrix24 { url, .. } => url
                .resolve_bitrix(&format!("{at}.{}", url.setting()))
                .map(drop)?,
            SinkKind::Telegram { token, .. } => telegram_token(&at, token).map(drop)?,
        }
    }
    Ok(())
}

/// The bot's token now, checked to have @BotFather's shape (never echoed).
fn telegram_token(
    at: &str,
    source: &crate::settings::PasswordSource,
) -> anyhow::Result<SecretString> {
    use secrecy::ExposeSecret as _;
    let token = source
        .resolve()
        .with_context(|| format!("{at}: read the bot token"))?;
    let token = SecretString::from(token.expose_secret().trim().to_owned());
    telegram::check_token(token.expose_secret()).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    Ok(token)
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
    /// Put off because the tracker asked to wait; no attempt used.
    pub deferred: usize,
    /// Found their tracker task lost (deleted there, or invisible to the webhook's owner).
    pub lost: usize,
}

impl SinkOutcome {
    fn add(&mut self, o: SinkOutcome) {
        self.delivered += o.delivered;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.deferred += o.deferred;
        self.lost += o.lost;
    }
}

/// What a Bitrix24 sink reads once per pass before its first delivery.
#[derive(Debug, Clone, Default)]
struct Prepared {
    scopes: BTreeSet<String>,
    people: bitrix::People,
}

/// One sink ready to deliver: its settings and HTTP client.
#[derive(Debug, Clone)]
struct Sink {
    settings: SinkSettings,
    client: reqwest::Client,
    /// Bitrix24: the scopes and people, read at the first due event of the pass.
    prepared: Arc<tokio::sync::OnceCell<Prepared>>,
}

/// The delivery worker over every configured sink.
#[derive(Debug, Clone)]
pub struct SinkWorker {
    sinks: Vec<Sink>,
    /// The firm's zone, for deadlines.
    zone: chrono_tz::Tz,
    /// The web view's base URL, for links back from a tracker's task.
    web_base: Option<String>,
    /// The notification texts (Telegram says what the mail says).
    templates: crate::templates::Templates,
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
                    prepared: Arc::default(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SinkWorker {
            sinks,
            zone,
            web_base: None,
            templates: crate::templates::Templates::builtin(),
        })
    }

    /// The worker of the settings.
    pub fn from_settings(settings: &crate::settings::Settings) -> anyhow::Result<SinkWorker> {
        let mut worker = SinkWorker::new(&settings.sinks, settings.general.timezone)?;
        worker.web_base = settings.web.base_url.clone();
        if worker
            .sinks
            .iter()
            .any(|s| matches!(s.settings.kind, SinkKind::Telegram { .. }))
        {
            worker.templates =
                crate::templates::Templates::load(&settings.rules.dir.join("templates"))?;
        }
        Ok(worker)
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Delivers every due event of every sink (bounded by `MAX_PER_PASS` per sink). A sink whose URL or secret
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
                    Some(o) => {
                        total.add(o);
                        if o.deferred > 0 {
                            // The tracker asked to wait: the sink's other events would be refused as well.
                            break;
                        }
                    }
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
            SinkKind::Bitrix24 { url, .. } => Ok((
                url.resolve_bitrix(&format!("{at}.{}", url.setting()))?,
                None,
            )),
            SinkKind::Telegram { token, .. } => Ok((telegram_token(&at, token)?, None)),
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

    /// One delivery attempt.
    async fn attempt(
        &self,
        conn: &mut sqlx::AnyConnection,
        sink: &Sink,
        secrets: &(SecretString, Option<SecretString>),
        event: &PendingSinkEvent,
    ) -> anyhow::Result<Result<bitrix::Delivered, SinkError>> {
        if let SinkKind::Telegram { api_url, chats, .. } = &sink.settings.kind {
            let bot = telegram::Bot {
                client: &sink.client,
                api_url,
                token: &secrets.0,
            };
            return self
                .telegram_attempt(conn, &sink.settings.name, bot, chats, event)
                .await
                .map(|r| r.map(|()| bitrix::Delivered::default()));
        }
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
            .map(|()| bitrix::Delivered::default()),
            SinkKind::Bitrix24 {
                responsible,
                portal: settings,
                ..
            } => {
                let name = &sink.settings.name;
                if store::sink_task_dropped(conn, name, event.task).await? {
                    tracing::info!(sink = %name, task_id = event.task, event = %event.event_key,
                        "not sent: the task's Bitrix24 task was lost and dropped (on_lost_task = \"drop\")");
                    return Ok(Ok(bitrix::Delivered::default()));
                }
                let pacer = bitrix::pacer(&bitrix::origin(url), settings);
                let portal = bitrix::Portal {
                    client: &sink.client,
                    base: url,
                    pacer: &pacer,
                };
                let prepared = sink
                    .prepared
                    .get_or_try_init(|| prepare(conn, name, portal, responsible))
                    .await;
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(Prepare::Sink(e)) => return Ok(Err(e)),
                    Err(Prepare::Store(e)) => return Err(e),
                };
                let known = match store::sink_remote_id(conn, name, event.task).await? {
                    Some(id) => Some(bitrix::Known {
                        due: store::sink_task_due(conn, name, event.task).await?,
                        id,
                    }),
                    None => None,
                };
                let raw_mail = match (&task.mail, settings.attachments_folder) {
                    (Some(mail), Some(_)) => store::raw_mail_of_message(conn, mail.id).await?,
                    _ => None,
                };
                let extras = bitrix::Extras {
                    people: store::sink_people(
                        conn,
                        task.assignee.as_deref(),
                        task.client_inn.as_deref(),
                    )
                    .await?,
                    web_base: self.web_base.as_deref(),
                    // The demand's checklist, on the task that answers it.
                    checklist: store::checklist_of_task(conn, event.task).await?,
                    raw_mail,
                };
                bitrix::deliver(
                    bitrix::Delivery {
                        portal,
                        people: &prepared.people,
                        settings,
                        scopes: &prepared.scopes,
                        zone: self.zone,
                    },
                    event,
                    &task,
                    change.as_ref(),
                    known,
                    &extras,
                )
                .await
            }
            // Delivered by `telegram_attempt`, which returned above.
            SinkKind::Telegram { .. } => Err(SinkError::Permanent(
                "a Telegram event reached the tracker path".to_owned(),
            )),
        })
    }
}

impl SinkWorker {
    /// One Telegram delivery: who the event is for, the text, `sendMessage` to their chat (see
    /// [`super::telegram`]). Nothing is sent for an event that is no message for a person, or to someone without a
    /// chat; both count as delivered.
    async fn telegram_attempt(
        &self,
        conn: &mut sqlx::AnyConnection,
        name: &str,
        bot: telegram::Bot<'_>,
        chats: &BTreeMap<String, String>,
        event: &PendingSinkEvent,
    ) -> anyhow::Result<Result<(), SinkError>> {
        let task = (event.task > 0).then_some(event.task);
        let (recipient, text) = match (event.recipient.as_deref(), event.body.as_deref()) {
            // A notice queued with its text (the digest, an escalation's message).
            (Some(recipient), Some(body)) => {
                let link = task.map(|t| super::task_link(self.web_base.as_deref(), t));
                let text = match link.filter(|l| !l.is_empty() && !body.contains(l.as_str())) {
                    Some(link) => format!(
                        "{}

{link}",
                        body.trim_end()
                    ),
                    None => body.to_owned(),
                };
                (recipient.to_owned(), text)
            }
            _ if event.event == store::EVENT_CREATED || event.event == store::EVENT_REASSIGNED => {
                let Some(task) = task else {
                    return Ok(Err(SinkError::Permanent(format!(
                        "{}: the event names no task",
                        event.event_key
                    ))));
                };
                let change = store::sink_task_change(conn, event).await?;
                let Some(facts) = store::sink_task(conn, task).await? else {
                    return Ok(Err(SinkError::Permanent(format!(
                        "task {task} does not exist"
                    ))));
                };
                let assignee = match &change {
                    Some(c) => c.assignee.clone(),
                    None => facts.assignee.clone(),
                };
                let Some(assignee) = assignee else {
                    tracing::info!(sink = %name, task_id = task, event = %event.event_key,
                        "not sent to Telegram: the task has no assignee");
                    return Ok(Ok(()));
                };
                let Some(rendered) = super::render_task_assigned(
                    conn,
                    &self.templates,
                    self.web_base.as_deref(),
                    task,
                )
                .await?
                else {
                    return Ok(Err(SinkError::Permanent(format!(
                        "task {task} does not exist"
                    ))));
                };
                let link = super::task_link(self.web_base.as_deref(), task);
                let mut text = format!(
                    "{}

{}",
                    rendered.subject,
                    rendered.body.trim()
                );
                if !link.is_empty() && !text.contains(&link) {
                    text = format!(
                        "{text}

{link}"
                    );
                }
                (assignee, text)
            }
            _ => {
                tracing::debug!(sink = %name, event = %event.event_key,
                    "not a message for a person: nothing sent to Telegram");
                return Ok(Ok(()));
            }
        };
        let recipient = recipient.trim().to_lowercase();
        let Some(chat) = chats.get(&recipient) else {
            tracing::info!(sink = %name, event = %event.event_key, recipient = %recipient,
                "not sent to Telegram: no chat for this person in chats/chats_file");
            return Ok(Ok(()));
        };
        Ok(telegram::send_message(bot, chat, &text).await)
    }
}

/// Why a Bitrix24 sink could not be prepared.
enum Prepare {
    Sink(SinkError),
    Store(anyhow::Error),
}

/// The webhook's scopes and the accountants' Bitrix24 users: the users found by e-mail (when the webhook may read
/// users), refreshed when older than a day or when the directory names someone not looked up yet, under the static
/// map.
async fn prepare(
    conn: &mut sqlx::AnyConnection,
    sink: &str,
    portal: bitrix::Portal<'_>,
    responsible: &crate::settings::Responsible,
) -> Result<Prepared, Prepare> {
    let scopes = bitrix::scopes(portal).await.map_err(Prepare::Sink)?;
    let mut by_email = BTreeMap::new();
    if bitrix::can_read_users(&scopes) {
        let cached = store::sink_users(conn, sink)
            .await
            .map_err(Prepare::Store)?;
        let emails = store::accountant_emails(conn)
            .await
            .map_err(Prepare::Store)?;
        let stale = store::timestamp(Utc::now() - USERS_REFRESH);
        let fresh = emails.iter().all(|e| {
            cached
                .get(e)
                .is_some_and(|(_, checked)| checked.as_str() > stale.as_str())
        });
        if fresh {
            for (email, (id, _)) in cached {
                if let Some(id) = id.and_then(|i| u64::try_from(i).ok()) {
                    by_email.insert(email, id);
                }
            }
        } else {
            let found = bitrix::users_by_email(portal, &emails)
                .await
                .map_err(Prepare::Sink)?;
            let rows: BTreeMap<String, Option<i64>> = emails
                .iter()
                .map(|e| {
                    (
                        e.clone(),
                        found.get(e).and_then(|id| i64::try_from(*id).ok()),
                    )
                })
                .collect();
            store::put_sink_users(conn, sink, &rows, &store::timestamp(Utc::now()))
                .await
                .map_err(Prepare::Store)?;
            tracing::info!(
                sink,
                found = found.len(),
                missing = emails.len() - found.len(),
                "Bitrix24 users looked up by e-mail"
            );
            by_email = found;
        }
    }
    // The static map is an override.
    by_email.extend(responsible.by_email.iter().map(|(e, id)| (e.clone(), *id)));
    Ok(Prepared {
        scopes,
        people: bitrix::People {
            by_email,
            default: responsible.default,
        },
    })
}

/// Marks the event after an attempt (and stores the tracker's task id, the deadline sent, a lost task), in the
/// caller's transaction.
async fn record(
    conn: &mut sqlx::AnyConnection,
    sink: &Sink,
    event: &PendingSinkEvent,
    result: Result<bitrix::Delivered, SinkError>,
    now: DateTime<Utc>,
) -> anyhow::Result<SinkOutcome> {
    let now_s = store::timestamp(now);
    let name = &sink.settings.name;
    let mut outcome = SinkOutcome::default();
    match result {
        Ok(delivered) => {
            if let Some(lost) = &delivered.lost {
                let action = if delivered.id.is_some() {
                    store::LOST_RECREATED
                } else {
                    store::LOST_DROPPED
                };
                tracing::warn!(sink = %name, task_id = event.task, event = %event.event_key,
                    remote_id = %lost.remote_id, action, "tracker task lost: {}", lost.reason);
                store::record_lost_sink_task(
                    conn,
                    &store::LostSinkTask {
                        sink: name.clone(),
                        task: event.task,
                        remote_id: lost.remote_id.clone(),
                        event_key: event.event_key.clone(),
                        reason: lost.reason.clone(),
                        action: action.to_owned(),
                        new_remote_id: delivered.id.clone(),
                        at: now_s.clone(),
                    },
                )
                .await?;
                outcome.lost += 1;
            }
            if let Some(remote) = &delivered.id {
                store::set_sink_remote_id(conn, name, event.task, remote, &now_s).await?;
                if let Some(due) = &delivered.due {
                    store::set_sink_task_due(conn, name, event.task, due).await?;
                }
            }
            store::mark_sink_delivered(conn, event.id, &now_s).await?;
            tracing::info!(sink = %name, task_id = event.task, event = %event.event_key, "task event delivered");
            outcome.delivered += 1;
        }
        Err(SinkError::Wait { message, wait }) => {
            let wait =
                chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::hours(1));
            let at = store::timestamp(now + wait);
            tracing::warn!(sink = %name, task_id = event.task, event = %event.event_key, retry_at = %at,
                "the tracker asks to wait; no attempt used: {message}");
            store::defer_sink_event(conn, event.id, &message, &at).await?;
            outcome.deferred += 1;
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

/// `taxinbox sinks status`: one line per sink and state, with the newest error; then one line per tracker task
/// that was lost (the newest `LOST_SHOWN`): which task, which tracker id, why, and what was done.
pub async fn status_lines(store: &Store) -> anyhow::Result<Vec<String>> {
    let mut conn = store.acquire().await?;
    let mut lines: Vec<String> = store::sink_status(&mut conn)
        .await?
        .into_iter()
        .map(|l| match l.last_error {
            Some(e) if l.status != store::SinkEventStatus::Delivered => {
                format!("{}\t{}\t{}\t{e}", l.sink, l.status, l.count)
            }
            _ => format!("{}\t{}\t{}", l.sink, l.status, l.count),
        })
        .collect();
    for l in store::lost_sink_tasks(&mut conn, LOST_SHOWN).await? {
        let action = match &l.new_remote_id {
            Some(new) => format!("{} as {new}", l.action),
            None => l.action.clone(),
        };
        lines.push(format!(
            "{}\tlost\ttask {} (remote {})\t{}; {action} at {} ({})",
            l.sink, l.task, l.remote_id, l.reason, l.at, l.event_key
        ));
    }
    Ok(lines)
}

/// `taxinbox sinks check`: for every Bitrix24 sink, the webhook's scopes, and who of the directory's accountants
/// maps to which Bitrix24 user (static map or found by e-mail) and who is missing; for every Telegram sink, the bot
/// (`getMe`) and who has a chat. Reads only: nothing is sent, stored or cached.
pub async fn check(
    store: &Store,
    settings: &crate::settings::Settings,
) -> anyhow::Result<Vec<String>> {
    let worker = SinkWorker::from_settings(settings)?;
    let emails = {
        let mut conn = store.acquire().await?;
        store::accountant_emails(&mut conn).await?
    };
    let mut lines = Vec::new();
    for sink in &worker.sinks {
        if let SinkKind::Telegram { api_url, chats, .. } = &sink.settings.kind {
            lines.extend(check_telegram(&worker, sink, api_url, chats, &emails).await?);
            continue;
        }
        let SinkKind::Bitrix24 {
            responsible,
            portal: portal_settings,
            ..
        } = &sink.settings.kind
        else {
            continue;
        };
        let name = &sink.settings.name;
        let (url, _) = worker.secrets(sink)?;
        let pacer = bitrix::pacer(&bitrix::origin(&url), portal_settings);
        let portal = bitrix::Portal {
            client: &sink.client,
            base: &url,
            pacer: &pacer,
        };
        let scopes = bitrix::scopes(portal)
            .await
            .with_context(|| format!("sinks[{name}]: ask the portal for the webhook's scopes"))?;
        let list: Vec<&str> = scopes.iter().map(String::as_str).collect();
        lines.push(format!("{name}\tscopes\t{}", list.join(", ")));
        for (scope, what) in [
            ("task", "required: tasks"),
            ("user_basic", "optional: accountants found by e-mail"),
            ("disk", "optional: the mail and its XML attached"),
            ("crm", "optional: tasks bound to the client's company"),
        ] {
            let has =
                scope == "user_basic" && bitrix::can_read_users(&scopes) || scopes.contains(scope);
            if !has {
                lines.push(format!("{name}\tscope missing\t{scope} ({what})"));
            }
        }
        let found = if bitrix::can_read_users(&scopes) {
            bitrix::users_by_email(portal, &emails)
                .await
                .with_context(|| format!("sinks[{name}]: look the accountants up by e-mail"))?
        } else {
            BTreeMap::new()
        };
        let mut missing = 0usize;
        for email in &emails {
            match (responsible.by_email.get(email), found.get(email)) {
                (Some(id), _) => lines.push(format!("{name}\tmapped\t{email} → {id} (static map)")),
                (None, Some(id)) => {
                    lines.push(format!(
                        "{name}\tmapped\t{email} → {id} (portal, by e-mail)"
                    ));
                }
                (None, None) => {
                    missing += 1;
                    lines.push(format!(
                        "{name}\tmissing\t{email}: no Bitrix24 user; tasks go to default_responsible {}",
                        responsible.default
                    ));
                }
            }
        }
        for (email, id) in &responsible.by_email {
            if !emails.contains(email) {
                lines.push(format!(
                    "{name}\tunused\t{email} → {id}: not in the directory"
                ));
            }
        }
        lines.push(format!(
            "{name}\tsummary\t{} accountant(s), {} mapped, {missing} missing",
            emails.len(),
            emails.len() - missing
        ));
    }
    Ok(lines)
}

/// `sinks check` of a Telegram sink: the bot (`getMe`, which sends nothing), who of the directory's accountants
/// has a chat and who has none, and chats of people the directory does not know.
async fn check_telegram(
    worker: &SinkWorker,
    sink: &Sink,
    api_url: &str,
    chats: &BTreeMap<String, String>,
    emails: &[String],
) -> anyhow::Result<Vec<String>> {
    let name = &sink.settings.name;
    let (token, _) = worker.secrets(sink)?;
    let bot = telegram::Bot {
        client: &sink.client,
        api_url,
        token: &token,
    };
    let me = telegram::get_me(bot)
        .await
        .with_context(|| format!("sinks[{name}]: ask the Bot API who the bot is (getMe)"))?;
    let mut lines = vec![format!("{name}\tbot\t{me}")];
    let mut missing = 0usize;
    for email in emails {
        match chats.get(email) {
            Some(chat) => lines.push(format!("{name}\tmapped\t{email} → chat {chat}")),
            None => {
                missing += 1;
                lines.push(format!(
                    "{name}\tmissing\t{email}: no chat; nothing is sent to Telegram for them"
                ));
            }
        }
    }
    for (email, chat) in chats {
        if !emails.contains(email) {
            lines.push(format!(
                "{name}\tunused\t{email} → chat {chat}: not in the directory"
            ));
        }
    }
    lines.push(format!(
        "{name}\tsummary\t{} accountant(s), {} with a chat, {missing} without",
        emails.len(),
        emails.len() - missing
    ));
    Ok(lines)
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
            deferred = outcome.deferred,
            lost = outcome.lost,
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
