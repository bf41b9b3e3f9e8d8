//! The notification outbox worker: takes queued notifications and delivers them — by SMTP, or as `.eml` files for
//! the embedded default — and the scheduling of digests, escalations and admin notices (`schedule`).
//!
//! The outbox rows are written in the same transaction as the tasks they announce (see `pipeline`), so a task is
//! never without its notification. Every message carries `Auto-Submitted: auto-generated` and
//! `X-Taxinbox: notification`, so that taxinbox (and well-behaved auto-responders) never treat it as new work.
//! Each delivery, failure, refusal or hold is an entry of the processed-mail log, appended in the transaction
//! that marks the row.
//!
//! **At-least-once, not exactly-once.** SMTP cannot be exactly-once: if the process dies after the server
//! accepted a message and before the row is marked `sent`, the next pass sends it again. What makes such a
//! duplicate harmless is that the Message-ID depends only on the notification id
//! (`<taxinbox.notification.ID@domain>`): mail clients and servers that deduplicate by Message-ID drop the second
//! copy, and a person can recognise it. The file transport overwrites the same file instead.
//!
//! **Only the firm's own people.** A recipient must be staff in the directory, a configured admin, or listed in
//! `notify.allowed_recipients`; the tax authority and automated addresses (`noreply`, `mailer-daemon`, …) are
//! refused even when listed. A refused notification stays in the outbox as `refused` and is logged. A recipient
//! past `notify.daily_cap_per_recipient` in 24 hours gets nothing more: the rest is `held` (a loop guard).

pub mod bitrix;
pub mod schedule;
pub mod sink;
pub mod smtp;
pub mod telegram;
pub mod webhook;

pub use crate::templates::{client_label, russian_date, Kind, Rendered, Templates};
pub use smtp::{SendError, SmtpDelivery};

use crate::settings::{NotifySettings, NotifyTransport, Settings};
use crate::store::{self, NotificationStatus, PendingNotification, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// One `.eml` file per notification in this folder.
    Files(PathBuf),
    /// An SMTP relay (boxed: the transport and its pool are large next to a path).
    Smtp(Box<SmtpDelivery>),
}

impl Delivery {
    /// The delivery the settings ask for; for SMTP the password is read now.
    pub fn from_settings(settings: &NotifySettings) -> anyhow::Result<Delivery> {
        match &settings.transport {
            NotifyTransport::File { dir } => Ok(Delivery::Files(dir.clone())),
            NotifyTransport::Smtp {
                host,
                port,
                tls,
                user,
                password,
                tls_ca_file,
            } => Ok(Delivery::Smtp(Box::new(SmtpDelivery::with_tls_ca(
                host,
                *port,
                *tls,
                user.as_deref(),
                password.as_ref(),
                settings.timeout,
                tls_ca_file.as_deref(),
            )?))),
        }
    }

    async fn deliver(&self, id: i64, message: Message) -> Result<(), SendError> {
        match self {
            // A full disk or a permission problem may be fixed by an admin: worth another try.
            Delivery::Files(dir) => write_file(dir, id, &message.formatted())
                .map_err(|e| SendError::Transient(format!("{e:#}"))),
            Delivery::Smtp(smtp) => smtp.send(message).await,
        }
    }
}

/// Who may receive notifications and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Always allowed (lower-case addresses).
    pub admins: Vec<String>,
    /// Further allowed addresses or `@domain`s (lower-case).
    pub allowed_recipients: Vec<String>,
    /// Notifications per recipient in 24 hours before the rest is held.
    pub daily_cap_per_recipient: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            admins: Vec::new(),
            allowed_recipients: Vec::new(),
            daily_cap_per_recipient: 200,
        }
    }
}

/// Domains of the Russian tax authority: taxinbox reads their mail and never writes to them, whatever the
/// configuration says — an automatic reply to a demand could be taken as the firm's answer.
const TAX_AUTHORITY_DOMAINS: &[&str] = &["nalog.ru", "nalog.gov.ru"];

/// Local parts of automated mailboxes: writing to them at best bounces, at worst starts a mail loop.
const AUTOMATED_LOCAL_PARTS: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "mailer-daemon",
    "postmaster",
    "bounce",
    "bounces",
    "auto-reply",
    "autoreply",
];

