//! One pass over one IMAP mailbox: select the folder, fetch what is new in batches, commit each batch with the
//! checkpoint in one transaction, and only then move the batch's mails out of the folder.
//!
//! Mail still in the folder at or below the checkpoint was committed by an earlier pass that stopped before its
//! move (a crash, a lost connection): it is found by its source reference and moved without being fetched or
//! processed again. A changed UIDVALIDITY restarts from UID 1; the content hash then makes already-stored mail a
//! `duplicate`, so nothing is created twice.

use super::{timed, Error, Session, NETWORK_TIMEOUT};
use crate::pipeline::{Pipeline, Report, Status};
use crate::settings::MailboxSettings;
use crate::store::{self, ImapCheckpoint, Store};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use std::collections::BTreeMap;
use tracing::instrument;

/// What a pass needs besides the mailbox: the store, the pipeline, the batch size, the clock and a stop flag.
pub struct PollContext<'a> {
    pub store: &'a Store,
    pub pipeline: &'a Pipeline,
    /// Mails per transaction (and per UID FETCH).
    pub batch_size: usize,
    pub clock: &'a (dyn Fn() -> DateTime<Utc> + Sync),
    /// When it turns `true`, the pass ends after the batch in hand (committed and moved).
    pub stop: Option<&'a tokio::sync::watch::Receiver<bool>>,
    /// The lease this instance works the mailbox under, renewed inside every batch's transaction: a batch whose
    /// lease was taken over is rolled back ([`Error::LeaseLost`]). `None` where one process owns the database.
    pub lease: Option<&'a super::Lease>,
    /// Where committed mail is counted (`taxinbox run`); `None` counts nothing.
    pub metrics: Option<&'a crate::metrics::Metrics>,
}

impl PollContext<'_> {
    fn stopping(&self) -> bool {
        self.stop.is_some_and(|s| *s.borrow())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct PollOutcome {
    /// The folder's UIDVALIDITY during the pass.
    pub uidvalidity: u32,
    /// `true` when the stored checkpoint was for another UIDVALIDITY (the pass started again from UID 1).
    pub uidvalidity_changed: bool,
    /// One report per mail committed in this pass, in UID order.
    pub reports: Vec<Report>,
    /// Mails moved out of the folder (this pass's and those left over from an interrupted one).
    pub moved: usize,
    /// Of `moved`: mails committed by an earlier pass that had not been moved yet.
    pub moved_from_before: usize,
}

/// Where one committed mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Move {
    uid: u32,
    quarantine: bool,
}

/// Mails committed and not yet moved: what [`MailboxSession::acknowledge`] takes.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    moves: Vec<Move>,
    /// The reports of the committed mails.
    pub reports: Vec<Report>,
}

