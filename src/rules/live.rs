//! The ruleset in force while the service runs, and the shadow (candidate) ruleset beside it.
//!
//! [`LiveRules`] is the handle every clone of the `Pipeline` shares (each IMAP mailbox task holds one): the ruleset
//! in force behind an atomic pointer, swapped whole by a reload, and the optional shadow set beside it. A ruleset
//! carries the context it decides with (`Ruleset::ctx`: the directory, the production calendars, the demand
//! catalogue), so one snapshot holds both: a mail is evaluated under one snapshot from start to end and names its
//! version, whatever is swapped meanwhile. Reading files and the store to reload lives in `pipeline::reload`; this
//! module only holds and swaps.

use super::{RuleContext, Ruleset};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;

/// The candidate ruleset of shadow mode: it decides every live mail beside the live set, and only what it would
/// have decided is stored.
#[derive(Debug)]
pub struct ShadowRules {
    pub rules: Arc<Ruleset>,
    /// Store a row also when the shadow decision equals the live one (to count agreement), not only differences.
    pub record_equal: bool,
}

/// What is in force beside the rule files, as far as the reloads know it.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The directory generation the live context holds; `None` until the first reload or directory check.
    pub directory: Option<i64>,
    /// The version (`sha256:`) of `demands.toml` and the production calendars in force; `None` until the first
    /// reload (the files loaded at start are not hashed).
    pub context: Option<String>,
}

/// The swappable live ruleset (with its context) and the optional shadow set; clones share both.
#[derive(Clone)]
pub struct LiveRules {
    live: Arc<ArcSwap<Ruleset>>,
    shadow: Arc<ArcSwapOption<ShadowRules>>,
    /// Held while a reload reads, records and swaps, so two reloads (the watch, a pass, an IMAP batch) never
    /// interleave and lose one another's change.
    loaded: Arc<tokio::sync::Mutex<Loaded>>,
}

impl std::fmt::Debug for LiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRules")
            .field("live", &self.live.load().version())
            .field(
                "shadow",
                &self
                    .shadow
                    .load()
                    .as_ref()
                    .map(|s| s.rules.version().to_owned()),
            )
            .finish()
    }
}

impl LiveRules {
    pub fn new(rules: Ruleset) -> LiveRules {
        LiveRules::from_arc(Arc::new(rules))
    }

    pub fn from_arc(rules: Arc<Ruleset>) -> LiveRules {
        LiveRules {
            live: Arc::new(ArcSwap::new(rules)),
            shadow: Arc::new(ArcSwapOption::empty()),
            loaded: Arc::new(tokio::sync::Mutex::new(Loaded::default())),
        }
    }

    /// The ruleset in force now, with its context (`Ruleset::ctx`); evaluate one mail under it from start to end.
    pub fn snapshot(&self) -> Arc<Ruleset> {
        self.live.load_full()
    }

    /// The version of the ruleset in force now.
    pub fn version(&self) -> String {
        self.live.load().version().to_owned()
    }

    /// Puts `rules` in force for every holder of this handle; returns the set it replaced.
    pub fn swap(&self, rules: Arc<Ruleset>) -> Arc<Ruleset> {
        self.live.swap(rules)
    }

    /// The shadow set, when shadow mode is on.
    pub fn shadow(&self) -> Option<Arc<ShadowRules>> {
        self.shadow.load_full()
    }

    pub fn set_shadow(&self, shadow: Option<ShadowRules>) {
        self.shadow.store(shadow.map(Arc::new));
    }

    /// Puts `ctx` in force under the live and the shadow rules as they are (no rule file is read).
    pub fn swap_context(&self, ctx: &RuleContext) {
        self.swap(Arc::new(self.snapshot().with_context(ctx.clone())));
        if let Some(shadow) = self.shadow() {
            self.set_shadow(Some(ShadowRules {
                rules: Arc::new(shadow.rules.with_context(ctx.clone())),
                record_equal: shadow.record_equal,
            }));
        }
    }

    /// What the reloads know is in force, held while one reads, records and swaps: two reloads (the watch, a pass,
    /// an IMAP batch) never interleave and lose one another's change.
    pub async fn reload_state(&self) -> tokio::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().await
    }

    /// The directory generation in force (`None` before the first reload or check).
    pub async fn directory_generation(&self) -> Option<i64> {
        self.loaded.lock().await.directory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Limits;
    use std::path::Path;

    fn ruleset(category: &str) -> Ruleset {
        let ctx = RuleContext::shipped();
        let sources = vec![(
            "10-all.rhai".to_owned(),
            format!("fn classify(mail) {{ #{{category: \"{category}\"}} }}"),
        )];
        Ruleset::from_sources(Path::new("test"), &sources, &Limits::default(), &ctx).unwrap()
    }

    #[test]
    fn a_swap_reaches_every_clone_and_spares_a_snapshot_in_hand() {
        let rules = LiveRules::new(ruleset("notice"));
        let mailbox_task = rules.clone();
        let in_hand = mailbox_task.snapshot();
        let old = rules.swap(Arc::new(ruleset("ignore")));
        assert_eq!(old.version(), in_hand.version());
        assert_ne!(mailbox_task.version(), in_hand.version());
        assert_eq!(mailbox_task.version(), rules.snapshot().version());
        // The mail being decided finishes under the set it started with.
        let mail = rhai::Dynamic::from(rhai::Map::new());
        let decided = in_hand.classify(&mail).unwrap().decision.unwrap();
        assert_eq!(decided.category, "notice");
        let decided = mailbox_task
            .snapshot()
            .classify(&mail)
            .unwrap()
            .decision
            .unwrap();
        assert_eq!(decided.category, "ignore");
    }
}
