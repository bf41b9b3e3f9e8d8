//! The process-wide memory budget for mail in flight (`[ingest] memory_mb`), shared by every mailbox.
//!
//! A batch reserves its share before it is fetched and gives it back when its commit ends (committed or not), so
//! that the mail fetched, evaluated and committing across all mailboxes together stays under the ceiling whatever
//! the number of mailboxes and the size of the mail. A batch is counted at three times its mail's size: while it is
//! evaluated it holds each mail once (as fetched until it is packed, then its packed copy for the store; never both
//! beyond the mail a thread has in hand), and while it commits the database driver and SQLite each copy what one
//! statement binds: about a MiB of packed mail, a larger mail being bound in parts of a MiB (`store::RAW_PART_BYTES`;
//! heaptrack on the load benchmark measured the copies when a statement bound a whole batch).
//!
//! Deadlock freedom: a holder of a reservation only ever *tries* for another ([`MemoryBudget::try_reserve`]); only
//! a pass holding none waits ([`MemoryBudget::reserve`]). Reservations are given back by commits, which never wait
//! for the budget, so a waiter is always woken.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most bytes of mail in one batch, whatever the budget: a batch costs one MOVE on the server (~75 ms on Dovecot
/// whatever its size), so much smaller batches make the MOVE the slowest step of a pass.
pub const MAX_BATCH_BYTES: u64 = 8 << 20;

/// The unit of the semaphore's permits: a KiB (a budget of up to 4 TiB fits in its `u32` permits).
const UNIT: u64 = 1024;

/// How many batches of one pass are held at a time: one fetched, one evaluated, one committing.
const BATCHES_IN_FLIGHT: u64 = 3;

/// Each batch is counted at this multiple of its mail's size (the mail, its packed copy, and that copy bound into
/// the statement that stores it).
const COPIES: u64 = 3;

/// The shared ceiling on mail in flight. Cheap to clone: clones share one budget.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// What a batch reserved, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one KiB).
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX);
        let units = units.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        MemoryBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// A budget of `mb` megabytes (10^6 bytes).
    pub fn megabytes(mb: u64) -> MemoryBudget {
        MemoryBudget::new(mb.saturating_mul(1_000_000))
    }

    /// The budget `[ingest] memory_mb` sets.
    pub fn configured(ingest: &crate::settings::IngestSettings) -> MemoryBudget {
        MemoryBudget::megabytes(ingest.memory_mb)
    }

    /// The budget's size in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// What is free now, in bytes.
    #[cfg(test)]
    fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Most bytes of mail one batch should hold: so that a pass's three batches in flight fit the budget with their
    /// copies, and never more than [`MAX_BATCH_BYTES`]. A single mail larger than this is a batch of its own.
    pub fn batch_bytes(&self) -> u64 {
        (self.bytes() / (BATCHES_IN_FLIGHT * COPIES)).clamp(UNIT, MAX_BATCH_BYTES)
    }

    /// The units a batch of `mail_bytes` costs: never more than the whole budget, so that a mail larger than the
    /// budget still goes through, alone.
    fn cost(&self, mail_bytes: u64) -> u32 {
        let units = mail_bytes.saturating_mul(COPIES).div_ceil(UNIT).max(1);
        u32::try_from(units).unwrap_or(u32::MAX).min(self.units)
    }

    /// Waits until `mail_bytes` of mail fit. Call only holding no other reservation (see the module's note).
    pub async fn reserve(&self, mail_bytes: u64) -> Reservation {
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(self.cost(mail_bytes))
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("the memory budget's semaphore is never closed"));
        Reservation { _permit: permit }
    }

    /// Reserves `mail_bytes` of mail if they fit now; `None` otherwise (the caller goes on without that batch).
    pub fn try_reserve(&self, mail_bytes: u64) -> Option<Reservation> {
        Arc::clone(&self.permits)
            .try_acquire_many_owned(self.cost(mail_bytes))
            .ok()
            .map(|permit| Reservation { _permit: permit })
    }
}

impl Default for MemoryBudget {
    fn default() -> MemoryBudget {
        MemoryBudget::megabytes(crate::settings::DEFAULT_MEMORY_MB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_three_in_flight_with_their_copies() {
        // The default: a ninth of 64 MB, about 7 MB of mail per batch.
        let budget = MemoryBudget::default();
        assert_eq!(budget.batch_bytes(), budget.bytes() / 9);
        // A large budget: batches stop at the cap.
        assert_eq!(MemoryBudget::megabytes(1000).batch_bytes(), MAX_BATCH_BYTES);
        let small = MemoryBudget::megabytes(12);
        assert_eq!(small.batch_bytes(), small.bytes() / 9);
        let held: Vec<_> = (0..3)
            .map(|_| {
                small
                    .try_reserve(small.batch_bytes())
                    .expect("three batches fit")
            })
            .collect();
        assert!(small.available() < small.batch_bytes() * 2);
        assert!(small.try_reserve(small.batch_bytes()).is_none());
        drop(held);
        assert_eq!(small.available(), small.bytes());
    }

    #[test]
    fn a_mail_larger_than_the_budget_takes_all_of_it_and_passes() {
        let budget = MemoryBudget::megabytes(1);
        let whole = budget
            .try_reserve(50 << 20)
            .expect("capped at the whole budget");
        assert_eq!(budget.available(), 0);
        assert!(budget.try_reserve(1).is_none());
        drop(whole);
        assert!(budget.try_reserve(1).is_some());
    }

    #[tokio::test]
    async fn a_waiter_is_woken_when_a_commit_gives_back() {
        let budget = MemoryBudget::megabytes(1);
        let held = budget.try_reserve(300_000).expect("fits");
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(300_000).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("the task ran");
        drop(second);
        assert_eq!(budget.available(), budget.bytes());
    }
}
