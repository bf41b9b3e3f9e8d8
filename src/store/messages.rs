//! Messages, cases, tasks and the notification outbox.

use super::composed_sql;
use super::status::{MessageStatus, NotificationStatus, TaskStatus};
use anyhow::Context as _;
use sqlx::AnyConnection;

/// What the store knows of a mail already seen.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredMessage {
    pub id: i64,
    pub sha256: String,
    pub message_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub source: String,
}

/// One processed mail as it is committed.
#[derive(Debug, Clone, Default)]
pub struct MessageRecord {
    pub sha256: String,
    pub message_id: Option<String>,
    pub source: String,
    pub mailbox: String,
    pub fetched_at: String,
    pub received_date: String,
    pub from_addr: String,
    pub subject: String,
    pub status: MessageStatus,
    pub category: Option<String>,
    pub kind: Option<String>,
    pub client_inn: Option<String>,
    pub demand_number: Option<String>,
    pub demand_date: Option<String>,
    pub demand_sent: Option<String>,
    pub case_id: Option<i64>,
    pub joins: Option<String>,
    pub rule: Option<String>,
    pub ruleset: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub facts: String,
    pub processed_at: String,
    /// Taken in archive mode (history): nothing is announced about it.
    pub archived: bool,
}

impl MessageRecord {
    /// The record with every text made storable: PostgreSQL's TEXT cannot hold NUL, which hostile mail carries in
    /// its headers; it becomes U+FFFD (the raw mail keeps the original bytes).
    pub(super) fn storable(&self) -> MessageRecord {
        let c = |s: &String| clean(s);
        let o = |s: &Option<String>| s.as_ref().map(|s| clean(s));
        MessageRecord {
            sha256: c(&self.sha256),
            message_id: o(&self.message_id),
            source: c(&self.source),
            mailbox: c(&self.mailbox),
            fetched_at: c(&self.fetched_at),
            received_date: c(&self.received_date),
            from_addr: c(&self.from_addr),
            subject: c(&self.subject),
            status: self.status,
            category: o(&self.category),
            kind: o(&self.kind),
            client_inn: o(&self.client_inn),
            demand_number: o(&self.demand_number),
            demand_date: o(&self.demand_date),
            demand_sent: o(&self.demand_sent),
            case_id: self.case_id,
            joins: o(&self.joins),
            rule: o(&self.rule),
            ruleset: o(&self.ruleset),
            reason: o(&self.reason),
            error: o(&self.error),
            facts: c(&self.facts),
            processed_at: c(&self.processed_at),
            archived: self.archived,
        }
    }
}

/// Raw mail as the store keeps it: compressed with zstd when that makes it smaller (`encoding` `zstd`), else as it
/// came (`identity`); `size` and the content address are always those of the mail itself.
#[derive(Debug, Clone)]
pub struct PackedRaw {
    pub sha256: String,
    pub size: i64,
    pub encoding: &'static str,
    pub content: Vec<u8>,
}

/// zstd's level for raw mail: the fastest. A mail's bulk is base64 of attachments that are compressed already
/// (PDF, images, archives), where higher levels gain a percent or two at several times the CPU.
const RAW_ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// Each thread's zstd context, kept between mails: making one per mail allocated and cleared its tables every
    /// time (`ZSTD_createCCtx` in the profile of a pass over 138 KB mail).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `raw` compressed at [`RAW_ZSTD_LEVEL`] with this thread's context.
fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(compressor) => compressor,
            None => slot.insert(zstd::bulk::Compressor::new(RAW_ZSTD_LEVEL)?),
        };
        compressor.compress(raw)
    })
}

/// Packs `raw` (whose hash is `sha256`) for storing: compressed when that saves at least 1/32 of it, else the bytes
/// themselves, moved rather than copied (a large scan does not shrink, and is then held once).
pub fn pack_raw(sha256: String, raw: Vec<u8>) -> PackedRaw {
    let size = i64::try_from(raw.len()).unwrap_or(i64::MAX);
    match compress(&raw) {
        Ok(packed) if packed.len() < raw.len() - raw.len() / 32 => PackedRaw {
            sha256,
            size,
            encoding: "zstd",
            content: packed,
        },
        _ => PackedRaw {
            sha256,
            size,
            encoding: "identity",
            content: raw,
        },
    }
}

/// The mail itself from stored `content` in `encoding`; `size` (the mail's recorded size) bounds what a
/// compressed row may expand to.
pub fn unpack_raw(encoding: &str, content: Vec<u8>, size: i64) -> anyhow::Result<Vec<u8>> {
    match encoding {
        "identity" => Ok(content),
        "zstd" => {
            let capacity = usize::try_from(size).unwrap_or(0);
            zstd::bulk::decompress(&content, capacity)
                .with_context(|| format!("decompress raw mail of {size} bytes"))
        }
        other => anyhow::bail!("raw mail stored in an unknown encoding {other:?}"),
    }
}

/// Like [`unpack_raw`], but content that does not decode is returned as stored (for `audit verify`, whose hash check
/// then names it as altered).
pub(crate) fn unpack_raw_or_stored(encoding: &str, content: Vec<u8>, size: i64) -> Vec<u8> {
    if encoding != "zstd" {
        return content;
    }
    zstd::bulk::decompress(&content, usize::try_from(size).unwrap_or(0)).unwrap_or(content)
}

