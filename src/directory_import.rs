//! `taxinbox directory import`: CSV files (clients, accountants, absences, patents) into the directory, all or
//! nothing.

use crate::directory::{self, Directory};
use crate::store::{self, Store};
use anyhow::Context as _;
use std::path::Path;

/// What an import changed, for the person who ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub clients: usize,
    pub accountants: usize,
    pub absences: Option<usize>,
    pub patents: Option<usize>,
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
        Ok(())
    }
}

fn read(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// Parses every file first (a bad row names file:line and nothing is applied), checks that the result is a
/// consistent directory together with what is stored, then writes it in one transaction with a log entry.
pub async fn import_files(
    store: &Store,
    clients: &Path,
    accountants: Option<&Path>,
    absences: Option<&Path>,
    patents: Option<&Path>,
) -> anyhow::Result<Imported> {
    let (name, text) = read(clients)?;
    let clients = directory::parse_clients_csv(&name, &text)?;
    let accountants = match accountants {
        Some(p) => {
            let (name, text) = read(p)?;
            directory::parse_accountants_csv(&name, &text)?
        }
        None => vec![],
    };
    let absences = match absences {
        Some(p) => {
            let (name, text) = read(p)?;
            Some(directory::parse_absences_csv(&name, &text)?)
        }
        None => None,
    };
    let patents = match patents {
        Some(p) => {
            let (name, text) = read(p)?;
            Some(directory::parse_patents_csv(&name, &text)?)
        }
        None => None,
    };
    let mut tx = store.begin().await?;
    let current = store::load_directory(&mut tx).await?;
    let merged = merge(
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
    let imported = Imported {
        clients: clients.len(),
        accountants: accountants.len(),
        absences: absences.as_ref().map(Vec::len),
        patents: patents.as_ref().map(Vec::len),
    };
    let mut payload = serde_json::json!({
        "clients": clients.len(), "accountants": accountants.len(), "absences": imported.absences,
    });
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

/// The directory as it will be after the import.
fn merge(
    current: &Directory,
    clients: &[directory::Client],
    accountants: &[directory::Accountant],
    absences: Option<&[directory::Absence]>,
    patents: Option<&[directory::Patent]>,
) -> Directory {
    let mut all_clients: std::collections::BTreeMap<String, directory::Client> = current
        .clients()
        .map(|c| (c.inn.as_str().to_owned(), c.clone()))
        .collect();
    for c in clients {
        all_clients.insert(c.inn.as_str().to_owned(), c.clone());
    }
    let mut all_accountants: std::collections::BTreeMap<String, directory::Accountant> = current
        .accountants()
        .map(|a| (a.email.clone(), a.clone()))
        .collect();
    for a in accountants {
        all_accountants.insert(a.email.clone(), a.clone());
    }
    let mut all_absences: Vec<directory::Absence> = current.absences().to_vec();
    if let Some(new) = absences {
        all_absences.retain(|a| !new.iter().any(|n| n.email == a.email));
        all_absences.extend(new.iter().cloned());
    }
    // A patents file is the whole truth about the patents of the holders it names.
    let mut all_patents: Vec<directory::Patent> = current.patents().cloned().collect();
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
