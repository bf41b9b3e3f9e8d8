//! The notification outbox worker: takes queued notifications and delivers them.
//!
//! The outbox rows are written in the same transaction as the tasks they announce (see `pipeline`), so a task is
//! never without its notification. This worker delivers them: as `.eml` files for the embedded default (one file
//! per notification, named by its id, written atomically — delivering again overwrites, never duplicates).
//! Every message carries `Auto-Submitted: auto-generated` and `X-Taxinbox: notification`, so that taxinbox (and
//! well-behaved auto-responders) never treat it as new work. Each delivery or failure is a `notification_sent` /
//! `notification_failed` entry of the processed-mail log, appended in the transaction that marks the row.

use crate::store::{self, Store};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use std::path::{Path, PathBuf};

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// One `.eml` file per notification in this folder.
    Files(PathBuf),
}

impl Delivery {
    /// The delivery the settings ask for. SMTP sending arrives with the notification issue; until then a
    /// configuration that asks for it is refused at start rather than silently writing files.
    pub fn from_settings(settings: &crate::settings::NotifySettings) -> anyhow::Result<Delivery> {
        match &settings.transport {
            crate::settings::NotifyTransport::File { dir } => Ok(Delivery::Files(dir.clone())),
            crate::settings::NotifyTransport::Smtp { .. } => {
                anyhow::bail!(
                    "notify.transport: \"smtp\" is not supported by this version yet; use \"file\""
                )
            }
        }
    }
}

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub sent: usize,
    pub failed: usize,
}

/// Notifications handled per transaction.
const CLAIM_BATCH: i64 = 100;

/// Builds the message of one notification.
pub fn build_message(from: &str, n: &store::PendingNotification) -> anyhow::Result<Message> {
    let from: Mailbox = from
        .parse()
        .with_context(|| format!("notify.from: {from:?} is not an address"))?;
    let to: Mailbox = n
        .recipient
        .parse()
        .with_context(|| format!("notification {}: bad recipient {:?}", n.id, n.recipient))?;
    let domain = from.email.domain().to_owned();
    let mut message = Message::builder()
        .from(from)
        .to(to)
        .subject(n.subject.clone())
        .message_id(Some(format!("<taxinbox.notification.{}@{domain}>", n.id)))
        .body(n.body.clone())
        .context("build notification")?;
    let headers = message.headers_mut();
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("Auto-Submitted"),
        "auto-generated".into(),
    ));
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Taxinbox"),
        "notification".into(),
    ));
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Taxinbox-Kind"),
        n.kind.clone(),
    ));
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

/// Delivers every notification that is due, batch by batch; returns what was done.
pub async fn send_pending(
    store: &Store,
    delivery: &Delivery,
    from: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<SendOutcome> {
    let mut outcome = SendOutcome::default();
    let now_s = store::timestamp(now);
    loop {
        let mut tx = store.begin().await?;
        let batch =
            store::claim_notifications(&mut tx, store.engine(), &now_s, CLAIM_BATCH).await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(outcome);
        }
        for n in &batch {
            let result = build_message(from, n).and_then(|m| match delivery {
                Delivery::Files(dir) => write_file(dir, n.id, &m.formatted()),
            });
            match result {
                Ok(()) => {
                    store::mark_notification_sent(&mut tx, n.id, &now_s).await?;
                    store::log_notification(&mut tx, n.id, &now_s, None).await?;
                    outcome.sent += 1;
                }
                Err(e) => {
                    // A message that cannot be built or written is recorded as failed, visible to admins.
                    tracing::error!(notification = n.id, "cannot deliver notification: {e:#}");
                    let error = format!("{e:#}");
                    store::mark_notification_failed(&mut tx, n.id, &error, None).await?;
                    store::log_notification(&mut tx, n.id, &now_s, Some(&error)).await?;
                    outcome.failed += 1;
                }
            }
        }
        tx.commit().await?;
    }
}
