//! Rules that change while the service runs: hot reload of the rules and of what they decide with.
//!
//! [`Reloader::reload`] is the step — read the directory generation (and the directory when it moved), load
//! `demands.toml`, `notices.toml`, `topics.toml` and `calendar/production/*.toml`, compile `mail/*.rhai`; refuse a
//! broken part with its errors (file:line\[:col\]) and keep that part in force, record what is new in the audit log,
//! then swap the [`LiveRules`] every pipeline clone shares — and [`refresh_directory`] the cheap check a pass and
//! each IMAP batch make first (one read; the directory is loaded again only when `directory import` moved the
//! generation). The daemon's watch (`daemon::watch`) is the thin loop around them.
//! Invariant: a reload never leaves the service without rules; a broken part changes nothing but the log, the
//! metrics and `/healthz`.

use crate::calendar::{CalendarError, DemandCatalog, ProductionCalendar};
use crate::metrics::Metrics;
use crate::rules::live::{LiveRules, Loaded, ShadowRules};
use crate::rules::{Limits, LoadError, RuleContext, Ruleset};
use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The cheap check before a pass and before each IMAP batch: one read of the directory generation; when
/// `directory import` moved it, the directory is loaded again and put in force under the rules as they are
/// (recorded in the audit log). `None` when the directory in force is the stored one. A store that cannot be read
/// keeps the directory in force and is reported as [`Reload::Refused`]; the caller logs the outcome
/// ([`log_directory`]).
pub async fn refresh_directory(
    rules: &LiveRules,
    store: &crate::store::Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Reload> {
    let mut loaded = rules.reload_state().await;
    let mut ctx = rules.snapshot().ctx().clone();
    let reload = match read_directory(store, &loaded, &mut ctx).await {
        Ok(None) => return None,
        Ok(Some(generation)) => {
            let payload = ctx_payload(&rules.version(), &loaded.context, Some(generation));
            match record_context(store, &payload, now).await {
                Err(e) => Reload::Refused {
                    error: format!("cannot record the new directory in the audit log, retried on the next check: {e:#}"),
                    kept: loaded.directory.map(generation_name),
                },
                Ok(()) => {
                    rules.swap_context(&ctx);
                    let old = loaded.directory.replace(generation);
                    Reload::Reloaded {
                        old: old.map(generation_name),
                        new: generation_name(generation),
                    }
                }
            }
        }
        Err(error) => Reload::Refused {
            error,
            kept: loaded.directory.map(generation_name),
        },
    };
    Some(reload)
}

fn generation_name(generation: i64) -> String {
    format!("generation {generation}")
}

/// Reads the directory generation and, when it differs from the one `loaded` holds, the directory into `ctx`; returns
/// the new generation. The generation is read before the directory: a directory written in between is newer than the
/// generation says, and the next check loads it again — a change is never missed.
async fn read_directory(
    store: &crate::store::Store,
    loaded: &Loaded,
    ctx: &mut RuleContext,
) -> Result<Option<i64>, String> {
    let read = async {
        let mut conn = store.acquire().await?;
        let generation = crate::store::directory_generation(&mut conn).await?;
        if loaded.directory == Some(generation) {
            return Ok(None);
        }
        let directory = crate::store::load_directory(&mut conn).await?;
        anyhow::Ok(Some((generation, directory)))
    };
    match read.await {
        Ok(None) => Ok(None),
        Ok(Some((generation, directory))) => {
            ctx.directory = Arc::new(directory);
            Ok(Some(generation))
        }
        Err(e) => Err(format!("cannot read the directory from the store: {e:#}")),
    }
}

/// The audit-log payload of a context put in force.
fn ctx_payload(
    ruleset: &str,
    context: &Option<String>,
    directory: Option<i64>,
) -> serde_json::Value {
    serde_json::json!({
        "ruleset": ruleset,
        "context": context,
        "files": CONTEXT_FILES,
        "register_generation": directory,
    })
}

async fn record_context(
    store: &crate::store::Store,
    payload: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    crate::store::record_context_loaded(&mut tx, payload, &crate::store::timestamp(now)).await?;
    tx.commit().await?;
    Ok(())
}

/// The files of the rules folder the pipeline decides with, beside `mail/*.rhai` (as the log and the audit name them).
pub const CONTEXT_FILES: [&str; 4] = [
    "demands.toml",
    "notices.toml",
    "topics.toml",
    "calendar/production/*.toml",
];

/// `demands.toml`, `notices.toml`, `topics.toml` and the production calendars as read once from disk, with the
/// version of exactly those bytes.
struct ContextFiles {
    version: String,
    calendar: ProductionCalendar,
    demands: DemandCatalog,
    vocabulary: crate::evidence::Vocabulary,
}

/// Reads and checks `demands.toml`, `notices.toml`, `topics.toml` and `calendar/production/*.toml` of `rules_dir`;
/// an error names file:line.
fn load_context_files(rules_dir: &Path) -> Result<ContextFiles, CalendarError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CalendarError::Io { path, source }
    };
    let demands_path = rules_dir.join("demands.toml");
    let demands_text = std::fs::read_to_string(&demands_path).map_err(io(&demands_path))?;
    let production = rules_dir.join("calendar").join("production");
    let files = crate::calendar::read_toml_files(&production)?;
    if files.is_empty() {
        return Err(CalendarError::NoCalendar { dir: production });
    }
    let mut hasher = Sha256::new();
    hasher.update(b"demands.toml\0");
    hasher.update(demands_text.as_bytes());
    let mut vocabulary_texts = Vec::new();
    for name in crate::evidence::FILES {
        let path = rules_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        hasher.update(b"\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(text.as_bytes());
        vocabulary_texts.push((path.display().to_string(), text));
    }
    for (path, text) in &files {
        let name = Path::new(path)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        hasher.update(b"\0");
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(text.as_bytes());
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let demands = DemandCatalog::from_toml_str(&demands_path.display().to_string(), &demands_text)?;
    let [(notices_name, notices_text), (topics_name, topics_text)] = &vocabulary_texts[..] else {
        unreachable!("evidence::FILES names two files")
    };
    let vocabulary = crate::evidence::Vocabulary::new(
        &crate::rules::demand_titles(&demands),
        crate::evidence::NoticeCatalog::from_toml_str(notices_name, notices_text)?,
        crate::evidence::TopicCatalog::from_toml_str(topics_name, topics_text)?,
    )?;
    Ok(ContextFiles {
        version: format!("sha256:{}", hex::encode(hasher.finalize())),
        calendar: ProductionCalendar::from_toml_strs(&borrowed)?,
        demands,
        vocabulary,
    })
}

/// The folder of `*.rhai` a shadow setting names: a rules folder with `mail/`, or a folder of rule files alone
/// (as `rules replay --rules` takes). The shadow set runs with the live demand catalogue and calendars.
pub fn shadow_mail_dir(dir: &Path) -> PathBuf {
    if dir.join("mail").is_dir() {
        dir.join("mail")
    } else {
        dir.to_path_buf()
    }
}

/// Loads the shadow set of `settings` (`rules.shadow_dir`) beside the live rules of `pipeline`, logging the outcome; a
/// shadow set that does not compile leaves shadow mode off until it is fixed (the live rules are untouched).
pub fn attach_shadow(pipeline: &crate::pipeline::Pipeline, settings: &crate::settings::Settings) {
    if let Some(dir) = &settings.rules.shadow_dir {
        let reload = Reloader::new(pipeline, settings).reload_shadow(dir);
        log_one("shadow rules", &reload, dir);
    }
}

/// How one reload attempt of one part (live rules, shadow rules, context files, directory) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// What is on disk (in the store) is what is in force.
    Unchanged { version: String },
    /// A new version is in force.
    Reloaded { old: Option<String>, new: String },
    /// What is on disk (in the store) was refused; `kept` (if any) stays in force.
    Refused { error: String, kept: Option<String> },
}

