//! One instance per mailbox: the lease an instance must hold to work a mailbox when several instances share a
//! database (see [`crate::store::take_mailbox_lease`]).
//!
//! The lease is taken before a pass, renewed inside the transaction of every batch commit (so a commit can never
//! happen under a lease another instance took over: it is rolled back instead), renewed between passes while the
//! mailbox idles, and released on shutdown. An instance that dies stops renewing; its lease expires after
//! [`LEASE_TTL`] and another instance takes over. An instance restarted on the same machine does not wait for
//! that: a holder whose process is gone from this machine is taken over at once.

use crate::store::{self, Store};
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use std::time::Duration;

/// How long a lease lasts without renewal: how long a mailbox whose instance died waits for another one. Long
/// enough that a slow batch commit (renewed each batch) or a database hiccup does not lose it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// An instance's claim on mailboxes: who it is and how long each renewal lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The instance's id, unique among running instances: `<host>/<boot id>/<pid>/<start nanos>`.
    pub holder: String,
    /// How long a taken or renewed lease lasts.
    pub ttl: Duration,
}

impl Lease {
    /// The lease identity of this process, lasting [`LEASE_TTL`].
    pub fn for_this_process() -> Lease {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        Lease {
            holder: format!(
                "{}/{}/{}/{nanos}",
                this_host(),
                boot_id(),
                std::process::id()
            ),
            ttl: LEASE_TTL,
        }
    }

    /// A lease with a given holder id and duration (tests run several "instances" in one process).
    pub fn new(holder: impl Into<String>, ttl: Duration) -> Lease {
        Lease {
            holder: holder.into(),
            ttl,
        }
    }

    /// How often a held lease is renewed: three chances before it expires.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    /// Takes or renews the lease of `mailbox` at `now`; `true` when this instance holds it. Runs on a pooled
    /// connection or inside the transaction of a commit.
    pub async fn take(
        &self,
        conn: &mut AnyConnection,
        mailbox: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let now_ms = now.timestamp_millis();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let dead = match store::mailbox_lease(conn, mailbox).await? {
            Some(current)
                if current.holder != self.holder
                    && current.expires_at >= now_ms
                    && holder_is_dead_here(&current.holder) =>
            {
                tracing::info!(mailbox, holder = %current.holder, "taking over the lease of a dead instance");
                Some(current.holder)
            }
            _ => None,
        };
        store::take_mailbox_lease(
            conn,
            mailbox,
            &self.holder,
            now_ms,
            now_ms.saturating_add(ttl_ms),
            dead.as_deref(),
        )
        .await
    }

    /// Gives the lease of `mailbox` up, best effort: an unreleased lease only delays a take-over until it expires.
    pub async fn release(&self, store: &Store, mailbox: &str) {
        let released = async {
            let mut conn = store.acquire().await?;
            store::release_mailbox_lease(&mut conn, mailbox, &self.holder).await
        };
        match released.await {
            Ok(true) => tracing::info!(mailbox, "mailbox lease released"),
            Ok(false) => {}
            Err(e) => tracing::warn!(mailbox, "mailbox lease not released: {e:#}"),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

fn this_host() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Changes at every boot: a pid seen before a reboot says nothing about the processes after it.
fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "no-boot-id".to_owned())
}

/// Whether `holder` is an instance of this machine and boot whose process no longer runs (gone, or a zombie).
/// Anything else (another host, no `/proc`, an unparseable id) counts as alive: its lease is left to expire.
fn holder_is_dead_here(holder: &str) -> bool {
    let mut parts = holder.rsplitn(4, '/');
    let (Some(_nanos), Some(pid), Some(boot), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if host != this_host() || boot != boot_id() || boot == "no-boot-id" {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        // Another lease of this very process (tests run several instances in one): alive.
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: Z (zombie) and X (dead) no longer run.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X'),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_vanished_process_of_this_machine_is_dead() {
        let me = Lease::for_this_process();
        assert!(!holder_is_dead_here(&me.holder));
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        let gone = format!("{}/{}/{}/1", this_host(), boot_id(), 99_999_999u32);
        assert_eq!(
            holder_is_dead_here(&gone),
            std::path::Path::new("/proc/self").exists()
        );
        assert!(!holder_is_dead_here("other-host/x/1/1"));
        assert!(!holder_is_dead_here("not a holder id"));
    }
}
