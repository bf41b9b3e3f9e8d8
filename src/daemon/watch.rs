//! The daemon's watch on what the rules decide with: a file watch on the rules folder (a burst of events of one save
//! is debounced), SIGHUP, and a look at the directory generation every [`DIRECTORY_POLL`], each ending in a
//! [`Reloader`] step.

use crate::pipeline::reload::Reloader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the watch waits after the last file event before reloading: one save of an editor (write to a temporary
/// file, rename, change attributes) or a `cp -r` of a folder is a burst of events within a few milliseconds.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// How often the watch looks at the directory generation between passes: a `directory import` is in force in the
/// daemon within this time even when no mail comes (a pass and each IMAP batch look first anyway).
pub const DIRECTORY_POLL: Duration = Duration::from_secs(5);

/// The longest a stream of file events postpones a reload: a folder written to without pause (a slow copy, a runaway
/// tool) is reloaded at least this often, and a set caught half-copied is either refused or replaced moments later.
pub const DEBOUNCE_AT_MOST: Duration = Duration::from_secs(5);

/// Whether a file event can change a ruleset: reads and attribute changes cannot (and reading the rules on reload
/// must not trigger another reload).
fn relevant(event: &notify::Event, dirs: &[PathBuf]) -> bool {
    use notify::EventKind;
    let kind = matches!(
        event.kind,
        EventKind::Any
            | EventKind::Access(notify::event::AccessKind::Close(
                notify::event::AccessMode::Write
            ))
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Other
            | EventKind::Modify(
                notify::event::ModifyKind::Data(_)
                    | notify::event::ModifyKind::Name(_)
                    | notify::event::ModifyKind::Any
                    | notify::event::ModifyKind::Other
            )
    );
    kind && (event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| dirs.iter().any(|d| p.starts_with(d) || d.starts_with(p))))
}

/// The running watch; dropping it does not stop it, [`Watch::stop`] does.
pub struct Watch {
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Starts watching the rule folders (`mail/`, `demands.toml`, `calendar/production/`, the shadow folder), SIGHUP and
/// the directory generation: each burst of changes (after [`DEBOUNCE`]) and each SIGHUP reloads everything
/// ([`Reloader::reload`]), a moved directory generation (looked at every [`DIRECTORY_POLL`]) the directory; the outcome
/// is logged and reported to the metrics and, when it changed or refused something (always on SIGHUP), `wake` is
/// woken so that waiting mail is taken at once under what is now in force. A folder that cannot be watched is
/// logged; SIGHUP still works.
pub fn watch(
    reloader: Reloader,
    store: crate::store::Store,
    wake: Arc<tokio::sync::Notify>,
) -> Watch {
    // SIGHUP is taken over now, before the daemon tells systemd it is ready (and so may be reloaded): a SIGHUP
    // before the handler exists would end the process.
    let mut hangup = hangup_signal();
    let task = tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut dirs = vec![
            reloader.mail_dir().to_path_buf(),
            reloader.rules_dir().join("demands.toml"),
            reloader.rules_dir().join("notices.toml"),
            reloader.rules_dir().join("topics.toml"),
            reloader.rules_dir().join("calendar").join("production"),
        ];
        if let Some(s) = reloader.shadow_dir() {
            dirs.push(s.to_path_buf());
        }
        let watched = dirs.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                Ok(event) if !relevant(&event, &watched) => {}
                // A lost event (queue overflow) may hide a change: reload to be sure.
                Ok(_) | Err(_) => {
                    let _ = tx.send(());
                }
            }
        });
        // Held for as long as the task runs: dropping it ends the watch.
        let _watcher = match watcher {
            Ok(mut w) => {
                use notify::Watcher as _;
                for dir in watch_roots(&reloader) {
                    if let Err(e) = w.watch(&dir, notify::RecursiveMode::Recursive) {
                        tracing::error!(
                            "cannot watch {} for rule changes (SIGHUP still reloads): {e}",
                            dir.display()
                        );
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::error!("cannot watch rule folders (SIGHUP still reloads): {e}");
                None
            }
        };
        tracing::info!(
            dir = %reloader.mail_dir().display(),
            "rules are reloaded on change and on SIGHUP"
        );
        // A change saved between the start's load and the watch would be missed until the next one: look once.
        let report = reloader.reload_and_log(&store, chrono::Utc::now()).await;
        if report.noteworthy() {
            wake.notify_one();
        }
        let mut watching = true;
        let mut directory_poll = tokio::time::interval(DIRECTORY_POLL);
        directory_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let from_signal = tokio::select! {
                _ = directory_poll.tick() => {
                    // A `directory import` meanwhile: the new directory goes in now, and mail waiting is taken under it.
                    if reloader.refresh_directory_and_log(&store, chrono::Utc::now()).await {
                        wake.notify_one();
                    }
                    continue;
                }
                got = rx.recv(), if watching => {
                    if got.is_none() {
                        // The watcher is gone; SIGHUP alone remains.
                        watching = false;
                        continue;
                    }
                    // Let the burst of one save settle: reload after DEBOUNCE without a further event, or after
                    // DEBOUNCE_AT_MOST however busy the folder is.
                    let settled = tokio::time::Instant::now() + DEBOUNCE_AT_MOST;
                    while let Ok(Ok(Some(()))) = tokio::time::timeout_at(
                        settled,
                        tokio::time::timeout(DEBOUNCE, rx.recv()),
                    )
                    .await
                    {}
                    false
                }
                _ = next_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP: reloading the rules");
                    super::systemd::reloading();
                    true
                }
            };
            let report = reloader.reload_and_log(&store, chrono::Utc::now()).await;
            if from_signal {
                // `systemctl reload` returns here, the new rules (or, refused, the old ones) in force.
                super::systemd::reloaded("running; rules looked at again on SIGHUP");
            }
            if from_signal || report.noteworthy() {
                wake.notify_one();
            }
        }
    });
    Watch { task }
}