impl Policy {
    /// Why `address` (lower-case) must not get a notification, or `None` when it may.
    async fn refusal(
        &self,
        conn: &mut sqlx::AnyConnection,
        address: &str,
    ) -> anyhow::Result<Option<String>> {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Ok(Some(format!("{address:?} is not an e-mail address")));
        };
        if TAX_AUTHORITY_DOMAINS
            .iter()
            .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
        {
            return Ok(Some(format!("{address} belongs to the tax authority")));
        }
        if AUTOMATED_LOCAL_PARTS.contains(&local) {
            return Ok(Some(format!("{address} is an automated mailbox")));
        }
        let listed = self.admins.iter().any(|a| a == address)
            || self
                .allowed_recipients
                .iter()
                .any(|a| a == address || a.strip_prefix('@') == Some(domain));
        if listed || store::is_staff(conn, address).await? {
            return Ok(None);
        }
        Ok(Some(format!(
            "{address} is neither staff in the directory nor in notify.admins / notify.allowed_recipients"
        )))
    }
}

/// Everything the worker needs: where to deliver, as whom, with which texts, under which policy.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub delivery: Delivery,
    pub from: String,
    pub templates: Templates,
    pub policy: Policy,
    /// `[web] base_url`: a task mail links to the task in the web view (`{link}`); `None` leaves the link out.
    pub web_base: Option<String>,
}

impl Notifier {
    /// The notifier of the settings: its delivery, the templates in `rules/templates/`, the recipient policy.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Notifier> {
        let notify = &settings.notify;
        Ok(Notifier {
            delivery: Delivery::from_settings(notify)?,
            from: notify.from.clone(),
            templates: Templates::load(&settings.rules.dir.join("templates"))?,
            policy: Policy {
                admins: notify.admins.clone(),
                allowed_recipients: notify.allowed_recipients.clone(),
                daily_cap_per_recipient: notify.daily_cap_per_recipient,
            },
            web_base: settings.web.base_url.clone(),
        })
    }
}

/// What the worker did with notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Accepted by the server (or written).
    pub sent: usize,
    /// Failed for good (5xx, a bad address, too many attempts).
    pub failed: usize,
    /// Failed for now; queued again with a later `not_before`.
    pub retrying: usize,
    /// Not sent: the recipient is not allowed.
    pub refused: usize,
    /// Not sent: the recipient is over the daily cap.
    pub held: usize,
}

impl SendOutcome {
    fn add(&mut self, other: SendOutcome) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.retrying += other.retrying;
        self.refused += other.refused;
        self.held += other.held;
    }
}

/// The most notifications one pass handles: a bound on the loop; the rest waits for the next pass.
const MAX_PER_PASS: usize = 10_000;

/// The first retry waits this long; each further attempt doubles it.
const RETRY_BASE: Duration = Duration::from_secs(60);

/// The longest wait between attempts: a server down for a day is retried a few times an hour, not once a week.
const RETRY_CAP: Duration = Duration::from_secs(6 * 60 * 60);

/// After this many attempts (about four days with the back-off above) a notification is failed for good, so a
/// broken address does not stay "pending" for ever.
const MAX_ATTEMPTS: i64 = 24;

/// How long to wait before attempt `attempts + 1`, given `attempts` already made.
pub fn retry_delay(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(RETRY_CAP)
}

/// How far the excerpt of the original mail goes in a new-task notification.
const EXCERPT_CHARS: usize = 600;

