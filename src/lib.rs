//! taxinbox turns an accounting firm's shared mailbox into tasks with legal deadlines.
//!
//! The modules follow the path of one mail (see ARCHITECTURE.md):
//! `source` → `mail` (parse, extract) → `rules` (classify) → `directory` (resolve client and person)
//! → `calendar` (deadlines) → `store` (one commit) → back to `source` (acknowledge).

pub mod app;
pub mod audit;
pub mod calendar;
pub mod cli;
pub mod daemon;
pub mod directory;
pub mod directory_import;
pub mod evidence;
pub mod http;
pub mod ids;
pub mod imap;
pub mod ingest;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod rules;
pub mod settings;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod toml_file;
pub mod web;
