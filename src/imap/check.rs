//! `taxinbox mailboxes check`: what a mailbox would do on this server, asked without changing anything there.
//!
//! Only commands that change nothing on the server are sent: LOGIN, CAPABILITY, LIST, EXAMINE (the read-only
//! SELECT: no `\Recent` is cleared, no flag set), UID SEARCH, MYRIGHTS where the server has ACL, LOGOUT. No folder
//! is created, nothing fetched. The store is only read (the checkpoint and which mail is committed).
//!
//! Whether keywords can be kept (`acknowledge = "flag"`) is known for sure only from PERMANENTFLAGS on a read-write
//! SELECT. On EXAMINE most servers answer `PERMANENTFLAGS ()`, as the folder is open read-only; then the account's
//! rights (MYRIGHTS: `w` is the right to set keywords) are the honest read-only answer where the server has ACL,
//! and otherwise the check says it does not know. `run` reads PERMANENTFLAGS on its SELECT and refuses to start
//! flagging without `\*`.

use super::poll::{count_split, flags_text, keywords_allowed, list_names, search_takeable};
use super::{timed, Error, MailboxSession, NETWORK_TIMEOUT};
use crate::settings::{Acknowledge, MailboxSettings};
use crate::store::Store;

/// Whether the server keeps the `$Taxinbox` keywords, as far as a read-only look can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keywords {
    /// PERMANENTFLAGS holds `\*` (or both keywords), even on EXAMINE.
    Yes,
    /// Known not to: the account lacks the right to set keywords (MYRIGHTS without `w`). The text says why.
    No(String),
    /// Not told on a read-only open; the text says what is known.
    Unknown(String),
}

/// A folder the mailbox acknowledges into, and whether the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub name: String,
    pub exists: bool,
}

/// What `taxinbox mailboxes check` found for one mailbox.
#[derive(Debug, Clone)]
pub struct Check {
    pub mailbox: String,
    pub host: String,
    pub idle: bool,
    pub can_move: bool,
    pub uidplus: bool,
    pub keywords: Keywords,
    /// The watched folder.
    pub folder: String,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    /// Mails in the folder.
    pub messages: u32,
    pub processed: FolderState,
    pub quarantine: FolderState,
    pub acknowledge: Acknowledge,
    pub since: Option<chrono::NaiveDate>,
    /// Mails received on or after `since` (all of them without it).
    pub in_range: usize,
    /// Of `in_range`: mails already flagged `$Taxinbox`/`$TaxinboxQuarantine` (under `acknowledge = "flag"`).
    pub flagged: usize,
    /// Mails the next run would fetch and commit.
    pub to_take: usize,
    /// Mails committed by an earlier run and still to acknowledge (moved or flagged without processing again).
    pub to_acknowledge: usize,
}

/// Connects to `mailbox`, looks, logs out; changes nothing on the server and nothing in `store`.
pub async fn check(mailbox: &MailboxSettings, store: &Store) -> Result<Check, Error> {
    let mut session = MailboxSession::open(mailbox).await?;
    let result = session.look(store).await;
    session.logout().await;
    result
}

