//! The directory's generation and the audit entries of context reloads.
//!
//! `directory_generation` is one row bumped in the transaction of every directory write (`save_directory`), so a
//! running daemon learns with one cheap read whether the directory it holds in memory is still the stored one.

use super::{append_log, LogEntry};
use anyhow::Context as _;
use sqlx::AnyConnection;

/// The audit-log event of a rule context (directory, production calendars, demand catalogue) put in force by a
/// running daemon.
pub const CONTEXT_LOADED: &str = "context_loaded";

/// The generation of the stored directory: it grows with every directory write.
pub async fn directory_generation(conn: &mut AnyConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT generation FROM directory_generation WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .context("read the directory generation")
}

/// Bumps the directory generation in the open transaction (which must be the one writing the directory) and
/// returns the new one.
pub async fn bump_directory_generation(conn: &mut AnyConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "UPDATE directory_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation",
    )
    .fetch_one(&mut *conn)
    .await
    .context("bump the directory generation")
}

/// Appends a [`CONTEXT_LOADED`] entry with `payload`, unless the newest such entry holds the same payload (a
/// second instance, or a restart, putting the same context in force); returns the entry's sequence number.
pub async fn record_context_loaded(
    conn: &mut AnyConnection,
    payload: &serde_json::Value,
    at: &str,
) -> anyhow::Result<Option<i64>> {
    let last: Option<String> = sqlx::query_scalar(
        "SELECT payload FROM audit_log WHERE event = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(CONTEXT_LOADED)
    .fetch_optional(&mut *conn)
    .await
    .context("read the last context entry")?;
    if let Some(text) = last {
        let last: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if &last == payload {
            return Ok(None);
        }
    }
    let seq = append_log(
        conn,
        &LogEntry {
            at,
            event: CONTEXT_LOADED,
            message: None,
            sha256: None,
            payload,
        },
    )
    .await?;
    Ok(Some(seq))
}