/// The rows of one batch, written together — one multi-row `INSERT` per table instead of one statement per mail —
/// and what the batch learns once instead of asking per mail: which of its mails the store holds already (by content
/// hash), and whether any task sink is active.
///
/// Raw mail goes first ([`BatchRows::store_raw`], before any message names it: `messages.sha256` references it).
/// The rows later mails of the batch read back — messages, cases, checklists, tasks — are kept in
/// [`super::PendingRows`], which answers those reads; source references, notifications and log entries, which
/// nothing in the batch reads, wait beside them. All of it is written by [`BatchRows::flush`], which must run in the
/// same transaction before it commits. The log entries are chained one by one as they are appended
/// ([`super::LogBatch`]), and the log's head is advanced once at the flush.
#[derive(Default)]
pub struct BatchRows {
    /// Messages by content hash: those stored before the batch (looked up once) and those the batch inserted.
    known: std::collections::HashMap<String, StoredMessage>,
    /// Whether the hashes of the batch were looked up: without it (`reprocess`), each is asked of the store.
    looked_up: bool,
    source_refs: Vec<(String, i64)>,
    notifications: Vec<NewNotification>,
    sinks_active: Option<bool>,
    /// The log entries appended and not yet written.
    pub log: super::LogBatch,
    /// The messages, cases, checklists and tasks kept and not yet written.
    pub pending: super::PendingRows,
}

/// Most rows in one multi-row `INSERT`: far under either engine's limit of bound values (SQLite 32,766; PostgreSQL
/// 65,535) at the widest row (a message's 25 columns: 5,000 values), and a statement small enough to prepare quickly.
pub(super) const ROWS_PER_INSERT: usize = 200;

/// Most bytes of raw mail bound to one `INSERT` (past its first mail). The database driver and SQLite each copy
/// what a statement binds, so a batch of large mail is written in statements of about a MiB, each copied and freed
/// in turn, rather than copied whole twice at once: the memory budget (`pipeline::budget`) counts one copy of a
/// batch being bound, and the load benchmark's peak was a few MB over 150 MB with whole-batch statements.
const RAW_BYTES_PER_INSERT: usize = 1 << 20;

/// Packed raw mail larger than this is stored in parts of this size (`raw_mail_parts`), one statement each: what
/// the driver and the database copy of a large mail at any time is one part, not the mail. The same bound as a
/// statement of small mails ([`RAW_BYTES_PER_INSERT`]): the memory budget counts on one for every statement.
pub const RAW_PART_BYTES: usize = RAW_BYTES_PER_INSERT;

/// `($1, $2), ($3, $4)`: the `VALUES` of `rows` rows of `columns` placeholders each, numbered in the order the
/// values are bound — on SQLite anonymous, `(?, ?), (?, ?)`, which it numbers in the same order. SQLite keeps a
/// statement's named parameters (`$n`) in a list it searches from the start for each one, when it prepares the
/// statement and again as each value is bound: quadratic in the values, ~750,000 comparisons for a batch's 49
/// messages of 25 columns, a statement prepared anew for nearly every batch (its row count differs). Anonymous
/// parameters are in no list.
pub(crate) fn values_placeholders(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    let anonymous = super::is_sqlite(conn);
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            if anonymous {
                out.push('?');
            } else {
                out.push_str(&format!("${}", r * columns + c + 1));
            }
        }
        out.push(')');
    }
    out
}

/// The multi-row `INSERT` `sql` (its `VALUES` from [`values_placeholders`]), to bind its rows to. On SQLite it is
/// not kept prepared: a connection keeps 100 statements, and with a row count of its own per batch a kept one was
/// seldom used again while it held its compiled program — under load (`bench/load.sh`) the peak memory was ~20 MB
/// higher with them kept. PostgreSQL keeps its prepared statements in the server, and preparing one anew per batch
/// took longer there.
pub(crate) fn rows_insert<'q>(
    conn: &AnyConnection,
    sql: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(composed_sql(sql)).persistent(!super::is_sqlite(conn))
}

