//! `taxinbox mailboxes check [NAME]`: logs in to each configured IMAP mailbox (or the one named) and prints what
//! the next run would do there, changing nothing on the server.

use super::exit;
use crate::app::Instance;
use crate::imap::{Check, Keywords};
use crate::settings::Acknowledge;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// `taxinbox mailboxes …`.
#[derive(Debug, clap::Subcommand)]
pub enum MailboxesCommand {
    /// Log in and show the capabilities that matter (IDLE, MOVE, UIDPLUS, keywords), the folder with its
    /// UIDVALIDITY and mail count, whether the processed and quarantine folders exist, and how many mails the next
    /// run would take under `since` and `acknowledge`. Changes nothing on the server (EXAMINE, SEARCH, LIST, MYRIGHTS only).
    /// Exit code 0 when every mailbox answered, 78 when one cannot work as configured (login refused, folder
    /// missing, TLS set-up), 1 when a server could not be reached, 64 for an unknown NAME.
    Check {
        /// Only this mailbox (its `name` in `[[mailboxes]]`).
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
}

pub async fn run_command(
    config: Option<&Path>,
    command: MailboxesCommand,
) -> anyhow::Result<ExitCode> {
    let MailboxesCommand::Check { name } = command;
    let app = Instance::open(config).await?;
    let mailboxes: Vec<_> = app
        .settings
        .mailboxes
        .iter()
        .filter(|m| name.as_deref().is_none_or(|n| n == m.name))
        .collect();
    let mut out = std::io::stdout();
    if mailboxes.is_empty() {
        let code = match &name {
            Some(name) => {
                let known: Vec<&str> = app
                    .settings
                    .mailboxes
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect();
                eprintln!(
                    "taxinbox: no mailbox named {name:?} in [[mailboxes]] (configured: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
                ExitCode::from(exit::USAGE)
            }
            None => {
                writeln!(out, "no IMAP mailbox configured ([[mailboxes]])")?;
                ExitCode::SUCCESS
            }
        };
        app.store.close().await;
        return Ok(code);
    }
    let mut worst = 0u8;
    for (i, mailbox) in mailboxes.into_iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        match crate::imap::check(mailbox, &app.store).await {
            Ok(check) => {
                for line in render(&check) {
                    writeln!(out, "{line}")?;
                }
            }
            Err(e) => {
                writeln!(out, "mailbox {}: check failed: {e}", mailbox.name)?;
                let code = if e.is_retryable() {
                    exit::FAILURE
                } else {
                    exit::CONFIG
                };
                // A configuration problem outranks a failure that trying again may fix.
                if worst != exit::CONFIG {
                    worst = code;
                }
            }
        }
    }
    app.store.close().await;
    Ok(if worst == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(worst)
    })
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// The lines `mailboxes check` prints for one mailbox.
pub fn render(c: &Check) -> Vec<String> {
    let mut lines = vec![format!("mailbox {} ({})", c.mailbox, c.host)];
    lines.push(format!(
        "  capabilities: IDLE {}, MOVE {}, UIDPLUS {}",
        yes_no(c.idle),
        yes_no(c.can_move),
        yes_no(c.uidplus)
    ));
    lines.push(match &c.keywords {
        Keywords::Yes => "  keywords: yes (PERMANENTFLAGS has \\*)".to_owned(),
        Keywords::No(why) => format!("  keywords: no — {why}"),
        Keywords::Unknown(why) => format!("  keywords: unknown — {why}"),
    });
    let number = |n: Option<u32>| n.map_or_else(|| "not given".to_owned(), |n| n.to_string());
    lines.push(format!(
        "  folder {:?}: UIDVALIDITY {}, UIDNEXT {}, {} mail(s)",
        c.folder,
        number(c.uidvalidity),
        number(c.uidnext),
        c.messages
    ));
    match c.acknowledge {
        Acknowledge::Move => {
            for (what, folder) in [("processed", &c.processed), ("quarantine", &c.quarantine)] {
                lines.push(format!(
                    "  {what} folder {:?}: {}",
                    folder.name,
                    if folder.exists {
                        "exists"
                    } else {
                        "missing (the first run creates it)"
                    }
                ));
            }
            lines.push(
                "  acknowledge: move (each mail is moved out of the folder after its commit)"
                    .to_owned(),
            );
        }
        Acknowledge::Flag => {
            for (what, folder) in [("processed", &c.processed), ("quarantine", &c.quarantine)] {
                lines.push(format!(
                    "  {what} folder {:?}: {} (not used: acknowledge = \"flag\")",
                    folder.name,
                    if folder.exists { "exists" } else { "missing" }
                ));
            }
            lines.push(
                "  acknowledge: flag (mail stays in the folder, flagged $Taxinbox or $TaxinboxQuarantine after its commit)"
                    .to_owned(),
            );
            if let Keywords::No(_) = c.keywords {
                lines.push("  WARNING: run will refuse this mailbox: the server will not keep the keywords".to_owned());
            }
        }
    }
    let older = usize::try_from(c.messages)
        .unwrap_or(usize::MAX)
        .saturating_sub(c.in_range);
    lines.push(match c.since {
        Some(since) => format!(
            "  since {since}: {} mail(s) received (INTERNALDATE) on or after it; {older} older, left untouched",
            c.in_range
        ),
        None => "  since: not set — every mail in the folder is taken".to_owned(),
    });
    if c.acknowledge == Acknowledge::Flag {
        lines.push(format!(
            "  already flagged: {} (never taken again)",
            c.flagged
        ));
    }
    lines.push(format!(
        "  next run would take {} mail(s){}",
        c.to_take,
        if c.to_acknowledge > 0 {
            format!(
                ", and only acknowledge {} committed by an earlier run",
                c.to_acknowledge
            )
        } else {
            String::new()
        }
    ));
    lines
}
