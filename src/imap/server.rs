//! What a server is, asked rather than assumed: its capabilities (compared without regard to case, as RFC 3501
//! says atoms are), its hierarchy separator, and from them the processed and quarantine folders' names.
//!
//! - The separator is the one `LIST "" ""` reports (`/` on Dovecot's usual set-up, `.` on Cyrus and Courier).
//! - The personal namespace shows in how INBOX is listed: where INBOX may have children (the usual case, and the
//!   one of a personal namespace `INBOX.`), the default folders are `INBOX<sep>Processed` and
//!   `INBOX<sep>Quarantine`; where INBOX is `\Noinferiors`, they are `Processed` and `Quarantine` at the top of
//!   the personal namespace. The NAMESPACE command itself is not sent: the IMAP library cannot parse its answer,
//!   and an answer it cannot parse breaks the connection.
//! - A configured name is written with `/` between levels; on a server with another separator each `/` becomes
//!   that separator (`INBOX/Processed` → `INBOX.Processed`). A name whose levels already hold the server's
//!   separator (`INBOX/Done.2025` on a `.` server) cannot be translated without changing its meaning and is
//!   refused with a message saying so; so is any level on a server without hierarchy.
//!
//! Deliberately not here: creating the folders (that is `poll`, which checks with LIST what CREATE says).

use std::collections::BTreeSet;

/// What the server said about itself on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The capability names, upper-cased.
    caps: BTreeSet<String>,
    /// The hierarchy separator; `None` on a flat server.
    pub separator: Option<char>,
    /// Whether INBOX is listed `\Noinferiors` (no folder may be made below it).
    pub inbox_no_inferiors: bool,
}

/// The folders a mailbox acknowledges into, in the server's own spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub processed: String,
    pub quarantine: String,
}

impl ServerInfo {
    pub fn new(
        caps: impl IntoIterator<Item = String>,
        separator: Option<char>,
        inbox_no_inferiors: bool,
    ) -> ServerInfo {
        ServerInfo {
            caps: caps.into_iter().map(|c| c.to_ascii_uppercase()).collect(),
            separator,
            inbox_no_inferiors,
        }
    }

    /// Whether the server offers `name`, whatever the case either side is written in.
    pub fn has(&self, name: &str) -> bool {
        self.caps.contains(&name.to_ascii_uppercase())
    }

    /// The capabilities as one line for the log.
    pub fn capabilities(&self) -> String {
        self.caps.iter().cloned().collect::<Vec<_>>().join(" ")
    }

    /// The separator for the log: the character, or `none` on a flat server.
    pub fn separator_label(&self) -> String {
        self.separator
            .map_or_else(|| "none".to_owned(), String::from)
    }

    /// The processed and quarantine folders: the written names translated, or the defaults for this server.
    pub fn folders(
        &self,
        processed: Option<&str>,
        quarantine: Option<&str>,
    ) -> Result<Folders, String> {
        Ok(Folders {
            processed: self.folder("processed_folder", processed, "Processed")?,
            quarantine: self.folder("quarantine_folder", quarantine, "Quarantine")?,
        })
    }

    fn folder(&self, key: &str, written: Option<&str>, leaf: &str) -> Result<String, String> {
        match written {
            Some(name) => translate(key, name, self.separator),
            None => Ok(match self.separator {
                Some(sep) if !self.inbox_no_inferiors => format!("INBOX{sep}{leaf}"),
                _ => leaf.to_owned(),
            }),
        }
    }
}

/// A configured folder name, written with `/` between levels, in the server's spelling.
fn translate(key: &str, written: &str, separator: Option<char>) -> Result<String, String> {
    match separator {
        Some('/') => Ok(written.to_owned()),
        _ if !written.contains('/') => Ok(written.to_owned()),
        Some(sep) => {
            if written.contains(sep) {
                return Err(format!(
                    "{key} {written:?}: the server separates levels with {sep:?}, and this name holds both '/' \
                     and {sep:?}, so it cannot be translated without changing its meaning; write it with {sep:?} \
                     only (for example {:?})",
                    written.replace('/', &sep.to_string())
                ));
            }
            Ok(written.replace('/', &sep.to_string()))
        }
        None => Err(format!(
            "{key} {written:?}: the server has no folder hierarchy (no separator), so a name with levels \
             cannot exist there; give a name without '/'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(sep: Option<char>, no_inferiors: bool) -> ServerInfo {
        ServerInfo::new(
            ["IMAP4rev1", "Move", "uidplus", "IDLE"].map(String::from),
            sep,
            no_inferiors,
        )
    }

    #[test]
    fn capability_names_are_compared_without_regard_to_case() {
        let s = server(Some('.'), false);
        assert!(s.has("MOVE") && s.has("move") && s.has("UIDPLUS") && s.has("Idle"));
        assert!(!s.has("CONDSTORE"));
    }

    #[test]
    fn default_folders_follow_the_servers_separator() {
        let dot = server(Some('.'), false)
            .folders(None, None)
            .expect("defaults");
        assert_eq!(
            (dot.processed.as_str(), dot.quarantine.as_str()),
            ("INBOX.Processed", "INBOX.Quarantine")
        );
        let slash = server(Some('/'), false)
            .folders(None, None)
            .expect("defaults");
        assert_eq!(slash.processed, "INBOX/Processed");
        // INBOX that may have no children: the top of the personal namespace.
        let flat_inbox = server(Some('.'), true)
            .folders(None, None)
            .expect("defaults");
        assert_eq!(flat_inbox.quarantine, "Quarantine");
    }

    #[test]
    fn a_slash_written_name_is_translated_on_a_dot_server_or_refused_when_ambiguous() {
        let dot = server(Some('.'), false);
        let f = dot
            .folders(Some("INBOX/Processed"), Some("INBOX.Quarantine"))
            .expect("translated");
        assert_eq!(
            (f.processed.as_str(), f.quarantine.as_str()),
            ("INBOX.Processed", "INBOX.Quarantine")
        );
        let error = dot
            .folders(Some("INBOX/Done.2025"), None)
            .expect_err("ambiguous");
        assert!(
            error.starts_with(
                "processed_folder \"INBOX/Done.2025\": the server separates levels with '.'"
            ),
            "{error}"
        );
        let flat = server(None, false)
            .folders(None, Some("a/b"))
            .expect_err("no hierarchy");
        assert!(flat.contains("no folder hierarchy"), "{flat}");
        // On a '/' server a '.' is an ordinary character.
        let slash = server(Some('/'), false);
        assert_eq!(
            slash
                .folders(Some("INBOX/Done.2025"), None)
                .expect("kept")
                .processed,
            "INBOX/Done.2025"
        );
    }
}