impl BatchRows {
    /// Looks up which of `hashes` the store holds already, in one query per [`ROWS_PER_INSERT`] hashes.
    pub async fn look_up(
        &mut self,
        conn: &mut AnyConnection,
        hashes: &[&str],
    ) -> anyhow::Result<()> {
        let mut distinct: Vec<&str> = hashes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for chunk in distinct.chunks(ROWS_PER_INSERT) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id, sha256, message_id, status, source FROM messages WHERE sha256 IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_as::<_, StoredMessage>(composed_sql(sql));
            for sha in chunk {
                query = query.bind(*sha);
            }
            for m in query
                .fetch_all(&mut *conn)
                .await
                .context("look up a batch's messages by content hash")?
            {
                self.known.insert(m.sha256.clone(), m);
            }
        }
        self.looked_up = true;
        Ok(())
    }

    /// The stored message with content hash `sha256`, if any (stored before the batch or by it).
    pub async fn seen(
        &mut self,
        conn: &mut AnyConnection,
        sha256: &str,
    ) -> anyhow::Result<Option<StoredMessage>> {
        if let Some(m) = self.known.get(sha256) {
            return Ok(Some(m.clone()));
        }
        if self.looked_up {
            return Ok(None);
        }
        message_by_sha(conn, sha256).await
    }

    /// Whether the batch knows a stored message with content hash `sha256` (looked up, or stored by the batch).
    pub fn is_known(&self, sha256: &str) -> bool {
        self.known.contains_key(sha256)
    }

    /// Remembers a message the batch stored, so that a second copy later in the batch is its duplicate.
    pub fn remember(&mut self, message: StoredMessage) {
        self.known.insert(message.sha256.clone(), message);
    }

    /// Stores every mail of `mails` the store does not hold yet, in as few statements as [`ROWS_PER_INSERT`] and
    /// [`RAW_BYTES_PER_INSERT`] allow; a mail packed larger than [`RAW_PART_BYTES`] in parts, one statement each. A
    /// hash already there is left as it is.
    pub async fn store_raw(
        &mut self,
        conn: &mut AnyConnection,
        mails: &[PackedRaw],
        now: &str,
    ) -> anyhow::Result<()> {
        let mut fresh: Vec<&PackedRaw> = Vec::with_capacity(mails.len());
        for m in mails {
            if !self.known.contains_key(&m.sha256) && !fresh.iter().any(|f| f.sha256 == m.sha256) {
                fresh.push(m);
            }
        }
        let (large, fresh): (Vec<&PackedRaw>, Vec<&PackedRaw>) = fresh
            .into_iter()
            .partition(|m| m.content.len() > RAW_PART_BYTES);
        for m in large {
            store_raw_in_parts(conn, m, now).await?;
        }
        let mut start = 0;
        while start < fresh.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < fresh.len()
                && end - start < ROWS_PER_INSERT
                && (end == start || bytes + fresh[end].content.len() <= RAW_BYTES_PER_INSERT)
            {
                bytes += fresh[end].content.len();
                end += 1;
            }
            let chunk = &fresh[start..end];
            let sql = format!(
                "INSERT INTO raw_mail (sha256, size, content, stored_at, encoding) VALUES {} \
                 ON CONFLICT (sha256) DO NOTHING",
                values_placeholders(conn, chunk.len(), 5)
            );
            let mut query = rows_insert(conn, sql);
            for m in chunk {
                query = query
                    .bind(m.sha256.as_str())
                    .bind(m.size)
                    .bind(m.content.as_slice())
                    .bind(now)
                    .bind(m.encoding);
            }
            query.execute(&mut *conn).await.context("store raw mail")?;
            start = end;
        }
        Ok(())
    }

    /// Records where a stored mail came from (written at the flush).
    pub fn add_source_ref(&mut self, source: &str, message: i64) {
        self.source_refs.push((clean(source), message));
    }

    /// Queues a notification (written at the flush).
    pub fn queue_notification(&mut self, n: NewNotification) {
        self.notifications.push(n);
    }

    /// Whether any task sink is active: task events are queued only for active sinks, so a store without one
    /// skips them. Asked once per batch.
    pub async fn sinks_active(&mut self, conn: &mut AnyConnection) -> anyhow::Result<bool> {
        if let Some(active) = self.sinks_active {
            return Ok(active);
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sinks WHERE active = 1")
            .fetch_one(&mut *conn)
            .await
            .context("look for active task sinks")?;
        self.sinks_active = Some(n > 0);
        Ok(n > 0)
    }

    /// Writes what waits: the batch's messages, cases and tasks ([`super::PendingRows::write`]), then what names
    /// them — source references, notifications and the log entries (advancing the log's head once).
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        self.pending.write(conn).await?;
        for chunk in std::mem::take(&mut self.source_refs).chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO source_refs (source, message) VALUES {} ON CONFLICT (source) DO NOTHING",
                values_placeholders(conn, chunk.len(), 2)
            );
            let mut query = rows_insert(conn, sql);
            for (source, message) in chunk {
                query = query.bind(source.as_str()).bind(*message);
            }
            query
                .execute(&mut *conn)
                .await
                .context("record source references")?;
        }
        for chunk in std::mem::take(&mut self.notifications).chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO outbox (kind, task, message, recipient, subject, body, not_before, created_at) VALUES {}",
                values_placeholders(conn, chunk.len(), 8)
            );
            let mut query = rows_insert(conn, sql);
            for n in chunk {
                query = query
                    .bind(n.kind.as_str())
                    .bind(n.task)
                    .bind(n.message)
                    .bind(clean(&n.recipient))
                    .bind(clean(&n.subject))
                    .bind(clean(&n.body))
                    .bind(n.not_before.as_str())
                    .bind(n.created_at.as_str());
            }
            query
                .execute(&mut *conn)
                .await
                .context("queue notifications")?;
        }
        self.log.flush(conn).await?;
        index_queued_mail(conn).await
    }
}

/// What the mail log's search finds a mail by (SQLite's `messages_search`): subject, sender, client INN, its own
/// demand number and its case's number, over `messages m LEFT JOIN cases k`.
const SEARCH_TEXT: &str =
    "m.subject || ' ' || m.from_addr || ' ' || coalesce(m.client_inn, '') || ' ' || \
     coalesce(m.demand_number, '') || ' ' || coalesce(k.number, '')";

/// Indexes for the mail log's search, in one statement, every mail whose row was inserted or changed since the
/// last call (SQLite; the triggers of migration 0027 queue them): FTS5 writes a segment of its index per statement
/// that writes it, so a batch's mails indexed together are one segment where a trigger per mail made one each, and
/// FTS5 no longer spends the batch merging them. [`BatchRows::flush`] calls it, so a mail is searchable when its
/// batch commits. PostgreSQL's search reads its trigram indexes of the columns themselves: nothing to do.
pub async fn index_queued_mail(conn: &mut AnyConnection) -> anyhow::Result<()> {
    if !super::is_sqlite(conn) {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO messages_search (rowid, text) SELECT m.id, {SEARCH_TEXT} \
         FROM messages_search_queue q JOIN messages m ON m.id = q.id LEFT JOIN cases k ON k.id = m.case_id"
    );
    sqlx::query(composed_sql(sql))
        .execute(&mut *conn)
        .await
        .context("index the batch's mail for the search")?;
    sqlx::query("DELETE FROM messages_search_queue")
        .execute(&mut *conn)
        .await
        .context("index the batch's mail for the search")?;
    Ok(())
}

