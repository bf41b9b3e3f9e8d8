//! `taxinbox directory import`: CSV files (clients, accountants, absences, patents) into the directory, all or
//! nothing; and people leaving (`taxinbox user disable|enable`). A file may be UTF-8 or windows-1251, with `,` or
//! `;` between cells, as a spreadsheet or 1C saved it ([`directory::text`]).
//!
//! By default the files are the whole directory ([`Mode::Register`]): clients missing from the clients file, and
//! (when an accountants file is given) people missing from it, are deactivated — never deleted, so their history
//! stays readable. A deactivated person loses access in the same transaction (sessions and feed token) and their
//! open tasks go to the client's backup accountant or the unassigned queue, each move logged. `--merge`
//! ([`Mode::Merge`]) only creates and updates, for partial files.
//!
//! The import reads the directory before it writes, beside a daemon that may write at any moment: on SQLite its
//! transaction takes the write lock first, as every transaction does ([`Store::begin`]).

use crate::directory::{self, CsvFormat, Directory};
use crate::store::{self, Store};
use anyhow::Context as _;
use std::path::Path;

/// Whether the files are the whole register or a part of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// The files are the whole register: whoever is missing is deactivated.
    #[default]
    Register,
    /// Create and update only (`--merge`), for partial files.
    Merge,
}

/// What an import changed, for the person who ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub clients: usize,
    pub accountants: usize,
    pub absences: Option<usize>,
    pub patents: Option<usize>,
    /// INNs of the clients deactivated because the file no longer lists them.
    pub deactivated_clients: Vec<String>,
    /// E-mails of the people deactivated because the file no longer lists them.
    pub deactivated_people: Vec<String>,
    /// Open tasks handed over from deactivated people.
    pub tasks_moved: usize,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} client(s), {} accountant(s)",
            self.clients, self.accountants
        )?;
        if let Some(n) = self.absences {
            write!(f, ", {n} absence(s)")?;
        }
        if let Some(n) = self.patents {
            write!(f, ", {n} patent(s)")?;
        }
        if !self.deactivated_clients.is_empty() {
            write!(
                f,
                "; deactivated {} client(s): {}",
                self.deactivated_clients.len(),
                self.deactivated_clients.join(", ")
            )?;
        }
        if !self.deactivated_people.is_empty() {
            write!(
                f,
                "; deactivated {} person(s): {}; {} open task(s) handed over",
                self.deactivated_people.len(),
                self.deactivated_people.join(", "),
                self.tasks_moved
            )?;
        }
        Ok(())
    }
}

/// The file's name (for messages) and its text, decoded as `format` says or as detected ([`directory::text`]).
fn read(path: &Path, format: CsvFormat) -> anyhow::Result<(String, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let name = path.display().to_string();
    let text = directory::text::decode(&name, &bytes, format.encoding)?;
    Ok((name, text))
}

/// [`import_files_as`] with the files as the whole register.
pub async fn import_files(
    store: &Store,
    clients: &Path,
    accountants: Option<&Path>,
    absences: Option<&Path>,
    patents: Option<&Path>,
) -> anyhow::Result<Imported> {
    import_files_as(
        Mode::Register,
        store,
        clients,
        accountants,
        absences,
        patents,
    )
    .await
}

/// [`import_files_with`] with each file's encoding and separator detected.
pub async fn import_files_as(
    mode: Mode,
    store: &Store,
    clients: &Path,
    accountants: Option<&Path>,
    absences: Option<&Path>,
    patents: Option<&Path>,
) -> anyhow::Result<Imported> {
    let files = RegisterFiles {
        clients,
        accountants,
        absences,
        patents,
    };
    import_files_with(mode, CsvFormat::default(), store, files).await
}

/// The files of one import: the clients file, and the others when given.
#[derive(Debug, Clone, Copy)]
pub struct RegisterFiles<'a> {
    pub clients: &'a Path,
    pub accountants: Option<&'a Path>,
    pub absences: Option<&'a Path>,
    pub patents: Option<&'a Path>,
}

