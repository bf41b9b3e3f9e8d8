//! The rows of a batch that later mails of the same batch read back — messages, demand cases, their checklists,
//! tasks — kept in memory and written together, a few multi-row `INSERT`s per batch where each mail took a round
//! trip per row, with every read the batch makes of them answered from what it holds.
//!
//! Ids are assigned when a row is kept, before it is written: on SQLite counted on from the tables' largest ids
//! (read once per batch, under the write lock `BEGIN IMMEDIATE` took, so no other writer can take the same ones);
//! on PostgreSQL reserved from the tables' sequences in one statement per batch (several instances may write at
//! once; an id reserved and not used is a gap, as a rolled-back insert leaves one). What names a row by id — a
//! case's first mail, a task's mail and case, a notification's task, a log entry's mail — can therefore be made
//! before the row is written; it is written after [`PendingRows::write`] in the same transaction. Both engines check
//! these tables' references at the end of each statement, and `write` inserts messages, then cases, then
//! checklists, then tasks (a message names its case without a reference the database checks).
//!
//! Reads: a case by client, number and date from the cases the batch looked up at its start
//! ([`PendingRows::look_up_cases`]) and those it opened; a case by thread from the store (mail stored before the
//! batch, which has the lower ids and so comes first, as the store's own order has it) and from the batch's own
//! mails. A path that reads these tables through the store itself (a receipt's open tasks) writes what waits first.

use super::messages::ROWS_PER_INSERT;
use super::{composed_sql, values_placeholders, CaseRef, MessageRecord, NewTask};
use anyhow::Context as _;
use sqlx::AnyConnection;
use std::collections::{HashMap, VecDeque};

/// A demand case's key: client, normalised demand number, demand date (ISO).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DemandKey {
    pub client_inn: String,
    pub number_key: String,
    pub demand_date: String,
}

/// How many rows of each table a batch may add: the ids reserved for it on PostgreSQL (upper bounds; SQLite
/// counts on and needs none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reserve {
    pub messages: usize,
    pub cases: usize,
    pub tasks: usize,
}

/// A case the batch opened, waiting to be written.
struct NewCase {
    id: i64,
    key: DemandKey,
    number: String,
    kind: Option<String>,
    first_message: i64,
    created_at: String,
}

/// The tables whose ids the batch assigns.
#[derive(Debug, Clone, Copy)]
enum Table {
    Messages,
    Cases,
    Tasks,
}

impl Table {
    const ALL: [Table; 3] = [Table::Messages, Table::Cases, Table::Tasks];

    fn name(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Cases => "cases",
            Table::Tasks => "tasks",
        }
    }
}

/// Where a table's next ids come from.
#[derive(Debug, Default)]
struct Ids {
    /// SQLite: the next id, counted on from the table's largest.
    next: Option<i64>,
    /// PostgreSQL: ids taken from the table's sequence and not used yet, in order.
    reserved: VecDeque<i64>,
}

/// See the module's documentation.
#[derive(Default)]
pub struct PendingRows {
    ids: [Ids; 3],
    messages: Vec<(i64, MessageRecord)>,
    cases: Vec<NewCase>,
    /// The checklists of cases the batch opened (nothing in the store yet), by case.
    checklists: Vec<(i64, Vec<String>)>,
    tasks: Vec<(i64, NewTask)>,
    /// Mails whose task events wait for their tasks, with the time they were stored.
    task_events: Vec<(i64, String)>,
    /// Cases by key, as looked up (`None`: not in the store) or opened by the batch.
    by_key: HashMap<DemandKey, Option<CaseRef>>,
    /// Every case the batch has read or opened, by id: what a later mail that answers one of its mails joins.
    by_id: HashMap<i64, CaseRef>,
}

