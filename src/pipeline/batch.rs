//! The one batch path every source takes: evaluate (and shadow-evaluate), then in one transaction commit each mail,
//! record its shadow decision and whatever the source keeps beside it (an IMAP checkpoint, a lease), and report.
//!
//! Sources only fetch and acknowledge: `ingest` (files, Maildir, stdin) and `imap` hand in [`Incoming`] mail and
//! acknowledge exactly what [`commit`] says committed. Evaluation is CPU work without I/O ([`evaluate`], spread over
//! a few threads), so a caller may run it on the blocking pool while its previous batch commits. Invariant: a batch
//! is written in one transaction or not at all; nothing of it may be acknowledged before [`commit`] returns `Ok`.
//! A dry run writes through the caller's transaction (`write`) and is never committed.

use super::shadow::{self, ShadowEval};
use super::{Evaluation, Pipeline, Report, Status};
use crate::store::{self, Store, Tx};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// Whether mail is history (archive mode: `ingest --archive`, `archive_before`): parsed, classified, logged and
/// joined to cases as usual, but it notifies nobody and pushes nothing to the task sinks; its tasks are stored
/// already done and marked archived, so an import of years of mail leaves no overdue task and no reminder while its
/// cases exist for later mail to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Archive {
    /// Live mail.
    #[default]
    No,
    /// Every mail is history (`ingest --archive`).
    All,
    /// Mail received (its `Date:` header, the date its deadlines count from) before this day is history
    /// (`archive_before`); mail without a date counts as received today, so it stays live.
    Before(NaiveDate),
}

impl Archive {
    /// Whether a mail received on `received` is taken in archive mode.
    pub fn applies(self, received: NaiveDate) -> bool {
        match self {
            Archive::No => false,
            Archive::All => true,
            Archive::Before(day) => received < day,
        }
    }
}

/// One raw mail and where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub raw: Vec<u8>,
    /// Where exactly it came from: a file path, `maildir:<name>:<file>`, `imap:<mailbox>:<uidvalidity>:<uid>`.
    pub source: String,
    /// The configured mailbox, or the kind of input (`file`, `maildir`, `stdin`) for what the command line names.
    pub mailbox: String,
    /// Whether it is history (decided by its received date once evaluated).
    pub archive: Archive,
}

/// Whether the shadow set (`rules.shadow_dir`) rides along: on live mail only, never on a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shadow {
    Evaluate,
    Skip,
}

/// A batch evaluated and ready to write: each mail with its evaluation and shadow evaluation, decided at `now`, and
/// its bytes packed as the store keeps them. `mails` no longer hold their bytes (`raw` is empty): evaluation moved
/// them into `packed` (compressed), so that a batch waiting to commit holds each mail once.
pub struct Evaluated {
    pub mails: Vec<Incoming>,
    packed: Vec<store::PackedRaw>,
    evaluations: Vec<Evaluation>,
    shadows: Vec<Option<ShadowEval>>,
    pub now: DateTime<Utc>,
}

impl Evaluated {
    pub fn len(&self) -> usize {
        self.mails.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mails.is_empty()
    }

    /// Each mail's evaluation, in the batch's order.
    pub fn evaluations(&self) -> &[Evaluation] {
        &self.evaluations
    }
}

/// Most threads evaluating mail at once, across every mailbox (the pool's size, where the machine has the cores):
/// rules are CPU-bound, and each thread holds the mail it has in hand beyond the memory budget's count.
const MAX_EVALUATION_THREADS: usize = 8;

/// Mails per thread a batch must bring for the pool to take it: a smaller batch is not worth waking threads for.
const MAILS_PER_THREAD: usize = 8;

/// How many threads a batch of `mails` is worth: the pool's, but no more than one per `MAILS_PER_THREAD` mails; one
/// at least. [`evaluate`] evaluates a batch worth one on the caller's thread, and any other on the pool, whose
/// threads then take its mails one by one.
pub fn evaluation_threads(mails: usize) -> usize {
    evaluation_pool()
        .map_or(1, rayon::ThreadPool::current_num_threads)
        .min(mails / MAILS_PER_THREAD)
        .max(1)
}

