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
