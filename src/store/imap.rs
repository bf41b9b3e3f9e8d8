//! The IMAP checkpoint: per mailbox, the UIDVALIDITY and the highest UID whose mail is committed.
//!
//! The checkpoint is written in the same transaction as the mail it covers, so it can never run ahead of the
//! store: after a crash, everything above it is fetched again and everything at or below it is in the store.

use anyhow::Context as _;
use sqlx::AnyConnection;

/// Where reading a mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapCheckpoint {
    /// The server's UIDVALIDITY when `last_uid` was recorded.
    pub uidvalidity: u32,
    /// The highest UID committed under that UIDVALIDITY (0: nothing yet).
    pub last_uid: u32,
}

/// The stored checkpoint of `mailbox`, if it was ever read.
pub async fn imap_checkpoint(
    conn: &mut AnyConnection,
    mailbox: &str,
) -> anyhow::Result<Option<ImapCheckpoint>> {
    // Mapped by hand: both engines store the u32 UIDs as BIGINT, range-checked here.
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT uidvalidity, last_uid FROM imap_state WHERE mailbox = $1")
            .bind(mailbox)
            .fetch_optional(&mut *conn)
            .await
            .context("read the IMAP checkpoint")?;
    let Some((uidvalidity, last_uid)) = row else {
        return Ok(None);
    };
    Ok(Some(ImapCheckpoint {
        uidvalidity: u32::try_from(uidvalidity)
            .with_context(|| format!("imap_state.uidvalidity {uidvalidity} out of range"))?,
        last_uid: u32::try_from(last_uid)
            .with_context(|| format!("imap_state.last_uid {last_uid} out of range"))?,
    }))
}

/// Records the checkpoint of `mailbox`, replacing the previous one. Call inside the transaction that committed
/// the mail up to `checkpoint.last_uid`.
pub async fn set_imap_checkpoint(
    conn: &mut AnyConnection,
    mailbox: &str,
    checkpoint: ImapCheckpoint,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO imap_state (mailbox, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, \
         updated_at = excluded.updated_at",
    )
    .bind(mailbox)
    .bind(i64::from(checkpoint.uidvalidity))
    .bind(i64::from(checkpoint.last_uid))
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("record the IMAP checkpoint")?;
    Ok(())
}