/// The threads batches are evaluated on, made at the first batch and kept: a thread keeps what it builds once (its
/// zstd context, the regular expressions' scratch space) from batch to batch, and the threads take the batch's mails
/// one by one as they finish, so one slow mail does not leave the others idle. `None` when the system refuses
/// threads: the batch is then evaluated on the caller's thread.
fn evaluation_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::LazyLock<Option<rayon::ThreadPool>> = std::sync::LazyLock::new(|| {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_EVALUATION_THREADS);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("taxinbox-eval-{i}"))
            .start_handler(|_| yield_to_the_waiting())
            .build()
            .map_err(|e| {
                tracing::warn!("cannot start the evaluation threads, evaluating on one: {e}")
            })
            .ok()
    });
    POOL.as_ref()
}

/// How many nice levels the evaluation threads sit below the thread that starts their pool (the process's level).
const EVALUATION_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority by [`EVALUATION_NICENESS`] (at most to 19, the lowest).
///
/// Evaluation is the one stage of the pipeline that has work all the while a backlog lasts, and it keeps every core
/// busy. The other stages wait on each other: the database writer runs a batch's statements one round trip at a
/// time, the IMAP sessions wait for the server, the web view for a request. At equal priority each of those threads,
/// once woken, queued behind the evaluation threads for a core at every round trip, and the commit — the pass's
/// slowest stage — waited with it. Below them, they run as soon as they are woken and evaluation takes what is left:
/// every idle core, as before, and beside another busy process about a tenth of its share rather than none. Linux
/// keeps a nice value per thread; elsewhere it is the whole process's, and nothing is changed.
fn yield_to_the_waiting() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let this = Some(rustix::thread::gettid());
        let lowered = getpriority_process(this).and_then(|nice| {
            setpriority_process(this, nice.saturating_add(EVALUATION_NICENESS).min(19))
        });
        if let Err(e) = lowered {
            tracing::debug!("evaluation thread keeps its priority: {e}");
        }
    }
}

/// Evaluates each mail (and, with [`Shadow::Evaluate`], its shadow decision) and packs its bytes for the store
/// (compressed), in order, on up to `MAX_EVALUATION_THREADS` threads. Pure: no I/O.
///
/// Each mail is held once: its bytes are dropped as soon as they are packed, so a batch being evaluated holds the
/// mail not yet packed and the packed copies of the rest, never both of one mail beyond the few mails in hand.
pub fn evaluate(
    pipeline: &Pipeline,
    mails: Vec<Incoming>,
    shadow: Shadow,
    now: DateTime<Utc>,
) -> Evaluated {
    let one = |mut m: Incoming| {
        let eval = pipeline.evaluate(&m.raw, &m.mailbox, now);
        let shadow = match shadow {
            Shadow::Evaluate => shadow::evaluate(pipeline, &m.raw, &m.mailbox, now),
            Shadow::Skip => None,
        };
        let packed = store::pack_raw(eval.sha256.clone(), std::mem::take(&mut m.raw));
        (m, eval, shadow, packed)
    };
    let evaluated: Vec<_> = match evaluation_pool() {
        Some(pool) if evaluation_threads(mails.len()) > 1 => {
            use rayon::iter::ParallelIterator as _;
            use rayon::iter::{IndexedParallelIterator as _, IntoParallelIterator as _};
            // One mail per piece of work: a thread that is done takes the next mail. With pieces of at least 8
            // mails (a batch is 64 by default), a thread that finished its last piece waited while the other worked
            // through a run of 8 or more: on two cores the batch path evaluated 1.59 times as many mails a second
            // as one thread, now 1.68 (bench/README.md).
            pool.install(|| mails.into_par_iter().with_max_len(1).map(one).collect())
        }
        _ => mails.into_iter().map(one).collect(),
    };
    let mut batch = Evaluated {
        mails: Vec::with_capacity(evaluated.len()),
        packed: Vec::with_capacity(evaluated.len()),
        evaluations: Vec::with_capacity(evaluated.len()),
        shadows: Vec::with_capacity(evaluated.len()),
        now,
    };
    for (mail, eval, shadow, packed) in evaluated {
        batch.mails.push(mail);
        batch.evaluations.push(eval);
        batch.shadows.push(shadow);
        batch.packed.push(packed);
    }
    batch
}

