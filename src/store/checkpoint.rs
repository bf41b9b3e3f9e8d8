//! SQLite's checkpoints, off the writers' path.
//!
//! In WAL mode every commit appends its pages to the write-ahead log, and a checkpoint copies them into the database
//! file. Left to SQLite, the writer whose commit takes the log past `wal_autocheckpoint` pages runs that checkpoint
//! itself, inside its commit: with the mail's raw bytes in every batch, after every batch, and 29 % of the writer's
//! time (bench/README.md, "Release build and background checkpoints"). Here the writers only say that they
//! committed; a connection of its own copies the log into the database in the background (a `PASSIVE` checkpoint: it
//! never waits for, nor blocks, a reader or the next writer), on its own thread, while the next batch is written.
//!
//! For the log to start over from its beginning (and its file to stay a few batches long: at most 25 MB through six
//! passes of `bench/imap.sh`), every page in it must be copied when the next transaction writes its first page. So
//! the writers keep a transaction's pages in memory until its commit ([`SPILL_PAGES`]): the next batch's first write
//! comes when it commits, after the checkpoint of the one before has ended. (A writer that spills pages early in its
//! transaction finds the log not yet copied, and the log grows on until the writers' own checkpoint: 72–78 MB in
//! `bench/imap.sh` with SQLite's default spill and a 64 MiB backstop.)
//!
//! The writers' connections keep an automatic checkpoint as a backstop, at [`BACKSTOP_PAGES`]: a write this module
//! does not hear of, or a checkpointer that failed or fell behind, still cannot grow the log without bound.

use sqlx::any::AnyConnectOptions;
use sqlx::Connection as _;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// The writers' own automatic checkpoint: at this many pages in the log (16 MiB of 4 KiB pages), the committing
/// writer copies the log into the database itself, as SQLite does by default at 1,000. Reached only when the
/// checkpointer falls behind, or a reader keeps the log from starting over.
pub(super) const BACKSTOP_PAGES: u32 = 4_096;

/// Dirty pages a writer keeps in memory before it spills them to the log in the middle of a transaction (16 MiB:
/// twice the largest batch the default memory budget lets through, ~7 MB). Only a larger transaction (a batch under
/// a much larger `memory_mb`, an import of a very large register) spills, as SQLite does by default past its 2 MiB
/// cache.
pub(super) const SPILL_PAGES: u32 = 4_096;

/// At most one checkpoint in this time: a burst of small commits (the notifier's, a mail each, a millisecond apart)
/// shares one. Shorter than a batch's commit (tens of milliseconds), so each batch is copied before the next commits.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The background checkpointer: told of every commit, stopped by [`Checkpointer::close`].
#[derive(Debug)]
pub(super) struct Checkpointer {
    hint: mpsc::Sender<()>,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the checkpointer's own connection and starts it. A connection that cannot be opened leaves SQLite's
    /// own checkpoints to the writers: `None`.
    pub(super) async fn start(options: &AnyConnectOptions) -> Option<Checkpointer> {
        let mut conn = match open(options).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no background checkpointer: the writers checkpoint the database themselves");
                return None;
            }
        };
        let (hint, mut asked) = mpsc::channel::<()>(1);
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = stopped.notified() => break,
                    message = asked.recv() => if message.is_none() { break },
                }
                let began = tokio::time::Instant::now();
                // PASSIVE copies what no reader still needs and returns; the next commit asks again for the rest.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "background checkpoint failed; the next commit asks again");
                }
                // The commits of a burst share one checkpoint (each syncs the log and the database once).
                tokio::select! {
                    biased;
                    () = stopped.notified() => break,
                    () = tokio::time::sleep_until(began + CHECKPOINT_INTERVAL) => {}
                }
            }
            let _ = conn.close().await;
        });
        Some(Checkpointer {
            hint,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// A writer committed: asks for a checkpoint. One asked for and not yet begun covers this commit too.
    pub(super) fn committed(&self) {
        let _ = self.hint.try_send(());
    }

    /// Stops the checkpointer and closes its connection, so that the store's last connection to close folds the log
    /// into the database and removes it (`Store::close`).
    pub(super) async fn close(&self) {
        self.stop.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The checkpointer's connection. A checkpoint's own syncs are the checkpointing connection's to make: the log
/// before it is copied, the database after.
async fn open(options: &AnyConnectOptions) -> Result<sqlx::AnyConnection, sqlx::Error> {
    let mut conn = sqlx::AnyConnection::connect_with(options).await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use sqlx::Executor as _;

    /// A commit far below the writers' backstop reaches the database file without another write: the background
    /// checkpointer copied it there. (Left to the writers, a 2 MiB commit would stay in the log until 16 MiB.)
    #[tokio::test]
    async fn a_commit_is_copied_into_the_database_in_the_background() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = super::super::test_store(dir.path()).await;
        let db = dir.path().join("store.db");
        let before = std::fs::metadata(&db).expect("the database file").len();
        let mut tx = store.begin().await.expect("a transaction");
        tx.execute("CREATE TABLE checkpoint_probe (content BLOB NOT NULL)")
            .await
            .expect("a table");
        // 32 rows of 64 KiB (SQLite stores them as they are).
        for i in 0..32u8 {
            let bytes = vec![i; 64 * 1024];
            sqlx::query("INSERT INTO checkpoint_probe (content) VALUES ($1)")
                .bind(bytes)
                .execute(&mut **tx)
                .await
                .expect("a row");
        }
        tx.commit().await.expect("the commit");
        let grown = before + 2 * 1024 * 1024;
        // Bounded: 500 looks of 10 ms.
        let mut len = before;
        for _ in 0..500 {
            len = std::fs::metadata(&db).expect("the database file").len();
            if len >= grown {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            len >= grown,
            "the database file is {len} bytes, {before} before a commit of 2 MiB: nothing checkpointed it"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM checkpoint_probe")
            .fetch_one(&mut *store.acquire().await.expect("a connection"))
            .await
            .expect("the count");
        assert_eq!(rows, 32);
    }
}