impl MailboxSession {
    async fn look(&mut self, store: &Store) -> Result<Check, Error> {
        let name = self.mailbox.name.clone();
        let folder = self.mailbox.folder.clone();
        let processed = self.folders.processed.clone();
        let quarantine = self.folders.quarantine.clone();
        let processed = FolderState {
            exists: self.listed(&processed).await?,
            name: processed,
        };
        let quarantine = FolderState {
            exists: self.listed(&quarantine).await?,
            name: quarantine,
        };
        let examined =
            match tokio::time::timeout(NETWORK_TIMEOUT, self.session.examine(&folder)).await {
                Ok(Ok(examined)) => examined,
                Ok(Err(async_imap::error::Error::No(reason))) => {
                    return Err(Error::NoFolder {
                        mailbox: name,
                        folder,
                        reason: reason.trim().to_owned(),
                    })
                }
                Ok(Err(e)) => return Err(Error::from_imap(&name, "EXAMINE", e)),
                Err(_) => return Err(Error::timeout(&name, "EXAMINE")),
            };
        let keywords = if keywords_allowed(&examined.permanent_flags) {
            Keywords::Yes
        } else {
            let told = format!(
                "EXAMINE is read-only and the server answered PERMANENTFLAGS {}",
                flags_text(&examined.permanent_flags)
            );
            match self.my_rights(&folder).await? {
                Some(rights) if !rights.contains('w') => Keywords::No(format!(
                    "this account's rights on {folder:?} are {rights:?}, without w (set keywords)"
                )),
                Some(rights) => Keywords::Unknown(format!(
                    "{told}; the account may set keywords (rights {rights:?}), whether the server keeps new ones \
                     shows at run's SELECT"
                )),
                None => Keywords::Unknown(format!(
                    "{told}; it is known only on a read-write SELECT, which run makes and where it refuses \
                     acknowledge = \"flag\" without \\*"
                )),
            }
        };
        let (in_range, takeable) = if examined.exists == 0 {
            (0, Vec::new())
        } else {
            let in_range = match self.mailbox.since {
                None => usize::try_from(examined.exists).unwrap_or(usize::MAX),
                Some(since) => {
                    let criteria = super::poll::search_criteria(Some(since), Acknowledge::Move);
                    timed(&name, "UID SEARCH", self.session.uid_search(&criteria))
                        .await?
                        .len()
                }
            };
            (
                in_range,
                search_takeable(&mut self.session, &self.mailbox).await?,
            )
        };
        let flagged = in_range.saturating_sub(takeable.len());
        let (to_take, to_acknowledge) = match examined.uid_validity {
            Some(uidvalidity) => count_split(store, &name, uidvalidity, takeable).await?,
            // Without UIDVALIDITY nothing is known of what was committed: every mail counts as new.
            None => (takeable.len(), 0),
        };
        Ok(Check {
            mailbox: name,
            host: format!("{}:{}", self.mailbox.host, self.mailbox.port),
            idle: self.can_idle(),
            can_move: self.caps.can_move,
            uidplus: self.caps.uidplus,
            keywords,
            folder,
            uidvalidity: examined.uid_validity,
            uidnext: examined.uid_next,
            messages: examined.exists,
            processed,
            quarantine,
            acknowledge: self.mailbox.acknowledge,
            since: self.mailbox.since,
            in_range,
            flagged,
            to_take,
            to_acknowledge,
        })
    }

    /// Whether `LIST "" "<folder>"` names the folder.
    async fn listed(&mut self, folder: &str) -> Result<bool, Error> {
        let names = list_names(&mut self.session, &self.mailbox.name, folder).await?;
        Ok(names.iter().any(|n| n.name() == folder))
    }

    /// `MYRIGHTS <folder>` (RFC 4314) on a server with ACL: the rights as letters; `None` without ACL or when the
    /// server refuses the command.
    async fn my_rights(&mut self, folder: &str) -> Result<Option<String>, Error> {
        use async_imap::imap_proto::{Response, Status};
        if !self.caps.acl {
            return Ok(None);
        }
        let name = self.mailbox.name.clone();
        let quoted = format!("\"{}\"", folder.replace('\\', "\\\\").replace('"', "\\\""));
        let tag = timed(
            &name,
            "MYRIGHTS",
            self.session.run_command(format!("MYRIGHTS {quoted}")),
        )
        .await?;
        let mut rights = None;
        // Bounded: the server answers one MYRIGHTS line and the tagged status; anything else it sends meanwhile is
        // an unsolicited update, passed over.
        for _ in 0..1000 {
            let response =
                match tokio::time::timeout(NETWORK_TIMEOUT, self.session.read_response()).await {
                    Ok(Ok(Some(response))) => response,
                    Ok(Ok(None)) => {
                        return Err(Error::Network {
                            mailbox: name,
                            reason: "MYRIGHTS: connection closed".to_owned(),
                        })
                    }
                    Ok(Err(e)) => {
                        return Err(Error::Network {
                            mailbox: name,
                            reason: format!("MYRIGHTS: {e}"),
                        })
                    }
                    Err(_) => return Err(Error::timeout(&name, "MYRIGHTS")),
                };
            match response.parsed() {
                Response::MyRights(my) => {
                    rights = Some(my.rights.iter().map(|r| char::from(*r)).collect());
                }
                Response::Done {
                    tag: done, status, ..
                } if *done == tag => {
                    return Ok(if *status == Status::Ok { rights } else { None });
                }
                _ => {}
            }
        }
        Err(Error::Server {
            mailbox: name,
            reason: "MYRIGHTS: no end to the answer".to_owned(),
        })
    }
}
