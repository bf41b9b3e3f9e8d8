//! The processed-mail log: an append-only hash chain.
//!
//! Each entry's hash covers the previous entry's hash and every stored column of the entry, so editing, deleting or
//! reordering entries breaks the chain at the first bad one. `audit_head` holds the newest link; appending starts
//! with an `UPDATE … RETURNING` of that row, which takes the write lock on SQLite and a row lock on PostgreSQL, so
//! concurrent writers append one after another.
//!
//! Keyed: with a [`LogKey`] in force (`[audit] key_file`, read by `app` and handed in once per process), each entry
//! also stores `mac`, HMAC-SHA-256 of its hash under the key. The hash covers every entry before it, so someone who
//! can write the database but does not hold the key can delete or edit entries and recompute every plain hash, but
//! cannot make the MACs agree. Entries from before the key (its file names the last of them) have no MAC and
//! verify with the plain chain, which is also all a check without the key can do.
//!
//! Also here: the writes that exist for the log's sake — notification entries, the ruleset record, the purge of
//! raw mail after its retention period (the content goes, its hash and size stay, and the purge is itself an
//! entry naming every hash it emptied, so `audit verify` tells purged mail from removed mail).

use super::status::NotificationStatus;
use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;
use std::sync::{Arc, RwLock};

/// The secret that keys the log: 32 random bytes, kept in a file outside the database. Never printed: its `Debug`
/// shows only where the keyed entries start.
#[derive(Clone)]
pub struct LogKey {
    secret: [u8; 32],
    /// The last entry written before the key existed: every entry after it must carry a MAC.
    pub keyed_after: i64,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey")
            .field("secret", &"[redacted]")
            .field("keyed_after", &self.keyed_after)
            .finish()
    }
}

impl LogKey {
    pub fn new(secret: [u8; 32], keyed_after: i64) -> LogKey {
        LogKey {
            secret,
            keyed_after,
        }
    }

    /// HMAC-SHA-256 of an entry's hash (hex), hex-encoded.
    fn mac(&self, hash: &str) -> String {
        // A key of any length is accepted by HMAC; 32 bytes cannot fail.
        let mut m = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        m.update(b"taxinbox audit v1\0");
        m.update(hash.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Whether `mac` is this key's MAC of `hash` (compared in constant time).
    fn verifies(&self, hash: &str, mac: &str) -> bool {
        let Ok(given) = hex::decode(mac) else {
            return false;
        };
        let mut m = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        m.update(b"taxinbox audit v1\0");
        m.update(hash.as_bytes());
        m.verify_slice(&given).is_ok()
    }
}

/// The key this process appends with. One instance runs per process, so it is set once, where the instance is
/// opened (`app::Instance::open`); unset (tests that build their store directly, or no key file) appends unkeyed.
static APPEND_KEY: RwLock<Option<Arc<LogKey>>> = RwLock::new(None);

/// Puts `key` in force for every entry this process appends from now on.
pub fn use_log_key(key: Option<LogKey>) {
    if let Ok(mut k) = APPEND_KEY.write() {
        *k = key.map(Arc::new);
    }
}

fn append_key() -> Option<Arc<LogKey>> {
    APPEND_KEY.read().ok().and_then(|k| k.clone())
}

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
    /// Every entry links to the one before and hashes to what is stored (and, checked with the key, every entry
    /// after `keyed_after` carries its MAC).
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
    let mut batch = LogBatch::default();
    let seq = batch.append(conn, entry).await?;
    batch.flush(conn).await?;
    Ok(seq)
}

/// Entries appended in one transaction and written together: each is chained to the one before it as it is
/// appended (its sequence number, previous hash, hash and MAC computed at once, so the caller learns its `seq`), and
/// [`LogBatch::flush`] writes them in multi-row `INSERT`s and advances `audit_head` once.
///
/// The first append locks the head (`UPDATE … RETURNING`: SQLite's write lock, PostgreSQL's row lock), which is
/// held until the transaction ends, so no other writer appends in between; the flush must run in the same
/// transaction. Nothing else may append through the same transaction before the flush: it would reuse a sequence
/// number, which the log's primary key refuses.
#[derive(Default)]
pub struct LogBatch {
    /// The newest link: the head as locked, then each appended entry.
    head: Option<(i64, String)>,
    rows: Vec<LogRow>,
}

/// One entry chained and waiting to be written.
struct LogRow {
    seq: i64,
    at: String,
    event: String,
    message: Option<i64>,
    sha256: Option<String>,
    payload: String,
    prev_hash: String,
    hash: String,
    mac: Option<String>,
}

/// Most log entries in one `INSERT` (9 bound values each).
const LOG_ROWS_PER_INSERT: usize = 200;

impl LogBatch {
    /// Chains `entry` after the newest link and keeps it for the flush; returns its sequence number.
    pub async fn append(
        &mut self,
        conn: &mut AnyConnection,
        entry: &LogEntry<'_>,
    ) -> anyhow::Result<i64> {
        let (prev_seq, prev_hash) = match self.head.take() {
            Some(head) => head,
            None => {
                sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                    .fetch_one(&mut *conn)
                    .await
                    .context("lock the head of the processed-mail log")?
            }
        };
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
        let mac = append_key().map(|k| k.mac(&hash));
        self.head = Some((seq, hash.clone()));
        self.rows.push(LogRow {
            seq,
            at: entry.at.to_owned(),
            event: entry.event.to_owned(),
            message: entry.message,
            sha256: entry.sha256.map(str::to_owned),
            payload,
            prev_hash,
            hash,
            mac,
        });
        Ok(seq)
    }