impl Committed {
    /// How many mails wait to be moved.
    pub fn len(&self) -> usize {
        self.moves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// The source reference stored with a mail from IMAP: `imap:<mailbox>:<uidvalidity>:<uid>`.
pub fn source_ref(mailbox: &str, uidvalidity: u32, uid: u32) -> String {
    format!("imap:{mailbox}:{uidvalidity}:{uid}")
}

/// Connects, makes one pass, logs out: `taxinbox run --once` for one mailbox.
#[instrument(skip_all, fields(mailbox = %mailbox.name))]
pub async fn poll_mailbox_once(
    ctx: &PollContext<'_>,
    mailbox: &MailboxSettings,
) -> Result<PollOutcome, Error> {
    let mut session = MailboxSession::open(mailbox).await?;
    let outcome = session.poll(ctx).await;
    session.logout().await;
    outcome
}

/// A logged-in session on one mailbox, with what the server can do.
pub struct MailboxSession {
    mailbox: MailboxSettings,
    session: Session,
    can_move: bool,
    uidplus: bool,
    can_idle: bool,
    folders_ready: bool,
}

/// The state of the selected folder and what is in it.
struct Plan {
    uidvalidity: u32,
    uidvalidity_changed: bool,
    last_uid: u32,
    /// Committed earlier, still in the folder: move only.
    leftovers: Vec<Move>,
    /// To fetch and commit, ascending.
    new: Vec<u32>,
}

impl MailboxSession {
    /// Connects, logs in and reads the capabilities.
    pub async fn open(mailbox: &MailboxSettings) -> Result<MailboxSession, Error> {
        let mut session = super::connect(mailbox).await?;
        let caps = timed(&mailbox.name, "CAPABILITY", session.capabilities()).await?;
        Ok(MailboxSession {
            mailbox: mailbox.clone(),
            can_move: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            can_idle: caps.has_str("IDLE"),
            session,
            folders_ready: false,
        })
    }

    /// Whether the server offers IDLE (RFC 2177).
    pub fn can_idle(&self) -> bool {
        self.can_idle
    }

    fn name(&self) -> &str {
        &self.mailbox.name
    }

    /// One pass: commit what is new batch by batch, moving each batch after its commit.
    pub async fn poll(&mut self, ctx: &PollContext<'_>) -> Result<PollOutcome, Error> {
        let plan = self.plan(ctx).await?;
        let mut outcome = PollOutcome {
            uidvalidity: plan.uidvalidity,
            uidvalidity_changed: plan.uidvalidity_changed,
            ..PollOutcome::default()
        };
        if !plan.leftovers.is_empty() {
            tracing::info!(
                mailbox = %self.name(),
                count = plan.leftovers.len(),
                "moving mail committed by an earlier pass"
            );
            outcome.moved_from_before = self.move_all(&plan.leftovers).await?;
            outcome.moved += outcome.moved_from_before;
        }
        // Pipelined over the three resources a batch needs: while batch k commits (the database), the session
        // moves batch k-1 (committed before) and then fetches batch k+1, which is evaluated on the blocking pool.
        // A batch is moved only after its commit, so nothing is acknowledged early; a failure leaves committed
        // mail in the folder, moved by the next pass, and fetched mail uncommitted, fetched again.
        let chunks: Vec<&[u32]> = plan.new.chunks(ctx.batch_size.max(1)).collect();
        let name = self.mailbox.name.clone();
        let mut last_uid = plan.last_uid;
        let mut next = match chunks.first() {
            Some(uids) => Some(fetch_evaluated(&mut self.session, ctx, &name, uids).await?),
            None => None,
        };
        let mut to_move: Option<Committed> = None;
        let mut index = 0;
        while let Some(batch) = next.take() {
            index += 1;
            let prefetch = chunks.get(index).copied().filter(|_| !ctx.stopping());
            let previous = to_move.take();
            let this = &mut *self;
            let (committed, session_work) = tokio::join!(
                commit_fetched(ctx, &name, plan.uidvalidity, last_uid, batch),
                async {
                    let moved = match &previous {
                        Some(c) => this.acknowledge(c).await?,
                        None => 0,
                    };
                    let fetched = match prefetch {
                        Some(uids) => {
                            Some(fetch_evaluated(&mut this.session, ctx, &name, uids).await)
                        }
                        None => None,
                    };
                    Ok::<_, Error>((moved, fetched))
                }
            );
            let (committed, batch_last) = committed?;
            last_uid = batch_last;
            let (moved, fetched) = session_work?;
            outcome.moved += moved;
            let Committed { moves, reports } = committed;
            outcome.reports.extend(reports);
            to_move = Some(Committed {
                moves,
                reports: Vec::new(),
            });
            next = fetched.transpose()?;
            if ctx.stopping() {
                break;
            }
        }
        if let Some(committed) = to_move {
            outcome.moved += self.acknowledge(&committed).await?;
        }
        self.drain_unsolicited();
        Ok(outcome)
    }

    /// Commits everything new without moving anything: the first half of [`MailboxSession::poll`]. A pass that
    /// stops here behaves as a crash between commit and move; the next pass moves the mail.
    pub async fn commit_new(&mut self, ctx: &PollContext<'_>) -> Result<Committed, Error> {
        let plan = self.plan(ctx).await?;
        let mut all = Committed::default();
        let mut last_uid = plan.last_uid;
        let name = self.mailbox.name.clone();
        for uids in plan.new.chunks(ctx.batch_size.max(1)) {
            let batch = fetch_evaluated(&mut self.session, ctx, &name, uids).await?;
            let (committed, batch_last) =
                commit_fetched(ctx, &name, plan.uidvalidity, last_uid, batch).await?;
            last_uid = batch_last;
            all.moves.extend(committed.moves);
            all.reports.extend(committed.reports);
        }
        Ok(all)
    }

    /// Moves committed mail out of the folder. Call only after the commit that holds it.
    pub async fn acknowledge(&mut self, committed: &Committed) -> Result<usize, Error> {
        self.move_all(&committed.moves).await
    }

    /// SELECT, the checkpoint, and the split of the folder's UIDs into left-over and new.
    async fn plan(&mut self, ctx: &PollContext<'_>) -> Result<Plan, Error> {
        let name = self.mailbox.name.clone();
        let folder = self.mailbox.folder.clone();
        let selected =
            match tokio::time::timeout(NETWORK_TIMEOUT, self.session.select(&folder)).await {
                Ok(Ok(selected)) => selected,
                Ok(Err(async_imap::error::Error::No(reason))) => {
                    return Err(Error::NoFolder {
                        mailbox: name,
                        folder,
                        reason: reason.trim().to_owned(),
                    })
                }
                Ok(Err(e)) => return Err(Error::from_imap(&name, "SELECT", e)),
                Err(_) => return Err(Error::timeout(&name, "SELECT")),
            };
        let uidvalidity = selected.uid_validity.ok_or_else(|| Error::Server {
            mailbox: name.clone(),
            reason: format!("SELECT {folder:?} gave no UIDVALIDITY"),
        })?;
        let stored = {
            let mut conn = ctx
                .store
                .acquire()
                .await
                .map_err(|e| Error::store(&name, e))?;
            store::imap_checkpoint(&mut conn, &name)
                .await
                .map_err(|e| Error::store(&name, e))?
        };
        let (last_uid, uidvalidity_changed) = match stored {
            Some(c) if c.uidvalidity == uidvalidity => (c.last_uid, false),
            Some(c) => {
                tracing::warn!(
                    mailbox = %name,
                    uidvalidity,
                    previous = c.uidvalidity,
                    "UIDVALIDITY changed: reading the folder from UID 1 again (stored mail is recognised)"
                );
                (0, true)
            }
            None => (0, false),
        };
        let mut uids: Vec<u32> = if selected.exists == 0 {
            Vec::new()
        } else {
            timed(&name, "UID SEARCH", self.session.uid_search("ALL"))
                .await?
                .into_iter()
                .collect()
        };
        uids.sort_unstable();
        let mut leftovers = Vec::new();
        let mut new = Vec::new();
        {
            let mut conn = ctx
                .store
                .acquire()
                .await
                .map_err(|e| Error::store(&name, e))?;
            for uid in uids {
                if uid > last_uid {
                    new.push(uid);
                    continue;
                }
                let reference = source_ref(&name, uidvalidity, uid);
                match store::message_by_source(&mut conn, &reference)
                    .await
                    .map_err(|e| Error::store(&name, e))?
                {
                    Some(stored) => leftovers.push(Move {
                        uid,
                        quarantine: stored.status == Status::Quarantined.as_str(),
                    }),
                    // Below the checkpoint yet unknown: fetch it again; the store recognises it if it was seen.
                    None => new.push(uid),
                }
            }
        }
        new.sort_unstable();
        Ok(Plan {
            uidvalidity,
            uidvalidity_changed,
            last_uid,
            leftovers,
            new,
        })
    }

    async fn move_all(&mut self, moves: &[Move]) -> Result<usize, Error> {
        if moves.is_empty() {
            return Ok(0);
        }
        self.ensure_folders().await?;
        let mut processed: Vec<u32> = moves
            .iter()
            .filter(|m| !m.quarantine)
            .map(|m| m.uid)
            .collect();
        let mut quarantined: Vec<u32> = moves
            .iter()
            .filter(|m| m.quarantine)
            .map(|m| m.uid)
            .collect();
        processed.sort_unstable();
        quarantined.sort_unstable();
        let processed_folder = self.mailbox.processed_folder.clone();
        let quarantine_folder = self.mailbox.quarantine_folder.clone();
        self.move_to(&processed, &processed_folder).await?;
        self.move_to(&quarantined, &quarantine_folder).await?;
        self.drain_unsolicited();
        Ok(moves.len())
    }

    /// UID MOVE where the server has it; else COPY, flag \Deleted, and expunge just these UIDs (UIDPLUS) or,
    /// on an old server, the folder's deleted mail.
    async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), Error> {
        if uids.is_empty() {
            return Ok(());
        }
        let name = self.mailbox.name.clone();
        let set = uid_set(uids);
        if self.can_move {
            return timed(&name, "UID MOVE", self.session.uid_mv(&set, folder)).await;
        }
        timed(&name, "UID COPY", self.session.uid_copy(&set, folder)).await?;
        let session = &mut self.session;
        timed(&name, "UID STORE", async {
            session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        if self.uidplus {
            let session = &mut self.session;
            timed(&name, "UID EXPUNGE", async {
                session
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        } else {
            let session = &mut self.session;
            timed(&name, "EXPUNGE", async {
                session.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        Ok(())
    }

    /// Creates the processed and quarantine folders once per session; "already exists" is success.
    async fn ensure_folders(&mut self) -> Result<(), Error> {
        if self.folders_ready {
            return Ok(());
        }
        let name = self.mailbox.name.clone();
        for folder in [
            self.mailbox.processed_folder.clone(),
            self.mailbox.quarantine_folder.clone(),
        ] {
            match tokio::time::timeout(NETWORK_TIMEOUT, self.session.create(&folder)).await {
                Ok(Ok(())) => tracing::info!(mailbox = %name, folder = %folder, "folder created"),
                // NO is what servers answer for an existing folder; a real problem shows at the MOVE.
                Ok(Err(async_imap::error::Error::No(_))) => {}
                Ok(Err(e)) => return Err(Error::from_imap(&name, "CREATE", e)),
                Err(_) => return Err(Error::timeout(&name, "CREATE")),
            }
        }
        self.folders_ready = true;
        Ok(())
    }

    /// Forgets the server's unsolicited responses (EXISTS, EXPUNGE…): a pass always re-reads the folder.
    fn drain_unsolicited(&mut self) {
        while self.session.unsolicited_responses.try_recv().is_ok() {}
    }

    /// Waits in IDLE until the server reports a change, `max` passes, or `stop` turns `true`. Returns the session
    /// ready for the next pass; `Ok(false)` when stopped.
    pub async fn idle(
        mut self,
        max: std::time::Duration,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(MailboxSession, bool), Error> {
        let name = self.mailbox.name.clone();
        self.drain_unsolicited();
        let mut handle = self.session.idle();
        timed(&name, "IDLE", handle.init()).await?;
        let stopped = {
            let (wait, interrupt) = handle.wait_with_timeout(max);
            let stopped = tokio::select! {
                result = wait => {
                    result.map_err(|e| Error::from_imap(&name, "IDLE", e))?;
                    false
                }
                _ = stop.wait_for(|s| *s) => true,
            };
            drop(interrupt);
            stopped
        };
        let session = timed(&name, "DONE", handle.done()).await?;
        self.session = session;
        Ok((self, !stopped))
    }

    /// Logs out, best effort: the server drops the session anyway when the connection closes.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(NETWORK_TIMEOUT, self.session.logout()).await;
    }
}

/// A batch fetched and evaluated, ready to commit.
struct Fetched {
    /// The UIDs asked for (some may have vanished meanwhile: they are passed over by the checkpoint too).
    uids: Vec<u32>,
    mails: Vec<(u32, Vec<u8>)>,
    evaluations: Vec<crate::pipeline::Evaluation>,
    /// Shadow mode: the candidate rules' decisions, stored beside each mail in the same transaction.
    shadows: Vec<Option<crate::rules::shadow::ShadowEval>>,
    now: DateTime<Utc>,
    started: std::time::Instant,
}

/// The turn of this process's IMAP batches to write to SQLite (see [`commit_fetched`]).
static SQLITE_WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Most threads one batch's evaluation uses: rules are CPU-bound, and the database and the IMAP connection need
/// a core too.
const MAX_EVALUATION_THREADS: usize = 4;

/// Fetches `uids` and evaluates them (parse, extract, rules: CPU work) on the blocking pool, spread over the
/// machine's cores, so that the async workers stay free for the commit running beside it.
async fn fetch_evaluated(
    session: &mut Session,
    ctx: &PollContext<'_>,
    name: &str,
    uids: &[u32],
) -> Result<Fetched, Error> {
    let started = std::time::Instant::now();
    let mails = fetch(session, name, uids).await?;
    // A `directory import` meanwhile: the batch is decided with the register now stored (one cheap read; a store that
    // cannot be read is logged and the register in force decides).
    crate::rules::live::check_register(&ctx.pipeline.rules, ctx.store, ctx.metrics, (ctx.clock)())
        .await;
    let now = (ctx.clock)();
    let pipeline = ctx.pipeline.clone();
    let mailbox = name.to_owned();
    let (mails, evaluated) = tokio::task::spawn_blocking(move || {
        let evaluated = evaluate_all(&pipeline, &mails, &mailbox, now);
        (mails, evaluated)
    })
    .await
    .map_err(|e| Error::store(name, anyhow::anyhow!("evaluating a batch failed: {e}")))?;
    let (evaluations, shadows) = evaluated.into_iter().unzip();
    Ok(Fetched {
        uids: uids.to_vec(),
        mails,
        evaluations,
        shadows,
        now,
        started,
    })
}

type Evaluated = (
    crate::pipeline::Evaluation,
    Option<crate::rules::shadow::ShadowEval>,
);

/// Each mail's evaluation (and shadow evaluation), in order, on up to [`MAX_EVALUATION_THREADS`] threads.
fn evaluate_all(
    pipeline: &Pipeline,
    mails: &[(u32, Vec<u8>)],
    mailbox: &str,
    now: DateTime<Utc>,
) -> Vec<Evaluated> {
    let one = |raw: &[u8]| {
        (
            pipeline.evaluate(raw, mailbox, now),
            crate::rules::shadow::evaluate(pipeline, raw, mailbox, now),
        )
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_EVALUATION_THREADS)
        .min(mails.len() / 8)
        .max(1);
    if threads == 1 {
        return mails.iter().map(|(_, raw)| one(raw)).collect();
    }
    let per_thread = mails.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = mails
            .chunks(per_thread)
            .map(|part| {
                let one = &one;
                scope.spawn(move || part.iter().map(|(_, raw)| one(raw)).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| {
                p.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Commits a fetched batch and the checkpoint in one transaction; returns what to move and the new checkpoint.
async fn commit_fetched(
    ctx: &PollContext<'_>,
    name: &str,
    uidvalidity: u32,
    last_uid: u32,
    batch: Fetched,
) -> Result<(Committed, u32), Error> {
    let name = name.to_owned();
    let Fetched {
        uids,
        mails: fetched,
        evaluations,
        shadows,
        now,
        started,
    } = batch;
    let mut committed = Committed::default();
    // SQLite has one writer at a time: the mailbox tasks of this process take turns here instead of meeting in
    // SQLite's busy handler, where a long wait (ten mailboxes of large mail) ends in "database is locked" and the
    // mailbox's back-off of minutes. PostgreSQL writers run side by side.
    let _writer = match ctx.store.engine() {
        store::Engine::Sqlite => Some(SQLITE_WRITER.lock().await),
        store::Engine::Postgres => None,
    };
    let mut tx = ctx
        .store
        .begin()
        .await
        .map_err(|e| Error::store(&name, e))?;
    for (((uid, raw), eval), shadow) in fetched.iter().zip(&evaluations).zip(&shadows) {
        let reference = source_ref(&name, uidvalidity, *uid);
        let report = ctx
            .pipeline
            .commit(&mut tx, &reference, &name, raw, eval, now)
            .await
            .map_err(|e| Error::store(&name, e))?;
        crate::rules::shadow::record(&mut tx, shadow.as_ref(), eval, &report, now)
            .await
            .map_err(|e| Error::store(&name, e))?;
        let quarantine = match report.status {
            Status::Quarantined => true,
            Status::Processed | Status::Linked => false,
            // A duplicate goes where its first copy went; its reference is recorded too, so that a crash
            // before the move finds it as committed and does not fetch it again.
            Status::Duplicate => match report.id {
                Some(id) => {
                    store::add_source_ref(&mut tx, &reference, id)
                        .await
                        .map_err(|e| Error::store(&name, e))?;
                    store::message_by_id(&mut tx, id)
                        .await
                        .map_err(|e| Error::store(&name, e))?
                        .is_some_and(|m| m.status == Status::Quarantined.as_str())
                }
                None => false,
            },
        };
        committed.moves.push(Move {
            uid: *uid,
            quarantine,
        });
        committed.reports.push(report);
    }
    // Mail that vanished between SEARCH and FETCH (another client expunged it) is passed over too.
    let batch_last = uids.iter().copied().max().unwrap_or(0).max(last_uid);
    store::set_imap_checkpoint(
        &mut tx,
        &name,
        ImapCheckpoint {
            uidvalidity,
            last_uid: batch_last,
        },
        &store::timestamp(now),
    )
    .await
    .map_err(|e| Error::store(&name, e))?;
    if let Some(lease) = ctx.lease {
        let held = lease
            .take(&mut tx, &name, (ctx.clock)())
            .await
            .map_err(|e| Error::store(&name, e))?;
        if !held {
            // Another instance took the mailbox over (this one stalled past its lease): its work counts,
            // this batch is rolled back when `tx` drops.
            return Err(Error::LeaseLost { mailbox: name });
        }
    }
    tx.commit()
        .await
        .map_err(|e| Error::store(&name, anyhow::Error::new(e).context("commit")))?;
    let latency = started.elapsed();
    for (m, r) in committed.moves.iter().zip(&committed.reports) {
        if let Some(metrics) = ctx.metrics {
            metrics.mail_committed(&name, r.status.as_str(), r.tasks.len(), latency);
        }
        tracing::info!(
            mailbox = %name,
            uidvalidity,
            uid = m.uid,
            message_id = r.message_id.as_deref().unwrap_or(""),
            status = r.status.as_str(),
            rule = r.rule.as_deref().unwrap_or(""),
            client_inn = r.client_inn.as_deref().unwrap_or(""),
            tasks = r.tasks.len(),
            "mail processed"
        );
    }
    Ok((committed, batch_last))
}

/// `UID FETCH <uids> (UID BODY.PEEK[])`: PEEK, so reading never sets \\Seen for the people sharing the box.
async fn fetch(
    session: &mut Session,
    name: &str,
    uids: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, Error> {
    let set = uid_set(uids);
    let step = async {
        let stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
        stream.try_collect::<Vec<_>>().await
    };
    let fetches = timed(name, "UID FETCH", step).await?;
    let mut mails: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for fetch in &fetches {
        let Some(uid) = fetch.uid.filter(|uid| uids.binary_search(uid).is_ok()) else {
            continue;
        };
        match fetch.body() {
            Some(body) => {
                mails.insert(uid, body.to_vec());
            }
            // A mail the server has no body for is stored as empty (and so quarantined) rather than left
            // behind; an unsolicited flags-only FETCH for the same UID never overwrites a real body.
            None => {
                mails.entry(uid).or_default();
            }
        }
    }
    Ok(mails.into_iter().collect())
}

/// A compact UID set: `1:3,7,9:10`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs_into_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn imap_source_references_name_mailbox_uidvalidity_and_uid() {
        assert_eq!(source_ref("demands", 42, 7), "imap:demands:42:7");
    }
}
