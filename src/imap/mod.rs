//! The IMAP source: a configured mailbox on a real server, read the way the local sources are read.
//!
//! The contract is the one of [`crate::source`]: nothing is acknowledged before its commit. For IMAP,
//! acknowledging means moving the mail out of the watched folder (to the processed or the quarantine folder), or,
//! with `acknowledge = "flag"`, setting the keyword `$Taxinbox` (`$TaxinboxQuarantine`) on it where it is;
//! the checkpoint (UIDVALIDITY + last committed UID, [`crate::store::ImapCheckpoint`]) advances in the same
//! transaction as the mail it covers. A crash between commit and move leaves the mail in the folder below the
//! checkpoint; the next pass finds it by its source reference and only moves it, so nothing is created twice.
//!
//! - [`connect`]: TCP, TLS / STARTTLS / plain (only when written out), LOGIN; the password is never logged.
//! - `server`: what the server is — capabilities (any case), hierarchy separator — and the folder names built
//!   from it (`INBOX.Processed` on a `.` server; a configured `a/b` translated or refused).
//! - `poll`: one pass over one mailbox ([`poll_mailbox_once`]), the step the daemon loops over; a failing
//!   acknowledgement never blocks new mail; crash repair with or without UIDPLUS.
//! - `supervise`: the long-running task per mailbox: IDLE left at the poll interval (or polling), lease renewed
//!   beside, reconnect with back-off, an alarm when acknowledging or fetching keeps failing, shutdown.
//! - `check`: `taxinbox mailboxes check` — the server's capabilities, the folders and what the next run would
//!   take, read without changing anything (EXAMINE, SEARCH, LIST).
//! - `lease`: one instance per mailbox when several share a database; taken before a pass, renewed in every
//!   batch's transaction, released on shutdown, taken over when its holder dies.
//!
//! Deliberately not here: parsing, rules, SQL (those are `mail`, `rules`, `store`).

mod check;
mod connect;
mod lease;
mod poll;
mod server;
mod supervise;

pub use check::{check, Check, FolderState, Keywords};
pub use connect::{connect, Session};
pub use lease::{Lease, LEASE_TTL};
pub use poll::{
    keywords_allowed, poll_mailbox_once, poll_mailbox_once_reporting, source_ref, Committed,
    MailboxSession, PollContext, PollOutcome, KEYWORD_PROCESSED, KEYWORD_QUARANTINE,
};
pub use server::{Folders, ServerInfo};
pub use supervise::{backoff_delay, run_mailbox, Batching, MailboxEnd};

use std::time::Duration;

/// How long one network step (connect, a command, one batch fetch) may take before the connection counts as
/// lost: long enough for a slow server and a large mail, short enough that a dead peer is noticed.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);

/// Why working a mailbox failed; [`Error::is_retryable`] tells the supervisor whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the login. Retrying with the same password cannot help and may lock the account.
    #[error("mailbox {mailbox}: login as {user} refused by {host}: {reason}")]
    Auth {
        mailbox: String,
        user: String,
        host: String,
        reason: String,
    },
    /// The processed or quarantine folder does not exist and the server refused to create it (found at the start of
    /// a mailbox, before anything is fetched).
    #[error("mailbox {mailbox}: folder {folder:?} does not exist and the server refused to create it: {reason}")]
    FolderUnavailable {
        mailbox: String,
        folder: String,
        reason: String,
    },
    /// The watched folder does not exist or cannot be selected.
    #[error("mailbox {mailbox}: cannot select folder {folder:?}: {reason}")]
    NoFolder {
        mailbox: String,
        folder: String,
        reason: String,
    },
    /// A configuration problem found while connecting: unreadable password or CA file, bad host name, a
    /// certificate the server presents that does not verify.
    #[error("mailbox {mailbox}: {reason}")]
    Config { mailbox: String, reason: String },
    /// The connection failed, timed out or was lost.
    #[error("mailbox {mailbox}: network: {reason}")]
    Network { mailbox: String, reason: String },
    /// The server answered a command with an error or something unparseable.
    #[error("mailbox {mailbox}: server: {reason}")]
    Server { mailbox: String, reason: String },
    /// Another instance took the mailbox's lease over during a pass; the batch in hand was rolled back.
    #[error("mailbox {mailbox}: another instance holds the lease now")]
    LeaseLost { mailbox: String },
    /// The store failed (database unreachable, a commit that did not go through).
    #[error("mailbox {mailbox}: store: {source:#}")]
    Store {
        mailbox: String,
        #[source]
        source: anyhow::Error,
    },
}

impl Error {
    /// Whether trying the same again later can succeed. `Auth`, `NoFolder`, `FolderUnavailable` and `Config` need
    /// a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Auth { .. }
            | Error::NoFolder { .. }
            | Error::FolderUnavailable { .. }
            | Error::Config { .. } => false,
            Error::Network { .. }
            | Error::Server { .. }
            | Error::Store { .. }
            | Error::LeaseLost { .. } => true,
        }
    }

    /// Maps a protocol error of a command (not LOGIN, not SELECT: those have their own kinds).
    pub(crate) fn from_imap(mailbox: &str, what: &str, error: async_imap::error::Error) -> Error {
        use async_imap::error::Error as E;
        let mailbox = mailbox.to_owned();
        match error {
            E::Io(e) => Error::Network {
                mailbox,
                reason: format!("{what}: {e}"),
            },
            E::ConnectionLost => Error::Network {
                mailbox,
                reason: format!("{what}: connection lost"),
            },
            other => Error::Server {
                mailbox,
                reason: format!("{what}: {other}"),
            },
        }
    }

    pub(crate) fn timeout(mailbox: &str, what: &str) -> Error {
        Error::Network {
            mailbox: mailbox.to_owned(),
            reason: format!("{what}: no answer within {} s", NETWORK_TIMEOUT.as_secs()),
        }
    }

    pub(crate) fn store(mailbox: &str, source: anyhow::Error) -> Error {
        Error::Store {
            mailbox: mailbox.to_owned(),
            source,
        }
    }
}

/// Runs one network step under [`NETWORK_TIMEOUT`], mapping both failure kinds.
pub(crate) async fn timed<T>(
    mailbox: &str,
    what: &str,
    step: impl std::future::Future<Output = async_imap::error::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(NETWORK_TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::from_imap(mailbox, what, e)),
        Err(_) => Err(Error::timeout(mailbox, what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let auth = Error::Auth {
            mailbox: "m".into(),
            user: "u".into(),
            host: "h".into(),
            reason: "no".into(),
        };
        assert!(!auth.is_retryable());
        let network = Error::from_imap("m", "fetch", async_imap::error::Error::ConnectionLost);
        assert!(network.is_retryable());
        let server = Error::from_imap("m", "fetch", async_imap::error::Error::Bad("x".into()));
        assert!(matches!(server, Error::Server { .. }) && server.is_retryable());
    }
}
