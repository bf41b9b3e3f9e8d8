//! One pass over one IMAP mailbox: select the folder, fetch what is new in batches, commit each batch with the
//! checkpoint in one transaction, and only then move the batch's mails out of the folder.
//!
//! Mail still in the folder at or below the checkpoint was committed by an earlier pass that stopped before its
//! move (a crash, a lost connection): it is found by its source reference and moved without being fetched or
//! processed again. A changed UIDVALIDITY restarts from UID 1; the content hash then makes already-stored mail a
//! `duplicate`, so nothing is created twice.
//!
//! A MOVE cut off by the server's crash may have copied the mail into its destination without expunging it from
//! the folder (Dovecot's Maildir MOVE is a copy, then an expunge), and so does a crash of taxinbox between the COPY
//! and the EXPUNGE of a server without MOVE. Before moving left-over mail, the destination is searched for it (same
//! Message-ID, same bytes), with or without UIDPLUS; a mail found there is only expunged, so the archive holds one
//! copy.
//!
//! Expunging: with UIDPLUS, `UID EXPUNGE` of just the given UIDs. Without it, plain `EXPUNGE` removes every mail
//! of the folder flagged `\Deleted`, so it is sent only when `SEARCH DELETED` finds no mail but the ones this
//! session flagged; otherwise the mail stays in the folder, flagged and already in its destination, the log says
//! why, and the acknowledgement counts as failed (retried each pass, an alarm after a few). The one gap: a mail
//! another client flags `\Deleted` between that SEARCH and the EXPUNGE is expunged too (as that client asked).
//!
//! The folders: at the first pass of a session the processed and quarantine folders are created. A NO to CREATE
//! is checked with LIST: a folder that exists is fine; one that does not stops the mailbox at start
//! ([`Error::FolderUnavailable`]) with the server's reason, before anything is fetched or committed. On a later
//! session of a running mailbox ([`MailboxSession::tolerate_missing_folders`]) the same failure only blocks the
//! acknowledgement.
//!
//! A failing acknowledgement never blocks new mail: a MOVE (COPY, EXPUNGE) the server refuses is logged, recorded
//! in [`PollOutcome::ack_error`], and the pass goes on fetching and committing; the mail stays in the folder and is
//! moved by a later pass. Only a lost connection ends the pass.
//!
//! Acknowledging by flag (`acknowledge = "flag"`): the mail stays in the folder and gets the keyword `$Taxinbox`
//! (`$TaxinboxQuarantine` when quarantined), set after its commit exactly where a move would be made. The folder is
//! searched with `UNKEYWORD` for both, so flagged mail is never taken again, whatever its UID — also after a change
//! of UIDVALIDITY, when the checkpoint no longer says anything. No folder is created. A server whose PERMANENTFLAGS
//! does not let clients make keywords (`\*`) is refused at the pass's SELECT, before anything is fetched
//! ([`Error::Config`]): a keyword kept only for the session would let the mail be taken again.
//!
//! `since`: the search asks only for mail whose INTERNALDATE is on or after that day (`SINCE`); older mail is never
//! fetched, acknowledged, logged or counted.
//!
//! A pass is pipelined: while batch k commits (through `pipeline::batch`, the path every source takes), batch k+1 is
//! evaluated on the blocking pool and the session fetches batch k+2. Committed batches are moved by a second session
//! for a pass of three batches or more, which takes them from a queue as they commit (so a slow MOVE and a slow
//! commit do not wait for each other); where the server refuses that session, the main one moves batch k-1 before
//! its FETCH. Each batch holds its share of the process's memory budget (`pipeline::budget`) from before its FETCH
//! until its commit ends.

use super::server::{Folders, ServerInfo};
use super::{timed, Error, Session, NETWORK_TIMEOUT};
use crate::pipeline::batch::{self, Archive, Incoming, Shadow};
use crate::pipeline::budget::{MemoryBudget, Reservation};
use crate::pipeline::{reload, Pipeline, Report, Status};
use crate::settings::{Acknowledge, MailboxSettings};
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
    /// The memory budget for mail in flight, shared by every mailbox of the process; it also sets the largest batch
    /// by bytes ([`MemoryBudget::batch_bytes`]).
    pub budget: MemoryBudget,
    /// Whether the outcome keeps every committed mail's report (tests, `run --once`); the daemon's passes, which may
    /// take a backlog of 100,000 mails, only count them ([`PollOutcome::summary`]).
    pub keep_reports: bool,
}

impl<'a> PollContext<'a> {
    /// A pass on the wall clock with no stop flag, lease or metrics, under a budget of its own of the default
    /// size (`run --once` on one database, tests); set the other fields on the result where they are needed.
    pub fn new(store: &'a Store, pipeline: &'a Pipeline, batch_size: usize) -> PollContext<'a> {
        PollContext {
            store,
            pipeline,
            batch_size,
            clock: &Utc::now,
            stop: None,
            lease: None,
            metrics: None,
            budget: MemoryBudget::default(),
            keep_reports: true,
        }
    }

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
    /// What the mail this pass committed came to, counted as it was committed (`summary.total()` mails).
    pub summary: batch::Summary,
    /// One report per mail committed in this pass, in UID order, when [`PollContext::keep_reports`] says so.
    pub reports: Vec<Report>,
    /// Mails acknowledged — moved out of the folder, or flagged where they are (this pass's and those left over
    /// from an interrupted one).
    pub moved: usize,
    /// Of `moved`: mails committed by an earlier pass that had not been moved yet.
    pub moved_from_before: usize,
    /// Why (part of) the acknowledgement failed in this pass, when it did: the mail it concerns stays in the
    /// folder, committed, and is moved by a later pass.
    pub ack_error: Option<String>,
}

/// Where one committed mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Move {
    uid: u32,
    quarantine: bool,
}

/// A mail committed by an earlier pass and still in the folder, with what tells whether an interrupted MOVE already
/// copied it into its destination.
#[derive(Debug, Clone)]
struct Leftover {
    target: Move,
    message_id: Option<String>,
    sha256: String,
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
    match poll_mailbox_once_reporting(ctx, mailbox).await {
        (outcome, None) => Ok(outcome),
        (_, Some(e)) => Err(e),
    }
}

/// [`poll_mailbox_once`] that keeps what the pass committed when a later step failed: the outcome so far and the
/// error, if any (`taxinbox run --once` prints the one and exits non-zero on the other).
pub async fn poll_mailbox_once_reporting(
    ctx: &PollContext<'_>,
    mailbox: &MailboxSettings,
) -> (PollOutcome, Option<Error>) {
    let mut outcome = PollOutcome::default();
    let mut session = match MailboxSession::open(mailbox).await {
        Ok(s) => s,
        Err(e) => return (outcome, Some(e)),
    };
    let result = session.poll_into(ctx, &mut outcome).await;
    session.logout().await;
    (outcome, result.err())
}

/// A logged-in session on one mailbox, with what the server can do.
pub struct MailboxSession {
    pub(super) mailbox: MailboxSettings,
    pub(super) session: Session,
    pub(super) caps: Caps,
    can_idle: bool,
    /// The processed and quarantine folders in the server's spelling.
    pub(super) folders: Folders,
    folders_ready: bool,
    /// A folder that cannot be created blocks the acknowledgement instead of stopping the mailbox.
    tolerant: bool,
    /// A second session for moving could not be opened: passes move on this one.
    mover_refused: bool,
    /// The server said the folder grew (`EXISTS`/`RECENT`) after the pass had searched it: the next wait ends at
    /// once, so mail that came during a pass is not left for the poll interval.
    mail_noticed: bool,
}