/// Writes `batch` through `tx` — each mail committed by the pipeline, then the shadow decisions recorded beside them —
/// and returns the reports in order. Does not commit: [`commit`] does, and a dry run rolls `tx` back.
pub async fn write(
    tx: &mut Tx,
    pipeline: &Pipeline,
    batch: &Evaluated,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::with_capacity(batch.len());
    // What the batch asks once: which of its mails are stored already; their raw bytes stored before any message
    // names them; the demand cases its mails may join, and ids for the rows it may add; the rows themselves
    // written together at the end.
    let mut rows = store::BatchRows::default();
    let hashes: Vec<&str> = batch
        .evaluations
        .iter()
        .map(|e| e.sha256.as_str())
        .collect();
    rows.look_up(tx, &hashes).await?;
    rows.store_raw(tx, &batch.packed, &store::timestamp(batch.now))
        .await?;
    let mut keys = Vec::new();
    let mut reserve = store::Reserve::default();
    for eval in batch
        .evaluations
        .iter()
        .filter(|e| !rows.is_known(&e.sha256))
    {
        let (own_keys, opens_case) = super::commit::case_keys(eval);
        keys.extend(own_keys);
        reserve.messages += 1;
        reserve.cases += usize::from(opens_case);
        reserve.tasks += eval.outcome.as_ref().map_or(0, |r| r.tasks.len());
    }
    rows.pending.look_up_cases(tx, &keys).await?;
    rows.pending.reserve(tx, reserve).await?;
    for (mail, eval) in batch.mails.iter().zip(&batch.evaluations) {
        let archived = mail.archive.applies(eval.received);
        let report = pipeline
            .commit(
                tx,
                &mut rows,
                &mail.source,
                &mail.mailbox,
                eval,
                archived,
                batch.now,
            )
            .await?;
        reports.push(report);
    }
    rows.flush(tx).await?;
    // A shadow decision names its stored mail: after the flush has written it.
    for ((eval, shadow), report) in batch.evaluations.iter().zip(&batch.shadows).zip(&reports) {
        shadow::record(tx, shadow.as_ref(), eval, report, batch.now).await?;
    }
    Ok(reports)
}

/// Commits `batch` in one transaction (on SQLite after the store's write gate): `write`, then `finish` with the
/// reports (what the source keeps in the same transaction: a checkpoint, a lease, a duplicate's reference), then the
/// commit. `Ok` only when all of it committed; an error leaves nothing written, and nothing may be acknowledged.
pub async fn commit<F>(
    store: &Store,
    pipeline: &Pipeline,
    batch: &Evaluated,
    finish: F,
) -> anyhow::Result<Vec<Report>>
where
    F: AsyncFnOnce(&mut Tx, &[Report]) -> anyhow::Result<()>,
{
    let mut tx = store.begin().await?;
    let reports = write(&mut tx, pipeline, batch).await?;
    finish(&mut tx, &reports).await?;
    tx.commit()
        .await
        .map_err(|e| anyhow::Error::new(e).context("commit"))?;
    Ok(reports)
}

