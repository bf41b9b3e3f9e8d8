//! `[rules]`: where the rules are, the limits of the script sandbox, and shadow mode.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::{normalize, positive};

/// `mail/*.rhai`, `calendar/production/*.toml` and `demands.toml` live here.
const DEFAULT_RULES_DIR: &str = "rules";
/// Enough for any classification script over one mail; a runaway loop stops within about a second.
const DEFAULT_MAX_OPERATIONS: u64 = 1_000_000;
/// Deep enough for helper functions calling each other, shallow enough to stop unbounded recursion early.
const DEFAULT_MAX_CALL_DEPTH: usize = 64;
/// 1 MiB: larger than any mail body a script needs to look at as one string.
const DEFAULT_MAX_STRING_SIZE: usize = 1_048_576;
/// Larger than the line count of any realistic attachment.
const DEFAULT_MAX_ARRAY_SIZE: usize = 100_000;
/// Per mail: a script that needs longer is broken, and one slow mail must not hold up the mailbox.
const DEFAULT_TIME_BUDGET_MS: u64 = 1_000;

/// Where the rules are and how much a classification script may spend on one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesSettings {
    /// The rules folder (resolved): `mail/*.rhai`, `calendar/production/*.toml`, `demands.toml`.
    pub dir: PathBuf,
    /// The limits of the script sandbox.
    pub limits: SandboxLimits,
    /// Shadow mode (resolved): a candidate rules folder (with `mail/`, or of `*.rhai` alone) that decides live mail
    /// beside the live rules without acting; what it would decide differently is stored (`rules shadow`). `None`: off.
    pub shadow_dir: Option<PathBuf>,
    /// Shadow mode stores a row also when the candidate decides as the live rules do (not only differences).
    pub shadow_record_equal: bool,
}

/// How much a classification script may spend on one mail: the limits the Rhai sandbox enforces. Defined here
/// once, with its defaults; `rules::Limits` is this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Script operations per mail before the script is stopped.
    pub max_operations: u64,
    /// Nested function calls before the script is stopped.
    pub max_call_depth: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Longest array (and object map) a script may build.
    pub max_array_size: usize,
    /// Wall-clock time a script may take per mail.
    pub time_budget: Duration,
}

impl Default for SandboxLimits {
    fn default() -> SandboxLimits {
        SandboxLimits {
            max_operations: DEFAULT_MAX_OPERATIONS,
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
            max_string_size: DEFAULT_MAX_STRING_SIZE,
            max_array_size: DEFAULT_MAX_ARRAY_SIZE,
            time_budget: Duration::from_millis(DEFAULT_TIME_BUDGET_MS),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRules {
    dir: Option<PathBuf>,
    max_operations: Option<u64>,
    max_call_depth: Option<usize>,
    max_string_size: Option<usize>,
    max_array_size: Option<usize>,
    time_budget_ms: Option<u64>,
    shadow_dir: Option<PathBuf>,
    shadow_record_equal: Option<bool>,
}

/// Validates `[rules]`.
pub(super) fn validate(problems: &mut Vec<String>, raw: RawRules, base: &Path) -> RulesSettings {
    RulesSettings {
        dir: normalize(&base.join(raw.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_RULES_DIR)))),
        limits: SandboxLimits {
            max_operations: positive(
                problems,
                "rules.max_operations",
                raw.max_operations,
                DEFAULT_MAX_OPERATIONS,
            ),
            max_call_depth: positive(
                problems,
                "rules.max_call_depth",
                raw.max_call_depth,
                DEFAULT_MAX_CALL_DEPTH,
            ),
            max_string_size: positive(
                problems,
                "rules.max_string_size",
                raw.max_string_size,
                DEFAULT_MAX_STRING_SIZE,
            ),
            max_array_size: positive(
                problems,
                "rules.max_array_size",
                raw.max_array_size,
                DEFAULT_MAX_ARRAY_SIZE,
            ),
            time_budget: Duration::from_millis(positive(
                problems,
                "rules.time_budget_ms",
                raw.time_budget_ms,
                DEFAULT_TIME_BUDGET_MS,
            )),
        },
        // Empty means off, so that `TAXINBOX__RULES__SHADOW_DIR=` switches shadow mode off.
        shadow_dir: raw
            .shadow_dir
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| normalize(&base.join(d))),
        shadow_record_equal: raw.shadow_record_equal.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::load;

    #[test]
    fn an_empty_file_gives_the_default_sandbox_limits() {
        let (_dir, settings) = load("", &[]);
        assert_eq!(
            settings.expect("valid").rules.limits,
            SandboxLimits::default()
        );
    }

    #[test]
    fn shadow_mode_is_off_by_default_and_its_folder_resolves_like_the_rules() {
        let (_dir, settings) = load("", &[]);
        let settings = settings.expect("valid");
        assert_eq!(settings.rules.shadow_dir, None);
        assert!(!settings.rules.shadow_record_equal);
        let (dir, settings) = load(
            "[rules]\nshadow_dir = \"rules-candidate\"\nshadow_record_equal = true\n",
            &[],
        );
        let settings = settings.expect("valid");
        assert_eq!(
            settings.rules.shadow_dir,
            Some(dir.path().join("rules-candidate"))
        );
        assert!(settings.rules.shadow_record_equal);
        // Empty means off, so the environment can switch it off.
        let (_dir, settings) = load("[rules]\nshadow_dir = \"\"\n", &[]);
        assert_eq!(settings.expect("valid").rules.shadow_dir, None);
    }
}
