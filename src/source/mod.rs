//! Where mail comes from on the local machine: single files, Maildir folders, plain folders of `.eml`, stdin.
//!
//! A source hands out raw bytes with a stable reference and is told to acknowledge a mail only after its commit:
//! for a Maildir that is the move from `new/` to `cur/` (with the Seen flag), the Maildir way of saying "taken".
//! (The IMAP source lives in its own module and follows the same contract.)

use anyhow::Context as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// One mail waiting to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file named on the command line or found in a plain folder.
    File(PathBuf),
    /// A file in a Maildir; `new` entries are moved to `cur` once committed.
    Maildir {
        root: PathBuf,
        path: PathBuf,
        is_new: bool,
    },
    /// One message on standard input (an MTA pipe).
    Stdin,
}

/// Largest message read from any source; mirrors the parser's own cap so a huge file is refused before it is
/// read into memory, and still recorded (as quarantined) rather than skipped.
pub const MAX_MESSAGE_BYTES: u64 = 64 << 20;

impl Input {
    /// The reference stored with the message and printed in reports.
    pub fn reference(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Maildir { path, .. } => path.display().to_string(),
            Input::Stdin => "-".to_owned(),
        }
    }

    /// Reads the raw bytes. A file over [`MAX_MESSAGE_BYTES`] yields only its first bytes plus a marker the parser
    /// refuses, so the mail is quarantined with a reason instead of exhausting memory.
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        match self {
            Input::File(p) | Input::Maildir { path: p, .. } => {
                let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
                f.take(MAX_MESSAGE_BYTES + 1)
                    .read_to_end(&mut buf)
                    .with_context(|| format!("read {}", p.display()))?;
            }
            Input::Stdin => {
                std::io::stdin()
                    .take(MAX_MESSAGE_BYTES + 1)
                    .read_to_end(&mut buf)
                    .context("read the message from standard input")?;
            }
        }
        Ok(buf)
    }

    /// Marks the mail as taken at its source. Call only after the commit.
    pub fn acknowledge(&self) -> anyhow::Result<()> {
        if let Input::Maildir {
            root,
            path,
            is_new: true,
        } = self
        {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let base = name.split(':').next().unwrap_or(&name);
            let target = root.join("cur").join(format!("{base}:2,S"));
            std::fs::rename(path, &target)
                .with_context(|| format!("move {} to {}", path.display(), target.display()))?;
        }
        Ok(())
    }
}

/// Is `dir` a Maildir (has `new/` or `cur/`)?
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("new").is_dir() || dir.join("cur").is_dir()
}

fn sorted_files(dir: &Path, filter: impl Fn(&Path) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter(|p| filter(p))
        .collect();
    files.sort();
    Ok(files)
}

/// The Maildir's waiting mail (`new/`), in file-name order.
pub fn maildir_new(root: &Path) -> anyhow::Result<Vec<Input>> {
    let new = root.join("new");
    if !new.is_dir() {
        return Ok(vec![]);
    }
    std::fs::create_dir_all(root.join("cur"))
        .with_context(|| format!("create {}/cur", root.display()))?;
    Ok(sorted_files(&new, |_| true)?
        .into_iter()
        .map(|path| Input::Maildir {
            root: root.to_path_buf(),
            path,
            is_new: true,
        })
        .collect())
}

/// Expands command-line paths: `-` is stdin, a Maildir gives `new/` then `cur/`, a plain folder its `.eml` files in
/// file-name order, anything else is a file.
pub fn collect(paths: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for p in paths {
        if p == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = PathBuf::from(p);
        if path.is_dir() {
            if is_maildir(&path) {
                inputs.extend(maildir_new(&path)?);
                let cur = path.join("cur");
                if cur.is_dir() {
                    inputs.extend(sorted_files(&cur, |_| true)?.into_iter().map(|f| {
                        Input::Maildir {
                            root: path.clone(),
                            path: f,
                            is_new: false,
                        }
                    }));
                }
            } else {
                let emls = sorted_files(&path, |f| {
                    f.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"))
                })?;
                inputs.extend(emls.into_iter().map(Input::File));
            }
        } else if path.exists() {
            inputs.push(Input::File(path));
        } else {
            anyhow::bail!("{p}: no such file or folder");
        }
    }
    Ok(inputs)
}