/// Text as both engines store it: NUL replaced (see `MessageRecord::storable`).
pub fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// A task as it is committed.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub message: i64,
    pub case_id: Option<i64>,
    pub client_inn: Option<String>,
    pub step: String,
    pub title: String,
    pub role: String,
    pub assignee: Option<String>,
    pub due: String,
    pub priority: String,
    pub provenance: String,
    pub created_at: String,
    /// Archive import: the task is stored already done and marked archived (no reminder, never overdue).
    pub archived: bool,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, Default)]
pub struct NewNotification {
    pub kind: String,
    pub task: Option<i64>,
    pub message: Option<i64>,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub not_before: String,
    pub created_at: String,
}

/// A task as stored: every column of `tasks`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Task {
    pub id: i64,
    /// The mail the task came from; `None` for a tax-calendar task.
    pub message: Option<i64>,
    /// The demand case of that mail, if any.
    pub case_id: Option<i64>,
    pub client_inn: Option<String>,
    pub step: String,
    pub title: String,
    pub role: String,
    pub assignee: Option<String>,
    /// ISO date.
    pub due: String,
    pub priority: String,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    /// JSON: where the deadline comes from.
    pub provenance: String,
    pub created_at: String,
    /// The tax-calendar event and period, for a tax-calendar task.
    pub event: Option<String>,
    pub period: Option<String>,
}

/// The columns of [`Task`], for a query over `tasks t`.
pub(crate) const TASK_COLUMNS: &str =
    "t.id, t.message, t.case_id, t.client_inn, t.step, t.title, t.role, \
    t.assignee, t.due, t.priority, t.status, t.provenance, t.created_at, t.event, t.period";

/// A task with its client's name and the demand kind of its mail, as pages, digests and sinks show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct TaskView {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub task: Task,
    /// `None` when the client is not in the directory (or the task has none).
    pub client_name: Option<String>,
    /// The demand kind of the mail the task came from; `None` for tax-calendar and unclassified tasks.
    pub kind: Option<String>,
}

/// A view reads as its task (`view.title`), with the joined columns beside it.
impl std::ops::Deref for TaskView {
    type Target = Task;

    fn deref(&self) -> &Task {
        &self.task
    }
}

/// The columns of [`TaskView`], for a query over [`TASK_VIEW_FROM`].
pub(crate) const TASK_VIEW_COLUMNS: &str =
    "t.id, t.message, t.case_id, t.client_inn, t.step, t.title, t.role, \
    t.assignee, t.due, t.priority, t.status, t.provenance, t.created_at, t.event, t.period, \
    c.name AS client_name, m.kind AS kind";

/// The tables of [`TaskView`]: the task, its client, its mail.
pub(crate) const TASK_VIEW_FROM: &str = "tasks t LEFT JOIN clients c ON c.inn = t.client_inn \
    LEFT JOIN messages m ON m.id = t.message";

/// A case (one demand) already known.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaseRef {
    pub id: i64,
    pub first_message: i64,
    #[sqlx(rename = "message_id")]
    pub first_message_id: Option<String>,
    /// The case's client, demand number (as first written), demand date (ISO) and kind.
    pub client_inn: String,
    pub number: String,
    pub demand_date: String,
    pub kind: Option<String>,
}

/// The columns [`case_ref`] reads, for a query over `cases c JOIN messages m ON m.id = c.first_message`.
pub(super) const CASE_COLUMNS: &str =
    "c.id, c.first_message, m.message_id, c.client_inn, c.number, c.demand_date, c.kind";

/// How many Message-IDs of a thread are looked up for its case: a `References` header lists the whole thread, and
/// the nearest ancestors are the ones that matter; hostile mail may list thousands.
pub const THREAD_LOOKUP_LIMIT: usize = 50;

/// A notification taken from the outbox for sending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingNotification {
    pub id: i64,
    pub kind: String,
    /// The task it announces, if any: a new-task notification is rendered from the task at sending time.
    pub task: Option<i64>,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
    /// The Message-ID of the mail the notification is about, so that the notification threads under it.
    pub in_reply_to: Option<String>,
}

