//! All SQL of taxinbox, for SQLite and PostgreSQL through one code path.
//!
//! Queries are runtime-checked (`sqlx::Any`), written once with `$n` placeholders and portable column types
//! (ISO text dates, RFC 3339 instants, integer booleans). Every function takes a `&mut AnyConnection`, so it runs
//! the same on a pooled connection or inside a transaction. Migrations live in `migrations/<engine>/`.
//! [`Store::begin`] takes the store's write gate on SQLite ([`Tx`]): the process's writers take turns.
//!
//! Rows are read with `query_as` into `#[derive(sqlx::FromRow)]` types (`Task`, `TaskView`, `MailRow`, …); a state
//! column is one of the enums of `status`, parsed on reading. A row is not a JSON contract: the commands that print
//! one build their own type from it.

mod audit;
mod audit_read;
mod calendar;
mod checklist;
mod checkpoint;
mod directory;
mod gauges;
mod generation;
mod imap;
mod lease;
mod messages;
mod notify;
mod patents;
mod pending;
mod replay;
mod shadow;
mod sink_portal;
mod sinks;
mod status;
mod web;

pub use audit::{
    append_log, log_notification, purge_raw_mail, record_ruleset, use_log_key, verify_log,
    verify_log_keyed, LogBatch, LogEntry, LogKey, PurgeOutcome, VerifyOutcome, RAW_MAIL_PURGED,
};
pub use audit_read::*;
pub use calendar::*;
pub use checklist::{
    case_checklist, checklist_of_task, set_case_checklist, tick_checklist_item, ChecklistItem,
};
pub use directory::{
    deactivate_accountants_except, deactivate_clients_except, hand_over_task, is_deactivated,
    load_directory, open_tasks_assigned_to, save_directory, set_accountant_active, OpenTaskOf,
};
pub use gauges::{backlog, last_mail_of, ping, Backlog};
pub use generation::{
    bump_directory_generation, directory_generation, record_context_loaded, CONTEXT_LOADED,
};
pub use imap::*;
pub use lease::*;
pub use messages::*;
pub use notify::*;
pub use patents::{load_patents, save_patents};
pub use pending::{DemandKey, PendingRows, Reserve};
pub use replay::{decisions_since, StoredDecision};
pub use shadow::{
    insert_shadow_decision, shadow_decisions_since, ShadowDecision, ShadowSide, ShadowTask,
};
pub use sink_portal::*;
pub use sinks::*;
pub use status::{
    IntBool, MessageStatus, NotificationStatus, SinkEventStatus, TaskStatus, UnknownStatus,
};
pub use web::*;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};
use std::str::FromStr as _;
use std::time::Duration;

/// A transaction on whichever engine the store uses. On SQLite it holds the store's write gate from `begin` until
/// it commits, rolls back or drops: SQLite has one writer at a time, and the writers of one process (IMAP batches,
/// ingest, the notifier, the web view) take turns here instead of meeting in SQLite's busy handler, where a long
/// wait ends in "database is locked". PostgreSQL transactions run side by side.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// SQLite: tells the background checkpointer that the log grew ([`checkpoint`]).
    checkpoint: Option<std::sync::Arc<checkpoint::Checkpointer>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if let Some(checkpointer) = &self.checkpoint {
            checkpointer.committed();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::Transaction<'static, sqlx::Any>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The database engines taxinbox supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The suffix of a query claiming queue rows: on PostgreSQL the rows stay locked until the transaction ends and
    /// other instances pass them over (`FOR UPDATE SKIP LOCKED`); nothing on SQLite (one instance by design).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        }
    }
}

/// SQL the store composed at run time, vouched for to sqlx, which takes only `&'static str` unless told a string is
/// safe. Only for text built from this crate's own literals and constants: column lists, table names given as
/// `&'static str`, `$n` placeholders and their numbers, [`Engine`] suffixes. A value from mail, files, settings or
/// people is never formatted into SQL but bound (`.bind`), so nothing outside the crate can reach this text.
pub(crate) fn composed_sql(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// Records a failed delivery attempt of row `id` of a queue table (`outbox`, `sink_outbox`): `status` becomes the
/// table's pending state with `retry_at`, its failed state without.
async fn record_failed_attempt(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    id: i64,
    error: &str,
    status: &'static str,
    retry_at: Option<&str>,
) -> anyhow::Result<()> {
    let not_before = retry_at.unwrap_or_default();
    sqlx::query(composed_sql(format!(
        "UPDATE {table} SET status = $1, last_error = $2, attempts = attempts + 1, \
         not_before = CASE WHEN $3 = '' THEN not_before ELSE $3 END WHERE id = $4"
    )))
    .bind(status)
    .bind(error)
    .bind(not_before)
    .bind(id)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("record a failed attempt in {table}"))?;
    Ok(())
}

