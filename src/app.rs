//! One configured taxinbox instance: its settings and its open store, and the pipeline built from them. Every
//! command and the daemon start here; nothing below this module knows about it (domain modules take the store and
//! their own section of the settings).

use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::store::{self, Store};

/// Settings plus an open store: what every command and the daemon start from.
pub struct Instance {
    pub settings: Settings,
    pub store: Store,
}

impl Instance {
    /// Loads the settings, connects to the store (applying migrations) and registers the configured task sinks.
    pub async fn open(config: Option<&std::path::Path>) -> anyhow::Result<Instance> {
        let settings = Settings::load(config)?;
        let store = Store::connect(&settings.database.url).await?;
        opened(&store);
        use_log_key(&settings, &store).await?;
        // Events queued from now on (by this command too) reach exactly the configured task sinks.
        crate::notify::sink::register(&store, &settings.sinks, chrono::Utc::now()).await?;
        Ok(Instance { settings, store })
    }

    /// Loads the directory, the calendars, the demand catalogue and the rules into a pipeline.
    pub async fn pipeline(&self) -> anyhow::Result<Pipeline> {
        let mut conn = self.store.acquire().await?;
        let directory = store::load_directory(&mut conn).await?;
        build_pipeline(&self.settings, directory)
    }
}

/// The stores opened through [`Instance::open`] inside [`closing_stores`] (clones share their pool).
static OPENED: std::sync::Mutex<Vec<Store>> = std::sync::Mutex::new(Vec::new());
/// Whether [`Instance::open`] keeps its store for [`closing_stores`]: only a command does; a library user (a test
/// opening many instances) keeps no pool alive beyond its own handles.
static TRACKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn opened(store: &Store) {
    if TRACKING.load(std::sync::atomic::Ordering::SeqCst) {
        OPENED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(store.clone());
    }
}

/// Runs a command's `work`, then closes every store it opened through [`Instance::open`], whatever its outcome:
/// the connections end cleanly, so SQLite checkpoints its write-ahead log into the database file and removes the
/// `-wal` file (the last connection of a database does), and the `.db` file alone is the whole store.
pub async fn closing_stores<T>(work: impl std::future::Future<Output = T>) -> T {
    TRACKING.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = work.await;
    close_stores().await;
    out
}

async fn close_stores() {
    let stores = std::mem::take(
        &mut *OPENED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    for store in stores {
        store.close().await;
    }
}

/// Reads (or, at the first start, makes) the log's key of `[audit] key_file` and puts it in force: every entry this
/// process appends from now on carries its MAC. A new key names the log's current last entry as the last unkeyed one.
pub async fn use_log_key(settings: &Settings, store: &Store) -> anyhow::Result<()> {
    let last_entry = {
        let mut conn = store.acquire().await?;
        store::log_head(&mut conn).await?.0
    };
    let key = crate::audit::key::load_or_create(&settings.audit.key_file, last_entry)?;
    store::use_log_key(Some(key));
    Ok(())
}

/// Builds the pipeline from the rules folder of `settings` and a directory snapshot, with the shadow set of
/// `rules.shadow_dir` riding along (a broken one is logged and stays off).
pub fn build_pipeline(
    settings: &Settings,
    directory: crate::directory::Directory,
) -> anyhow::Result<Pipeline> {
    let limits = settings.rules.limits.clone();
    let pipeline = Pipeline::load(
        &settings.rules.dir,
        &limits,
        directory,
        settings.general.timezone,
    )?;
    crate::pipeline::reload::attach_shadow(&pipeline, settings);
    Ok(pipeline)
}