/// What a server offers for taking mail out of a folder, and how this mailbox acknowledges.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    /// Move (the default) or flag.
    pub(super) acknowledge: Acknowledge,
    /// MOVE (RFC 6851).
    pub(super) can_move: bool,
    /// UIDPLUS (RFC 4315): UID EXPUNGE of just the given UIDs.
    pub(super) uidplus: bool,
    /// ACL (RFC 4314): MYRIGHTS tells what this account may do in a folder.
    pub(super) acl: bool,
}

impl Caps {
    /// The acknowledgement path, as the log names it.
    fn path(self) -> &'static str {
        if self.acknowledge == Acknowledge::Flag {
            return "UID STORE +FLAGS ($Taxinbox / $TaxinboxQuarantine), mail left in the folder";
        }
        match (self.can_move, self.uidplus) {
            (true, _) => "UID MOVE",
            (false, true) => "UID COPY + UID EXPUNGE",
            (false, false) => "UID COPY + EXPUNGE (only when no other mail is flagged \\Deleted)",
        }
    }
}

/// The wait path, as the log names it: IDLE left at the poll interval, or polling.
fn wait_path(can_idle: bool, poll_interval: std::time::Duration) -> String {
    let secs = poll_interval.as_secs();
    if can_idle {
        format!("IDLE, read again at least every {secs} s")
    } else {
        format!("polling every {secs} s (no IDLE)")
    }
}

/// `LIST "" "<pattern>"`. The library sends the pattern as given: it is quoted here (an empty one, a name with
/// a space), since unquoted `LIST "" ` is no command at all.
pub(super) async fn list_names(
    session: &mut Session,
    name: &str,
    pattern: &str,
) -> Result<Vec<async_imap::types::Name>, Error> {
    let quoted = format!("\"{}\"", pattern.replace('\\', "\\\\").replace('"', "\\\""));
    timed(name, "LIST", async {
        session
            .list(Some(""), Some(&quoted))
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await
}

/// A pass with at least this many batches to fetch opens a second session that only moves committed mail, so the
/// server's MOVE of batch k-1 runs beside the FETCH of batch k+2 instead of before it.
const MOVER_MIN_BATCHES: usize = 3;

/// The state of the selected folder and what is in it.
struct Plan {
    uidvalidity: u32,
    uidvalidity_changed: bool,
    last_uid: u32,
    /// Committed earlier, still in the folder: move only.
    leftovers: Vec<Leftover>,
    /// To fetch and commit, ascending.
    new: Vec<u32>,
    /// The size of each of `new` (RFC822.SIZE, 0 where the server gave none), to cut batches by bytes.
    sizes: Vec<u64>,
}

/// A batch to fetch: its UIDs and their mail's size by the server's RFC822.SIZE (0 where it gave none).
#[derive(Debug, Clone, Copy)]
struct Chunk<'u> {
    uids: &'u [u32],
    bytes: u64,
}

/// Cuts `uids` (ascending) into batches in order: each at most `count` mails and, past its first mail, at most
/// `max_bytes` by `sizes` (one per UID), so that a mail larger than `max_bytes` is a batch of its own. A pass holds
/// about three batches at a time (one fetched, one evaluated, one committing), so large mail is taken in smaller
/// batches and the memory budget ([`MemoryBudget::batch_bytes`]) sets `max_bytes`.
fn cut_batches<'u>(uids: &'u [u32], sizes: &[u64], count: usize, max_bytes: u64) -> Vec<Chunk<'u>> {
    let count = count.max(1);
    let mut batches = Vec::new();
    let mut start = 0;
    while start < uids.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < uids.len() && end - start < count {
            let size = sizes.get(end).copied().unwrap_or(0);
            if end > start && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            end += 1;
        }
        batches.push(Chunk {
            uids: &uids[start..end],
            bytes,
        });
        start = end;
    }
    batches
}

impl MailboxSession {
    /// Connects, logs in, reads the capabilities and the hierarchy separator, names the folders, and logs (at info,
    /// once per connection) what the server offers and which acknowledgement and wait paths this mailbox takes.
    pub async fn open(mailbox: &MailboxSettings) -> Result<MailboxSession, Error> {
        let name = mailbox.name.as_str();
        let mut session = super::connect(mailbox).await?;
        let caps = timed(name, "CAPABILITY", session.capabilities()).await?;
        let caps: Vec<String> = caps
            .iter()
            .map(|c| match c {
                async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
                async_imap::types::Capability::Auth(a) => format!("AUTH={a}"),
                async_imap::types::Capability::Atom(a) => a.clone(),
            })
            .collect();
        let separator_of = |names: &[async_imap::types::Name]| {
            names
                .iter()
                .find_map(|n| n.delimiter().and_then(|d| d.chars().next()))
        };
        let root = list_names(&mut session, name, "").await?;
        let inbox: Vec<_> = list_names(&mut session, name, "INBOX")
            .await?
            .into_iter()
            .filter(|n| n.name().eq_ignore_ascii_case("INBOX"))
            .collect();
        // `LIST "" ""` is the question RFC 3501 gives for the separator; INBOX's own line says the same where the
        // answer to the first cannot be read.
        let separator = separator_of(&root).or_else(|| separator_of(&inbox));
        tracing::debug!(mailbox = %name, root = root.len(), inbox = inbox.len(), "LIST answers");
        let inbox_no_inferiors = inbox.iter().any(|n| {
            n.attributes()
                .iter()
                .any(|a| matches!(a, async_imap::types::NameAttribute::NoInferiors))
        });
        let server = ServerInfo::new(caps, separator, inbox_no_inferiors);
        let folders = server
            .folders(
                mailbox.processed_folder.as_deref(),
                mailbox.quarantine_folder.as_deref(),
            )
            .map_err(|reason| Error::Config {
                mailbox: name.to_owned(),
                reason,
            })?;
        let caps = Caps {
            acknowledge: mailbox.acknowledge,
            can_move: server.has("MOVE"),
            uidplus: server.has("UIDPLUS"),
            acl: server.has("ACL"),
        };
        let can_idle = server.has("IDLE");
        tracing::info!(
            mailbox = %name,
            capabilities = %server.capabilities(),
            separator = %server.separator_label(),
            processed = %folders.processed,
            quarantine = %folders.quarantine,
            acknowledge = caps.path(),
            since = %mailbox.since.map_or_else(|| "all mail".to_owned(), |d| d.to_string()),
            wait = %wait_path(can_idle, mailbox.poll_interval),
            "connected"
        );
        Ok(MailboxSession {
            mailbox: mailbox.clone(),
            caps,
            can_idle,
            session,
            folders,
            folders_ready: false,
            tolerant: false,
            mover_refused: false,
            mail_noticed: false,
        })
    }

    /// From now on a folder that cannot be created blocks the acknowledgement (logged, retried, an alarm after a
    /// few passes) instead of stopping the mailbox: for sessions of a mailbox that has started.
    pub fn tolerate_missing_folders(&mut self) {
        self.tolerant = true;
    }

    /// The processed and quarantine folders, in the server's spelling.
    pub fn folders(&self) -> &Folders {
        &self.folders
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
        let mut outcome = PollOutcome::default();
        self.poll_into(ctx, &mut outcome).await?;
        Ok(outcome)
    }

