//! What the daemon tells operators about itself: Prometheus metrics (mail per source and status, tasks created,
//! IMAP reconnects, processing latency, rule reloads, the last successful poll per source, the backlog gauges,
//! the build) and the state of each source (IMAP mailbox, Maildir, stdin), of the database and of the rules for
//! `/healthz`.
//!
//! One [`Metrics`] is shared by the sources (which record) and the HTTP endpoint (which reads); recording never
//! fails and never blocks on I/O. The backlog gauges (outbox, sink queue, quarantine, overdue tasks) are counted in
//! the store when scraped, at most once per [`GAUGES_MAX_AGE`], and the database check is one `SELECT 1` bounded by
//! [`DATABASE_CHECK_TIMEOUT`]. Deliberately not here: serving HTTP (the `http` module, above this one, reads from
//! here).

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// How long counted backlog gauges are served before the store is counted again: a scrape every 15 s (Prometheus'
/// usual interval) counts at most once, and several scrapers or a dashboard's refreshes do not multiply the work.
pub const GAUGES_MAX_AGE: Duration = Duration::from_secs(15);

/// How long `/healthz` waits for the database's `SELECT 1`: a healthy database answers in milliseconds, and a
/// health check must answer well within its prober's own timeout (often 5 s) even when the database hangs.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What kind of source a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Imap,
    Maildir,
    /// Mail piped in by an MTA (`taxinbox ingest -`), in processes of its own.
    Stdin,
}

/// The database as `/healthz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DatabaseHealth {
    /// `ok`, `down`, or `unchecked` (no store attached: an endpoint without a database of its own).
    pub status: &'static str,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A part of what the rules decide with, as reloads name it: `rules`, `shadow`, `context`, `directory`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: String,
}

/// What is in force: the ruleset version, the context files' version and the directory generation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadedLabels {
    version: String,
    context: String,
    register: String,
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
    /// Not polled: mail is handed in (stdin, by an MTA running `taxinbox ingest -`); `last_poll` is when its last
    /// mail was stored.
    Passive,
}

/// One mailbox's health.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxHealth {
    /// IMAP mailbox, Maildir or stdin.
    pub kind: SourceKind,
    pub state: MailboxState,
    /// When the last pass over the mailbox finished (RFC 3339), `None` before the first.
    pub last_poll: Option<String>,
    /// The last failure, kept until a pass succeeds again.
    pub last_error: Option<String>,
    /// Why the mailbox needs a person although it runs: acknowledging (or working it at all) has failed for
    /// several passes in a row. `None` once a pass succeeds in full.
    pub alarm: Option<String>,
}

/// The rules as `/healthz` shows them: what is in force, and a reload that was refused (the service then decides
/// with the previous version of that part until the files are fixed).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RulesHealth {
    /// The ruleset version (`sha256:…`) in force.
    pub version: Option<String>,
    /// The version of `demands.toml` and the production calendars in force.
    pub context: Option<String>,
    /// The directory generation in force (`generation N`).
    pub register: Option<String>,
    /// When something new last went in (RFC 3339).
    pub last_reload: Option<String>,
    /// Refused reloads since the start.
    pub reload_failures: u64,
    /// The newest error of a part still refused (`part: file:line: message`), `None` when everything on disk and in
    /// the store is in force.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Every part still refused, with its error.
    pub refused: BTreeMap<String, String>,
}

/// The mutable side of [`RulesHealth`]: the refused parts with when.
#[derive(Debug, Default)]
struct RulesState {
    health: RulesHealth,
    /// Part → (error, when, RFC 3339).
    refused: BTreeMap<String, (String, String)>,
}