    /// Writes the entries appended since the last flush and moves the head to the newest.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        let rows = std::mem::take(&mut self.rows);
        for chunk in rows.chunks(LOG_ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO audit_log (seq, at, event, message, sha256, payload, prev_hash, hash, mac) VALUES {}",
                super::messages::values_placeholders(conn, chunk.len(), 9)
            );
            let mut query = super::rows_insert(conn, sql);
            for r in chunk {
                query = query
                    .bind(r.seq)
                    .bind(r.at.as_str())
                    .bind(r.event.as_str())
                    .bind(r.message)
                    .bind(r.sha256.as_deref())
                    .bind(r.payload.as_str())
                    .bind(r.prev_hash.as_str())
                    .bind(r.hash.as_str())
                    .bind(r.mac.as_deref());
            }
            query
                .execute(&mut *conn)
                .await
                .context("append to the processed-mail log")?;
        }
        if let (Some(_), Some((seq, hash))) = (rows.last(), &self.head) {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(*seq)
                .bind(hash.as_str())
                .execute(&mut *conn)
                .await
                .context("advance the head of the processed-mail log")?;
        }
        Ok(())
    }
}

/// Walks the plain chain from the first entry and names the first one that does not hold (no key: what anyone
/// with read access can check).
pub async fn verify_log(conn: &mut AnyConnection) -> anyhow::Result<VerifyOutcome> {
    verify_log_keyed(conn, None).await
}

