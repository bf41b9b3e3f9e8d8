//! The processed-mail log as auditors use it: `taxinbox audit log | show | export | verify | purge`.
//!
//! Every command but `purge` opens the database read-only ([`Store::connect_read_only`]): an auditor's role may
//! only `SELECT`, and nothing an auditor runs can change what is audited. The chain itself is written in `store`;
//! this module gathers and checks; `cli::audit` prints. `verify` checks three things and names the first bad entry: the hash
//! chain, every stored raw mail against its SHA-256 (a purged one must be named by a purge entry), and every
//! mail's stored decision against the newest log entry about it.
//!
//! Keyed and anchored: `verify` with the key (`[audit] key_file`, see `key`) checks every entry's HMAC besides the
//! plain chain, and with `[audit] anchor_file` (see `anchor`) compares the heads anchored outside the database.
//!
//! Retention: after `[audit] retention_days` the raw bytes of a mail may be purged (`audit purge`, which the
//! daemon also runs once a day); the hash and size stay, the purge is an entry itself, so the log stays provable.

pub mod anchor;
mod export;
pub mod key;
mod log;
mod purge;
mod story;
mod verify;

pub use export::*;
pub use log::*;
pub use purge::*;
pub use story::*;
pub use verify::*;

use crate::settings::Settings;
use crate::store::Store;
use std::path::Path;

/// Settings and a store that cannot write: what every auditor command but `purge` starts from.
pub async fn open_read_only(config: Option<&Path>) -> anyhow::Result<(Settings, Store)> {
    let settings = Settings::load(config)?;
    let store = Store::connect_read_only(&settings.database.url).await?;
    Ok((settings, store))
}