/// What a run did, for the closing summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub by_status: BTreeMap<String, usize>,
    /// Tasks created per assignee (the unassigned queue under ""), archived ones not counted.
    pub tasks_by_assignee: BTreeMap<String, usize>,
    /// Mail taken in archive mode, and the tasks it stored already done.
    pub archived_mails: usize,
    pub archived_tasks: usize,
    /// Source and error of every quarantined mail.
    pub quarantined: Vec<(String, String)>,
    /// Inputs that could not be read at all (left in place, not acknowledged).
    pub unreadable: Vec<(String, String)>,
}

impl Summary {
    /// Counts one committed mail.
    pub fn add(&mut self, r: &Report) {
        *self
            .by_status
            .entry(r.status.as_str().to_owned())
            .or_default() += 1;
        if r.archived {
            self.archived_mails += 1;
            self.archived_tasks += r.tasks.len();
        }
        for t in r.tasks.iter().filter(|_| !r.archived) {
            *self
                .tasks_by_assignee
                .entry(t.assignee.clone().unwrap_or_default())
                .or_default() += 1;
        }
        if r.status == Status::Quarantined {
            self.quarantined
                .push((r.source.clone(), r.error.clone().unwrap_or_default()));
        }
    }

    pub fn total(&self) -> usize {
        self.by_status.values().sum()
    }

    /// The closing summary a person reads: mail by status, tasks per accountant, the unassigned queue, quarantine.
    pub fn render(&self, dry_run: bool) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\n{} mail(s){}:",
            self.total(),
            if dry_run {
                " (dry run, nothing stored)"
            } else {
                ""
            }
        ));
        for (status, n) in &self.by_status {
            out.push_str(&format!(" {status} {n},"));
        }
        out.pop();
        out.push('\n');
        // What each status means, for the statuses this run has.
        for (status, meaning) in [
            (
                "processed",
                "decided by the rules; tasks created where someone must act",
            ),
            (
                "linked",
                "about a case already known (a second copy, a forward): joined it, no new tasks",
            ),
            ("duplicate", "this very mail was taken before: nothing done"),
            (
                "quarantined",
                "could not be read or decided: kept for an admin (`reprocess`)",
            ),
        ] {
            if self.by_status.contains_key(status) {
                out.push_str(&format!("  {status}: {meaning}\n"));
            }
        }
        let assigned: Vec<_> = self
            .tasks_by_assignee
            .iter()
            .filter(|(k, _)| !k.is_empty())
            .collect();
        if !assigned.is_empty() {
            out.push_str("tasks per person:\n");
            for (person, n) in assigned {
                out.push_str(&format!("  {person:<40} {n}\n"));
            }
        }
        out.push_str(&format!(
            "unassigned tasks: {}\n",
            self.tasks_by_assignee.get("").copied().unwrap_or(0)
        ));
        if self.archived_mails > 0 {
            out.push_str(&format!(
                "archived (history: nobody notified, nothing pushed): {} mail(s), {} task(s) stored done\n",
                self.archived_mails, self.archived_tasks
            ));
        }
        out.push_str(&format!("quarantined: {}\n", self.quarantined.len()));
        for (source, error) in &self.quarantined {
            out.push_str(&format!("  {source}: {error}\n"));
        }
        for (source, error) in &self.unreadable {
            out.push_str(&format!("unreadable (left in place): {source}: {error}\n"));
        }
        out
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;

    fn own_nice() -> i32 {
        getpriority_process(Some(rustix::thread::gettid())).expect("read this thread's nice value")
    }

    #[test]
    fn the_evaluation_threads_run_below_the_thread_that_started_them() {
        let started_by = own_nice();
        let pool = super::evaluation_pool().expect("the evaluation threads start");
        let theirs = pool.broadcast(|_| own_nice());
        assert!(!theirs.is_empty());
        let expected = (started_by + super::EVALUATION_NICENESS).min(19);
        assert!(
            theirs.iter().all(|&nice| nice == expected),
            "evaluation threads at {theirs:?}, the thread that started them at {started_by}: expected {expected}"
        );
        // The caller keeps its own: only the pool's threads were lowered.
        assert_eq!(own_nice(), started_by);
    }
}