/// The folders to watch: the rules folder (recursively, so that a `mail/` replaced as a whole is still seen) and
/// the shadow folder when it lies outside it.
fn watch_roots(reloader: &Reloader) -> Vec<PathBuf> {
    let root = reloader
        .mail_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| reloader.mail_dir().to_path_buf());
    let mut roots = vec![root.clone()];
    if let Some(s) = reloader.shadow_dir() {
        if !s.starts_with(&root) {
            roots.push(s.to_path_buf());
        }
    }
    roots
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("cannot listen for SIGHUP (rule files are still watched): {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind};
    use notify::{Event, EventKind};

    #[test]
    fn only_changes_under_the_rule_folders_count() {
        let dirs = vec![PathBuf::from("/r/mail"), PathBuf::from("/cand")];
        let ev = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(relevant(&ev(write, "/r/mail/10-x.rhai"), &dirs));
        assert!(relevant(
            &ev(EventKind::Create(CreateKind::File), "/cand/mail/1.rhai"),
            &dirs
        ));
        // `mail/` itself replaced (renamed over) is seen from its parent.
        assert!(relevant(
            &ev(
                EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::Any)),
                "/r/mail"
            ),
            &dirs
        ));
        assert!(!relevant(&ev(write, "/r/tests/x.eml"), &dirs));
        // What the context is read from counts too, however an editor saves it (write, or rename over).
        let dirs = vec![
            PathBuf::from("/r/mail"),
            PathBuf::from("/r/demands.toml"),
            PathBuf::from("/r/calendar/production"),
        ];
        assert!(relevant(&ev(write, "/r/demands.toml"), &dirs));
        assert!(relevant(
            &ev(
                EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To)),
                "/r/demands.toml"
            ),
            &dirs
        ));
        assert!(relevant(
            &ev(write, "/r/calendar/production/2027.toml"),
            &dirs
        ));
        assert!(!relevant(&ev(write, "/r/calendar/usn.toml"), &dirs));
        assert!(!relevant(&ev(write, "/r/templates/digest.txt"), &dirs));
        assert!(!relevant(
            &ev(EventKind::Access(AccessKind::Any), "/r/mail/10-x.rhai"),
            &dirs
        ));
        assert!(!relevant(
            &ev(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
                "/r/mail/10-x.rhai"
            ),
            &dirs
        ));
    }
}