/// Builds the message of one notification with the given text.
pub fn build_message(
    from: &str,
    n: &PendingNotification,
    subject: &str,
    body: &str,
) -> anyhow::Result<Message> {
    let from: Mailbox = from
        .parse()
        .with_context(|| format!("notify.from: {from:?} is not an address"))?;
    let to: Mailbox = n
        .recipient
        .parse()
        .with_context(|| format!("notification {}: bad recipient {:?}", n.id, n.recipient))?;
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        // Stable per notification: a copy sent again after a crash carries the same id (see the module doc).
        .message_id(Some(format!("<taxinbox.notification.{}@{domain}>", n.id)));
    if let Some(original) = n.in_reply_to.as_deref().filter(|m| !m.trim().is_empty()) {
        builder = builder
            .in_reply_to(original.to_owned())
            .references(original.to_owned());
    }
    // Complete MIME (MIME-Version, Content-Type text/plain; charset=utf-8): without them a standard reader takes the
    // Cyrillic body for US-ASCII.
    let mut message = builder
        .singlepart(lettre::message::SinglePart::plain(body.to_owned()))
        .context("build notification")?;
    let headers = message.headers_mut();
    for (name, value) in [
        ("Auto-Submitted", "auto-generated"),
        ("X-Taxinbox", "notification"),
        ("X-Taxinbox-Kind", n.kind.as_str()),
        // Exchange and Outlook: no out-of-office replies to a robot.
        ("X-Auto-Response-Suppress", "All"),
    ] {
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str(name),
            value.to_owned(),
        ));
    }
    Ok(message)
}

