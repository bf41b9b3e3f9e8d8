//! The long-running task of one mailbox in `taxinbox run`: a pass, then IDLE (or a pause where the server has
//! no IDLE), again and again; on a retryable error, reconnect after an exponential back-off with jitter; on a
//! permanent one (refused login, missing folder, bad TLS set-up, an acknowledgement folder the server will not
//! create at start) stop this mailbox only, with the error.
//!
//! New mail waits at most the mailbox's `poll_interval_secs` (default 60 s): IDLE is left and the folder read
//! again that often whatever the server pushes (Cyrus and Courier in their packaged set-up push nothing during
//! IDLE). The lease is renewed beside the wait, on its own timer, and does not decide when mail is read.
//!
//! A mailbox never stops silently: [`ALARM_AFTER_PASSES`] passes in a row that could not acknowledge, or as many
//! failed attempts to work the mailbox at all, raise its alarm — `/healthz` degraded, the
//! `taxinbox_mailbox_alarm` metric at 1, an admin notice queued by the daemon — until a pass succeeds in full.
//!
//! Shutdown is a `watch` flag: a pass in progress finishes its batch (committed and moved), IDLE is left with
//! DONE, the mailbox's lease is released, and the task returns [`MailboxEnd::Shutdown`].

use super::{Error, Lease, MailboxSession, PollContext};
use crate::metrics::{MailboxState, Metrics};
use crate::pipeline::budget::MemoryBudget;
use crate::pipeline::Pipeline;
use crate::settings::MailboxSettings;
use crate::store::Store;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// IDLE is re-issued after this long at most: RFC 2177 lets servers drop an IDLE after 30 minutes of silence (the
/// mailbox's poll interval, an hour at most, is usually shorter).
pub const IDLE_REFRESH: Duration = Duration::from_secs(25 * 60);
/// First wait after a failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between attempts: an outage of hours is retried every few minutes, never hammered.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Passes in a row that could not acknowledge (or attempts that could not work the mailbox) before the alarm: one
/// refusal may be a moment's lock; three are a problem a person must see.
pub const ALARM_AFTER_PASSES: u32 = 3;

/// How a mailbox task ended.
#[derive(Debug)]
pub enum MailboxEnd {
    /// Asked to stop.
    Shutdown,
    /// A failure retrying cannot fix; the other mailboxes go on.
    Stopped(Error),
}

/// The wait before attempt `attempt` (1-based) after failures: `base * 2^(attempt-1)` capped, then a random
/// point in its upper half, so that many instances cut off together do not reconnect in lockstep.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_CAP);
    let half = capped / 2;
    // RandomState is seeded randomly per instance: enough jitter without a dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(random % millis)
}

/// Whether `e` is SQLite's "database is locked" (SQLITE_BUSY and its extended codes): the write lock stayed
/// with another writer (the notifier, another mailbox, another process) past the busy timeout.
fn is_sqlite_busy(e: &Error) -> bool {
    let Error::Store { source, .. } = e else {
        return false;
    };
    source.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(db))
                if db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
        )
    })
}

/// Waits `delay`, or less when `stop` turns `true`.
async fn pause(delay: Duration, stop: &watch::Receiver<bool>) {
    let mut stop = stop.clone();
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// Takes or renews `lease` on `mailbox` with a pooled connection.
async fn take_lease(store: &Store, lease: &Lease, mailbox: &str) -> anyhow::Result<bool> {
    let mut conn = store.acquire().await?;
    lease.take(&mut conn, mailbox, chrono::Utc::now()).await
}

/// Renews `lease` every [`Lease::renew_every`] while the mailbox waits; returns when the lease is lost to another
/// instance (a store that cannot be reached is logged and tried again at the next turn).
async fn keep_lease(store: &Store, lease: &Lease, mailbox: &str) {
    // Bounded by the caller: it runs beside a wait that ends.
    loop {
        tokio::time::sleep(lease.renew_every()).await;
        match take_lease(store, lease, mailbox).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(mailbox = %mailbox, "lease renewal failed: {e:#}"),
        }
    }
}

/// How a mailbox's mail is cut into batches: mails per batch, and the memory budget it shares with every other
/// mailbox of the process.
#[derive(Debug, Clone)]
pub struct Batching {
    pub size: usize,
    pub budget: MemoryBudget,
}

impl Batching {
    /// `size` mails per batch under a budget of its own of the default size.
    pub fn new(size: usize) -> Batching {
        Batching {
            size,
            budget: MemoryBudget::default(),
        }
    }
}

