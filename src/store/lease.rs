//! Mailbox leases: which instance works which IMAP mailbox, so that several instances sharing one database never
//! work the same mailbox at once.
//!
//! A lease is taken and renewed by one atomic upsert that changes the row only when it is expired or already
//! the caller's (or held by an instance the caller proved dead); `rows_affected` tells whether the caller holds
//! it. Instants are milliseconds since the Unix epoch, compared as numbers on both engines.

use anyhow::Context as _;
use sqlx::AnyConnection;

/// Who holds the lease of a mailbox, and until when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailboxLease {
    pub holder: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// Takes or renews the lease of `mailbox` for `holder` until `expires_at`; `true` when `holder` now holds it.
///
/// Succeeds when nobody holds the lease, when it expired before `now`, when `holder` holds it already, or when
/// its holder is `dead_holder` (an instance the caller knows has died: taken over without waiting for expiry).
/// Inside a transaction the row stays locked until the commit (PostgreSQL), which is what makes a commit under
/// a renewed lease safe against a concurrent take-over.
pub async fn take_mailbox_lease(
    conn: &mut AnyConnection,
    mailbox: &str,
    holder: &str,
    now: i64,
    expires_at: i64,
    dead_holder: Option<&str>,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO mailbox_leases (mailbox, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (mailbox) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE mailbox_leases.expires_at < $4 OR mailbox_leases.holder = $2 OR mailbox_leases.holder = $5",
    )
    .bind(mailbox)
    .bind(holder)
    .bind(expires_at)
    .bind(now)
    // An empty string is never a holder: `holder = ''` matches nothing, with no NULL binding across engines.
    .bind(dead_holder.unwrap_or(""))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("take the lease of mailbox {mailbox}"))?;
    Ok(done.rows_affected() == 1)
}

/// The current lease of `mailbox`, if any row exists (it may have expired).
pub async fn mailbox_lease(
    conn: &mut AnyConnection,
    mailbox: &str,
) -> anyhow::Result<Option<MailboxLease>> {
    sqlx::query_as("SELECT holder, expires_at FROM mailbox_leases WHERE mailbox = $1")
        .bind(mailbox)
        .fetch_optional(&mut *conn)
        .await
        .with_context(|| format!("read the lease of mailbox {mailbox}"))
}

/// Gives the lease of `mailbox` up, if `holder` holds it; `true` when a lease was released.
pub async fn release_mailbox_lease(
    conn: &mut AnyConnection,
    mailbox: &str,
    holder: &str,
) -> anyhow::Result<bool> {
    let done = sqlx::query("DELETE FROM mailbox_leases WHERE mailbox = $1 AND holder = $2")
        .bind(mailbox)
        .bind(holder)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("release the lease of mailbox {mailbox}"))?;
    Ok(done.rows_affected() == 1)
}
