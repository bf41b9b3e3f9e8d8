//! `[directory]`: the directory's CSV files `taxinbox run` imports at start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::normalize;

/// Directory CSV files kept in sync by the daemon; all optional (the directory may be imported by hand instead).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectorySettings {
    /// clients CSV (resolved); when set, `run` imports it, with the two below, before processing mail.
    pub clients: Option<PathBuf>,
    /// accountants CSV (resolved).
    pub accountants: Option<PathBuf>,
    /// absences CSV (resolved).
    pub absences: Option<PathBuf>,
    /// patents CSV (resolved).
    pub patents: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDirectory {
    clients: Option<PathBuf>,
    accountants: Option<PathBuf>,
    absences: Option<PathBuf>,
    patents: Option<PathBuf>,
}

/// Validates `[directory]`: the files resolved; accountants and absences only with the clients file.
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw: RawDirectory,
    base: &Path,
) -> DirectorySettings {
    let resolve = |p: Option<PathBuf>| {
        p.filter(|p| !p.as_os_str().is_empty())
            .map(|p| normalize(&base.join(p)))
    };
    let directory = DirectorySettings {
        clients: resolve(raw.clients),
        accountants: resolve(raw.accountants),
        absences: resolve(raw.absences),
        patents: resolve(raw.patents),
    };
    if directory.clients.is_none()
        && (directory.accountants.is_some()
            || directory.absences.is_some()
            || directory.patents.is_some())
    {
        problems.push("directory.clients: missing (accountants, absences and patents are imported with the clients file)".to_owned());
    }
    directory
}
