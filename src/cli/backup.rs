//! `taxinbox backup FILE`: a consistent copy of a SQLite store, taken while the daemon runs (`VACUUM INTO`, which
//! reads one snapshot and writes a compact database file); restoring is putting that file where `database.url`
//! points while taxinbox is stopped. A PostgreSQL store is backed up with the server's own tools.

use crate::app::Instance;
use crate::store::Engine;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub async fn backup(config: Option<&Path>, file: &Path) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    if app.store.engine() == Engine::Postgres {
        app.store.close().await;
        anyhow::bail!(
            "the store is PostgreSQL: back it up with `pg_dump` (for example `pg_dump -Fc -f taxinbox.dump <database>`) \
             and restore with `pg_restore`"
        );
    }
    let result = crate::store::backup_sqlite(&app.store, file).await;
    app.store.close().await;
    result?;
    writeln!(
        std::io::stdout(),
        "backup written to {}; `taxinbox --config <a copy of the configuration pointing at it> audit verify` checks it",
        file.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