    /// [`MailboxSession::poll`] recording into `outcome` as it goes, so that what was committed before a failure is
    /// still reported.
    pub async fn poll_into(
        &mut self,
        ctx: &PollContext<'_>,
        outcome: &mut PollOutcome,
    ) -> Result<(), Error> {
        // Before anything is fetched: a folder the server will not create stops the mailbox here, at its start.
        let folders_ok = self.prepare_folders().await?;
        let plan = self.plan(ctx).await?;
        outcome.uidvalidity = plan.uidvalidity;
        outcome.uidvalidity_changed = plan.uidvalidity_changed;
        let mut ack_blocked = false;
        if let Err(reason) = &folders_ok {
            ack_blocked = true;
            self.ack_failed(outcome, reason.clone());
        }
        if !plan.leftovers.is_empty() && !ack_blocked {
            tracing::info!(
                mailbox = %self.name(),
                count = plan.leftovers.len(),
                "moving mail committed by an earlier pass"
            );
            match self.move_leftovers(&plan.leftovers, plan.uidvalidity).await {
                Ok(moved) => {
                    outcome.moved_from_before = moved;
                    outcome.moved += moved;
                }
                Err(Error::Server { reason, .. }) => {
                    ack_blocked = true;
                    self.ack_failed(outcome, reason);
                    // A refused EXAMINE of a destination leaves no folder selected: back to the watched one.
                    self.reselect(plan.uidvalidity).await?;
                }
                Err(e) => return Err(e),
            }
        }
        // Pipelined over the four resources a batch needs. While batch k commits (the database), batch k+1 is
        // evaluated (parse, extract, rules: the CPU, on the blocking pool) and the session fetches batch k+2 (the
        // IMAP connection); committed batches are moved by the mover session as they commit, or, without one, by
        // the session before its next FETCH. A batch is moved only after its commit, so nothing is acknowledged
        // early; a failure leaves committed mail in the folder, moved by the next pass, and fetched or evaluated
        // mail uncommitted, fetched again. Each batch holds its share of the process's memory budget from before
        // its FETCH until its commit ends; a batch whose share is not free is fetched once this pass holds no
        // other mail.
        let chunks = cut_batches(
            &plan.new,
            &plan.sizes,
            ctx.batch_size,
            ctx.budget.batch_bytes(),
        );
        let name = self.mailbox.name.clone();
        let archive = archive_of(&self.mailbox);
        let mailbox = self.mailbox.clone();
        let folders = self.folders.clone();
        let caps = self.caps;
        let mut last_uid = plan.last_uid;
        // Flagging is one cheap STORE per batch: no second session for it.
        let mut mover = if chunks.len() >= MOVER_MIN_BATCHES
            && !self.mover_refused
            && !ack_blocked
            && caps.acknowledge == Acknowledge::Move
        {
            let mover = open_mover(&mailbox, plan.uidvalidity).await;
            // Refused once (a connection limit, most likely), not asked again while this session lasts.
            self.mover_refused = mover.is_none();
            mover
        } else {
            None
        };
        // The stages: fetched (to evaluate), evaluated (to commit), committed (to acknowledge). With a mover, a
        // committed batch is queued to it at once; without, the session moves it before its next FETCH.
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel::<Vec<Move>>();
        let queue = mover.is_some().then_some(queue);
        let moving = async {
            match mover.as_mut() {
                Some(m) => run_mover(m, &name, &folders, caps, queued).await,
                None => Moved::default(),
            }
        };
        let mut to_move: Option<Committed> = None;
        let passing = async {
            // Owned by the pass: when it ends, the queue closes and the mover moves what is left in it and ends.
            let queue = queue;
            let mut fetched: Option<Raw> = None;
            let mut evaluated: Option<Evaluated> = None;
            let mut next_chunk = 0;
            // Bounded: each turn takes the next chunk or moves every stage on by one, and the chunks are finite.
            loop {
                let committing = evaluated.take();
                let evaluating = fetched.take();
                // Once the acknowledgement failed in this pass, nothing more is moved: the next pass tries again.
                let inline = to_move.take().filter(|_| !ack_blocked);
                // The next chunk with its share of the budget: waited for only when this pass holds no mail (so no
                // pass waits while holding what another waits for), taken only if free now otherwise.
                let fetching = match chunks.get(next_chunk).filter(|_| !ctx.stopping()) {
                    Some(chunk) if committing.is_none() && evaluating.is_none() => {
                        Some((chunk.uids, ctx.budget.reserve(chunk.bytes).await))
                    }
                    Some(chunk) => ctx
                        .budget
                        .try_reserve(chunk.bytes)
                        .map(|reservation| (chunk.uids, reservation)),
                    None => None,
                };
                if fetching.is_some() {
                    next_chunk += 1;
                }
                if committing.is_none()
                    && evaluating.is_none()
                    && inline.is_none()
                    && fetching.is_none()
                {
                    break;
                }
                let session = &mut self.session;
                let (committed, evaluated_now, session_work) = tokio::join!(
                    async {
                        match committing {
                            Some(batch) => Some(
                                commit_evaluated(ctx, &name, plan.uidvalidity, last_uid, batch)
                                    .await,
                            ),
                            None => None,
                        }
                    },
                    async {
                        match evaluating {
                            Some(raw) => Some(
                                evaluate_batch(ctx, &name, plan.uidvalidity, archive, raw).await,
                            ),
                            None => None,
                        }
                    },
                    async {
                        let moved = match &inline {
                            Some(c) => move_moves(session, &name, &folders, caps, &c.moves).await,
                            None => Ok(0),
                        };
                        // A refused move leaves the folder selected: the FETCH goes on. A lost connection does
                        // not (the pass ends with its error below).
                        let fetched = match (&moved, fetching) {
                            (Err(Error::Network { .. }), _) | (_, None) => None,
                            (_, Some((uids, reservation))) => {
                                Some(fetch_batch(session, &name, uids, reservation).await)
                            }
                        };
                        (moved, fetched)
                    }
                );
                if let Some(committed) = committed {
                    let (committed, batch_last) = committed?;
                    last_uid = batch_last;
                    let Committed { moves, reports } = committed;
                    for report in &reports {
                        outcome.summary.add(report);
                    }
                    if ctx.keep_reports {
                        outcome.reports.extend(reports);
                    }
                    match &queue {
                        // The mover has stopped only after a failure of its own, reported when it ends.
                        Some(queue) => {
                            let _ = queue.send(moves);
                        }
                        None => {
                            to_move = Some(Committed {
                                moves,
                                reports: Vec::new(),
                            })
                        }
                    }
                }
                let (moved_inline, fetched_now) = session_work;
                match moved_inline {
                    Ok(n) => outcome.moved += n,
                    Err(Error::Server { reason, .. }) => {
                        ack_blocked = true;
                        self.ack_failed(outcome, reason);
                    }
                    Err(e) => return Err(e),
                }
                evaluated = evaluated_now.transpose()?;
                fetched = fetched_now.transpose()?;
                if ctx.stopping() {
                    break;
                }
            }
            Ok(())
        };
        let (moved, passed) = tokio::join!(moving, passing);
        if let Some(mut m) = mover {
            if moved.error.is_none() {
                let _ = tokio::time::timeout(NETWORK_TIMEOUT, m.logout()).await;
            }
        }
        outcome.moved += moved.moved;
        if let Some(reason) = moved.refused {
            ack_blocked = true;
            self.ack_failed(outcome, reason);
        }
        passed?;
        if let Some(e) = moved.error {
            return Err(e);
        }
        if let Some(committed) = to_move.filter(|_| !ack_blocked) {
            match self.acknowledge(&committed).await {
                Ok(n) => outcome.moved += n,
                Err(Error::Server { reason, .. }) => self.ack_failed(outcome, reason),
                Err(e) => return Err(e),
            }
        }
        self.note_unsolicited();
        Ok(())
    }

    /// Records a failed acknowledgement: the pass goes on, the mail stays in the folder for a later pass.
    fn ack_failed(&self, outcome: &mut PollOutcome, reason: String) {
        tracing::warn!(
            mailbox = %self.name(),
            acknowledge = self.caps.acknowledge.as_str(),
            "acknowledgement failed, committed mail stays in the folder unacknowledged and a later pass acknowledges \
             it; new mail is still read: {reason}"
        );
        outcome.ack_error.get_or_insert(reason);
    }