pub async fn message_by_sha(
    conn: &mut AnyConnection,
    sha256: &str,
) -> anyhow::Result<Option<StoredMessage>> {
    sqlx::query_as("SELECT id, sha256, message_id, status, source FROM messages WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(&mut *conn)
        .await
        .context("look up a message by content hash")
}

pub async fn message_by_id(
    conn: &mut AnyConnection,
    id: i64,
) -> anyhow::Result<Option<StoredMessage>> {
    sqlx::query_as("SELECT id, sha256, message_id, status, source FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("look up a message by id")
}

pub async fn message_by_source(
    conn: &mut AnyConnection,
    source: &str,
) -> anyhow::Result<Option<StoredMessage>> {
    sqlx::query_as(
        "SELECT m.id, m.sha256, m.message_id, m.status, m.source FROM source_refs s \
         JOIN messages m ON m.id = s.message WHERE s.source = $1",
    )
    .bind(source)
    .fetch_optional(&mut *conn)
    .await
    .context("look up a message by source reference")
}

/// Ids of messages with a status, oldest first.
pub async fn message_ids_with_status(
    conn: &mut AnyConnection,
    status: MessageStatus,
) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT id FROM messages WHERE status = $1 ORDER BY id")
        .bind(status.as_str())
        .fetch_all(&mut *conn)
        .await
        .context("list messages by status")
}

/// Stores the raw bytes under their hash unless they are there already.
pub async fn put_raw(
    conn: &mut AnyConnection,
    sha256: &str,
    content: &[u8],
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO raw_mail (sha256, size, content, stored_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha256)
    .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
    .bind(content)
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("store raw mail")?;
    Ok(())
}

/// Stores `m` as a `raw_mail` row with empty `content` and its packed bytes in parts of [`RAW_PART_BYTES`], each
/// bound by a statement of its own. Parts are written only when the row is new: a mail stored before (by another
/// instance, say) keeps its parts.
async fn store_raw_in_parts(
    conn: &mut AnyConnection,
    m: &PackedRaw,
    now: &str,
) -> anyhow::Result<()> {
    let parts = m.content.chunks(RAW_PART_BYTES);
    let inserted = sqlx::query(
        "INSERT INTO raw_mail (sha256, size, content, stored_at, encoding, parts) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(m.sha256.as_str())
    .bind(m.size)
    .bind(&[] as &[u8])
    .bind(now)
    .bind(m.encoding)
    .bind(i64::try_from(parts.len()).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .context("store raw mail")?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    for (seq, part) in parts.enumerate() {
        sqlx::query("INSERT INTO raw_mail_parts (sha256, seq, content) VALUES ($1, $2, $3)")
            .bind(m.sha256.as_str())
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .bind(part)
            .execute(&mut *conn)
            .await
            .context("store a part of a large raw mail")?;
    }
    Ok(())
}

/// The stored bytes of raw mail `sha256` whose row says it has `parts` parts, put back together in order, one part
/// read at a time; `content` (the row's own) when it has none. Parts that are missing leave a gap the mail's hash
/// check names: the caller decides whether that is an error.
pub(crate) async fn raw_content(
    conn: &mut AnyConnection,
    sha256: &str,
    content: Vec<u8>,
    parts: i64,
) -> anyhow::Result<(Vec<u8>, i64)> {
    if parts <= 0 {
        return Ok((content, 0));
    }
    let mut whole = Vec::new();
    let mut found = 0;
    for seq in 0..parts {
        let part: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT content FROM raw_mail_parts WHERE sha256 = $1 AND seq = $2")
                .bind(sha256)
                .bind(seq)
                .fetch_optional(&mut *conn)
                .await
                .context("read a part of a large raw mail")?;
        if let Some(part) = part {
            if whole.is_empty() {
                whole.reserve(
                    part.len()
                        .saturating_mul(usize::try_from(parts).unwrap_or(1)),
                );
            }
            whole.extend_from_slice(&part);
            found += 1;
        }
    }
    Ok((whole, found))
}

/// The raw mail with hash `sha256`, decompressed; `None` when there is none or its content was purged.
pub async fn raw_mail(conn: &mut AnyConnection, sha256: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let row: Option<(Option<Vec<u8>>, String, i64, i64)> =
        sqlx::query_as("SELECT content, encoding, size, parts FROM raw_mail WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&mut *conn)
            .await
            .context("read raw mail")?;
    let Some((Some(content), encoding, size, parts)) = row else {
        return Ok(None);
    };
    let (content, found) = raw_content(conn, sha256, content, parts).await?;
    if found < parts {
        anyhow::bail!("raw mail {sha256}: {found} of its {parts} stored parts are there");
    }
    unpack_raw(&encoding, content, size)
        .with_context(|| format!("raw mail {sha256}"))
        .map(Some)
}

/// Stores one message and returns its id, as a batch keeps and writes its messages ([`super::PendingRows`]).
pub async fn insert_message(conn: &mut AnyConnection, m: &MessageRecord) -> anyhow::Result<i64> {
    let mut rows = super::PendingRows::default();
    let id = rows.insert_message(conn, m).await?;
    rows.write(conn).await?;
    Ok(id)
}

/// Overwrites the outcome of a message that is processed again (`taxinbox reprocess`); its source stays.
pub async fn update_message_outcome(
    conn: &mut AnyConnection,
    id: i64,
    m: &MessageRecord,
) -> anyhow::Result<()> {
    let m = &m.storable();
    sqlx::query(
        "UPDATE messages SET status = $1, category = $2, kind = $3, client_inn = $4, demand_number = $5, \
         demand_date = $6, demand_sent = $7, case_id = $8, joins = $9, rule = $10, ruleset = $11, reason = $12, \
         error = $13, facts = $14, processed_at = $15, received_date = $16 WHERE id = $17",
    )
    .bind(m.status.as_str())
    .bind(&m.category)
    .bind(&m.kind)
    .bind(&m.client_inn)
    .bind(&m.demand_number)
    .bind(&m.demand_date)
    .bind(&m.demand_sent)
    .bind(m.case_id)
    .bind(&m.joins)
    .bind(&m.rule)
    .bind(&m.ruleset)
    .bind(&m.reason)
    .bind(&m.error)
    .bind(&m.facts)
    .bind(&m.processed_at)
    .bind(&m.received_date)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("update message outcome")?;
    Ok(())
}

/// Remembers where a mail came from, so that the same source is recognised on re-delivery.
pub async fn add_source_ref(
    conn: &mut AnyConnection,
    source: &str,
    message: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO source_refs (source, message) VALUES ($1, $2) ON CONFLICT (source) DO NOTHING",
    )
    .bind(clean(source))
    .bind(message)
    .execute(&mut *conn)
    .await
    .context("record source reference")?;
    Ok(())
}

/// The demand case of the first of `message_ids` (nearest ancestor first: `In-Reply-To`, then `References` from
/// the last) that names a stored mail belonging to a case; at most [`THREAD_LOOKUP_LIMIT`] are looked up.
pub async fn find_case_by_thread(
    conn: &mut AnyConnection,
    message_ids: &[String],
) -> anyhow::Result<Option<CaseRef>> {
    Ok(thread_case(conn, message_ids).await?.map(|(_, case)| case))
}

/// [`find_case_by_thread`]'s case, with the position in `message_ids` of the mail that found it.
pub(super) async fn thread_case(
    conn: &mut AnyConnection,
    message_ids: &[String],
) -> anyhow::Result<Option<(usize, CaseRef)>> {
    let ids: Vec<String> = message_ids
        .iter()
        .take(THREAD_LOOKUP_LIMIT)
        .map(|id| clean(id))
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    // One query for the whole thread; the nearest ancestor that belongs to a case wins.
    let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT {CASE_COLUMNS}, t.message_id AS thread_member FROM messages t JOIN cases c ON c.id = t.case_id \
         JOIN messages m ON m.id = c.first_message WHERE t.message_id IN ({}) ORDER BY t.id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, ThreadCase>(composed_sql(sql));
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .context("look up the demand case of a mail's thread")?;
    let mut nearest: Option<(usize, CaseRef)> = None;
    for row in rows {
        let Some(position) = ids.iter().position(|id| *id == row.thread_member) else {
            continue;
        };
        match nearest {
            Some((best, _)) if best <= position => {}
            _ => nearest = Some((position, row.case)),
        }
    }
    Ok(nearest)
}

/// A case with the thread member that found it.
#[derive(sqlx::FromRow)]
struct ThreadCase {
    #[sqlx(flatten)]
    case: CaseRef,
    thread_member: String,
}

/// Opens a demand case and returns its id, as a batch keeps and writes its cases ([`super::PendingRows`]).
#[allow(clippy::too_many_arguments)]
pub async fn insert_case(
    conn: &mut AnyConnection,
    client_inn: &str,
    number_key: &str,
    number: &str,
    demand_date: &str,
    kind: Option<&str>,
    first_message: i64,
    now: &str,
) -> anyhow::Result<i64> {
    let key = super::DemandKey {
        client_inn: client_inn.to_owned(),
        number_key: number_key.to_owned(),
        demand_date: demand_date.to_owned(),
    };
    let mut rows = super::PendingRows::default();
    let id = rows
        .insert_case(conn, key, number, kind, first_message, None, now)
        .await?;
    rows.write(conn).await?;
    Ok(id)
}

pub async fn set_message_case(
    conn: &mut AnyConnection,
    message: i64,
    case_id: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE messages SET case_id = $1 WHERE id = $2")
        .bind(case_id)
        .bind(message)
        .execute(&mut *conn)
        .await
        .context("link message to its case")?;
    Ok(())
}

/// Stores `tasks` and returns their ids in the order of `tasks`: ids taken as a batch takes them, the rows written
/// as it writes them ([`super::PendingRows`]).
pub async fn insert_tasks(conn: &mut AnyConnection, tasks: &[NewTask]) -> anyhow::Result<Vec<i64>> {
    let mut rows = super::PendingRows::default();
    let reserve = super::Reserve {
        tasks: tasks.len(),
        ..super::Reserve::default()
    };
    rows.reserve(conn, reserve).await?;
    let ids = rows.insert_tasks(conn, tasks).await?;
    rows.write(conn).await?;
    Ok(ids)
}

pub async fn insert_notification(
    conn: &mut AnyConnection,
    n: &NewNotification,
) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO outbox (kind, task, message, recipient, subject, body, not_before, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&n.kind)
    .bind(n.task)
    .bind(n.message)
    .bind(clean(&n.recipient))
    .bind(clean(&n.subject))
    .bind(clean(&n.body))
    .bind(&n.not_before)
    .bind(&n.created_at)
    .fetch_one(&mut *conn)
    .await
    .context("queue notification")
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this person's tasks.
    pub assignee: Option<String>,
    /// Only tasks in the unassigned queue.
    pub unassigned: bool,
    /// Only open tasks due before this ISO date.
    pub due_before: Option<String>,
    /// Only open tasks.
    pub open_only: bool,
}

pub async fn list_tasks(
    conn: &mut AnyConnection,
    filter: &TaskFilter,
) -> anyhow::Result<Vec<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t \
         WHERE ($1 = '' OR t.assignee = $1) AND ($2 = 0 OR t.assignee IS NULL) \
         AND ($3 = '' OR (t.due < $3 AND t.status = 'open')) AND ($4 = 0 OR t.status = 'open') \
         ORDER BY t.due, t.id"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(filter.assignee.clone().unwrap_or_default())
        .bind(i64::from(filter.unassigned))
        .bind(filter.due_before.clone().unwrap_or_default())
        .bind(i64::from(filter.open_only))
        .fetch_all(&mut *conn)
        .await
        .context("list tasks")
}

/// The tasks of one mail, in creation order.
pub async fn tasks_of_message(conn: &mut AnyConnection, message: i64) -> anyhow::Result<Vec<Task>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.message = $1 ORDER BY t.id");
    sqlx::query_as(composed_sql(sql))
        .bind(message)
        .fetch_all(&mut *conn)
        .await
        .context("list the tasks of a message")
}