impl PendingRows {
    /// Takes the batch's ids: on SQLite the three tables' largest (one statement), on PostgreSQL `reserve`'s
    /// counts from the tables' sequences (one statement). Without it, ids are taken as they are needed.
    pub async fn reserve(
        &mut self,
        conn: &mut AnyConnection,
        reserve: Reserve,
    ) -> anyhow::Result<()> {
        if super::is_sqlite(conn) {
            if self.ids.iter().all(|ids| ids.next.is_some()) {
                return Ok(());
            }
            let (m, c, t): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT coalesce(max(id), 0) FROM messages), (SELECT coalesce(max(id), 0) FROM cases), \
                 (SELECT coalesce(max(id), 0) FROM tasks)",
            )
            .fetch_one(&mut *conn)
            .await
            .context("read the largest ids of messages, cases and tasks")?;
            for (ids, largest) in self.ids.iter_mut().zip([m, c, t]) {
                ids.next.get_or_insert(largest + 1);
            }
            return Ok(());
        }
        let counts = [reserve.messages, reserve.cases, reserve.tasks];
        if counts.iter().all(|&n| n == 0) {
            return Ok(());
        }
        let sql = Table::ALL
            .iter()
            .enumerate()
            .map(|(n, table)| {
                format!(
                    "SELECT CAST({n} AS BIGINT) AS t, nextval(pg_get_serial_sequence('{}', 'id')) AS id \
                     FROM generate_series(1, ${})",
                    table.name(),
                    n + 1
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut query = sqlx::query_as::<_, (i64, i64)>(composed_sql(sql));
        for n in counts {
            query = query.bind(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .context("reserve ids for messages, cases and tasks")?;
        let mut taken: [Vec<i64>; 3] = Default::default();
        for (table, id) in rows {
            let slot = usize::try_from(table).ok().and_then(|t| taken.get_mut(t));
            slot.context("reserve ids: a row of no table")?.push(id);
        }
        for (ids, mut taken) in self.ids.iter_mut().zip(taken) {
            taken.sort_unstable();
            ids.reserved.extend(taken);
        }
        Ok(())
    }

    async fn next_id(&mut self, conn: &mut AnyConnection, table: Table) -> anyhow::Result<i64> {
        let slot = table as usize;
        if super::is_sqlite(conn) {
            if self.ids[slot].next.is_none() {
                self.reserve(conn, Reserve::default()).await?;
            }
            let next = self.ids[slot].next.as_mut().context("no id counted")?;
            let id = *next;
            *next += 1;
            return Ok(id);
        }
        if let Some(id) = self.ids[slot].reserved.pop_front() {
            return Ok(id);
        }
        let sql = format!(
            "SELECT nextval(pg_get_serial_sequence('{}', 'id'))",
            table.name()
        );
        sqlx::query_scalar(composed_sql(sql))
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("take an id for {}", table.name()))
    }

    /// Looks up the cases of `keys` in one query per [`ROWS_PER_INSERT`] keys, so that [`PendingRows::find_case`]
    /// answers them without asking the store.
    pub async fn look_up_cases(
        &mut self,
        conn: &mut AnyConnection,
        keys: &[DemandKey],
    ) -> anyhow::Result<()> {
        let mut wanted: Vec<&DemandKey> = keys
            .iter()
            .filter(|k| !self.by_key.contains_key(k))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(ROWS_PER_INSERT) {
            let conditions: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(c.client_inn = ${} AND c.number_key = ${} AND c.demand_date = ${})",
                        3 * i + 1,
                        3 * i + 2,
                        3 * i + 3
                    )
                })
                .collect();
            let sql = format!(
                "SELECT {}, c.number_key FROM cases c JOIN messages m ON m.id = c.first_message WHERE {}",
                super::messages::CASE_COLUMNS,
                conditions.join(" OR ")
            );
            let mut query = sqlx::query_as::<_, CaseRow>(composed_sql(sql));
            for k in chunk {
                query = query
                    .bind(k.client_inn.as_str())
                    .bind(k.number_key.as_str())
                    .bind(k.demand_date.as_str());
            }
            let found = query
                .fetch_all(&mut *conn)
                .await
                .context("look up the batch's demand cases")?;
            for k in chunk {
                self.by_key.insert((*k).clone(), None);
            }
            for row in found {
                self.remember_case(row.key(), row.case);
            }
        }
        Ok(())
    }

    fn remember_case(&mut self, key: DemandKey, case: CaseRef) {
        self.by_id.insert(case.id, case.clone());
        self.by_key.insert(key, Some(case));
    }

    /// The case of client `client_inn`, demand number `number_key` (normalised) and date `demand_date`: opened by
    /// the batch, looked up for it, or else looked up now.
    pub async fn find_case(
        &mut self,
        conn: &mut AnyConnection,
        client_inn: &str,
        number_key: &str,
        demand_date: &str,
    ) -> anyhow::Result<Option<CaseRef>> {
        let key = DemandKey {
            client_inn: client_inn.to_owned(),
            number_key: number_key.to_owned(),
            demand_date: demand_date.to_owned(),
        };
        if !self.by_key.contains_key(&key) {
            self.look_up_cases(conn, std::slice::from_ref(&key)).await?;
        }
        Ok(self.by_key.get(&key).cloned().flatten())
    }

    /// The demand case of the first of `message_ids` (nearest ancestor first) that names a stored mail belonging to
    /// a case, as [`super::find_case_by_thread`] finds it, the batch's own mails included (after the store's, whose
    /// ids are lower).
    pub async fn find_case_by_thread(
        &mut self,
        conn: &mut AnyConnection,
        message_ids: &[String],
    ) -> anyhow::Result<Option<CaseRef>> {
        let stored = super::messages::thread_case(conn, message_ids).await?;
        let limit = stored
            .as_ref()
            .map_or(super::THREAD_LOOKUP_LIMIT, |(position, _)| *position);
        let own = message_ids
            .iter()
            .take(limit)
            .map(|id| super::clean(id))
            .find_map(|id| {
                self.messages.iter().find_map(|(_, m)| {
                    (m.message_id.as_deref() == Some(id.as_str()))
                        .then_some(m.case_id)
                        .flatten()
                        .and_then(|case| self.by_id.get(&case))
                })
            });
        if let Some(case) = own {
            return Ok(Some(case.clone()));
        }
        if let Some((_, case)) = &stored {
            self.by_id.insert(case.id, case.clone());
        }
        Ok(stored.map(|(_, case)| case))
    }

    /// Keeps a new message (its text made storable) and returns its id.
    pub async fn insert_message(
        &mut self,
        conn: &mut AnyConnection,
        record: &MessageRecord,
    ) -> anyhow::Result<i64> {
        let id = self.next_id(conn, Table::Messages).await?;
        self.messages.push((id, record.storable()));
        Ok(id)
    }

    /// Links message `message` to case `case`: in place when the batch keeps it, else in the store.
    pub async fn set_message_case(
        &mut self,
        conn: &mut AnyConnection,
        message: i64,
        case: i64,
    ) -> anyhow::Result<()> {
        match self
            .messages
            .iter_mut()
            .rev()
            .find(|(id, _)| *id == message)
        {
            Some((_, m)) => m.case_id = Some(case),
            None => super::set_message_case(conn, message, case).await?,
        }
        Ok(())
    }

    /// Opens the case of `key`, first written by message `first_message` (whose Message-ID is
    /// `first_message_id`), and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_case(
        &mut self,
        conn: &mut AnyConnection,
        key: DemandKey,
        number: &str,
        kind: Option<&str>,
        first_message: i64,
        first_message_id: Option<&str>,
        now: &str,
    ) -> anyhow::Result<i64> {
        let id = self.next_id(conn, Table::Cases).await?;
        let case = CaseRef {
            id,
            first_message,
            first_message_id: first_message_id.map(super::clean),
            client_inn: key.client_inn.clone(),
            number: number.to_owned(),
            demand_date: key.demand_date.clone(),
            kind: kind.map(str::to_owned),
        };
        self.cases.push(NewCase {
            id,
            key: key.clone(),
            number: number.to_owned(),
            kind: kind.map(str::to_owned),
            first_message,
            created_at: now.to_owned(),
        });
        self.remember_case(key, case);
        Ok(id)
    }

    /// Keeps `items` as the checklist of `case` when it has none yet, as [`super::set_case_checklist`] does;
    /// returns whether it kept them.
    pub async fn set_case_checklist(
        &mut self,
        conn: &mut AnyConnection,
        case: i64,
        items: &[String],
    ) -> anyhow::Result<bool> {
        if items.is_empty() {
            return Ok(false);
        }
        if !self.cases.iter().any(|c| c.id == case) {
            return super::set_case_checklist(conn, case, items).await;
        }
        if self.checklists.iter().any(|(c, _)| *c == case) {
            return Ok(false);
        }
        self.checklists.push((case, items.to_vec()));
        Ok(true)
    }

    /// Keeps `tasks` and returns their ids, in order.
    pub async fn insert_tasks(
        &mut self,
        conn: &mut AnyConnection,
        tasks: &[NewTask],
    ) -> anyhow::Result<Vec<i64>> {
        let mut ids = Vec::with_capacity(tasks.len());
        for t in tasks {
            let id = self.next_id(conn, Table::Tasks).await?;
            self.tasks.push((id, t.clone()));
            ids.push(id);
        }
        Ok(ids)
    }

    /// Queues the task events of `message` ([`super::queue_task_events_of_message`]) once its tasks are written.
    pub fn queue_task_events(&mut self, message: i64, now: &str) {
        self.task_events.push((message, now.to_owned()));
    }

    /// Writes what waits, in the order the tables' references need: messages, cases, checklists, tasks, then the
    /// task events queued for them.
    pub async fn write(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        for chunk in std::mem::take(&mut self.messages).chunks(ROWS_PER_INSERT) {
            write_messages(conn, chunk).await?;
        }
        for chunk in std::mem::take(&mut self.cases).chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO cases (id, client_inn, number_key, number, demand_date, kind, first_message, created_at) \
                 VALUES {}",
                values_placeholders(conn, chunk.len(), 8)
            );
            let mut query = super::rows_insert(conn, sql);
            for c in chunk {
                query = query
                    .bind(c.id)
                    .bind(c.key.client_inn.as_str())
                    .bind(c.key.number_key.as_str())
                    .bind(c.number.as_str())
                    .bind(c.key.demand_date.as_str())
                    .bind(c.kind.as_deref())
                    .bind(c.first_message)
                    .bind(c.created_at.as_str());
            }
            query
                .execute(&mut *conn)
                .await
                .context("insert demand cases")?;
        }
        let items: Vec<(i64, i64, &str)> = self
            .checklists
            .iter()
            .flat_map(|(case, items)| {
                items
                    .iter()
                    .enumerate()
                    .map(move |(n, item)| (*case, n as i64 + 1, item.as_str()))
            })
            .collect();
        for chunk in items.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO case_checklist (case_id, position, item) VALUES {}",
                values_placeholders(conn, chunk.len(), 3)
            );
            let mut query = super::rows_insert(conn, sql);
            for (case, position, item) in chunk {
                query = query.bind(*case).bind(*position).bind(*item);
            }
            query
                .execute(&mut *conn)
                .await
                .context("save the checklists of new cases")?;
        }
        self.checklists.clear();
        for chunk in std::mem::take(&mut self.tasks).chunks(ROWS_PER_INSERT) {
            write_tasks(conn, chunk).await?;
        }
        for (message, now) in std::mem::take(&mut self.task_events) {
            super::queue_task_events_of_message(conn, message, &now).await?;
        }
        Ok(())
    }
}

