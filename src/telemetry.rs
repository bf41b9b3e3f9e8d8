//! Logging: human-readable on a terminal, JSON lines otherwise (for journald and log collectors).
//! Field names are stable: `mailbox`, `uid`, `uidvalidity`, `message_id`, `rule`, `ruleset`, `task_id`, `client_inn`.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` wins over the verbosity given on the command line.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::io::stderr().is_terminal() {
        builder.compact().try_init()
    } else {
        builder.json().with_current_span(false).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
