//! Logging: to journald with priorities when systemd started us with its journal on standard error
//! (`JOURNAL_STREAM`), human-readable on a terminal, JSON lines otherwise (log collectors).
//! Field names are stable: `mailbox`, `uid`, `uidvalidity`, `message_id`, `rule`, `ruleset`, `task_id`, `client_inn`.

use std::io::IsTerminal as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The systemd journal's native protocol: each line keeps its level as a priority (`journalctl -p warning`)
    /// and its fields as journal fields.
    Journald,
    /// Compact text for a person at a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// The output for this process: journald when `journal_stream` (the `JOURNAL_STREAM` variable, `DEV:INODE`) names
/// standard error itself — a child whose stderr was redirected elsewhere logs there instead, as systemd.exec(5)
/// advises — text on a terminal, JSON otherwise.
pub fn output_for(
    journal_stream: Option<&str>,
    stderr_id: Option<(u64, u64)>,
    terminal: bool,
) -> Output {
    let on_journal = journal_stream
        .and_then(|v| v.split_once(':'))
        .and_then(|(dev, ino)| {
            Some((
                dev.trim().parse::<u64>().ok()?,
                ino.trim().parse::<u64>().ok()?,
            ))
        })
        .is_some_and(|named| match stderr_id {
            Some(actual) => actual == named,
            None => true,
        });
    if on_journal {
        Output::Journald
    } else if terminal {
        Output::Text
    } else {
        Output::Json
    }
}

/// Device and inode of standard error, to compare with `JOURNAL_STREAM`.
fn stderr_id() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata("/proc/self/fd/2").ok()?;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Installs the global subscriber with `default_filter` (an `EnvFilter` directive); `RUST_LOG` wins over it.
pub fn init(default_filter: &str) {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let output = output_for(
        journal_stream.as_deref(),
        stderr_id(),
        std::io::stderr().is_terminal(),
    );
    // A second init (tests) keeps the first subscriber, hence the ignored results.
    if output == Output::Journald {
        match tracing_journald::layer() {
            Ok(journal) => {
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journal.with_syslog_identifier("taxinbox".to_owned()))
                    .try_init();
                return;
            }
            Err(e) => {
                eprintln!("taxinbox: cannot reach journald ({e}); logging JSON to standard error")
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let _ = if output == Output::Text {
        builder.compact().try_init()
    } else {
        builder.json().with_current_span(false).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_the_journal_stream_is_standard_error() {
        assert_eq!(
            output_for(Some("8:1234"), Some((8, 1234)), false),
            Output::Journald
        );
        // Inherited by a child whose stderr goes elsewhere.
        assert_eq!(
            output_for(Some("8:1234"), Some((8, 99)), false),
            Output::Json
        );
        assert_eq!(
            output_for(Some("8:1234"), Some((8, 99)), true),
            Output::Text
        );
        assert_eq!(output_for(Some("garbage"), None, false), Output::Json);
        assert_eq!(output_for(None, Some((8, 1234)), true), Output::Text);
        // Standard error that cannot be looked at: the variable is trusted.
        assert_eq!(output_for(Some("8:1234"), None, false), Output::Journald);
    }
}