/// A case as the look-up reads it, with its key.
#[derive(sqlx::FromRow)]
struct CaseRow {
    #[sqlx(flatten)]
    case: CaseRef,
    number_key: String,
}

impl CaseRow {
    fn key(&self) -> DemandKey {
        DemandKey {
            client_inn: self.case.client_inn.clone(),
            number_key: self.number_key.clone(),
            demand_date: self.case.demand_date.clone(),
        }
    }
}

async fn write_messages(
    conn: &mut AnyConnection,
    chunk: &[(i64, MessageRecord)],
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO messages (id, sha256, message_id, source, mailbox, fetched_at, received_date, from_addr, \
         subject, status, category, kind, client_inn, demand_number, demand_date, demand_sent, case_id, joins, rule, \
         ruleset, reason, error, facts, processed_at, archived) VALUES {}",
        values_placeholders(conn, chunk.len(), 25)
    );
    let mut query = super::rows_insert(conn, sql);
    for (id, m) in chunk {
        query = query
            .bind(*id)
            .bind(m.sha256.as_str())
            .bind(m.message_id.as_deref())
            .bind(m.source.as_str())
            .bind(m.mailbox.as_str())
            .bind(m.fetched_at.as_str())
            .bind(m.received_date.as_str())
            .bind(m.from_addr.as_str())
            .bind(m.subject.as_str())
            .bind(m.status.as_str())
            .bind(m.category.as_deref())
            .bind(m.kind.as_deref())
            .bind(m.client_inn.as_deref())
            .bind(m.demand_number.as_deref())
            .bind(m.demand_date.as_deref())
            .bind(m.demand_sent.as_deref())
            .bind(m.case_id)
            .bind(m.joins.as_deref())
            .bind(m.rule.as_deref())
            .bind(m.ruleset.as_deref())
            .bind(m.reason.as_deref())
            .bind(m.error.as_deref())
            .bind(m.facts.as_str())
            .bind(m.processed_at.as_str())
            .bind(i64::from(m.archived));
    }
    query.execute(&mut *conn).await.context("insert messages")?;
    Ok(())
}

async fn write_tasks(conn: &mut AnyConnection, chunk: &[(i64, NewTask)]) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO tasks (id, message, case_id, client_inn, step, title, role, assignee, due, priority, \
         provenance, created_at, status, archived) VALUES {}",
        values_placeholders(conn, chunk.len(), 14)
    );
    let mut query = super::rows_insert(conn, sql);
    for (id, t) in chunk {
        let status = if t.archived {
            super::status::TaskStatus::Done
        } else {
            super::status::TaskStatus::Open
        };
        query = query
            .bind(*id)
            .bind(t.message)
            .bind(t.case_id)
            .bind(t.client_inn.as_deref())
            .bind(super::clean(&t.step))
            .bind(super::clean(&t.title))
            .bind(t.role.as_str())
            .bind(t.assignee.as_deref())
            .bind(t.due.as_str())
            .bind(t.priority.as_str())
            .bind(t.provenance.as_str())
            .bind(t.created_at.as_str())
            .bind(status.as_str())
            .bind(i64::from(t.archived));
    }
    query.execute(&mut *conn).await.context("insert tasks")?;
    Ok(())
}
