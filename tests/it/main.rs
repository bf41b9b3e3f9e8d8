//! The one integration-test binary: behaviour on real databases (SQLite and PostgreSQL), the corpus score,
//! robustness against hostile mail, the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

mod archive;
mod audit;
mod bitrix_portal;
mod calendar;
mod cli;
mod corpus;
mod cyrus;
mod daemon;
mod dovecot;
mod evidence;
mod faults;
mod first_contact;
mod health;
mod helpers;
mod hostile_rules;
mod http_limits;
mod imap;
mod ingest;
mod joins;
mod package;
mod register_import;
mod reload;
mod rules;
mod security;
mod servers;
mod sinks;
mod smtp;
mod telegram;
mod telegram_api;
mod web;
mod web_e2e;
mod web_offboarding;
mod web_sign_in;
