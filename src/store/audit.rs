//! The processed-mail log: an append-only hash chain.
//!
//! Each entry's hash covers the previous entry's hash and every stored column of the entry, so editing, deleting or
//! reordering entries breaks the chain at the first bad one. `audit_head` holds the newest link; appending starts
//! with an `UPDATE … RETURNING` of that row, which takes the write lock on SQLite and a row lock on PostgreSQL, so
//! concurrent writers append one after another.

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use sqlx::{AnyConnection, Row as _};

/// One entry to append.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    pub at: &'a str,
    pub event: &'a str,
    pub message: Option<i64>,
    pub sha256: Option<&'a str>,
    pub payload: &'a serde_json::Value,
}

/// Result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every entry links to the one before and hashes to what is stored.
    Intact { entries: i64 },
    /// The first entry that does not; `reason` says what is wrong.
    Broken { seq: i64, reason: String },
}

fn link_hash(
    prev: &str,
    seq: i64,
    at: &str,
    event: &str,
    message: Option<i64>,
    sha: Option<&str>,
    payload: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        at,
        event,
        &message.map(|m| m.to_string()).unwrap_or_default(),
        sha.unwrap_or(""),
        payload,
    ] {
        h.update(part.as_bytes());
        // A separator that cannot occur in the fields keeps ("ab","c") and ("a","bc") apart.
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Appends one entry and returns its sequence number.
pub async fn append_log(conn: &mut AnyConnection, entry: &LogEntry<'_>) -> anyhow::Result<i64> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await
        .context("lock the head of the processed-mail log")?;
    let prev_seq: i64 = head.try_get("seq")?;
    let prev_hash: String = head.try_get("hash")?;
    let seq = prev_seq + 1;
    let payload = serde_json::to_string(entry.payload)?;
    let hash = link_hash(
        &prev_hash,
        seq,
        entry.at,
        entry.event,
        entry.message,
        entry.sha256,
        &payload,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, event, message, sha256, payload, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(entry.at)
    .bind(entry.event)
    .bind(entry.message)
    .bind(entry.sha256)
    .bind(&payload)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await
    .context("append to the processed-mail log")?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .context("advance the head of the processed-mail log")?;
    Ok(seq)
}

/// Walks the chain from the first entry and names the first one that does not hold.
pub async fn verify_log(conn: &mut AnyConnection) -> anyhow::Result<VerifyOutcome> {
    let rows = sqlx::query("SELECT seq, at, event, message, sha256, payload, prev_hash, hash FROM audit_log ORDER BY seq")
        .fetch_all(&mut *conn)
        .await
        .context("read the processed-mail log")?;
    let mut prev_hash = "genesis".to_owned();
    let mut expected_seq = 1;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let at: String = row.try_get("at")?;
        let event: String = row.try_get("event")?;
        let message: Option<i64> = row.try_get("message")?;
        let sha: Option<String> = row.try_get("sha256")?;
        let payload: String = row.try_get("payload")?;
        let stored_prev: String = row.try_get("prev_hash")?;
        let stored_hash: String = row.try_get("hash")?;
        if seq != expected_seq {
            return Ok(VerifyOutcome::Broken {
                seq,
                reason: format!("entry {expected_seq} is missing"),
            });
        }
        if stored_prev != prev_hash {
            return Ok(VerifyOutcome::Broken {
                seq,
                reason: "does not link to the entry before it".into(),
            });
        }
        let hash = link_hash(
            &prev_hash,
            seq,
            &at,
            &event,
            message,
            sha.as_deref(),
            &payload,
        );
        if hash != stored_hash {
            return Ok(VerifyOutcome::Broken {
                seq,
                reason: "its content does not match its hash".into(),
            });
        }
        prev_hash = stored_hash;
        expected_seq += 1;
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    if head_seq != expected_seq - 1 || head_hash != prev_hash {
        return Ok(VerifyOutcome::Broken {
            seq: expected_seq,
            reason: format!(
                "the log ends at entry {} but its head names entry {head_seq}",
                expected_seq - 1
            ),
        });
    }
    Ok(VerifyOutcome::Intact {
        entries: expected_seq - 1,
    })
}