/// Parses every file first (a bad row names file:line and nothing is applied), checks that the result is a
/// consistent directory together with what is stored, then writes it in one transaction with a log entry. Each
/// file is read as `format` forces, the rest detected per file (UTF-8 or windows-1251, `,` or `;`).
pub async fn import_files_with(
    mode: Mode,
    format: CsvFormat,
    store: &Store,
    files: RegisterFiles<'_>,
) -> anyhow::Result<Imported> {
    let (name, text) = read(files.clients, format)?;
    let clients = directory::parse_clients_csv_with(&name, &text, format.delimiter)?;
    let whole_staff = files.accountants.is_some() && mode == Mode::Register;
    let accountants = match files.accountants {
        Some(p) => {
            let (name, text) = read(p, format)?;
            directory::parse_accountants_csv_with(&name, &text, format.delimiter)?
        }
        None => vec![],
    };
    let absences = match files.absences {
        Some(p) => {
            let (name, text) = read(p, format)?;
            Some(directory::parse_absences_csv_with(
                &name,
                &text,
                format.delimiter,
            )?)
        }
        None => None,
    };
    let patents = match files.patents {
        Some(p) => {
            let (name, text) = read(p, format)?;
            Some(directory::parse_patents_csv_with(
                &name,
                &text,
                format.delimiter,
            )?)
        }
        None => None,
    };
    let mut tx = store.begin().await?;
    let current = store::load_directory(&mut tx).await?;
    let merged = merge(
        mode,
        whole_staff,
        &current,
        &clients,
        &accountants,
        absences.as_deref(),
        patents.as_deref(),
    );
    if let Err(problems) = merged.validate() {
        anyhow::bail!(
            "the directory would be inconsistent, nothing imported:\n  {}",
            problems.join("\n  ")
        );
    }
    let now = store::timestamp(chrono::Utc::now());
    store::save_directory(&mut tx, &clients, &accountants, absences.as_deref(), &now).await?;
    if let Some(patents) = &patents {
        store::save_patents(&mut tx, patents, &now).await?;
    }
    let mut imported = Imported {
        clients: clients.len(),
        accountants: accountants.len(),
        absences: absences.as_ref().map(Vec::len),
        patents: patents.as_ref().map(Vec::len),
        ..Imported::default()
    };
    if mode == Mode::Register {
        let keep = clients.iter().map(|c| c.inn.as_str().to_owned()).collect();
        imported.deactivated_clients =
            store::deactivate_clients_except(&mut tx, &keep, &now).await?;
        if whole_staff {
            let keep = accountants.iter().map(|a| a.email.clone()).collect();
            imported.deactivated_people =
                store::deactivate_accountants_except(&mut tx, &keep, &now).await?;
        }
        for person in &imported.deactivated_people {
            let gone = offboard(&mut tx, person, &merged, "directory import", &now).await?;
            imported.tasks_moved += gone.tasks_moved;
        }
    }
    let mut payload = serde_json::json!({
        "clients": clients.len(), "accountants": accountants.len(), "absences": imported.absences,
    });
    if mode == Mode::Register {
        payload["deactivated_clients"] = imported.deactivated_clients.clone().into();
        payload["deactivated_people"] = imported.deactivated_people.clone().into();
    }
    if let Some(n) = imported.patents {
        payload["patents"] = n.into();
    }
    store::append_log(
        &mut tx,
        &store::LogEntry {
            at: &now,
            event: "directory_imported",
            message: None,
            sha256: None,
            payload: &payload,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(imported)
}

/// The directory as it will be after the import: in [`Mode::Register`] the clients are the file's, and so is the
/// staff when `whole_staff` (an accountants file was given); what the directory keeps of absences and patents
/// then names only those still in it.
fn merge(
    mode: Mode,
    whole_staff: bool,
    current: &Directory,
    clients: &[directory::Client],
    accountants: &[directory::Accountant],
    absences: Option<&[directory::Absence]>,
    patents: Option<&[directory::Patent]>,
) -> Directory {
    let mut all_clients: std::collections::BTreeMap<String, directory::Client> = match mode {
        Mode::Merge => current
            .clients()
            .map(|c| (c.inn.as_str().to_owned(), c.clone()))
            .collect(),
        Mode::Register => Default::default(),
    };
    for c in clients {
        all_clients.insert(c.inn.as_str().to_owned(), c.clone());
    }
    let mut all_accountants: std::collections::BTreeMap<String, directory::Accountant> =
        if whole_staff {
            Default::default()
        } else {
            current
                .accountants()
                .map(|a| (a.email.clone(), a.clone()))
                .collect()
        };
    for a in accountants {
        all_accountants.insert(a.email.clone(), a.clone());
    }
    let mut all_absences: Vec<directory::Absence> = current
        .absences()
        .iter()
        .filter(|a| all_accountants.contains_key(&a.email))
        .cloned()
        .collect();
    if let Some(new) = absences {
        all_absences.retain(|a| !new.iter().any(|n| n.email == a.email));
        all_absences.extend(new.iter().cloned());
    }
    // A patents file is the whole truth about the patents of the holders it names.
    let mut all_patents: Vec<directory::Patent> = current
        .patents()
        .filter(|p| all_clients.contains_key(p.inn.as_str()))
        .cloned()
        .collect();
    if let Some(new) = patents {
        all_patents.retain(|p| !new.iter().any(|n| n.inn == p.inn));
        all_patents.extend(new.iter().cloned());
    }
    Directory::new(
        all_clients.into_values().collect(),
        all_accountants.into_values().collect(),
        all_absences,
    )
    .with_patents(all_patents)
}

/// What [`offboard`] did for one person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offboarded {
    pub sessions_ended: u64,
    pub feed_revoked: bool,
    pub tasks_moved: usize,
}

/// Takes away a deactivated person's access and work, inside the open transaction: their sessions end, their
/// feed token goes, and each open task goes to its client's backup accountant in `after` (the register once they
/// are gone) or, without one, to the unassigned queue; each move is a `task_reassigned` log entry and a task event.
pub async fn offboard(
    conn: &mut sqlx::AnyConnection,
    email: &str,
    after: &Directory,
    by: &str,
    now: &str,
) -> anyhow::Result<Offboarded> {
    let sessions_ended = store::end_sessions_of(conn, email).await?;
    let feed_revoked = store::revoke_feed_token(conn, email).await?;
    let mut tasks_moved = 0;
    for task in store::open_tasks_assigned_to(conn, email).await? {
        let to = task
            .client_inn
            .as_deref()
            .and_then(|inn| after.client(inn))
            .and_then(|c| c.backup_accountant.as_deref())
            .filter(|b| *b != email && after.accountant(b).is_some());
        if !store::hand_over_task(conn, task.id, to).await? {
            continue;
        }
        let payload = serde_json::json!({
            "task": task.id, "step": task.step, "from": email, "to": to, "by": by, "reason": "deactivated",
        });
        let seq = store::append_log(
            conn,
            &store::LogEntry {
                at: now,
                event: "task_reassigned",
                message: task.message,
                sha256: None,
                payload: &payload,
            },
        )
        .await?;
        store::queue_task_change(conn, task.id, store::EVENT_REASSIGNED, seq, now).await?;
        tasks_moved += 1;
    }
    tracing::info!(account = %email, sessions_ended, feed_revoked, tasks_moved, "person deactivated");
    Ok(Offboarded {
        sessions_ended,
        feed_revoked,
        tasks_moved,
    })
}

/// `taxinbox user disable EMAIL`: deactivates a member of staff and [`offboard`]s them, in one transaction with
/// a `person_disabled` log entry. People named in `[web] admins`/`auditors` are refused: the configuration, not
/// the register, gives them their role.
pub async fn disable_person(
    store: &Store,
    web: &crate::settings::WebSettings,
    email: &str,
) -> anyhow::Result<Offboarded> {
    let email = email.trim().to_lowercase();
    if web.admins.contains(&email) || web.auditors.contains(&email) {
        anyhow::bail!(
            "{email} is in [web] admins/auditors: remove the address from the configuration to take the role away"
        );
    }
    let now = store::timestamp(chrono::Utc::now());
    let mut tx = store.begin().await?;
    if !store::set_accountant_active(&mut tx, &email, false, &now).await? {
        anyhow::bail!("{email} is not an active member of staff in the directory; nothing changed");
    }
    let after = store::load_directory(&mut tx).await?;
    let done = offboard(&mut tx, &email, &after, "user disable", &now).await?;
    let payload = serde_json::json!({"person": email, "tasks_moved": done.tasks_moved});
    store::append_log(
        &mut tx,
        &store::LogEntry {
            at: &now,
            event: "person_disabled",
            message: None,
            sha256: None,
            payload: &payload,
        },
    )
    .await?;
    tx.commit().await.context("disable a person")?;
    Ok(done)
}

/// `taxinbox user enable EMAIL`: makes a deactivated member of staff active again (a new password and feed link
/// are theirs to ask for); logged as `person_enabled`.
pub async fn enable_person(store: &Store, email: &str) -> anyhow::Result<()> {
    let email = email.trim().to_lowercase();
    let now = store::timestamp(chrono::Utc::now());
    let mut tx = store.begin().await?;
    if !store::set_accountant_active(&mut tx, &email, true, &now).await? {
        anyhow::bail!(
            "{email} is not a deactivated member of staff in the directory; nothing changed"
        );
    }
    let payload = serde_json::json!({"person": email});
    store::append_log(
        &mut tx,
        &store::LogEntry {
            at: &now,
            event: "person_enabled",
            message: None,
            sha256: None,
            payload: &payload,
        },
    )
    .await?;
    tx.commit().await.context("enable a person")?;
    Ok(())
}