fn write_file(dir: &Path, id: i64, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let target = dir.join(format!("{id:08}.eml"));
    let tmp = dir.join(format!(".{id:08}.eml.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("rename to {}", target.display()))?;
    Ok(())
}

/// The text of a new-task notification from the task and its mail as stored now, so an admin's template applies
/// to notifications already queued. `None` when the task is gone (the stored text is used then).
/// `"Открыть задачу: <base>/tasks/<id>"` when `[web] base_url` is set, else nothing.
pub fn task_link(web_base: Option<&str>, task: i64) -> String {
    match web_base {
        Some(base) => format!(
            "Открыть задачу: {}/tasks/{task}",
            base.trim_end_matches('/')
        ),
        None => String::new(),
    }
}

/// "Что запрошено:" and the demand's numbered list, for the task that answers it; empty otherwise.
async fn checklist_text(
    conn: &mut sqlx::AnyConnection,
    facts: &store::TaskNoticeFacts,
) -> anyhow::Result<String> {
    let Some(case) = facts.case_id.filter(|_| facts.step == "answer") else {
        return Ok(String::new());
    };
    let items = store::case_checklist(conn, case).await?;
    if items.is_empty() {
        return Ok(String::new());
    }
    let mut text = String::from("\nЧто запрошено:\n");
    for i in &items {
        text.push_str(&format!("{}. {}\n", i.position, i.item));
    }
    Ok(text)
}

pub(crate) async fn render_task_assigned(
    conn: &mut sqlx::AnyConnection,
    templates: &Templates,
    web_base: Option<&str>,
    task: i64,
) -> anyhow::Result<Option<Rendered>> {
    let Some(facts) = store::task_notice_facts(conn, task).await? else {
        return Ok(None);
    };
    let (mut excerpt, mut attachments) = (String::new(), "нет".to_owned());
    if let Some(sha) = &facts.sha256 {
        // Raw mail past its retention period is purged: the notification then goes without excerpt.
        if let Some(raw) = store::raw_mail(conn, sha).await? {
            if let Ok(parsed) = crate::mail::parse(&raw) {
                excerpt = excerpt_of(&parsed.text);
                let names: Vec<&str> = parsed
                    .attachments
                    .iter()
                    .map(|a| a.name.as_str())
                    .filter(|n| !n.is_empty())
                    .collect();
                if !names.is_empty() {
                    attachments = names.join(", ");
                }
            }
        }
    }
    let values = BTreeMap::from([
        ("task", facts.title.clone()),
        (
            "client",
            client_label(facts.client_name.as_deref(), facts.client_inn.as_deref()),
        ),
        ("client_inn", facts.client_inn.clone().unwrap_or_default()),
        ("due", russian_date(&facts.due)),
        ("subject", facts.subject.clone().unwrap_or_default()),
        ("from", facts.from_addr.clone().unwrap_or_default()),
        (
            "received",
            russian_date(facts.received_date.as_deref().unwrap_or_default()),
        ),
        ("excerpt", excerpt),
        ("attachments", attachments),
        ("checklist", checklist_text(conn, &facts).await?),
        ("link", task_link(web_base, task)),
    ]);
    Ok(Some(templates.render(Kind::TaskAssigned, &values)))
}

/// The first lines of a mail's text, up to [`EXCERPT_CHARS`], ending with "…" when cut.
fn excerpt_of(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let joined = lines.join("\n");
    if joined.chars().count() <= EXCERPT_CHARS {
        return joined;
    }
    let cut: String = joined.chars().take(EXCERPT_CHARS).collect();
    format!("{cut}…")
}

impl Notifier {
    /// Handles the next due notification, if any: checks the recipient, renders, delivers, records. This is the
    /// worker's step; [`Notifier::send_pending`] loops over it.
    ///
    /// On PostgreSQL the row stays locked (`FOR UPDATE SKIP LOCKED`) in a transaction for the send, so several
    /// instances never send the same notification. On SQLite (one instance by design) the row is read, sent,
    /// and then marked in a transaction of its own: a write transaction held during a slow SMTP conversation
    /// would stall ingestion.
    pub async fn send_next(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<SendOutcome>> {
        let now_s = store::timestamp(now);
        match store.engine() {
            store::Engine::Postgres => {
                let mut tx = store.begin().await?;
                let mut batch =
                    store::claim_notifications(&mut tx, store.engine(), &now_s, 1).await?;
                let Some(n) = batch.pop() else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let outcome = self.handle(&mut tx, None, &n, now).await?;
                tx.commit().await?;
                Ok(Some(outcome))
            }
            store::Engine::Sqlite => {
                let mut conn = store.acquire().await?;
                let mut batch =
                    store::claim_notifications(&mut conn, store.engine(), &now_s, 1).await?;
                let Some(n) = batch.pop() else {
                    return Ok(None);
                };
                let outcome = self.handle(&mut conn, Some(store), &n, now).await?;
                Ok(Some(outcome))
            }
        }
    }

    /// Checks, renders and delivers `n` reading through `conn`; the row is marked through `conn`, or, when
    /// `separate` holds the store (SQLite), in a fresh transaction of its own after the send.
    async fn handle(
        &self,
        conn: &mut sqlx::AnyConnection,
        separate: Option<&Store>,
        n: &PendingNotification,
        now: DateTime<Utc>,
    ) -> anyhow::Result<SendOutcome> {
        let now_s = store::timestamp(now);
        let recipient = n.recipient.trim().to_lowercase();
        let verdict = if let Some(reason) = self.policy.refusal(conn, &recipient).await? {
            Verdict::Aside(NotificationStatus::Refused, reason)
        } else {
            let since = store::timestamp(now - chrono::Duration::hours(24));
            let sent = store::sent_to_recipient_since(conn, &recipient, &since).await?;
            if sent >= i64::from(self.policy.daily_cap_per_recipient) {
                Verdict::Aside(
                    NotificationStatus::Held,
                    format!(
                        "{recipient} already got {sent} notifications in 24 hours (notify.daily_cap_per_recipient = {})",
                        self.policy.daily_cap_per_recipient
                    ),
                )
            } else {
                let rendered = match (n.kind.as_str(), n.task) {
                    ("task_assigned", Some(task)) => {
                        render_task_assigned(conn, &self.templates, self.web_base.as_deref(), task)
                            .await?
                    }
                    _ => None,
                };
                let (subject, body) = match &rendered {
                    Some(r) => (r.subject.as_str(), r.body.as_str()),
                    None => (n.subject.as_str(), n.body.as_str()),
                };
                match build_message(&self.from, n, subject, body) {
                    Err(e) => Verdict::Sent(Err(SendError::Permanent(format!("{e:#}")))),
                    Ok(message) => Verdict::Sent(self.delivery.deliver(n.id, message).await),
                }
            }
        };
        let mut own_tx = match separate {
            Some(store) => Some(store.begin().await?),
            None => None,
        };
        let conn: &mut sqlx::AnyConnection = match own_tx.as_mut() {
            Some(tx) => tx,
            None => conn,
        };
        let mut outcome = SendOutcome::default();
        match verdict {
            Verdict::Aside(status, reason) => {
                tracing::warn!(notification = n.id, recipient = %recipient, status = status.as_str(), "notification not sent: {reason}");
                store::set_notification_aside(conn, n.id, status, &reason).await?;
                store::log_notification(conn, n.id, &now_s, Some(&reason)).await?;
                if status == NotificationStatus::Refused {
                    outcome.refused += 1;
                } else {
                    outcome.held += 1;
                }
            }
            Verdict::Sent(Ok(())) => {
                store::mark_notification_sent(conn, n.id, &now_s).await?;
                store::log_notification(conn, n.id, &now_s, None).await?;
                outcome.sent += 1;
            }
            Verdict::Sent(Err(e)) => {
                let error = e.to_string();
                let retry_at = (e.is_retryable() && n.attempts + 1 < MAX_ATTEMPTS).then(|| {
                    let delay = chrono::Duration::from_std(retry_delay(n.attempts))
                        .unwrap_or_else(|_| chrono::Duration::hours(6));
                    store::timestamp(now + delay)
                });
                match &retry_at {
                    Some(at) => {
                        tracing::warn!(notification = n.id, attempts = n.attempts + 1, retry_at = %at, "notification not delivered, will retry: {error}");
                        outcome.retrying += 1;
                    }
                    None => {
                        tracing::error!(
                            notification = n.id,
                            attempts = n.attempts + 1,
                            "notification failed for good: {error}"
                        );
                        outcome.failed += 1;
                    }
                }
                store::mark_notification_failed(conn, n.id, &error, retry_at.as_deref()).await?;
                store::log_notification(conn, n.id, &now_s, Some(&error)).await?;
            }
        }
        if let Some(tx) = own_tx {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Delivers every notification that is due, one by one (bounded by `MAX_PER_PASS`); returns what was done.
    pub async fn send_pending(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<SendOutcome> {
        let mut total = SendOutcome::default();
        for _ in 0..MAX_PER_PASS {
            match self.send_next(store, now).await? {
                Some(outcome) => total.add(outcome),
                None => break,
            }
        }
        Ok(total)
    }
}

/// What happens to one notification.
enum Verdict {
    /// Not sent: set aside with this status and reason.
    Aside(NotificationStatus, String),
    /// Delivery was attempted.
    Sent(Result<(), SendError>),
}

/// Delivers every notification that is due with the built-in templates and the default policy (staff in the
/// directory only); the daemon uses [`Notifier::send_pending`] with the configured ones.
pub async fn send_pending(
    store: &Store,
    delivery: &Delivery,
    from: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<SendOutcome> {
    Notifier {
        delivery: delivery.clone(),
        from: from.to_owned(),
        templates: Templates::builtin(),
        policy: Policy::default(),
        web_base: None,
    }
    .send_pending(store, now)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        assert_eq!(retry_delay(0), Duration::from_secs(60));
        assert_eq!(retry_delay(1), Duration::from_secs(120));
        assert_eq!(retry_delay(3), Duration::from_secs(480));
        assert_eq!(retry_delay(50), RETRY_CAP);
    }

    #[test]
    fn the_message_id_is_stable_and_replies_thread_under_the_original() {
        let n = PendingNotification {
            id: 42,
            kind: "task_assigned".into(),
            task: None,
            recipient: "ivanova@firm.example".into(),
            subject: String::new(),
            body: String::new(),
            attempts: 0,
            in_reply_to: Some("<orig@nalog.example>".into()),
        };
        let text = String::from_utf8(
            build_message("taxinbox@firm.example", &n, "Тема", "Текст")
                .unwrap()
                .formatted(),
        )
        .unwrap();
        assert!(text.contains("Message-ID: <taxinbox.notification.42@firm.example>"));
        assert!(text.contains("In-Reply-To: <orig@nalog.example>"));
        assert!(text.contains("References: <orig@nalog.example>"));
        assert!(text.contains("Auto-Submitted: auto-generated"));
    }

    #[test]
    fn an_excerpt_keeps_the_first_lines_and_marks_a_cut() {
        assert_eq!(excerpt_of("a\n\n  \nb  \n"), "a\nb");
        let long = "я".repeat(EXCERPT_CHARS + 5);
        assert!(excerpt_of(&long).ends_with('…'));
    }
}
