//! The key of the processed-mail log: a file outside the database, named by `[audit] key_file`, made at the first
//! start (32 random bytes, mode 0600) and never logged. The file also names the last entry written before the key
//! existed: older entries (a log migrated from the unkeyed chain) verify with the plain chain, every later one must
//! carry the key's MAC.

use crate::store::LogKey;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;

const HEADER: &str = "# taxinbox processed-mail log key (HMAC-SHA-256). Secret: keep it with the database's backups,\n\
                      # the same file on every instance, never edit it. `audit verify` needs it for the keyed check.\n";

/// Reads the key file; `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<LogKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read the log key {}", path.display())),
    };
    let mut secret = None;
    let mut keyed_after = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("key = ") {
            let bytes = hex::decode(v.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            secret = bytes;
        } else if let Some(v) = line.strip_prefix("keyed_after = ") {
            keyed_after = v.trim().parse::<i64>().ok();
        }
    }
    // The message names the file and what is missing, never the file's content.
    match (secret, keyed_after) {
        (Some(secret), Some(keyed_after)) => Ok(Some(LogKey::new(secret, keyed_after))),
        _ => anyhow::bail!(
            "{}: not a taxinbox log key (expected `key = ` 64 hex digits and `keyed_after = ` an entry number)",
            path.display()
        ),
    }
}

/// Reads the key file, or makes it (mode 0600, never overwriting one that appears meanwhile) with the log's
/// current last entry as `keyed_after`.
pub fn load_or_create(path: &Path, last_entry: i64) -> anyhow::Result<LogKey> {
    if let Some(key) = load(path)? {
        return Ok(key);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            write!(
                file,
                "{HEADER}keyed_after = {last_entry}\nkey = {}\n",
                hex::encode(secret)
            )
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write the log key {}", path.display()))?;
            tracing::info!(path = %path.display(), keyed_after = last_entry, "made the processed-mail log key");
            Ok(LogKey::new(secret, last_entry))
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load(path)?.with_context(|| format!("read the log key {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("create the log key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_key_file_is_made_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        assert!(super::load(&path).unwrap().is_none());
        let made = super::load_or_create(&path, 41).unwrap();
        assert_eq!(made.keyed_after, 41);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = super::load_or_create(&path, 99).unwrap();
        assert_eq!(again.keyed_after, 41);
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = text.lines().find_map(|l| l.strip_prefix("key = ")).unwrap();
        assert_eq!(secret.len(), 64);
        assert!(!format!("{again:?}").contains(secret));
        std::fs::write(&path, "nonsense").unwrap();
        assert!(super::load(&path).is_err());
    }
}
