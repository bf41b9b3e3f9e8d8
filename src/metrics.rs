//! What the daemon tells operators about itself: Prometheus metrics (mail per mailbox and status, tasks created,
//! IMAP reconnects, processing latency) and the state of each mailbox for `/healthz`.
//!
//! One [`Metrics`] is shared by the mailbox tasks (which record) and the HTTP endpoint (which reads); recording
//! never fails and never blocks on I/O. Deliberately not here: serving HTTP (that is [`crate::http`]).

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailLabels {
    mailbox: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabels {
    mailbox: String,
}

/// Buckets from 5 ms to about 40 s: a mail takes milliseconds to evaluate, a batch behind a slow server seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Where a mailbox task stands, as `/healthz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxState {
    /// Connecting or working through mail.
    Working,
    /// Waiting for new mail (IDLE or the pause between polls).
    Idle,
    /// Another instance holds the mailbox's lease.
    Standby,
    /// Waiting before reconnecting after a failure.
    Retrying,
    /// Stopped by a failure that needs a person (refused login, missing folder), or by shutdown.
    Stopped,
}

/// One mailbox's health.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxHealth {
    pub state: MailboxState,
    /// When the last pass over the mailbox finished (RFC 3339), `None` before the first.
    pub last_poll: Option<String>,
    /// The last failure, kept until a pass succeeds again.
    pub last_error: Option<String>,
}

/// The daemon's counters and mailbox states.
pub struct Metrics {
    registry: Registry,
    mails: Family<MailLabels, Counter>,
    tasks: Family<MailboxLabels, Counter>,
    reconnects: Family<MailboxLabels, Counter>,
    latency: Family<MailboxLabels, Histogram, fn() -> Histogram>,
    mailboxes: Mutex<BTreeMap<String, MailboxHealth>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("taxinbox");
        let mails = Family::<MailLabels, Counter>::default();
        let tasks = Family::<MailboxLabels, Counter>::default();
        let reconnects = Family::<MailboxLabels, Counter>::default();
        let latency = Family::<MailboxLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "mails",
            "Mails committed, per mailbox and status (processed, linked, duplicate, quarantined)",
            mails.clone(),
        );
        registry.register(
            "tasks_created",
            "Tasks created from mail, per mailbox",
            tasks.clone(),
        );
        registry.register(
            "imap_reconnects",
            "IMAP sessions opened again after the first, per mailbox",
            reconnects.clone(),
        );
        registry.register(
            "mail_processing_seconds",
            "Time from the start of a mail's fetch to its commit",
            latency.clone(),
        );
        Metrics {
            registry,
            mails,
            tasks,
            reconnects,
            latency,
            mailboxes: Mutex::new(BTreeMap::new()),
        }
    }

    /// One committed mail: its status, the tasks it created and how long it took.
    pub fn mail_committed(&self, mailbox: &str, status: &str, tasks: usize, latency: Duration) {
        self.mails
            .get_or_create(&MailLabels {
                mailbox: mailbox.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        let labels = MailboxLabels {
            mailbox: mailbox.to_owned(),
        };
        if tasks > 0 {
            self.tasks
                .get_or_create(&labels)
                .inc_by(u64::try_from(tasks).unwrap_or(u64::MAX));
        }
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }

    /// A session was opened again (after a failure, a lost connection or a lease regained).
    pub fn reconnected(&self, mailbox: &str) {
        self.reconnects
            .get_or_create(&MailboxLabels {
                mailbox: mailbox.to_owned(),
            })
            .inc();
    }

    fn with_health(&self, mailbox: &str, change: impl FnOnce(&mut MailboxHealth)) {
        // A poisoned lock only means a recorder panicked mid-update; the map is still usable.
        let mut map = self
            .mailboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let health = map
            .entry(mailbox.to_owned())
            .or_insert_with(|| MailboxHealth {
                state: MailboxState::Working,
                last_poll: None,
                last_error: None,
            });
        change(health);
    }

    /// The mailbox's task is now in `state`.
    pub fn set_state(&self, mailbox: &str, state: MailboxState) {
        self.with_health(mailbox, |h| h.state = state);
    }

    /// A pass over the mailbox finished at `at`; earlier errors are over.
    pub fn polled(&self, mailbox: &str, at: DateTime<Utc>) {
        self.with_health(mailbox, |h| {
            h.last_poll = Some(crate::store::timestamp(at));
            h.last_error = None;
        });
    }

    /// Working the mailbox failed with `error` (a text without secrets: IMAP errors never hold passwords).
    pub fn failed(&self, mailbox: &str, error: &str) {
        self.with_health(mailbox, |h| h.last_error = Some(error.to_owned()));
    }

    /// Every mailbox's health, by name.
    pub fn mailboxes(&self) -> BTreeMap<String, MailboxHealth> {
        self.mailboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only mean a half-written page.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_mail_shows_in_the_text_format_per_mailbox_and_status() {
        let m = Metrics::new();
        m.mail_committed("demands", "processed", 2, Duration::from_millis(30));
        m.mail_committed("demands", "quarantined", 0, Duration::from_millis(10));
        m.reconnected("demands");
        let text = m.encode();
        assert!(
            text.contains(r#"taxinbox_mails_total{mailbox="demands",status="processed"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"taxinbox_tasks_created_total{mailbox="demands"} 2"#));
        assert!(text.contains(r#"taxinbox_imap_reconnects_total{mailbox="demands"} 1"#));
        assert!(text.contains(r#"taxinbox_mail_processing_seconds_count{mailbox="demands"} 2"#));
    }

    #[test]
    fn a_successful_pass_clears_the_last_error() {
        let m = Metrics::new();
        m.failed("demands", "network: connection lost");
        assert!(m.mailboxes()["demands"].last_error.is_some());
        m.polled("demands", Utc::now());
        let h = &m.mailboxes()["demands"];
        assert!(h.last_error.is_none() && h.last_poll.is_some());
    }
}