/// Walks the chain from the first entry and names the first one that does not hold. With `key`, every entry after
/// the key's `keyed_after` must also carry the key's MAC of its hash; without it only the plain chain is checked.
pub async fn verify_log_keyed(
    conn: &mut AnyConnection,
    key: Option<&LogKey>,
) -> anyhow::Result<VerifyOutcome> {
    let rows: Vec<LogLink> = sqlx::query_as(
        "SELECT seq, at, event, message, sha256, payload, prev_hash, hash, mac FROM audit_log ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read the processed-mail log")?;
    let mut prev_hash = "genesis".to_owned();
    let mut expected_seq = 1;
    for LogLink {
        entry:
            super::StoredEntry {
                seq,
                at,
                event,
                message,
                sha256: sha,
                payload,
                hash: stored_hash,
            },
        prev_hash: stored_prev,
        mac,
    } in rows
    {
        if seq != expected_seq {
            // The first bad entry is the one that is not there.
            return Ok(VerifyOutcome::Broken {
                seq: expected_seq,
                reason: format!(
                    "entry {expected_seq} is missing (the log goes from entry {} to entry {seq})",
                    expected_seq - 1
                ),
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
        if let Some(key) = key.filter(|k| seq > k.keyed_after) {
            let keyed = mac
                .as_deref()
                .is_some_and(|m| key.verifies(&stored_hash, m));
            if !keyed {
                return Ok(VerifyOutcome::Broken {
                    seq,
                    reason: match mac {
                        None => "it carries no MAC, but the key was in force when it was written (the chain was \
                                 rewritten without the key)"
                            .into(),
                        Some(_) => "its MAC does not match the key (the chain was rewritten without the key)".into(),
                    },
                });
            }
        }
        prev_hash = stored_hash;
        expected_seq += 1;
    }
    let (head_seq, head_hash) = super::log_head(conn).await?;
    if let Some(key) = key.filter(|k| k.keyed_after > expected_seq - 1) {
        return Ok(VerifyOutcome::Broken {
            seq: expected_seq,
            reason: format!(
                "the log ends at entry {} but the key file says entry {} was written before the key",
                expected_seq - 1,
                key.keyed_after
            ),
        });
    }
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

/// One link of the chain as stored: the entry and the hash it links to.
#[derive(sqlx::FromRow)]
struct LogLink {
    #[sqlx(flatten)]
    entry: super::StoredEntry,
    prev_hash: String,
    mac: Option<String>,
}

/// The event of a purge entry; its payload lists the hashes whose content was emptied.
pub const RAW_MAIL_PURGED: &str = "raw_mail_purged";

/// Hashes named per purge entry: a first purge after years of mail stays a series of readable entries.
const PURGE_BATCH: i64 = 500;

/// What a notification's log entry tells of it.
#[derive(sqlx::FromRow)]
struct LoggedNotification {
    kind: String,
    task: Option<i64>,
    message: Option<i64>,
    recipient: String,
    #[sqlx(try_from = "String")]
    status: NotificationStatus,
    attempts: i64,
}

/// Logs the delivery (or failure) of one outbox notification; called in the transaction that marks the row, so
/// the outbox and the log never disagree.
pub async fn log_notification(
    conn: &mut AnyConnection,
    id: i64,
    at: &str,
    error: Option<&str>,
) -> anyhow::Result<i64> {
    let n: LoggedNotification = sqlx::query_as(
        "SELECT kind, task, message, recipient, status, attempts FROM outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("read notification {id} for the processed-mail log"))?;
    let message = n.message;
    let payload = serde_json::json!({
        "notification": id,
        "kind": n.kind,
        "task": n.task,
        "recipient": n.recipient,
        "status": n.status,
        "attempts": n.attempts,
        "error": error,
    });
    let event = if error.is_some() {
        "notification_failed"
    } else {
        "notification_sent"
    };
    append_log(
        conn,
        &LogEntry {
            at,
            event,
            message,
            sha256: None,
            payload: &payload,
        },
    )
    .await
}

/// Records the ruleset a daemon runs with: always in `rulesets`, and as a `ruleset_loaded` entry when it differs
/// from the ruleset the log last named (a restart with the same rules is not news). Returns the entry's number.
pub async fn record_ruleset(
    conn: &mut AnyConnection,
    version: &str,
    files: &[&str],
    at: &str,
) -> anyhow::Result<Option<i64>> {
    let files_json = serde_json::to_string(files)?;
    sqlx::query(
        "INSERT INTO rulesets (version, loaded_at, files) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
    )
    .bind(version)
    .bind(at)
    .bind(&files_json)
    .execute(&mut *conn)
    .await
    .context("record the ruleset")?;
    let last: Option<String> = sqlx::query_scalar(
        "SELECT payload FROM audit_log WHERE event = 'ruleset_loaded' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .context("read the last ruleset entry")?;
    if let Some(payload) = last {
        let last: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        if last.get("version").and_then(|v| v.as_str()) == Some(version) {
            return Ok(None);
        }
    }
    let payload = serde_json::json!({"version": version, "files": files});
    let seq = append_log(
        conn,
        &LogEntry {
            at,
            event: "ruleset_loaded",
            message: None,
            sha256: None,
            payload: &payload,
        },
    )
    .await?;
    Ok(Some(seq))
}

/// What one purge step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Raw mails whose content was emptied.
    pub purged: usize,
    /// Their size in bytes.
    pub bytes: i64,
    /// The entry that names them, when there were any.
    pub entry: Option<i64>,
}

/// Empties the content of up to `PURGE_BATCH` raw mails stored before `stored_before` (an RFC 3339 instant) and
/// logs which. Mail still in quarantine keeps its bytes: nobody has dealt with it yet, and reprocessing needs them.
/// With `dry_run` nothing is written and the outcome says what would go. Call repeatedly until nothing is purged.
pub async fn purge_raw_mail(
    conn: &mut AnyConnection,
    stored_before: &str,
    retention_days: u32,
    at: &str,
    dry_run: bool,
) -> anyhow::Result<PurgeOutcome> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.sha256, r.size FROM raw_mail r WHERE r.content IS NOT NULL AND r.stored_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sha256 = r.sha256 AND m.status = 'quarantined') \
         ORDER BY r.stored_at, r.sha256 LIMIT $2",
    )
    .bind(stored_before)
    .bind(if dry_run { i64::MAX } else { PURGE_BATCH })
    .fetch_all(&mut *conn)
    .await
    .context("find raw mail past its retention period")?;
    let mut outcome = PurgeOutcome::default();
    let mut hashes = Vec::with_capacity(rows.len());
    for (sha, size) in rows {
        outcome.bytes += size;
        outcome.purged += 1;
        if !dry_run {
            sqlx::query("DELETE FROM raw_mail_parts WHERE sha256 = $1")
                .bind(&sha)
                .execute(&mut *conn)
                .await
                .context("purge the parts of a large raw mail")?;
            sqlx::query("UPDATE raw_mail SET content = NULL, parts = 0 WHERE sha256 = $1")
                .bind(&sha)
                .execute(&mut *conn)
                .await
                .context("purge raw mail")?;
        }
        hashes.push(sha);
    }
    if dry_run || hashes.is_empty() {
        return Ok(outcome);
    }
    let payload = serde_json::json!({
        "retention_days": retention_days,
        "stored_before": stored_before,
        "count": outcome.purged,
        "bytes": outcome.bytes,
        "sha256": hashes,
    });
    outcome.entry = Some(
        append_log(
            conn,
            &LogEntry {
                at,
                event: RAW_MAIL_PURGED,
                message: None,
                sha256: None,
                payload: &payload,
            },
        )
        .await?,
    );
    Ok(outcome)
}