/// The connection pool and what it talks to.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// The write gate of SQLite transactions (see [`Tx`]), shared by every clone of this store.
    gate: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the background checkpointer, told of every commit ([`checkpoint`]).
    checkpoint: Option<std::sync::Arc<checkpoint::Checkpointer>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// How long a writer waits for SQLite's lock before giving up; a batch commit takes milliseconds, so a long wait
/// means another process holds the file and the error should surface rather than hang forever.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

impl Store {
    /// Connects, creating the SQLite file (and its folder) when missing, and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = engine_of(url)?;
        let url = match engine {
            Engine::Sqlite => prepare_sqlite_url(url)?,
            Engine::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database.url: cannot parse {}", redact_url(&url)))?;
        probe(&options, &url).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(match engine {
                // SQLite has one writer; more connections only add lock contention.
                Engine::Sqlite => 4,
                Engine::Postgres => 8,
            })
            // A PostgreSQL connection can be cut while it waits in the pool: it is pinged before use. A SQLite one
            // is a file this process holds open; its ping was one more round trip to its thread per transaction.
            .test_before_acquire(engine == Engine::Postgres)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // temp_store: statement journals (a transaction's savepoints) stay in memory. On disk, a
                        // batch's commit wrote each into a temporary file and deleted it again.
                        // wal_autocheckpoint: the background checkpointer copies the log into the database; a
                        // writer does it itself only past the backstop. cache_spill: a batch's pages reach the log
                        // at its commit, so that the log can start over ([`checkpoint`]).
                        conn.execute(composed_sql(format!(
                            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                             PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; \
                             PRAGMA wal_autocheckpoint = {}; PRAGMA cache_spill = {};",
                            checkpoint::BACKSTOP_PAGES,
                            checkpoint::SPILL_PAGES
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .with_context(|| format!("connect to {}", redact_url(&url)))?;
        let mut store = Store {
            pool,
            engine,
            gate: Default::default(),
            checkpoint: None,
        };
        store.migrate().await?;
        if engine == Engine::Sqlite && !is_sqlite_memory(&url) {
            store.checkpoint = checkpoint::Checkpointer::start(&options)
                .await
                .map(std::sync::Arc::new);
        }
        Ok(store)
    }

    /// Connects for reading only, as auditors do: no migrations, SQLite opened with `mode=ro` (the file must
    /// exist), PostgreSQL sessions with `default_transaction_read_only`, so even a bug cannot write. Refuses a
    /// database whose schema is missing or older than this program's, naming what is missing.
    pub async fn connect_read_only(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = engine_of(url)?;
        let url = match engine {
            Engine::Sqlite => read_only_sqlite_url(url),
            Engine::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database.url: cannot parse {}", redact_url(&url)))?;
        probe(&options, &url).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let setup = match engine {
                        Engine::Sqlite => format!(
                            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA query_only = ON;"
                        ),
                        Engine::Postgres => "SET default_transaction_read_only = on".to_owned(),
                    };
                    conn.execute(composed_sql(setup)).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connect read-only to {}", redact_url(&url)))?;
        let store = Store {
            pool,
            engine,
            gate: Default::default(),
            checkpoint: None,
        };
        store.check_schema().await?;
        Ok(store)
    }

    fn migrator(&self) -> sqlx::migrate::Migrator {
        migrator_of(self.engine)
    }

    /// A read-only reader cannot migrate, so it insists that every migration this program knows is applied.
    async fn check_schema(&self) -> anyhow::Result<()> {
        let mut conn = self.acquire().await?;
        let applied = audit_read::applied_migrations(&mut conn).await?;
        let missing: Vec<String> = self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "the database schema is older than this taxinbox (missing migration(s): {}); \
                 start taxinbox once with the service role, which applies them",
                missing.join(", ")
            );
        }
        Ok(())
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = self.migrator();
        migrator
            .run(&self.pool)
            .await
            .context("apply database migrations")?;
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction. On SQLite it waits first for this process's other transactions to end (see [`Tx`]),
    /// then takes the database's write lock at once (`BEGIN IMMEDIATE`), waiting in the busy handler while another
    /// process (the daemon, a `directory import`) writes. Every transaction here reads before it writes: a deferred
    /// one would read a snapshot, and its first write would then fail with `SQLITE_BUSY_SNAPSHOT` (517, "database is
    /// locked") whenever the other process committed in between — the daemon's batch could then fail pass after
    /// pass while imports run beside it. Not for a store opened with [`Store::connect_read_only`]: it only reads,
    /// outside transactions, and a read-only SQLite connection cannot take the write lock.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        let (turn, tx) = match self.engine {
            Engine::Sqlite => (
                Some(self.gate.clone().lock_owned().await),
                self.pool.begin_with("BEGIN IMMEDIATE").await,
            ),
            Engine::Postgres => (None, self.pool.begin().await),
        };
        let tx = tx.context("begin a database transaction")?;
        Ok(Tx {
            tx,
            _turn: turn,
            checkpoint: self.checkpoint.clone(),
        })
    }

    pub async fn acquire(&self) -> anyhow::Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.pool
            .acquire()
            .await
            .context("acquire a database connection")
    }