/// Works `mailbox` under `lease` until `stop` turns `true` or a permanent error, recording into `metrics`.
///
/// Each turn first takes (or renews) the lease: without it the task stands by, logged out, and asks again every
/// [`Lease::renew_every`]. IDLE is left that often too, so a held lease is renewed while the mailbox is quiet.
pub async fn run_mailbox(
    store: Store,
    pipeline: Pipeline,
    mailbox: MailboxSettings,
    batching: Batching,
    lease: Lease,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> MailboxEnd {
    let clock = chrono::Utc::now;
    let name = mailbox.name.as_str();
    let mut failures: u32 = 0;
    let mut session: Option<MailboxSession> = None;
    let mut opened_before = false;
    let mut started = false;
    let mut ack_failed_passes: u32 = 0;
    let mut holding = false;
    metrics.set_state(name, MailboxState::Working);
    // Bounded by the stop flag: each turn either waits (IDLE, pause, stand-by, back-off: all capped and
    // interruptible) or returns.
    loop {
        // A dropped sender (the daemon's stop handle gone) stops the task too: otherwise every wait below would
        // return at once and the loop would spin.
        if *stop.borrow() || stop.has_changed().is_err() {
            if let Some(s) = session.take() {
                s.logout().await;
            }
            if holding {
                lease.release(&store, name).await;
            }
            metrics.set_state(name, MailboxState::Stopped);
            return MailboxEnd::Shutdown;
        }
        let error = match take_lease(&store, &lease, name).await {
            Ok(true) => {
                if !holding {
                    tracing::info!(mailbox = %name, holder = %lease.holder, "mailbox lease taken");
                }
                holding = true;
                None
            }
            Ok(false) => {
                if holding {
                    tracing::warn!(mailbox = %name, "mailbox lease lost to another instance");
                }
                holding = false;
                if let Some(s) = session.take() {
                    s.logout().await;
                }
                metrics.set_state(name, MailboxState::Standby);
                pause(lease.renew_every(), &stop).await;
                continue;
            }
            Err(e) => Some(Error::store(name, e)),
        };
        let step = async {
            if let Some(e) = error {
                return Err(e);
            }
            metrics.set_state(name, MailboxState::Working);
            let mut s = match session.take() {
                Some(s) => s,
                None => {
                    if opened_before {
                        metrics.reconnected(name);
                    }
                    let mut s = MailboxSession::open(&mailbox).await?;
                    opened_before = true;
                    if started {
                        s.tolerate_missing_folders();
                    }
                    s
                }
            };
            let stop_view = stop.clone();
            let ctx = PollContext {
                store: &store,
                pipeline: &pipeline,
                batch_size: batching.size,
                clock: &clock,
                stop: Some(&stop_view),
                lease: Some(&lease),
                metrics: Some(&metrics),
                budget: batching.budget.clone(),
                keep_reports: false,
            };
            let outcome = s.poll(&ctx).await?;
            let committed = outcome.summary.total();
            if committed > 0 || outcome.moved_from_before > 0 {
                tracing::info!(
                    mailbox = %name,
                    committed,
                    moved = outcome.moved,
                    "pass done"
                );
            }
            Ok::<_, Error>((s, outcome.ack_error))
        };
        match step.await {
            Ok((s, ack_error)) => {
                failures = 0;
                started = true;
                metrics.polled(name, clock());
                metrics.acknowledged(name, ack_error.as_deref());
                match ack_error {
                    Some(reason) => {
                        ack_failed_passes = ack_failed_passes.saturating_add(1);
                        if ack_failed_passes >= ALARM_AFTER_PASSES {
                            raise_alarm(&metrics, name, &format!(
                                "cannot acknowledge committed mail for {ack_failed_passes} passes in a row (new mail is still read): {reason}"
                            ));
                        }
                    }
                    None => {
                        ack_failed_passes = 0;
                        metrics.set_alarm(name, None);
                    }
                }
                metrics.set_state(name, MailboxState::Idle);
                let mut stop_idle = stop.clone();
                // New mail waits at most the poll interval, whatever the server pushes; the lease is renewed beside.
                let wait = mailbox.poll_interval;
                if s.can_idle() {
                    tokio::select! {
                        idled = s.idle(IDLE_REFRESH.min(wait), &mut stop_idle) => match idled {
                            Ok((s, _woken)) => session = Some(s),
                            Err(e) => {
                                metrics.failed(name, &e.to_string());
                                tracing::warn!(mailbox = %name, "IDLE failed, reconnecting: {e}");
                            }
                        },
                        () = keep_lease(&store, &lease, name) => {
                            tracing::warn!(mailbox = %name, "mailbox lease lost to another instance during IDLE");
                        }
                    }
                } else {
                    let mut s = s;
                    let noticed = s.take_mail_noticed();
                    session = Some(s);
                    if !noticed {
                        tokio::select! {
                            () = pause(wait, &stop) => {}
                            () = keep_lease(&store, &lease, name) => {}
                        }
                    }
                }
            }
            Err(e @ Error::LeaseLost { .. }) => {
                // Not a failure of this instance's: the next turn finds the lease taken and stands by.
                tracing::warn!(mailbox = %name, "{e}");
                holding = false;
            }
            Err(e) if e.is_retryable() => {
                failures = failures.saturating_add(1);
                // A busy SQLite is another writer's turn, not an outage: try again within a second.
                let delay = backoff_delay(if is_sqlite_busy(&e) { 1 } else { failures });
                metrics.failed(name, &e.to_string());
                metrics.set_state(name, MailboxState::Retrying);
                if failures >= ALARM_AFTER_PASSES && !is_sqlite_busy(&e) {
                    raise_alarm(
                        &metrics,
                        name,
                        &format!(
                            "cannot work the mailbox, {failures} attempts in a row failed: {e}"
                        ),
                    );
                }
                tracing::warn!(
                    mailbox = %name,
                    attempt = failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "{e}"
                );
                pause(delay, &stop).await;
            }
            Err(e) => {
                tracing::error!(mailbox = %name, "mailbox stopped: {e}");
                metrics.failed(name, &e.to_string());
                metrics.set_state(name, MailboxState::Stopped);
                if holding {
                    lease.release(&store, name).await;
                }
                return MailboxEnd::Stopped(e);
            }
        }
    }
}

/// Raises `mailbox`'s alarm (logged at error the first time it is raised with this text).
fn raise_alarm(metrics: &Metrics, mailbox: &str, text: &str) {
    if metrics.set_alarm(mailbox, Some(text)) {
        tracing::error!(mailbox = %mailbox, "mailbox alarm: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        for attempt in 1..40 {
            let d = backoff_delay(attempt);
            assert!(d <= BACKOFF_CAP, "attempt {attempt}: {d:?}");
        }
        assert!(backoff_delay(1) <= BACKOFF_BASE);
        assert!(backoff_delay(6) >= BACKOFF_BASE * 16);
        assert!(backoff_delay(30) >= BACKOFF_CAP / 2);
    }
}