/// The open tasks of a demand case whose step is `step`, oldest first.
pub async fn open_case_tasks(
    conn: &mut AnyConnection,
    case_id: i64,
    step: &str,
) -> anyhow::Result<Vec<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.case_id = $1 AND t.step = $2 AND t.status = 'open' ORDER BY t.id"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(case_id)
        .bind(step)
        .fetch_all(&mut *conn)
        .await
        .context("list the open tasks of a case")
}

/// Counts of messages by status, for summaries.
pub async fn message_counts(conn: &mut AnyConnection) -> anyhow::Result<Vec<(MessageStatus, i64)>> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) AS n FROM messages GROUP BY status ORDER BY status",
    )
    .fetch_all(&mut *conn)
    .await
    .context("count messages")?;
    counts
        .into_iter()
        .map(|(status, n)| Ok((status.parse()?, n)))
        .collect()
}

/// Takes up to `limit` notifications that are due for sending. On PostgreSQL the rows stay locked
/// (`FOR UPDATE SKIP LOCKED`) until the transaction ends, so several instances never send the same one.
pub async fn claim_notifications(
    conn: &mut AnyConnection,
    engine: super::Engine,
    now: &str,
    limit: i64,
) -> anyhow::Result<Vec<PendingNotification>> {
    let lock = engine.skip_locked();
    let sql = format!(
        "SELECT id, kind, task, recipient, subject, body, attempts, \
         (SELECT m.message_id FROM messages m WHERE m.id = outbox.message) AS in_reply_to FROM outbox \
         WHERE status = 'pending' AND not_before <= $1 ORDER BY id LIMIT $2{lock}"
    );
    sqlx::query_as(composed_sql(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("claim notifications")
}

pub async fn mark_notification_sent(
    conn: &mut AnyConnection,
    id: i64,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("mark notification sent")?;
    Ok(())
}

pub async fn mark_notification_failed(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    retry_at: Option<&str>,
) -> anyhow::Result<()> {
    let status = match retry_at {
        Some(_) => NotificationStatus::Pending,
        None => NotificationStatus::Failed,
    };
    super::record_failed_attempt(conn, "outbox", id, error, status.as_str(), retry_at).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows written before raw mail was compressed (`identity`) and after (`zstd`) read back as the mail itself,
    /// through both readers (one mail, and the pages `audit verify` walks).
    #[tokio::test]
    async fn raw_mail_reads_back_whether_stored_as_it_came_or_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::test_store(dir.path()).await;
        let old = b"Subject: stored before compression\r\n\r\nbody\r\n".to_vec();
        let new = "Subject: stored compressed\r\n\r\nТребование о представлении документов\r\n"
            .repeat(50)
            .into_bytes();
        let (old_sha, new_sha) = (
            super::super::sha256_hex(&old),
            super::super::sha256_hex(&new),
        );
        let mut tx = store.begin().await.unwrap();
        put_raw(&mut tx, &old_sha, &old, "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let packed = pack_raw(new_sha.clone(), new.clone());
        assert_eq!(packed.encoding, "zstd");
        assert!(packed.content.len() < new.len() / 4, "text compresses");
        let mut rows = BatchRows::default();
        rows.store_raw(&mut tx, &[packed], "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        let encodings: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT sha256, encoding, size FROM raw_mail ORDER BY stored_at, sha256",
        )
        .fetch_all(&mut **tx)
        .await
        .unwrap();
        assert!(encodings.contains(&(old_sha.clone(), "identity".into(), old.len() as i64)));
        assert!(encodings.contains(&(new_sha.clone(), "zstd".into(), new.len() as i64)));
        assert_eq!(
            raw_mail(&mut tx, &old_sha).await.unwrap(),
            Some(old.clone())
        );
        assert_eq!(
            raw_mail(&mut tx, &new_sha).await.unwrap(),
            Some(new.clone())
        );
        let page = super::super::raw_mail_page(&mut tx, "", 10).await.unwrap();
        assert_eq!(page.len(), 2);
        for row in page {
            let content = row.content.unwrap();
            assert_eq!(super::super::sha256_hex(&content), row.sha256);
            assert_eq!(content.len() as i64, row.size);
        }
        tx.commit().await.unwrap();
        store.close().await;
    }

    /// The mail log's search index takes a batch's mails in one segment when the batch's rows are flushed — subject,
    /// sender and the case's number as they are then — and follows a mail changed or deleted later.
    #[tokio::test]
    async fn a_batch_is_indexed_for_the_search_in_one_segment_at_its_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::test_store(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        let found = async |conn: &mut AnyConnection, phrase: &str| -> Vec<i64> {
            sqlx::query_scalar(
                "SELECT rowid FROM messages_search WHERE messages_search MATCH $1 ORDER BY rowid",
            )
            .bind(format!("\"{phrase}\""))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
        };
        // Segments hold the index's pages; a segment's id is the top bits of its pages' ids (FTS5's layout).
        let segments = async |conn: &mut AnyConnection| -> i64 {
            sqlx::query_scalar(
                "SELECT COUNT(DISTINCT id >> 37) FROM messages_search_data WHERE id >= (1 << 37)",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap()
        };
        let mut ids = Vec::new();
        for n in 1..=3 {
            let record = MessageRecord {
                sha256: format!("{n:064}"),
                subject: format!("Требование о представлении пояснений {n}"),
                from_addr: format!("client{n}@example.ru"),
                facts: "{}".into(),
                ..MessageRecord::default()
            };
            ids.push(super::super::test_message_of(&mut tx, &record).await);
        }
        let case = insert_case(
            &mut tx,
            "7707083893",
            "4471",
            "4471/А",
            "2026-07-03",
            None,
            ids[0],
            "",
        )
        .await
        .unwrap();
        set_message_case(&mut tx, ids[0], case).await.unwrap();
        assert!(
            found(&mut tx, "пояснений").await.is_empty(),
            "indexed at the flush, not per statement"
        );
        BatchRows::default().flush(&mut tx).await.unwrap();
        assert_eq!(found(&mut tx, "пояснений").await, ids);
        assert_eq!(found(&mut tx, "client2@").await, vec![ids[1]]);
        assert_eq!(
            found(&mut tx, "4471/а").await,
            vec![ids[0]],
            "the case's number"
        );
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages_search_queue")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        assert_eq!(queued, 0);
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert_eq!(segments(&mut tx).await, 1, "the batch is one segment");

        // A mail indexed before and changed after: out of the index until the next flush, then with its new text.
        sqlx::query(
            "UPDATE messages SET subject = 'Решение о приостановлении операций' WHERE id = $1",
        )
        .bind(ids[1])
        .execute(&mut **tx)
        .await
        .unwrap();
        assert_eq!(found(&mut tx, "пояснений").await, vec![ids[0], ids[2]]);
        BatchRows::default().flush(&mut tx).await.unwrap();
        assert_eq!(found(&mut tx, "приостановлении").await, vec![ids[1]]);
        assert_eq!(found(&mut tx, "пояснений").await, vec![ids[0], ids[2]]);
        // Deleted: an indexed mail leaves the index; one still queued leaves the queue.
        sqlx::query("UPDATE messages SET subject = 'Акт налоговой проверки' WHERE id = $1")
            .bind(ids[2])
            .execute(&mut **tx)
            .await
            .unwrap();
        sqlx::query("DELETE FROM messages WHERE id IN ($1, $2)")
            .bind(ids[1])
            .bind(ids[2])
            .execute(&mut **tx)
            .await
            .unwrap();
        BatchRows::default().flush(&mut tx).await.unwrap();
        assert!(found(&mut tx, "приостановлении").await.is_empty());
        assert!(found(&mut tx, "проверки").await.is_empty());
        assert_eq!(found(&mut tx, "пояснений").await, vec![ids[0]]);
        tx.commit().await.unwrap();
        store.close().await;
    }

    /// Incompressible bytes are kept as they came: nothing is gained by decoding them later.
    #[test]
    fn incompressible_raw_mail_is_stored_as_it_came() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let packed = pack_raw("x".into(), noise.clone());
        assert_eq!(packed.encoding, "identity");
        assert_eq!(packed.content, noise);
        assert_eq!(unpack_raw("identity", noise.clone(), 4096).unwrap(), noise);
        assert!(unpack_raw("zstd", noise.clone(), 4096).is_err());
        assert_eq!(unpack_raw_or_stored("zstd", noise.clone(), 4096), noise);
    }

    /// Entries appended as one batch chain like single appends, and the head is moved once to the newest.
    #[tokio::test]
    async fn a_batch_of_log_entries_chains_like_entries_appended_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::test_store(dir.path()).await;
        let payload = serde_json::json!({"n": 1});
        let entry = |event: &'static str| super::super::LogEntry {
            at: "2026-01-01T00:00:00.000Z",
            event,
            message: None,
            sha256: None,
            payload: &payload,
        };
        let mut tx = store.begin().await.unwrap();
        let before = super::super::append_log(&mut tx, &entry("single"))
            .await
            .unwrap();
        let mut batch = super::super::LogBatch::default();
        let mut seqs = Vec::new();
        for _ in 0..5 {
            seqs.push(batch.append(&mut tx, &entry("batched")).await.unwrap());
        }
        assert_eq!(seqs, (before + 1..=before + 5).collect::<Vec<_>>());
        batch.flush(&mut tx).await.unwrap();
        let after = super::super::append_log(&mut tx, &entry("single"))
            .await
            .unwrap();
        assert_eq!(after, before + 6);
        let (head,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        assert_eq!(head, after);
        assert_eq!(
            super::super::verify_log(&mut tx).await.unwrap(),
            super::super::VerifyOutcome::Intact { entries: after }
        );
        tx.commit().await.unwrap();
        store.close().await;
    }

    /// A mail's tasks, more than one statement holds, come back with their ids in the order given.
    #[tokio::test]
    async fn tasks_stored_together_get_their_ids_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::test_store(dir.path()).await;
        let mut tx = store.begin().await.unwrap();
        let message = super::super::test_message(&mut tx, "s").await;
        assert!(insert_tasks(&mut tx, &[]).await.unwrap().is_empty());
        let tasks: Vec<NewTask> = (0..ROWS_PER_INSERT * 2 + 7)
            .map(|n| NewTask {
                message,
                step: format!("step-{n}"),
                title: format!("Задача {n}"),
                role: "accountant".into(),
                due: "2026-03-02".into(),
                priority: "normal".into(),
                provenance: "{}".into(),
                archived: n % 3 == 0,
                ..NewTask::default()
            })
            .collect();
        let ids = insert_tasks(&mut tx, &tasks).await.unwrap();
        assert_eq!(ids.len(), tasks.len());
        for (task, id) in tasks.iter().zip(&ids) {
            let (step, status): (String, String) =
                sqlx::query_as("SELECT step, status FROM tasks WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await
                    .unwrap();
            assert_eq!(step, task.step);
            assert_eq!(status == "done", task.archived);
        }
    }
}