/// The daemon's counters and mailbox states.
pub struct Metrics {
    registry: Registry,
    mails: Family<MailLabels, Counter>,
    tasks: Family<MailboxLabels, Counter>,
    reconnects: Family<MailboxLabels, Counter>,
    ack_failures: Family<MailboxLabels, Counter>,
    alarm: Family<MailboxLabels, Gauge>,
    latency: Family<MailboxLabels, Histogram, fn() -> Histogram>,
    mailboxes: Mutex<BTreeMap<String, MailboxHealth>>,
    reload_failures: Family<PartLabels, Counter>,
    refused: Family<PartLabels, Gauge>,
    loaded: Family<LoadedLabels, Gauge>,
    last_reload: Gauge,
    rules: Mutex<RulesState>,
    archived: Family<MailboxLabels, Counter>,
    last_poll: Family<MailboxLabels, Gauge>,
    database_up: Gauge,
    outbox_pending: Gauge,
    sink_pending: Gauge,
    quarantined: Gauge,
    overdue_tasks: Gauge,
    /// The store the gauges and the database check read, with the firm's time zone (what "overdue" means).
    store: std::sync::OnceLock<(crate::store::Store, chrono_tz::Tz)>,
    /// When the gauges were last counted; held while counting, so concurrent scrapes count once.
    counted_at: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Set by [`Metrics::backlog_changed`]: the next scrape counts again, however recent the last count.
    stale: std::sync::atomic::AtomicBool,
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
        let ack_failures = Family::<MailboxLabels, Counter>::default();
        let alarm = Family::<MailboxLabels, Gauge>::default();
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
            "imap_ack_failures",
            "Passes whose acknowledgement (move out of the watched folder) failed, per mailbox",
            ack_failures.clone(),
        );
        registry.register(
            "mailbox_alarm",
            "1 while a mailbox could not acknowledge, or not be worked at all, for several passes in a row",
            alarm.clone(),
        );
        registry.register(
            "mail_processing_seconds",
            "Time from the start of a mail's fetch to its commit",
            latency.clone(),
        );
        let reload_failures = Family::<PartLabels, Counter>::default();
        let refused = Family::<PartLabels, Gauge>::default();
        let loaded = Family::<LoadedLabels, Gauge>::default();
        let last_reload = Gauge::default();
        registry.register(
            "rules_reload_failures",
            "Refused reloads per part (rules, shadow, context = demands.toml and production calendars, register)",
            reload_failures.clone(),
        );
        registry.register(
            "rules_refused",
            "1 while the files (or the store) of a part are refused and its previous version decides",
            refused.clone(),
        );
        registry.register(
            "rules_loaded_info",
            "What is in force: ruleset version, context version, register generation (always 1)",
            loaded.clone(),
        );
        registry.register(
            "rules_last_reload_timestamp_seconds",
            "When something new last went in (Unix time)",
            last_reload.clone(),
        );
        let archived = Family::<MailboxLabels, Counter>::default();
        let last_poll = Family::<MailboxLabels, Gauge>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        let database_up = Gauge::default();
        let outbox_pending = Gauge::default();
        let sink_pending = Gauge::default();
        let quarantined = Gauge::default();
        let overdue_tasks = Gauge::default();
        registry.register(
            "mails_archived",
            "Of the mails committed, those taken as history (archive mode: no notification, tasks stored done), per source",
            archived.clone(),
        );
        registry.register(
            "source_last_poll_timestamp_seconds",
            "When a pass over the source last succeeded (Unix time); for stdin, when its last mail was stored",
            last_poll.clone(),
        );
        registry.register(
            "build_info",
            "The running taxinbox (always 1)",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "database_up",
            "1 when the database answered the last check (a scrape or /healthz), 0 when it did not",
            database_up.clone(),
        );
        registry.register(
            "outbox_pending",
            "Notifications waiting to be sent",
            outbox_pending.clone(),
        );
        registry.register(
            "sink_queue_pending",
            "Task events waiting for the firm's trackers ([[sinks]])",
            sink_pending.clone(),
        );
        registry.register(
            "quarantined_mails",
            "Mail in quarantine, waiting for a person",
            quarantined.clone(),
        );
        registry.register(
            "overdue_tasks",
            "Open tasks past their due date",
            overdue_tasks.clone(),
        );
        Metrics {
            archived,
            last_poll,
            database_up,
            outbox_pending,
            sink_pending,
            quarantined,
            overdue_tasks,
            store: std::sync::OnceLock::new(),
            counted_at: tokio::sync::Mutex::new(None),
            stale: std::sync::atomic::AtomicBool::new(false),
            registry,
            mails,
            tasks,
            reconnects,
            ack_failures,
            alarm,
            latency,
            mailboxes: Mutex::new(BTreeMap::new()),
            reload_failures,
            refused,
            loaded,
            last_reload,
            rules: Mutex::new(RulesState::default()),
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

    /// One committed mail of a local source (Maildir, stdin, file): as [`Metrics::mail_committed`], and counted as
    /// history too when it was taken in archive mode.
    pub fn local_mail_committed(
        &self,
        source: &str,
        status: &str,
        tasks: usize,
        archived: bool,
        latency: Duration,
    ) {
        self.mail_committed(source, status, tasks, latency);
        if archived {
            self.archived
                .get_or_create(&MailboxLabels {
                    mailbox: source.to_owned(),
                })
                .inc();
        }
    }

    /// Names a source before it records anything, so `/healthz` lists it from the start.
    pub fn register_source(&self, name: &str, kind: SourceKind) {
        let state = match kind {
            SourceKind::Stdin => MailboxState::Passive,
            SourceKind::Imap | SourceKind::Maildir => MailboxState::Working,
        };
        self.with_health(name, |h| {
            h.kind = kind;
            h.state = state;
        });
    }

    /// Puts the store behind the gauges and the database check; `timezone` is the firm's (whose day decides what
    /// is overdue). The first store stays.
    pub fn attach_store(&self, store: crate::store::Store, timezone: chrono_tz::Tz) {
        let _ = self.store.set((store, timezone));
    }

    /// Whether the database answers `SELECT 1` within [`DATABASE_CHECK_TIMEOUT`]; `unchecked` without a store.
    pub async fn check_database(&self) -> DatabaseHealth {
        let Some((store, _)) = self.store.get() else {
            return DatabaseHealth {
                status: "unchecked",
                error: None,
            };
        };
        let answer = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, async {
            let mut conn = store.acquire().await?;
            crate::store::ping(&mut conn).await
        })
        .await;
        let error = match answer {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!(
                "no answer to SELECT 1 within {} s",
                DATABASE_CHECK_TIMEOUT.as_secs()
            )),
        };
        self.database_up.set(i64::from(error.is_none()));
        DatabaseHealth {
            status: if error.is_some() { "down" } else { "ok" },
            error,
        }
    }

    /// Counts the backlog gauges (and stdin's last mail) in the store when the last count is older than
    /// [`GAUGES_MAX_AGE`]; a failure keeps the previous values and shows as `database_up 0`.
    pub async fn refresh_gauges(&self, now: DateTime<Utc>) {
        let Some((store, timezone)) = self.store.get() else {
            return;
        };
        let mut counted_at = self.counted_at.lock().await;
        let stale = self.stale.swap(false, std::sync::atomic::Ordering::SeqCst);
        if !stale && counted_at.is_some_and(|at| at.elapsed() < GAUGES_MAX_AGE) {
            return;
        }
        let today = now.with_timezone(timezone).date_naive().to_string();
        let stdin: Vec<String> = self
            .mailboxes()
            .into_iter()
            .filter(|(_, h)| h.kind == SourceKind::Stdin)
            .map(|(name, _)| name)
            .collect();
        let counted = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, async {
            let mut conn = store.acquire().await?;
            let backlog = crate::store::backlog(&mut conn, &today).await?;
            let mut last = Vec::new();
            for name in stdin {
                let at = crate::store::last_mail_of(&mut conn, &name).await?;
                last.push((name, at));
            }
            anyhow::Ok((backlog, last))
        })
        .await;
        match counted {
            Ok(Ok((backlog, last))) => {
                self.outbox_pending.set(backlog.outbox_pending);
                self.sink_pending.set(backlog.sink_pending);
                self.quarantined.set(backlog.quarantined);
                self.overdue_tasks.set(backlog.overdue_tasks);
                for (name, at) in last {
                    if let Some(at) = at {
                        if let Ok(t) = DateTime::parse_from_rfc3339(&at) {
                            self.set_last_poll(&name, t.with_timezone(&Utc));
                        }
                    }
                }
                *counted_at = Some(std::time::Instant::now());
            }
            Ok(Err(e)) => {
                tracing::warn!("counting the backlog gauges failed: {e:#}");
                self.database_up.set(0);
            }
            Err(_) => {
                tracing::warn!(
                    "counting the backlog gauges took over {} s",
                    DATABASE_CHECK_TIMEOUT.as_secs()
                );
                self.database_up.set(0);
            }
        }
    }

    /// A pass changed what waits (mail stored, notifications sent): the next scrape counts the gauges again.
    pub fn backlog_changed(&self) {
        self.stale.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn set_last_poll(&self, source: &str, at: DateTime<Utc>) {
        self.last_poll
            .get_or_create(&MailboxLabels {
                mailbox: source.to_owned(),
            })
            .set(at.timestamp());
        self.with_health(source, |h| h.last_poll = Some(crate::store::timestamp(at)));
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
                // IMAP mailbox tasks record without registering first; every other source registers.
                kind: SourceKind::Imap,
                state: MailboxState::Working,
                last_poll: None,
                last_error: None,
                alarm: None,
            });
        change(health);
    }

    /// The mailbox's task is now in `state`.
    pub fn set_state(&self, mailbox: &str, state: MailboxState) {
        self.with_health(mailbox, |h| h.state = state);
    }

    /// A pass over the mailbox finished at `at`; earlier errors are over.
    pub fn polled(&self, mailbox: &str, at: DateTime<Utc>) {
        self.last_poll
            .get_or_create(&MailboxLabels {
                mailbox: mailbox.to_owned(),
            })
            .set(at.timestamp());
        self.with_health(mailbox, |h| {
            h.last_poll = Some(crate::store::timestamp(at));
            h.last_error = None;
        });
    }

    /// A pass finished; `error` says why its acknowledgement failed, when it did (counted).
    pub fn acknowledged(&self, mailbox: &str, error: Option<&str>) {
        if let Some(error) = error {
            self.ack_failures
                .get_or_create(&MailboxLabels {
                    mailbox: mailbox.to_owned(),
                })
                .inc();
            self.failed(mailbox, error);
        }
    }

    /// Raises (`Some`) or clears (`None`) the mailbox's alarm; returns whether the alarm text changed.
    pub fn set_alarm(&self, mailbox: &str, alarm: Option<&str>) -> bool {
        self.alarm
            .get_or_create(&MailboxLabels {
                mailbox: mailbox.to_owned(),
            })
            .set(i64::from(alarm.is_some()));
        let mut changed = false;
        self.with_health(mailbox, |h| {
            changed = h.alarm.as_deref() != alarm;
            h.alarm = alarm.map(str::to_owned);
        });
        changed
    }

    /// The mailboxes whose alarm is raised, with its text.
    pub fn alarms(&self) -> Vec<(String, String)> {
        self.mailboxes()
            .into_iter()
            .filter_map(|(name, h)| h.alarm.map(|a| (name, a)))
            .collect()
    }

    /// Working the mailbox failed with `error` (a text without secrets: IMAP errors never hold passwords).
    pub fn failed(&self, mailbox: &str, error: &str) {
        self.with_health(mailbox, |h| h.last_error = Some(error.to_owned()));
    }

    fn with_rules(&self, change: impl FnOnce(&mut RulesState)) {
        let mut state = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut state);
    }

    /// A reload of `part` was refused with `error`; its previous version stays in force.
    pub fn rules_refused(&self, part: &str, error: &str, at: DateTime<Utc>) {
        let labels = PartLabels {
            part: part.to_owned(),
        };
        self.reload_failures.get_or_create(&labels).inc();
        self.refused.get_or_create(&labels).set(1);
        self.with_rules(|s| {
            s.health.reload_failures += 1;
            s.refused.insert(
                part.to_owned(),
                (error.to_owned(), crate::store::timestamp(at)),
            );
        });
    }

    /// A reload of `part` succeeded: what is on disk (in the store) is in force; `changed` when a new version went
    /// in at `at`.
    pub fn rules_ok(&self, part: &str, changed: bool, at: DateTime<Utc>) {
        self.refused
            .get_or_create(&PartLabels {
                part: part.to_owned(),
            })
            .set(0);
        if changed {
            self.last_reload.set(at.timestamp());
        }
        self.with_rules(|s| {
            s.refused.remove(part);
            if changed {
                s.health.last_reload = Some(crate::store::timestamp(at));
            }
        });
    }

    /// What is in force now (`None` keeps what was known).
    pub fn rules_in_force(&self, version: &str, context: Option<&str>, register: Option<&str>) {
        self.with_rules(|s| {
            s.health.version = Some(version.to_owned());
            if context.is_some() {
                s.health.context = context.map(str::to_owned);
            }
            if register.is_some() {
                s.health.register = register.map(str::to_owned);
            }
            self.loaded.clear();
            self.loaded
                .get_or_create(&LoadedLabels {
                    version: version.to_owned(),
                    context: s.health.context.clone().unwrap_or_default(),
                    register: s.health.register.clone().unwrap_or_default(),
                })
                .set(1);
        });
    }

    /// A new directory generation is in force (the rules and context files unchanged).
    pub fn rules_directory(&self, register: &str) {
        let version = self.rules().version.unwrap_or_default();
        self.rules_in_force(&version, None, Some(register));
    }

    /// The rules' health for `/healthz`.
    pub fn rules(&self) -> RulesHealth {
        let state = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut health = state.health.clone();
        health.refused = state
            .refused
            .iter()
            .map(|(part, (error, _))| (part.clone(), error.clone()))
            .collect();
        if let Some((part, (error, at))) = state.refused.iter().max_by(|a, b| a.1 .1.cmp(&b.1 .1)) {
            health.last_error = Some(format!("{part}: {error}"));
            health.last_error_at = Some(at.clone());
        }
        health
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
    fn a_mailbox_alarm_shows_in_its_health_and_metric_until_cleared() {
        let m = Metrics::new();
        m.acknowledged("demands", Some("UID MOVE: NO [TRYCREATE]"));
        assert!(m.set_alarm("demands", Some("cannot acknowledge")));
        assert!(!m.set_alarm("demands", Some("cannot acknowledge")));
        assert_eq!(
            m.alarms(),
            vec![("demands".to_owned(), "cannot acknowledge".to_owned())]
        );
        let text = m.encode();
        assert!(
            text.contains(r#"taxinbox_mailbox_alarm{mailbox="demands"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"taxinbox_imap_ack_failures_total{mailbox="demands"} 1"#));
        m.set_alarm("demands", None);
        assert!(m.alarms().is_empty());
        assert!(m
            .encode()
            .contains(r#"taxinbox_mailbox_alarm{mailbox="demands"} 0"#));
    }

    #[test]
    fn a_refused_reload_counts_and_shows_until_that_part_loads_again() {
        let m = Metrics::new();
        let t = Utc::now();
        m.rules_in_force("sha256:a", Some("sha256:c"), Some("generation 1"));
        m.rules_ok("rules", true, t);
        assert_eq!(m.rules().last_error, None);
        m.rules_refused("context", "rules/demands.toml:3: expected `=`", t);
        // Another part loading does not clear it.
        m.rules_ok("rules", false, t);
        let h = m.rules();
        assert_eq!(
            h.last_error.as_deref(),
            Some("context: rules/demands.toml:3: expected `=`")
        );
        assert_eq!(h.reload_failures, 1);
        let text = m.encode();
        assert!(
            text.contains(r#"taxinbox_rules_reload_failures_total{part="context"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taxinbox_rules_refused{part="context"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"taxinbox_rules_loaded_info{version="sha256:a",context="sha256:c",register="generation 1"} 1"#
        ));
        m.rules_ok("context", false, t);
        m.rules_directory("generation 2");
        let h = m.rules();
        assert_eq!(
            (h.last_error, h.register.as_deref()),
            (None, Some("generation 2"))
        );
        let text = m.encode();
        assert!(text.contains(r#"taxinbox_rules_refused{part="context"} 0"#));
        // Only what is in force is reported.
        assert!(!text.contains(r#"register="generation 1""#), "{text}");
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