impl Reload {
    fn changed(&self) -> bool {
        !matches!(self, Reload::Unchanged { .. })
    }

    /// Whether a new version went in.
    pub fn is_new(&self) -> bool {
        matches!(self, Reload::Reloaded { .. })
    }

    /// A new version that could not go in after all: refused with `error`, the old one kept.
    fn refuse(&mut self, error: &str) {
        if let Reload::Reloaded { old, .. } = self {
            *self = Reload::Refused {
                error: error.to_owned(),
                kept: old.take(),
            };
        }
    }
}

/// What one reload did to each part (`shadow` is `None` when shadow mode is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub live: Reload,
    pub shadow: Option<Reload>,
    /// `demands.toml` and the production calendars.
    pub context: Reload,
    /// The directory (clients, accountants, absences) from the store.
    pub directory: Reload,
}

impl ReloadReport {
    /// Whether anything changed or was refused (worth a pass over waiting mail, and a log line).
    pub fn noteworthy(&self) -> bool {
        self.live.changed()
            || self.context.changed()
            || self.directory.changed()
            || self.shadow.as_ref().is_some_and(Reload::changed)
    }

    /// Logs the outcome once: a refused part as an error naming file:line\[:col\], a new one with old → new version.
    pub fn log(&self, live_dir: &Path, shadow_dir: Option<&Path>) {
        log_one("rules", &self.live, live_dir);
        let rules_dir = live_dir.parent().unwrap_or(live_dir);
        log_one(
            &format!("rule context ({})", CONTEXT_FILES.join(", ")),
            &self.context,
            rules_dir,
        );
        log_directory(&self.directory);
        if let (Some(s), Some(dir)) = (&self.shadow, shadow_dir) {
            log_one("shadow rules", s, dir);
        }
    }