    /// SELECTs the watched folder again after a command that may have left another one selected.
    async fn reselect(&mut self, uidvalidity: u32) -> Result<(), Error> {
        let name = self.mailbox.name.clone();
        let folder = self.mailbox.folder.clone();
        let selected = timed(&name, "SELECT", self.session.select(&folder)).await?;
        if selected.uid_validity != Some(uidvalidity) {
            return Err(Error::Server {
                mailbox: name,
                reason: format!("UIDVALIDITY of {folder:?} changed during the pass"),
            });
        }
        Ok(())
    }

    /// Left-over mail: what an interrupted move already copied is only expunged, the rest moved.
    async fn move_leftovers(
        &mut self,
        leftovers: &[Leftover],
        uidvalidity: u32,
    ) -> Result<usize, Error> {
        if self.caps.acknowledge == Acknowledge::Flag {
            // Setting a keyword twice is harmless: nothing to look for first.
            let targets: Vec<Move> = leftovers.iter().map(|l| l.target).collect();
            return self.move_all(&targets).await;
        }
        let (copied, to_move) = self.split_copied(leftovers, uidvalidity).await?;
        if !copied.is_empty() {
            tracing::info!(
                mailbox = %self.name(),
                count = copied.len(),
                "an interrupted move had copied mail already: expunged from the folder, not copied again"
            );
            expunge(&mut self.session, &self.mailbox.name, self.caps, &copied).await?;
        }
        Ok(copied.len() + self.move_all(&to_move).await?)
    }

    /// Commits everything new without moving anything: the first half of [`MailboxSession::poll`]. A pass that
    /// stops here behaves as a crash between commit and move; the next pass moves the mail.
    pub async fn commit_new(&mut self, ctx: &PollContext<'_>) -> Result<Committed, Error> {
        let plan = self.plan(ctx).await?;
        let mut all = Committed::default();
        let mut last_uid = plan.last_uid;
        let name = self.mailbox.name.clone();
        let archive = archive_of(&self.mailbox);
        let max_bytes = ctx.budget.batch_bytes();
        for chunk in cut_batches(&plan.new, &plan.sizes, ctx.batch_size, max_bytes) {
            // One batch at a time: the previous one's share is back when its commit ends.
            let reservation = ctx.budget.reserve(chunk.bytes).await;
            let raw = fetch_batch(&mut self.session, &name, chunk.uids, reservation).await?;
            let batch = evaluate_batch(ctx, &name, plan.uidvalidity, archive, raw).await?;
            let (committed, batch_last) =
                commit_evaluated(ctx, &name, plan.uidvalidity, last_uid, batch).await?;
            last_uid = batch_last;
            all.moves.extend(committed.moves);
            all.reports.extend(committed.reports);
        }
        Ok(all)
    }

