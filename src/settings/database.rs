//! `[database]`: the store's URL — a SQLite file resolved against the configuration's folder, or PostgreSQL —,
//! the data folder that follows from it, and a URL's password hidden for logs.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::normalize;

/// A SQLite file under the configuration's folder: works out of the box, no server to install.
const DEFAULT_DATABASE_URL: &str = "sqlite://data/taxinbox.db";
/// The data folder when the database is not a SQLite file (PostgreSQL, in-memory SQLite).
const DEFAULT_DATA_DIR: &str = "data";

/// Database connection.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (a relative path already resolved against the configuration's folder) or
    /// `postgres://user:password@host/db`. May hold a password: print it with [`DatabaseSettings::redacted_url`].
    pub url: String,
}

impl DatabaseSettings {
    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Whether the database is SQLite (as opposed to PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDatabase {
    url: Option<String>,
}

/// Validates `[database]`: the settings, and the data folder (beside a SQLite file, else `data` beside the
/// configuration).
pub(super) fn validate(
    problems: &mut Vec<String>,
    raw: RawDatabase,
    base: &Path,
) -> (DatabaseSettings, PathBuf) {
    let url = raw.url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let (url, sqlite_file) = match resolve_database_url(url.trim(), base) {
        Ok(resolved) => resolved,
        Err(message) => {
            problems.push(message);
            (url, None)
        }
    };
    let data_dir = match &sqlite_file {
        Some(path) => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            // `sqlite://x.db` with no configuration file: the working directory, spelt so it is not empty.
            _ => PathBuf::from("."),
        },
        None => normalize(&base.join(DEFAULT_DATA_DIR)),
    };
    (DatabaseSettings { url }, data_dir)
}

/// Resolves a relative SQLite path against `base`; returns the URL and, for SQLite files, the file's path.
fn resolve_database_url(url: &str, base: &Path) -> Result<(String, Option<PathBuf>), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), None));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(format!(
            "database.url: {:?} is neither sqlite://… nor postgres://…",
            redact_url(url)
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err("database.url: the SQLite URL names no file".to_owned());
    }
    if path.starts_with(":memory:") {
        return Ok((url.to_owned(), None));
    }
    let file = normalize(&base.join(path));
    let mut resolved = format!("sqlite://{}", file.display());
    if let Some(query) = query {
        resolved.push('?');
        resolved.push_str(query);
    }
    Ok((resolved, Some(file)))
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut redacted = match head.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
                    None => head.to_owned(),
                },
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::{error_text, load};

    #[test]
    fn a_postgres_database_keeps_its_url_and_puts_data_beside_the_file() {
        let (dir, settings) = load(
            "[database]\nurl = \"postgres://taxinbox@127.0.0.1/taxinbox\"\n",
            &[],
        );
        let settings = settings.expect("valid");
        assert!(!settings.database.is_sqlite());
        assert_eq!(settings.data_dir, dir.path().join("data"));
    }

    #[test]
    fn the_debug_output_of_a_postgres_url_hides_its_password() {
        let (_dir, settings) = load(
            "[database]\nurl = \"postgres://buh:s3cr3t@db.firm.example:5432/taxinbox\"\n",
            &[],
        );
        let settings = settings.expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("postgres://buh:***@db.firm.example:5432/taxinbox"),
            "{debug}"
        );
        assert_eq!(
            redact_url("postgres://buh@db/taxinbox?sslmode=require&password=s3cr3t"),
            "postgres://buh@db/taxinbox?sslmode=require&password=***"
        );
    }

    #[test]
    fn an_unknown_database_scheme_is_named() {
        let message = error_text("[database]\nurl = \"mysql://root:pw@localhost/x\"\n", &[]);
        assert!(message.starts_with("database.url:"), "{message}");
        assert!(!message.contains("pw@"), "{message}");
    }
}