    /// Closes the pool, and on SQLite the checkpointer's connection first: the last connection to close folds the
    /// write-ahead log into the database and removes it.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpoint {
            checkpointer.close().await;
        }
        self.pool.close().await;
    }
}

/// The migrations of `engine`, embedded at build time from `migrations/<engine>/`.
fn migrator_of(engine: Engine) -> sqlx::migrate::Migrator {
    match engine {
        Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Engine::Postgres => sqlx::migrate!("migrations/postgres"),
    }
}

fn engine_of(url: &str) -> anyhow::Result<Engine> {
    if url.starts_with("sqlite:") {
        Ok(Engine::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Engine::Postgres)
    } else {
        anyhow::bail!(
            "database.url: unsupported scheme in {:?} (sqlite: or postgres: expected)",
            redact_url(url)
        )
    }
}

/// `sqlite://path?…` → `sqlite://path?…&mode=ro`, whatever mode the configuration asked for.
fn read_only_sqlite_url(url: &str) -> String {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .collect();
    params.push("mode=ro");
    format!("sqlite://{path}?{}", params.join("&"))
}

/// `sqlite://path` → `sqlite://path?mode=rwc`, with the folder created, so a fresh data directory just works.
/// An SQLite database in memory: no log, nothing to checkpoint.
fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("create the database folder {}", parent.display()))?;
            }
        }
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// One direct connection before the pool is built: the pool retries a refused connection until its acquire timeout
/// and then reports only "pool timed out"; this says at once what the server (or the file system) answered.
async fn probe(options: &AnyConnectOptions, url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let conn = tokio::time::timeout(
        Duration::from_secs(30),
        sqlx::AnyConnection::connect_with(options),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 30 s"))
    .and_then(|c| c.map_err(anyhow::Error::new))
    .with_context(|| format!("connect to {}", redact_url(url)))?;
    let _ = conn.close().await;
    Ok(())
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// Writes a consistent copy of a SQLite store to `file` (`VACUUM INTO`: one read snapshot, so a daemon committing
/// meanwhile is neither blocked for long nor half-copied). `file` must not exist.
pub async fn backup_sqlite(store: &Store, file: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        store.engine() == Engine::Sqlite,
        "VACUUM INTO copies SQLite stores only"
    );
    anyhow::ensure!(
        !file.exists(),
        "{} exists already: a backup never overwrites a file",
        file.display()
    );
    let path = file.to_str().ok_or_else(|| {
        anyhow::anyhow!("{}: the backup path must be valid UTF-8", file.display())
    })?;
    let mut conn = store.acquire().await?;
    sqlx::query("VACUUM INTO $1")
        .bind(path)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("back up the store into {}", file.display()))?;
    Ok(())
}

/// Whether the connection is SQLite's, where the SQL of some reads and writes differs (the mail log's full-text table).
pub(crate) fn is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

/// The content address of raw mail (and of anything else stored by its hash): lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Current instant as stored: RFC 3339, UTC, seconds precision.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A migrated SQLite store in `dir` (the same file for every call with the same `dir`), for unit tests.
#[cfg(test)]
pub(crate) async fn test_store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}", dir.join("store.db").display());
    Store::connect(&url)
        .await
        .expect("a SQLite store in a temporary folder")
}