    /// Tells the metrics (and so `/metrics` and `/healthz`) what is in force and what was refused.
    pub fn record(&self, metrics: &Metrics, rules: &LiveRules, now: chrono::DateTime<chrono::Utc>) {
        record_part(metrics, "rules", &self.live, now);
        record_part(metrics, "context", &self.context, now);
        record_part(metrics, "register", &self.directory, now);
        if let Some(s) = &self.shadow {
            record_part(metrics, "shadow", s, now);
        }
        metrics.rules_in_force(
            &rules.version(),
            in_force(&self.context),
            in_force(&self.directory),
        );
    }
}

/// The version a part has in force after a reload.
fn in_force(reload: &Reload) -> Option<&str> {
    match reload {
        Reload::Unchanged { version } => Some(version),
        Reload::Reloaded { new, .. } => Some(new),
        Reload::Refused { kept, .. } => kept.as_deref(),
    }
}

/// Records one part's outcome in the metrics: a refusal counts and shows, a success clears the part's error.
pub fn record_part(
    metrics: &Metrics,
    part: &str,
    reload: &Reload,
    now: chrono::DateTime<chrono::Utc>,
) {
    match reload {
        Reload::Refused { error, .. } => metrics.rules_refused(part, error, now),
        Reload::Reloaded { .. } => metrics.rules_ok(part, true, now),
        Reload::Unchanged { .. } => metrics.rules_ok(part, false, now),
    }
}

/// Logs a directory check that did something: a new directory with old → new generation, or a store that could not
/// be read.
pub fn log_directory(reload: &Reload) {
    match reload {
        Reload::Unchanged { version } => tracing::debug!("directory unchanged ({version})"),
        Reload::Reloaded { old, new } => tracing::info!(
            "directory reloaded: {} → {new}",
            old.as_deref().unwrap_or("none")
        ),
        Reload::Refused { error, kept } => tracing::error!(
            "directory not reloaded, {} stays in force: {error}",
            kept.as_deref().unwrap_or("the directory loaded at start")
        ),
    }
}

