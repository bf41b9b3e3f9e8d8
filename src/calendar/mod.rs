//! Legal time: which days are working days (the production calendar, federal and regional) and which tasks a
//! tax-office demand creates with how many working days each (the demand catalogue).
//!
//! Both are data under `rules/` (`calendar/production/*.toml`, `demands.toml`), loaded once per run; every
//! computation afterwards is pure. The calendar never guesses: a date in a year without a file is an error
//! ([`CalendarError::OutOfRange`]), because a wrong deadline is worse than none.

pub mod demands;
pub mod obligations;
pub mod production;
pub mod tax;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub use demands::{due_date, DemandCatalog, DemandDates, DemandKind, DemandTaskSpec, DueFrom};
pub use production::ProductionCalendar;

/// Every `*.toml` file directly in `dir` (not in its sub-folders) as `(path, content)`, in file-name order (the
/// file system's order would make "which file came first" in errors irreproducible).
pub fn read_toml_files(dir: &Path) -> Result<Vec<(String, String)>, CalendarError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CalendarError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let content = std::fs::read_to_string(&path).map_err(io(&path))?;
        files.push((path.display().to_string(), content));
    }
    Ok(files)
}

/// What can go wrong loading the calendar data or computing a date with it. Every message names the file (and
/// the line, when the TOML parser knows it) or the date that is out of range.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// A file or folder could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid TOML, or has a key or value of the wrong shape.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The file's name as given to the loader.
        file: String,
        /// 1-based line of the problem, when the parser reports a position.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file parses but its content is inconsistent (a date outside the file's year, a duplicate step, …).
    #[error("{file}: {message}")]
    Invalid {
        /// The file's name as given to the loader.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Two production-calendar files describe the same year.
    #[error("{second}: year {year} is already described by {first}")]
    DuplicateYear {
        /// The year.
        year: i32,
        /// The file loaded first.
        first: String,
        /// The file that repeats it.
        second: String,
    },
    /// The production-calendar folder holds no `*.toml` file.
    #[error("{}: no production calendar (*.toml) in this folder", dir.display())]
    NoCalendar {
        /// The folder.
        dir: PathBuf,
    },
    /// A date falls in a year for which no production calendar is loaded.
    #[error("{date}: no production calendar for {year} (loaded: {loaded})")]
    OutOfRange {
        /// The date asked about.
        date: NaiveDate,
        /// Its year.
        year: i32,
        /// The loaded years, e.g. `2025, 2026, 2027`.
        loaded: String,
    },
    /// `notices.toml` or `topics.toml` (read with the calendars and `demands.toml` as one rule context) is refused.
    #[error(transparent)]
    Vocabulary(#[from] crate::evidence::VocabularyError),
}

impl CalendarError {
    /// Wraps a TOML parse/shape error of `content` (named `file`), turning the byte span into a line number.
    pub(crate) fn from_toml(file: &str, content: &str, error: &toml::de::Error) -> CalendarError {
        CalendarError::Parse {
            file: file.to_owned(),
            line: crate::toml_file::error_line(content, error),
            message: error.message().to_owned(),
        }
    }
}