    /// Acknowledges committed mail (moves it out of the folder, or flags it). Call only after the commit that holds it.
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
                // A folder that is not there needs a person; one the server cannot open now (locked by a
                // process that died with the server, say) is tried again after a back-off.
                Ok(Err(async_imap::error::Error::No(reason))) => {
                    let reason = reason.trim().to_owned();
                    return Err(if self.folder_listed(&folder).await? {
                        Error::Server {
                            mailbox: name,
                            reason: format!("SELECT {folder:?} refused for now: {reason}"),
                        }
                    } else {
                        Error::NoFolder {
                            mailbox: name,
                            folder,
                            reason,
                        }
                    });
                }
                Ok(Err(e)) => return Err(Error::from_imap(&name, "SELECT", e)),
                Err(_) => return Err(Error::timeout(&name, "SELECT")),
            };
        let uidvalidity = selected.uid_validity.ok_or_else(|| Error::Server {
            mailbox: name.clone(),
            reason: format!("SELECT {folder:?} gave no UIDVALIDITY"),
        })?;
        if self.caps.acknowledge == Acknowledge::Flag
            && !keywords_allowed(&selected.permanent_flags)
        {
            return Err(Error::Config {
                mailbox: name,
                reason: no_keywords_reason(&folder, &selected.permanent_flags),
            });
        }
        let (last_uid, uidvalidity_changed) =
            checkpoint_for(ctx.store, &name, uidvalidity, true).await?;
        let uids = if selected.exists == 0 {
            Vec::new()
        } else {
            search_takeable(&mut self.session, &self.mailbox).await?
        };
        let (leftovers, new) = split_uids(ctx.store, &name, uidvalidity, last_uid, uids).await?;
        let sizes = mail_sizes(&mut self.session, &name, &new).await?;
        Ok(Plan {
            uidvalidity,
            uidvalidity_changed,
            last_uid,
            leftovers,
            new,
            sizes,
        })
    }

    async fn move_all(&mut self, moves: &[Move]) -> Result<usize, Error> {
        if moves.is_empty() {
            return Ok(0);
        }
        if let Err(reason) = self.prepare_folders().await? {
            return Err(Error::Server {
                mailbox: self.mailbox.name.clone(),
                reason,
            });
        }
        move_moves(
            &mut self.session,
            &self.mailbox.name,
            &self.folders,
            self.caps,
            moves,
        )
        .await
    }

    /// Splits the left-over mail into the UIDs an interrupted move already copied into their destination (found
    /// there by Message-ID with the same SHA-256) and the mail still to move, with or without UIDPLUS (expunging
    /// without it is guarded in [`expunge`]); mail without a Message-ID to look for is moved.
    async fn split_copied(
        &mut self,
        leftovers: &[Leftover],
        uidvalidity: u32,
    ) -> Result<(Vec<u32>, Vec<Move>), Error> {
        if leftovers
            .iter()
            .all(|l| search_string(l.message_id.as_deref()).is_none())
        {
            return Ok((Vec::new(), leftovers.iter().map(|l| l.target).collect()));
        }
        let name = self.mailbox.name.clone();
        let mut copied = Vec::new();
        let mut to_move = Vec::new();
        for quarantine in [false, true] {
            let group: Vec<&Leftover> = leftovers
                .iter()
                .filter(|l| l.target.quarantine == quarantine)
                .collect();
            if group.is_empty() {
                continue;
            }
            let folder = if quarantine {
                self.folders.quarantine.clone()
            } else {
                self.folders.processed.clone()
            };
            timed(&name, "EXAMINE", self.session.examine(&folder)).await?;
            let ids: Vec<String> = group
                .iter()
                .filter_map(|l| search_string(l.message_id.as_deref()))
                .collect();
            let there = self.hashes_of_mail_with(&ids).await?;
            for leftover in group {
                if there.contains(&leftover.sha256) {
                    copied.push(leftover.target.uid);
                } else {
                    to_move.push(leftover.target);
                }
            }
        }
        self.reselect(uidvalidity).await?;
        copied.sort_unstable();
        Ok((copied, to_move))
    }

    /// The SHA-256 of every mail in the selected folder whose Message-ID is one of `ids` (quoted search strings):
    /// one UID SEARCH per hundred ids (`OR` of `HEADER Message-ID`), then their bodies.
    async fn hashes_of_mail_with(
        &mut self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, Error> {
        let name = self.mailbox.name.clone();
        let mut hashes = std::collections::HashSet::new();
        for part in ids.chunks(100) {
            let terms: Vec<String> = part
                .iter()
                .map(|id| format!("HEADER Message-ID {id}"))
                .collect();
            let query = format!("{}{}", "OR ".repeat(terms.len() - 1), terms.join(" "));
            let mut hits: Vec<u32> = timed(&name, "UID SEARCH", self.session.uid_search(&query))
                .await?
                .into_iter()
                .collect();
            if hits.is_empty() {
                continue;
            }
            hits.sort_unstable();
            for (_, raw) in fetch(&mut self.session, &name, &hits).await? {
                hashes.insert(crate::store::sha256_hex(&raw));
            }
        }
        Ok(hashes)
    }

    /// Whether `LIST "" "<folder>"` names the folder.
    async fn folder_listed(&mut self, folder: &str) -> Result<bool, Error> {
        let names = list_names(&mut self.session, &self.mailbox.name, folder).await?;
        Ok(names.iter().any(|n| n.name() == folder))
    }

    /// Creates the processed and quarantine folders once per session. A NO is checked with LIST: an existing
    /// folder is fine; a missing one is [`Error::FolderUnavailable`] (the mailbox stops) or, on a session of a
    /// started mailbox, `Ok(Err(reason))` (the acknowledgement is blocked, new mail still read).
    async fn prepare_folders(&mut self) -> Result<Result<(), String>, Error> {
        // Flagged mail stays where it is: no folder is needed, none is made.
        if self.folders_ready || self.caps.acknowledge == Acknowledge::Flag {
            return Ok(Ok(()));
        }
        let name = self.mailbox.name.clone();
        for folder in [
            self.folders.processed.clone(),
            self.folders.quarantine.clone(),
        ] {
            match tokio::time::timeout(NETWORK_TIMEOUT, self.session.create(&folder)).await {
                Ok(Ok(())) => tracing::info!(mailbox = %name, folder = %folder, "folder created"),
                // NO is what servers answer for an existing folder, and for one they will not make: LIST tells.
                Ok(Err(async_imap::error::Error::No(reason))) => {
                    if self.folder_listed(&folder).await? {
                        continue;
                    }
                    let reason = server_text(&reason);
                    if self.tolerant {
                        return Ok(Err(format!(
                            "folder {folder:?} does not exist and the server refused to create it: {reason}"
                        )));
                    }
                    return Err(Error::FolderUnavailable {
                        mailbox: name,
                        folder,
                        reason,
                    });
                }
                Ok(Err(e)) => return Err(Error::from_imap(&name, "CREATE", e)),
                Err(_) => return Err(Error::timeout(&name, "CREATE")),
            }
        }
        self.folders_ready = true;
        Ok(Ok(()))
    }

    /// Forgets the server's unsolicited responses (EXISTS, EXPUNGE…): a pass always re-reads the folder.
    /// Whether the server said the folder grew since the last pass searched it (and forgets it): the caller then
    /// makes its next pass at once instead of waiting.
    pub fn take_mail_noticed(&mut self) -> bool {
        self.note_unsolicited();
        std::mem::take(&mut self.mail_noticed)
    }

    /// Reads what the server said on its own since the last command; a folder that grew is remembered for the
    /// next wait.
    fn note_unsolicited(&mut self) {
        while let Ok(response) = self.session.unsolicited_responses.try_recv() {
            if matches!(
                response,
                async_imap::types::UnsolicitedResponse::Exists(_)
                    | async_imap::types::UnsolicitedResponse::Recent(_)
            ) {
                self.mail_noticed = true;
            }
        }
    }

    /// Waits in IDLE until the server reports a change, `max` passes, or `stop` turns `true`. Returns the session
    /// ready for the next pass; `Ok(false)` when stopped.
    pub async fn idle(
        mut self,
        max: std::time::Duration,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(MailboxSession, bool), Error> {
        let name = self.mailbox.name.clone();
        self.note_unsolicited();
        if std::mem::take(&mut self.mail_noticed) {
            // New mail came while the pass ran: it is taken now, not when IDLE next ends.
            return Ok((self, true));
        }
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

/// A second session on the folder for [`move_moves`] during a long pass, or `None` (the pass then moves on its
/// own session): a server may limit connections per user, and moving inline is only slower.
async fn open_mover(mailbox: &MailboxSettings, uidvalidity: u32) -> Option<Session> {
    let opened = async {
        let mut session = super::connect(mailbox).await?;
        let folder = &mailbox.folder;
        let selected = timed(&mailbox.name, "SELECT", session.select(folder)).await?;
        if selected.uid_validity != Some(uidvalidity) {
            return Err(Error::Server {
                mailbox: mailbox.name.clone(),
                reason: format!("UIDVALIDITY of {folder:?} changed during the pass"),
            });
        }
        Ok::<_, Error>(session)
    };
    match opened.await {
        Ok(session) => Some(session),
        Err(e) => {
            tracing::info!(
                mailbox = %mailbox.name,
                "moving on the main session: no second session ({e})"
            );
            None
        }
    }
}

/// What the mover session did in a pass.
#[derive(Default)]
struct Moved {
    moved: usize,
    /// The server refused a move: nothing more was moved in this pass (the mail stays, committed, for the next).
    refused: Option<String>,
    /// The connection failed: the pass ends with this error once its batches are committed.
    error: Option<Error>,
}

/// Moves committed batches on the mover session as they are queued, one MOVE per batch and destination, beside the
/// pass instead of in step with it: a slow MOVE no longer holds up the next commit, nor a slow commit the next MOVE.
/// Batches are not merged into larger MOVEs: Dovecot's MOVE costs per mail, more per mail in large sets (333 mails
/// took 623 ms, 49 took 54 ms), and the pass would wait for the last large one. Ends when the queue closes and is
/// empty. Bounded by the queue: each turn takes one batch from it, and the pass queues one per batch committed.
async fn run_mover(
    session: &mut Session,
    name: &str,
    folders: &Folders,
    caps: Caps,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Vec<Move>>,
) -> Moved {
    let mut done = Moved::default();
    while let Some(moves) = queue.recv().await {
        if done.refused.is_some() || done.error.is_some() {
            continue;
        }
        match move_moves(session, name, folders, caps, &moves).await {
            Ok(n) => done.moved += n,
            Err(Error::Server { reason, .. }) => done.refused = Some(reason),
            Err(e) => done.error = Some(e),
        }
    }
    done
}

/// Moves committed mail to the processed or quarantine folder on `session` (the folders exist); returns how many.
async fn move_moves(
    session: &mut Session,
    name: &str,
    folders: &Folders,
    caps: Caps,
    moves: &[Move],
) -> Result<usize, Error> {
    if moves.is_empty() {
        return Ok(0);
    }
    if caps.acknowledge == Acknowledge::Flag {
        for (quarantine, keyword) in [(false, KEYWORD_PROCESSED), (true, KEYWORD_QUARANTINE)] {
            let mut uids: Vec<u32> = moves
                .iter()
                .filter(|m| m.quarantine == quarantine)
                .map(|m| m.uid)
                .collect();
            uids.sort_unstable();
            flag(session, name, &uids, keyword).await?;
        }
        return Ok(moves.len());
    }
    for (quarantine, folder) in [(false, &folders.processed), (true, &folders.quarantine)] {
        let mut uids: Vec<u32> = moves
            .iter()
            .filter(|m| m.quarantine == quarantine)
            .map(|m| m.uid)
            .collect();
        uids.sort_unstable();
        move_to(session, name, caps, &uids, folder).await?;
    }
    // The EXPUNGE responses: a pass always re-reads the folder.
    while session.unsolicited_responses.try_recv().is_ok() {}
    Ok(moves.len())
}

/// `UID STORE <uids> +FLAGS.SILENT (<keyword>)`: the mail stays in the folder, acknowledged.
async fn flag(session: &mut Session, name: &str, uids: &[u32], keyword: &str) -> Result<(), Error> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    timed(name, "UID STORE", async {
        session
            .uid_store(&set, format!("+FLAGS.SILENT ({keyword})"))
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    Ok(())
}

/// UID MOVE where the server has it; else COPY, then [`expunge`].
async fn move_to(
    session: &mut Session,
    name: &str,
    caps: Caps,
    uids: &[u32],
    folder: &str,
) -> Result<(), Error> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    if caps.can_move {
        let started = std::time::Instant::now();
        timed(name, "UID MOVE", session.uid_mv(&set, folder)).await?;
        tracing::debug!(
            mailbox = %name,
            mails = uids.len(),
            move_ms = started.elapsed().as_millis(),
            "batch moved"
        );
        return Ok(());
    }
    timed(name, "UID COPY", session.uid_copy(&set, folder)).await?;
    expunge(session, name, caps, uids).await
}

/// Flags `uids` \Deleted and expunges just them: UID EXPUNGE with UIDPLUS; without it plain EXPUNGE, sent only
/// when no other mail of the folder is flagged \Deleted (else a server error: the mail stays, flagged).
async fn expunge(session: &mut Session, name: &str, caps: Caps, uids: &[u32]) -> Result<(), Error> {
    let set = uid_set(uids);
    timed(name, "UID STORE", async {
        session
            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    if caps.uidplus {
        timed(name, "UID EXPUNGE", async {
            session
                .uid_expunge(&set)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
    } else {
        let deleted = timed(name, "UID SEARCH", session.uid_search("DELETED")).await?;
        let others = deleted
            .iter()
            .filter(|uid| uids.binary_search(uid).is_err())
            .count();
        if others > 0 {
            return Err(Error::Server {
                mailbox: name.to_owned(),
                reason: format!(
                    "no UIDPLUS, and {others} other mail(s) of the folder are flagged \\Deleted by someone else: \
                     plain EXPUNGE would remove them too, so {} mail(s) already in their destination stay in the \
                     folder, flagged \\Deleted, until that is cleared",
                    uids.len()
                ),
            });
        }
        timed(name, "EXPUNGE", async {
            session.expunge().await?.try_collect::<Vec<_>>().await
        })
        .await?;
    }
    Ok(())
}

/// A batch fetched, not evaluated yet.
struct Raw {
    uids: Vec<u32>,
    mails: Vec<(u32, Vec<u8>)>,
    /// Its share of the memory budget, held until its commit ends.
    reservation: Reservation,
    started: std::time::Instant,
    fetch_time: std::time::Duration,
}

/// `UID FETCH`es a batch under its share of the memory budget: the session's part of [`fetch_batch`] +
/// [`evaluate_batch`].
async fn fetch_batch(
    session: &mut Session,
    name: &str,
    uids: &[u32],
    reservation: Reservation,
) -> Result<Raw, Error> {
    let started = std::time::Instant::now();
    let mails = fetch(session, name, uids).await?;
    Ok(Raw {
        uids: uids.to_vec(),
        mails,
        reservation,
        started,
        fetch_time: started.elapsed(),
    })
}

/// A batch fetched and evaluated, ready to commit.
struct Evaluated {
    /// The UIDs asked for (some may have vanished meanwhile: they are passed over by the checkpoint too).
    uids: Vec<u32>,
    /// The UID of each mail of `batch`, in order.
    mail_uids: Vec<u32>,
    batch: batch::Evaluated,
    /// The batch's share of the memory budget, given back when its commit ends.
    reservation: Reservation,
    started: std::time::Instant,
    /// How long the FETCH and the evaluation took (the per-batch timing at debug level).
    fetch_time: std::time::Duration,
    evaluate_time: std::time::Duration,
}

/// Evaluates a fetched batch (parse, extract, rules: CPU work) on the blocking pool, spread over the machine's
/// cores, so that the async workers stay free for the commit and the session running beside it.
async fn evaluate_batch(
    ctx: &PollContext<'_>,
    name: &str,
    uidvalidity: u32,
    archive: Archive,
    raw: Raw,
) -> Result<Evaluated, Error> {
    let Raw {
        uids,
        mails,
        reservation,
        started,
        fetch_time,
    } = raw;
    let evaluating = std::time::Instant::now();
    // A `directory import` meanwhile: the batch is decided with the directory now stored (one cheap read; a store that
    // cannot be read is logged and the directory in force decides).
    reload::check_directory(&ctx.pipeline.rules, ctx.store, ctx.metrics, (ctx.clock)()).await;
    let now = (ctx.clock)();
    let pipeline = ctx.pipeline.clone();
    let mail_uids = mails.iter().map(|(uid, _)| *uid).collect();
    let incoming = mails
        .into_iter()
        .map(|(uid, raw)| Incoming {
            raw,
            source: source_ref(name, uidvalidity, uid),
            mailbox: name.to_owned(),
            archive,
        })
        .collect();
    let batch = tokio::task::spawn_blocking(move || {
        batch::evaluate(&pipeline, incoming, Shadow::Evaluate, now)
    })
    .await
    .map_err(|e| Error::store(name, anyhow::anyhow!("evaluating a batch failed: {e}")))?;
    Ok(Evaluated {
        uids,
        mail_uids,
        batch,
        reservation,
        started,
        fetch_time,
        evaluate_time: evaluating.elapsed(),
    })
}

/// Commits an evaluated batch with the checkpoint (and the lease) in one transaction; returns what to move and the
/// new checkpoint.
async fn commit_evaluated(
    ctx: &PollContext<'_>,
    name: &str,
    uidvalidity: u32,
    last_uid: u32,
    evaluated: Evaluated,
) -> Result<(Committed, u32), Error> {
    let Evaluated {
        uids,
        mail_uids,
        batch,
        reservation,
        started,
        fetch_time,
        evaluate_time,
    } = evaluated;
    let committing = std::time::Instant::now();
    // Mail that vanished between SEARCH and FETCH (another client expunged it) is passed over too.
    let batch_last = uids.iter().copied().max().unwrap_or(0).max(last_uid);
    let mut quarantined = Vec::with_capacity(batch.len());
    let reports = batch::commit(ctx.store, ctx.pipeline, &batch, async |tx, reports| {
        for (mail, report) in batch.mails.iter().zip(reports) {
            quarantined.push(match report.status {
                Status::Quarantined => true,
                Status::Processed | Status::Linked => false,
                // A duplicate goes where its first copy went; its reference is recorded too, so that a crash
                // before the move finds it as committed and does not fetch it again.
                Status::Duplicate => match report.id {
                    Some(id) => {
                        store::add_source_ref(tx, &mail.source, id).await?;
                        store::message_by_id(tx, id)
                            .await?
                            .is_some_and(|m| m.status == store::MessageStatus::Quarantined)
                    }
                    None => false,
                },
            });
        }
        let checkpoint = ImapCheckpoint {
            uidvalidity,
            last_uid: batch_last,
        };
        store::set_imap_checkpoint(tx, name, checkpoint, &store::timestamp(batch.now)).await?;
        if let Some(lease) = ctx.lease {
            if !lease.take(tx, name, (ctx.clock)()).await? {
                // Another instance took the mailbox over (this one stalled past its lease): its work counts, this
                // batch is rolled back.
                return Err(Error::LeaseLost {
                    mailbox: name.to_owned(),
                }
                .into());
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| match e.downcast::<Error>() {
        Ok(e) => e,
        Err(e) => Error::store(name, e),
    })?;
    // The mail is written (or, on the error above, dropped with the reservation): its memory is free.
    drop(batch);
    drop(reservation);
    let latency = started.elapsed();
    tracing::debug!(
        mailbox = %name,
        mails = reports.len(),
        fetch_ms = fetch_time.as_millis(),
        evaluate_ms = evaluate_time.as_millis(),
        commit_ms = committing.elapsed().as_millis(),
        "batch committed"
    );
    let moves = mail_uids
        .iter()
        .zip(quarantined)
        .map(|(&uid, quarantine)| Move { uid, quarantine })
        .collect::<Vec<_>>();
    for (m, r) in moves.iter().zip(&reports) {
        if let Some(metrics) = ctx.metrics {
            metrics.mail_committed(name, r.status.as_str(), r.tasks.len(), latency);
        }
        tracing::info!(
            mailbox = %name,
            uidvalidity,
            uid = m.uid,
            message_id = r.message_id.as_deref().unwrap_or(""),
            status = r.status.as_str(),
            category = r.category.as_deref().unwrap_or(""),
            client_inn = r.client_inn.as_deref().unwrap_or(""),
            rule = r.rule.as_deref().unwrap_or(""),
            tasks = r.tasks.len(),
            "mail processed"
        );
    }
    Ok((Committed { moves, reports }, batch_last))
}

/// The keyword of a processed mail under `acknowledge = "flag"`.
pub const KEYWORD_PROCESSED: &str = "$Taxinbox";
/// The keyword of a quarantined mail under `acknowledge = "flag"`.
pub const KEYWORD_QUARANTINE: &str = "$TaxinboxQuarantine";

/// The UID SEARCH criteria of what a pass may take: all mail, or only mail received (INTERNALDATE) on or after
/// `since`; under `acknowledge = "flag"` without either keyword.
pub(crate) fn search_criteria(
    since: Option<chrono::NaiveDate>,
    acknowledge: Acknowledge,
) -> String {
    let mut terms = Vec::new();
    if let Some(day) = since {
        terms.push(format!("SINCE {}", imap_date(day)));
    }
    if acknowledge == Acknowledge::Flag {
        terms.push(format!(
            "UNKEYWORD {KEYWORD_PROCESSED} UNKEYWORD {KEYWORD_QUARANTINE}"
        ));
    }
    if terms.is_empty() {
        "ALL".to_owned()
    } else {
        terms.join(" ")
    }
}

/// A day as IMAP writes it in SEARCH (RFC 3501 `date`): `1-Feb-2026`, month names in English whatever the locale.
fn imap_date(day: chrono::NaiveDate) -> String {
    use chrono::Datelike as _;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::try_from(day.month0()).unwrap_or(0).min(11)];
    format!("{}-{month}-{:04}", day.day(), day.year())
}

/// Whether PERMANENTFLAGS lets this client keep `$Taxinbox` and `$TaxinboxQuarantine` on a mail: `\*` (new
/// keywords may be made), or both keywords listed already. An empty list (read-only, or a server that keeps no
/// keyword) does not.
pub fn keywords_allowed(permanent_flags: &[async_imap::types::Flag<'_>]) -> bool {
    use async_imap::types::Flag;
    let listed = |keyword: &str| {
        permanent_flags
            .iter()
            .any(|f| matches!(f, Flag::Custom(k) if k.eq_ignore_ascii_case(keyword)))
    };
    permanent_flags.iter().any(|f| matches!(f, Flag::MayCreate))
        || (listed(KEYWORD_PROCESSED) && listed(KEYWORD_QUARANTINE))
}

/// PERMANENTFLAGS as the server wrote it: `(\Seen \Deleted)`.
pub(crate) fn flags_text(flags: &[async_imap::types::Flag<'_>]) -> String {
    use async_imap::types::Flag;
    let names: Vec<&str> = flags
        .iter()
        .map(|f| match f {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Recent => "\\Recent",
            Flag::MayCreate => "\\*",
            Flag::Custom(k) => k.as_ref(),
        })
        .collect();
    format!("({})", names.join(" "))
}

/// Why a folder cannot be acknowledged by flag.
fn no_keywords_reason(folder: &str, permanent_flags: &[async_imap::types::Flag<'_>]) -> String {
    format!(
        "acknowledge = \"flag\" needs keywords, but the server does not let this account set new keywords in \
         {folder:?} (PERMANENTFLAGS {} has no \\*): a flag that does not last would let the mail be taken again. \
         Use acknowledge = \"move\", or have the server allow keywords (the account's write right on the folder)",
        flags_text(permanent_flags)
    )
}

/// The stored checkpoint of `name` for `uidvalidity`: its last UID and whether it was for another UIDVALIDITY (then
/// 0). With `record`, a changed UIDVALIDITY is logged and stored at once with UID 0, so that a folder with nothing
/// new after the change is not reported as changed again at every pass.
pub(crate) async fn checkpoint_for(
    store: &Store,
    name: &str,
    uidvalidity: u32,
    record: bool,
) -> Result<(u32, bool), Error> {
    let mut conn = store.acquire().await.map_err(|e| Error::store(name, e))?;
    let stored = store::imap_checkpoint(&mut conn, name)
        .await
        .map_err(|e| Error::store(name, e))?;
    Ok(match stored {
        Some(c) if c.uidvalidity == uidvalidity => (c.last_uid, false),
        Some(c) => {
            if record {
                tracing::warn!(
                    mailbox = %name,
                    uidvalidity,
                    previous = c.uidvalidity,
                    "UIDVALIDITY changed: reading the folder from UID 1 again (stored mail is recognised, flagged mail \
                     is passed over)"
                );
                let fresh = ImapCheckpoint {
                    uidvalidity,
                    last_uid: 0,
                };
                store::set_imap_checkpoint(&mut conn, name, fresh, &store::timestamp(Utc::now()))
                    .await
                    .map_err(|e| Error::store(name, e))?;
            }
            (0, true)
        }
        None => (0, false),
    })
}

/// `UID SEARCH` of what the mailbox may take in the selected folder (see [`search_criteria`]), ascending.
/// The size of each of `uids` (ascending) in one `UID FETCH … (RFC822.SIZE)`, in order; 0 for a UID the server
/// gave none for (a mail expunged meanwhile). Nothing to ask for a single mail: it is a batch of its own anyway.
async fn mail_sizes(session: &mut Session, name: &str, uids: &[u32]) -> Result<Vec<u64>, Error> {
    if uids.len() < 2 {
        return Ok(vec![0; uids.len()]);
    }
    let set = uid_set(uids);
    // Read as the answers arrive, never collected: the IMAP library gives each answer a buffer of its own (4 KiB at
    // least), so a folder of 10,000 new mails collected first held ~40 MB for a list of sizes.
    let step = async {
        let mut stream = session.uid_fetch(&set, "(UID RFC822.SIZE)").await?;
        let mut sizes = vec![0u64; uids.len()];
        while let Some(fetch) = stream.try_next().await? {
            if let (Some(uid), Some(size)) = (fetch.uid, fetch.size) {
                if let Ok(i) = uids.binary_search(&uid) {
                    sizes[i] = u64::from(size);
                }
            }
        }
        Ok(sizes)
    };
    timed(name, "UID FETCH", step).await
}

pub(crate) async fn search_takeable(
    session: &mut Session,
    mailbox: &MailboxSettings,
) -> Result<Vec<u32>, Error> {
    let criteria = search_criteria(mailbox.since, mailbox.acknowledge);
    let mut uids: Vec<u32> = timed(&mailbox.name, "UID SEARCH", session.uid_search(&criteria))
        .await?
        .into_iter()
        .collect();
    uids.sort_unstable();
    Ok(uids)
}

/// Splits the folder's takeable UIDs (ascending) into mail committed by an earlier pass and still there (only to
/// acknowledge) and new mail (to fetch and commit).
async fn split_uids(
    store: &Store,
    name: &str,
    uidvalidity: u32,
    last_uid: u32,
    uids: Vec<u32>,
) -> Result<(Vec<Leftover>, Vec<u32>), Error> {
    let mut leftovers = Vec::new();
    let mut new = Vec::new();
    let mut conn = store.acquire().await.map_err(|e| Error::store(name, e))?;
    for uid in uids {
        if uid > last_uid {
            new.push(uid);
            continue;
        }
        let reference = source_ref(name, uidvalidity, uid);
        match store::message_by_source(&mut conn, &reference)
            .await
            .map_err(|e| Error::store(name, e))?
        {
            Some(stored) => leftovers.push(Leftover {
                target: Move {
                    uid,
                    quarantine: stored.status == store::MessageStatus::Quarantined,
                },
                message_id: stored.message_id,
                sha256: stored.sha256,
            }),
            // Below the checkpoint yet unknown: fetch it again; the store recognises it if it was seen.
            None => new.push(uid),
        }
    }
    new.sort_unstable();
    Ok((leftovers, new))
}

/// How many of the takeable UIDs (ascending) a pass would fetch and commit, and how many it would only acknowledge
/// (committed by an earlier pass): what `taxinbox mailboxes check` reports, read from the store without writing.
pub(crate) async fn count_split(
    store: &Store,
    name: &str,
    uidvalidity: u32,
    uids: Vec<u32>,
) -> Result<(usize, usize), Error> {
    let (last_uid, _) = checkpoint_for(store, name, uidvalidity, false).await?;
    let (leftovers, new) = split_uids(store, name, uidvalidity, last_uid, uids).await?;
    Ok((new.len(), leftovers.len()))
}

/// Which of a mailbox's mail is history: what its received date (`Date:`) says against `archive_before`.
fn archive_of(mailbox: &MailboxSettings) -> Archive {
    mailbox.archive_before.map_or(Archive::No, Archive::Before)
}

/// `UID FETCH <uids> (UID BODY.PEEK[])`: PEEK, so reading never sets \\Seen for the people sharing the box.
async fn fetch(
    session: &mut Session,
    name: &str,
    uids: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, Error> {
    let set = uid_set(uids);
    // Each response is copied out and dropped as it arrives, so the batch is held once, not twice (the responses
    // and the copies) at the end of the FETCH.
    let step = async {
        let mut stream = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
        let mut mails: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        while let Some(fetch) = stream.try_next().await? {
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
        Ok(mails)
    };
    let mails = timed(name, "UID FETCH", step).await?;
    Ok(mails.into_iter().collect())
}

/// The server's own words in a refusal as the IMAP library renders it (`code: Some(…), info: Some("…")`): the
/// text, with the response code in front when there is one; any other rendering unchanged.
fn server_text(rendered: &str) -> String {
    let rendered = rendered.trim();
    let Some((code, info)) = rendered.split_once(", info: ") else {
        return rendered.to_owned();
    };
    let info = info
        .strip_prefix("Some(\"")
        .and_then(|i| i.strip_suffix("\")"))
        .unwrap_or(info);
    match code
        .strip_prefix("code: Some(")
        .and_then(|c| c.strip_suffix(')'))
    {
        Some(code) => format!("[{code}] {info}"),
        None => info.to_owned(),
    }
}

/// `id` as an IMAP quoted string for SEARCH, when it is printable ASCII (a Message-ID always is); `None` otherwise.
fn search_string(id: Option<&str>) -> Option<String> {
    let id = id?;
    if id.is_empty() || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        id.replace('\\', "\\\\").replace('"', "\\\"")
    ))
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
    fn a_refusal_is_reported_in_the_servers_own_words() {
        assert_eq!(
            server_text("code: None, info: Some(\"Permission denied\")"),
            "Permission denied"
        );
        assert_eq!(
            server_text("code: Some(TryCreate), info: Some(\"Mailbox does not exist\")"),
            "[TryCreate] Mailbox does not exist"
        );
        assert_eq!(
            server_text(" Invalid mailbox name "),
            "Invalid mailbox name"
        );
    }

    #[test]
    fn the_search_asks_for_mail_since_the_day_and_without_the_keywords_when_flagging() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 2, 1);
        assert_eq!(search_criteria(None, Acknowledge::Move), "ALL");
        assert_eq!(search_criteria(day, Acknowledge::Move), "SINCE 1-Feb-2026");
        assert_eq!(
            search_criteria(day, Acknowledge::Flag),
            "SINCE 1-Feb-2026 UNKEYWORD $Taxinbox UNKEYWORD $TaxinboxQuarantine"
        );
        assert_eq!(
            search_criteria(None, Acknowledge::Flag),
            "UNKEYWORD $Taxinbox UNKEYWORD $TaxinboxQuarantine"
        );
        assert_eq!(
            imap_date(chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default()),
            "31-Dec-2025"
        );
    }

    #[test]
    fn keywords_are_allowed_only_when_permanentflags_says_so() {
        use async_imap::types::Flag;
        // What Dovecot answers on SELECT of a folder the account may write to, and of one it may not.
        let writable = [
            Flag::Seen,
            Flag::Deleted,
            Flag::Custom("$Forwarded".into()),
            Flag::MayCreate,
        ];
        assert!(keywords_allowed(&writable));
        let system_only = [
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        assert!(!keywords_allowed(&system_only));
        assert!(!keywords_allowed(&[]), "PERMANENTFLAGS () keeps nothing");
        // A server that lists our two keywords keeps them, though it makes no new ones.
        let listed = [
            Flag::Seen,
            Flag::Custom("$Taxinbox".into()),
            Flag::Custom("$TaxinboxQuarantine".into()),
        ];
        assert!(keywords_allowed(&listed));
        assert!(!keywords_allowed(&listed[..2]));
        let reason = no_keywords_reason("INBOX", &system_only);
        assert!(
            reason.contains(
                "PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft) has no \\*"
            ),
            "{reason}"
        );
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let uids: Vec<u32> = (1..=10).collect();
        let kb = |k: u64| k * 1024;
        // Small mail: by count only.
        let small = vec![kb(5); 10];
        let batches = cut_batches(&uids, &small, 4, kb(1000));
        let cut: Vec<usize> = batches.iter().map(|b| b.uids.len()).collect();
        assert_eq!(cut, vec![4, 4, 2]);
        let bytes: Vec<u64> = batches.iter().map(|b| b.bytes).collect();
        assert_eq!(bytes, vec![kb(20), kb(20), kb(10)]);
        // 300 KB mail under a 1,000 KB cap: three per batch, whatever the count allows.
        let large = vec![kb(300); 10];
        let cut: Vec<usize> = cut_batches(&uids, &large, 64, kb(1000))
            .iter()
            .map(|b| b.uids.len())
            .collect();
        assert_eq!(cut, vec![3, 3, 3, 1]);
        // A mail over the cap is a batch of its own; nothing is left out and the order holds.
        let mixed = vec![
            kb(10),
            kb(2000),
            kb(10),
            kb(10),
            kb(990),
            kb(10),
            kb(10),
            kb(10),
            kb(10),
            kb(10),
        ];
        let batches = cut_batches(&uids, &mixed, 64, kb(1000));
        let cut: Vec<usize> = batches.iter().map(|b| b.uids.len()).collect();
        assert_eq!(cut, vec![1, 1, 2, 2, 4]);
        assert_eq!(batches[1].bytes, kb(2000));
        let all: Vec<&[u32]> = batches.iter().map(|b| b.uids).collect();
        assert_eq!(all.concat(), uids);
        // Unknown sizes (0) and no mail at all.
        assert_eq!(cut_batches(&uids, &[], 64, kb(1)).len(), 1);
        assert!(cut_batches(&[], &[], 64, kb(1)).is_empty());
    }

    #[test]
    fn uid_sets_collapse_runs_into_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn message_ids_are_quoted_for_search_and_odd_ones_left_out() {
        assert_eq!(search_string(Some("a@b")).as_deref(), Some("\"a@b\""));
        assert_eq!(
            search_string(Some(r#"x"y\z@b"#)).as_deref(),
            Some(r#""x\"y\\z@b""#)
        );
        assert_eq!(search_string(Some("")), None);
        assert_eq!(search_string(Some("a\r\nb")), None);
        assert_eq!(search_string(Some("письмо@b")), None);
        assert_eq!(search_string(None), None);
    }

    #[test]
    fn imap_source_references_name_mailbox_uidvalidity_and_uid() {
        assert_eq!(source_ref("demands", 42, 7), "imap:demands:42:7");
    }
}