fn log_one(what: &str, reload: &Reload, dir: &Path) {
    let dir = dir.display();
    match reload {
        Reload::Unchanged { version } => {
            tracing::debug!(ruleset = %version, "{what} in {dir} unchanged")
        }
        Reload::Reloaded { old, new } => tracing::info!(
            ruleset = %new,
            "{what} reloaded from {dir}: {} → {new}",
            old.as_deref().unwrap_or("none")
        ),
        Reload::Refused { error, kept } => tracing::error!(
            ruleset = kept.as_deref().unwrap_or(""),
            "{what} in {dir} refused, {} stays in force: {error}",
            kept.as_deref().unwrap_or("what was loaded at start")
        ),
    }
}

/// Reloads the rules of a running pipeline from its folders, and the directory from the store.
#[derive(Debug, Clone)]
pub struct Reloader {
    rules: LiveRules,
    rules_dir: PathBuf,
    mail_dir: PathBuf,
    /// The configured shadow folder (`rules.shadow_dir`), `None` when shadow mode is off.
    shadow_dir: Option<PathBuf>,
    record_equal: bool,
    limits: Limits,
    metrics: Option<Arc<Metrics>>,
}

impl Reloader {
    /// A reloader for `pipeline`, whose rules came from `settings.rules.dir`.
    pub fn new(
        pipeline: &crate::pipeline::Pipeline,
        settings: &crate::settings::Settings,
    ) -> Reloader {
        Reloader {
            rules: pipeline.rules.clone(),
            rules_dir: settings.rules.dir.clone(),
            mail_dir: settings.rules.dir.join("mail"),
            shadow_dir: settings.rules.shadow_dir.clone(),
            record_equal: settings.rules.shadow_record_equal,
            limits: settings.rules.limits.clone(),
            metrics: None,
        }
    }

