//! Small checks the sections' validations share: a required text, a positive number, a port number, a recorded
//! problem, and paths resolved lexically against the configuration's folder.

use std::fmt;
use std::path::{Path, PathBuf};

pub(super) fn required(
    problems: &mut Vec<String>,
    setting: &str,
    value: Option<String>,
) -> Option<String> {
    match value.map(|value| value.trim().to_owned()) {
        Some(value) if !value.is_empty() => Some(value),
        Some(_) => {
            problems.push(format!("{setting}: empty"));
            None
        }
        None => {
            problems.push(format!("{setting}: missing"));
            None
        }
    }
}

pub(super) fn positive<T: PartialOrd + Default + Copy + fmt::Display>(
    problems: &mut Vec<String>,
    setting: &str,
    value: Option<T>,
    default: T,
) -> T {
    let value = value.unwrap_or(default);
    if value <= T::default() {
        problems.push(format!("{setting}: must be greater than 0, not {value}"));
        return default;
    }
    value
}

pub(super) fn port_number(setting: &str, port: i64) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("{setting}: {port} is not a port number (1–65535)"))
}

pub(super) fn take<T>(problems: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(message) => {
            problems.push(message);
            None
        }
    }
}

/// The path without `.` and with `name/..` pairs folded (lexically; a leading `..` stays), so that paths joined to
/// the configuration's folder read plainly in logs and open the same everywhere (SQLite refuses some `..` forms).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() && !path.as_os_str().is_empty() {
        out.push(".");
    }
    out
}