/// A stored message (with its raw mail row, `sha256`) for unit tests that need rows naming one; returns its id.
#[cfg(test)]
pub(crate) async fn test_message(conn: &mut sqlx::AnyConnection, sha256: &str) -> i64 {
    let record = MessageRecord {
        sha256: sha256.into(),
        facts: "{}".into(),
        ..MessageRecord::default()
    };
    test_message_of(conn, &record).await
}

/// [`test_message`] with the message's columns as `record` has them (a raw mail row for its `sha256` too).
#[cfg(test)]
pub(crate) async fn test_message_of(conn: &mut sqlx::AnyConnection, record: &MessageRecord) -> i64 {
    sqlx::query(
        "INSERT INTO raw_mail (sha256, size, content, stored_at) VALUES ($1, 1, x'00', '')",
    )
    .bind(&record.sha256)
    .execute(&mut *conn)
    .await
    .expect("a raw mail row");
    insert_message(conn, record).await.expect("a message row")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes on one SQLite file (two stores here): a transaction that has read, then writes after the other
    /// committed, still commits. A deferred transaction would have failed its write with `SQLITE_BUSY_SNAPSHOT`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_that_read_first_writes_after_another_process_committed() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = test_store(dir.path()).await;
        let import = test_store(dir.path()).await;
        let mut tx = daemon.begin().await.unwrap();
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM raw_mail")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        // The other process writes and commits while the transaction is open: it waits for the write lock.
        let other = tokio::spawn(async move {
            let mut tx = import.begin().await.unwrap();
            sqlx::query("INSERT INTO raw_mail (sha256, size, content, stored_at) VALUES ('b', 1, x'00', '')")
                .execute(&mut **tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !other.is_finished(),
            "the other writer waits for the write lock"
        );
        sqlx::query(
            "INSERT INTO raw_mail (sha256, size, content, stored_at) VALUES ('a', 1, x'00', '')",
        )
        .execute(&mut **tx)
        .await
        .expect("the write after a read is not refused");
        tx.commit().await.unwrap();
        other.await.unwrap();
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM raw_mail")
            .fetch_one(daemon.pool())
            .await
            .unwrap();
        assert_eq!(after, before + 2);
    }

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example/taxinbox"),
            "postgres://app:***@db.example/taxinbox"
        );
        assert_eq!(
            redact_url("postgres://app@db.example/x"),
            "postgres://app@db.example/x"
        );
    }

    #[test]
    fn read_only_sqlite_urls_override_any_mode() {
        assert_eq!(
            read_only_sqlite_url("sqlite://data/x.db?mode=rwc&cache=shared"),
            "sqlite://data/x.db?cache=shared&mode=ro"
        );
        assert_eq!(read_only_sqlite_url("sqlite:x.db"), "sqlite://x.db?mode=ro");
    }

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let url = prepare_sqlite_url("sqlite::memory:").unwrap();
        assert_eq!(url, "sqlite://:memory:?mode=rwc");
    }

    /// The bundled SQLite (libsqlite3-sys's, through sqlx) is at least 3.50.2, the release with the fixes the
    /// security review asked for; sqlx 0.8 could only bundle 3.46.0. Asked of a migrated store, as the service runs.
    #[tokio::test]
    async fn the_bundled_sqlite_is_3_50_2_or_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path()).await;
        let mut conn = store.acquire().await.unwrap();
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
        assert!(parts.len() >= 3, "SQLite version {version:?}");
        assert!(
            (parts[0], parts[1], parts[2]) >= (3, 50, 2),
            "the bundled SQLite is {version}, older than 3.50.2"
        );
        drop(conn);
        store.close().await;
    }

    /// Every migration's checksum is the SHA-384 of its file, as sqlx 0.8 recorded it in `_sqlx_migrations`: a
    /// database migrated by an older taxinbox is validated, not refused as "previously applied but modified".
    #[test]
    fn migration_checksums_are_those_earlier_versions_recorded() {
        use sha2::Digest as _;
        for (engine, folder) in [(Engine::Sqlite, "sqlite"), (Engine::Postgres, "postgres")] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(folder);
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            files.sort();
            let migrator = migrator_of(engine);
            let embedded: Vec<_> = migrator.iter().collect();
            assert_eq!(embedded.len(), files.len(), "{folder}: migrations embedded");
            for (migration, file) in embedded.iter().zip(&files) {
                let text = std::fs::read(file).unwrap();
                assert_eq!(
                    migration.checksum.as_ref(),
                    sha2::Sha384::digest(&text).as_slice(),
                    "{}: checksum",
                    file.display()
                );
            }
        }
    }
}