    /// Reports every outcome to `metrics` too (`/metrics`, `/healthz`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Reloader {
        self.metrics = Some(metrics);
        self
    }

    pub fn rules_dir(&self) -> &Path {
        &self.rules_dir
    }

    pub fn mail_dir(&self) -> &Path {
        &self.mail_dir
    }

    pub fn shadow_dir(&self) -> Option<&Path> {
        self.shadow_dir.as_deref()
    }

    /// Reloads, logs the outcome once and reports it to the metrics; returns it.
    pub async fn reload_and_log(
        &self,
        store: &crate::store::Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ReloadReport {
        let report = self.reload(store, now).await;
        report.log(&self.mail_dir, self.shadow_dir.as_deref());
        if let Some(m) = &self.metrics {
            report.record(m, &self.rules, now);
        }
        report
    }

    /// The directory check of `LiveRules::refresh_directory`, logged and reported to the metrics ([`check_directory`]).
    pub async fn refresh_directory_and_log(
        &self,
        store: &crate::store::Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        check_directory(&self.rules, store, self.metrics.as_deref(), now).await
    }

    /// Reads everything the pipeline decides with — the directory (when its generation moved), `demands.toml` and the
    /// production calendars, the live (and shadow) rule files — and puts what is new in force in one swap. A part
    /// that fails to load is refused and its version in force stays (a new directory or new calendars still go in
    /// under the rules in force when the rule files are refused, and the other way round). What is new is recorded
    /// in the audit log (`ruleset_loaded`, `context_loaded`) before it is swapped in, so every decision names a
    /// recorded version. Does not log: the caller logs the report once.
    pub async fn reload(
        &self,
        store: &crate::store::Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ReloadReport {
        let mut loaded = self.rules.reload_state().await;
        let current = self.rules.snapshot();
        let mut ctx = current.ctx().clone();

        let mut generation = loaded.directory;
        let mut register = match read_directory(store, &loaded, &mut ctx).await {
            Ok(None) => Reload::Unchanged {
                version: loaded.directory.map(generation_name).unwrap_or_default(),
            },
            Ok(Some(g)) => {
                generation = Some(g);
                Reload::Reloaded {
                    old: loaded.directory.map(generation_name),
                    new: generation_name(g),
                }
            }
            Err(error) => Reload::Refused {
                error,
                kept: loaded.directory.map(generation_name),
            },
        };

        let mut context_version = loaded.context.clone();
        let mut context = match load_context_files(&self.rules_dir) {
            Err(e) => Reload::Refused {
                error: e.to_string(),
                kept: loaded.context.clone(),
            },
            Ok(files) if Some(&files.version) == loaded.context.as_ref() => Reload::Unchanged {
                version: files.version,
            },
            Ok(files) => {
                ctx.calendar = Arc::new(files.calendar);
                ctx.demands = Arc::new(files.demands);
                ctx.vocabulary = Arc::new(files.vocabulary);
                context_version = Some(files.version.clone());
                Reload::Reloaded {
                    old: loaded.context.clone(),
                    new: files.version,
                }
            }
        };
        let mut ctx_changed = register.is_new() || context.is_new();

        // The rule files, compiled against the context they will decide with.
        let (mut live, next) = match Ruleset::load(&self.mail_dir, &self.limits, &ctx) {
            Err(e) => (
                Reload::Refused {
                    error: load_error(&e),
                    kept: Some(current.version().to_owned()),
                },
                ctx_changed.then(|| Arc::new(current.with_context(ctx.clone()))),
            ),
            Ok(new) if new.version() == current.version() => (
                Reload::Unchanged {
                    version: new.version().to_owned(),
                },
                ctx_changed.then(|| Arc::new(new)),
            ),
            Ok(new) => (
                Reload::Reloaded {
                    old: Some(current.version().to_owned()),
                    new: new.version().to_owned(),
                },
                Some(Arc::new(new)),
            ),
        };

        if let Some(next) = next {
            let recorded = async {
                if live.is_new() {
                    record_ruleset(store, &next, now).await?;
                }
                if ctx_changed {
                    let payload = ctx_payload(next.version(), &context_version, generation);
                    record_context(store, &payload, now).await?;
                }
                anyhow::Ok(())
            };
            match recorded.await {
                Ok(()) => {
                    self.rules.swap(next);
                    loaded.directory = generation;
                    loaded.context = context_version;
                }
                Err(e) => {
                    // Nothing is swapped: what would have gone in is refused, and retried on the next change.
                    let error = format!(
                        "cannot record the new version in the audit log, retried on the next change or SIGHUP: {e:#}"
                    );
                    for part in [&mut live, &mut context, &mut register] {
                        part.refuse(&error);
                    }
                    ctx = current.ctx().clone();
                    ctx_changed = false;
                }
            }
        }
        let shadow = self
            .shadow_dir
            .as_deref()
            .map(|dir| self.reload_shadow_with(dir, &ctx, ctx_changed));
        ReloadReport {
            live,
            shadow,
            context,
            directory: register,
        }
    }

    /// Loads the shadow set (at startup, and on every reload) with the context in force; a refused one keeps the
    /// shadow set in force, if any.
    pub fn reload_shadow(&self, dir: &Path) -> Reload {
        let ctx = self.rules.snapshot().ctx().clone();
        self.reload_shadow_with(dir, &ctx, false)
    }

    /// Loads the shadow set against `ctx`; when the context changed (`ctx_changed`) the shadow set in force is put on
    /// it too, whether its files are refused or unchanged.
    fn reload_shadow_with(&self, dir: &Path, ctx: &RuleContext, ctx_changed: bool) -> Reload {
        let current = self.rules.shadow();
        let kept = current.as_ref().map(|s| s.rules.version().to_owned());
        let put = |rules: Ruleset| {
            self.rules.set_shadow(Some(ShadowRules {
                rules: Arc::new(rules),
                record_equal: self.record_equal,
            }))
        };
        match Ruleset::load(&shadow_mail_dir(dir), &self.limits, ctx) {
            Err(e) => {
                if let (true, Some(current)) = (ctx_changed, &current) {
                    put(current.rules.with_context(ctx.clone()));
                }
                Reload::Refused {
                    error: load_error(&e),
                    kept,
                }
            }
            Ok(new) if Some(new.version()) == kept.as_deref() => {
                let version = new.version().to_owned();
                if ctx_changed {
                    put(new);
                }
                Reload::Unchanged { version }
            }
            Ok(new) => {
                let version = new.version().to_owned();
                put(new);
                Reload::Reloaded {
                    old: kept,
                    new: version,
                }
            }
        }
    }
}

/// The directory check a pass and each IMAP batch make first ([`refresh_directory`]): logs what it did and
/// reports it to `metrics`; whether a new directory went in.
pub async fn check_directory(
    rules: &LiveRules,
    store: &crate::store::Store,
    metrics: Option<&Metrics>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(reload) = refresh_directory(rules, store, now).await else {
        return false;
    };
    log_directory(&reload);
    if let Some(m) = metrics {
        record_part(m, "register", &reload, now);
        if let Reload::Reloaded { new, .. } = &reload {
            m.rules_directory(new);
        }
    }
    reload.is_new()
}

/// A load error as an admin reads it: `file:line:col: message` for a script (the file name is relative to the folder
/// the log line names).
fn load_error(e: &LoadError) -> String {
    e.to_string()
}

/// Records the ruleset `taxinbox run` works with (`rulesets` table, and a `ruleset_loaded` entry when it changed).
pub async fn record_ruleset(
    store: &crate::store::Store,
    rules: &Ruleset,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let files: Vec<&str> = rules.file_names().collect();
    let mut tx = store.begin().await?;
    crate::store::record_ruleset(
        &mut tx,
        rules.version(),
        &files,
        &crate::store::timestamp(now),
    )
    .await?;
    tx.commit().await.context("record the ruleset")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the shipped rule context files (not the rule files) in a folder of its own.
    fn context_copy() -> tempfile::TempDir {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
        let dir = tempfile::tempdir().unwrap();
        for f in ["demands.toml", "notices.toml", "topics.toml"] {
            std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
        }
        let production = dir.path().join("calendar/production");
        std::fs::create_dir_all(&production).unwrap();
        for e in std::fs::read_dir(root.join("calendar/production")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), production.join(e.file_name())).unwrap();
        }
        dir
    }

    #[test]
    fn a_broken_vocabulary_file_is_refused_naming_its_file_and_line_or_key() {
        let dir = context_copy();
        let good = load_context_files(dir.path()).unwrap();
        // A TOML error names the line.
        let topics = dir.path().join("topics.toml");
        let text = std::fs::read_to_string(&topics).unwrap();
        std::fs::write(&topics, format!("{text}\n[topics.payroll\n")).unwrap();
        let e = load_context_files(dir.path()).err().unwrap().to_string();
        assert!(e.contains("topics.toml:"), "{e}");
        // A phrase that would match every mail names its key and phrase.
        std::fs::write(&topics, &text).unwrap();
        let notices = dir.path().join("notices.toml");
        let original = std::fs::read_to_string(&notices).unwrap();
        std::fs::write(
            &notices,
            original.replacen("titles = [", "titles = [\n  \"  \",", 1),
        )
        .unwrap();
        let e = load_context_files(dir.path()).err().unwrap().to_string();
        assert!(e.contains("notices.toml") && e.contains("titles[0]"), "{e}");
        // Fixed again: the same version as before.
        std::fs::write(&notices, &original).unwrap();
        assert_eq!(
            load_context_files(dir.path()).unwrap().version,
            good.version
        );
    }
}
