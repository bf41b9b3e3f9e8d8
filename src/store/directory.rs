//! The firm's directory in the database: clients, their contact addresses, accountants, absences.
//!
//! Nobody is deleted: a person or client who leaves is deactivated (`active = 0`), their history stays readable,
//! and [`load_directory`] reads only the active directory.

use crate::directory::{Absence, Accountant, Client, Directory};
use anyhow::Context as _;
use sqlx::AnyConnection;

/// Creates or updates the given clients and accountants; when `absences` is given it replaces the absences of the
/// people it names (a file is the whole truth about those people's absences). Bumps the directory generation.
pub async fn save_directory(
    conn: &mut AnyConnection,
    clients: &[Client],
    accountants: &[Accountant],
    absences: Option<&[Absence]>,
    now: &str,
) -> anyhow::Result<()> {
    for a in accountants {
        sqlx::query(
            "INSERT INTO accountants (email, name, role, manager) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO UPDATE SET name = excluded.name, role = excluded.role, manager = excluded.manager, \
             active = 1, deactivated_at = NULL",
        )
        .bind(&a.email)
        .bind(&a.name)
        .bind(a.role.as_str())
        .bind(&a.manager)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("save accountant {}", a.email))?;
    }
    for c in clients {
        sqlx::query(
            "INSERT INTO clients (inn, name, kpp, regime, has_employees, vat_payer, accountant, backup_accountant, \
             region, attributes, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (inn) DO UPDATE SET name = excluded.name, kpp = excluded.kpp, regime = excluded.regime, \
             has_employees = excluded.has_employees, vat_payer = excluded.vat_payer, \
             accountant = excluded.accountant, backup_accountant = excluded.backup_accountant, \
             region = excluded.region, attributes = excluded.attributes, updated_at = excluded.updated_at, \
             active = 1, deactivated_at = NULL",
        )
        .bind(c.inn.as_str())
        .bind(&c.name)
        .bind(c.kpp.as_ref().map(|k| k.as_str().to_owned()))
        .bind(c.regime.as_str())
        .bind(i64::from(c.has_employees))
        .bind(i64::from(c.vat_payer))
        .bind(&c.accountant)
        .bind(&c.backup_accountant)
        .bind(&c.region)
        .bind(c.attributes.join("|"))
        .bind(now)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("save client {}", c.inn))?;
        sqlx::query("DELETE FROM client_contacts WHERE client_inn = $1")
            .bind(c.inn.as_str())
            .execute(&mut *conn)
            .await?;
        for (position, address) in c.emails.iter().enumerate() {
            sqlx::query(
                "INSERT INTO client_contacts (client_inn, address, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (client_inn, address) DO NOTHING",
            )
            .bind(c.inn.as_str())
            .bind(address)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("save contact {address} of client {}", c.inn))?;
        }
    }
    if let Some(absences) = absences {
        let mut people: Vec<&str> = absences.iter().map(|a| a.email.as_str()).collect();
        people.sort_unstable();
        people.dedup();
        for person in people {
            sqlx::query("DELETE FROM absences WHERE email = $1")
                .bind(person)
                .execute(&mut *conn)
                .await?;
        }
        for a in absences {
            sqlx::query(
                "INSERT INTO absences (email, date_from, date_to, substitute) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (email, date_from) DO UPDATE SET date_to = excluded.date_to, \
                 substitute = excluded.substitute",
            )
            .bind(&a.email)
            .bind(a.from.to_string())
            .bind(a.to.to_string())
            .bind(&a.substitute)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("save absence of {}", a.email))?;
        }
    }
    // In the same transaction: a running daemon sees the new generation exactly when it can read the new directory.
    super::generation::bump_directory_generation(conn).await?;
    Ok(())
}

/// A row of `clients`, before its INN, KPP and regime are parsed.
#[derive(sqlx::FromRow)]
struct ClientRow {
    inn: String,
    name: String,
    kpp: Option<String>,
    regime: String,
    #[sqlx(try_from = "super::IntBool")]
    has_employees: bool,
    #[sqlx(try_from = "super::IntBool")]
    vat_payer: bool,
    accountant: String,
    backup_accountant: Option<String>,
    region: Option<String>,
    attributes: String,
}

/// Reads the whole directory into memory; lookups during processing then do no I/O.
pub async fn load_directory(conn: &mut AnyConnection) -> anyhow::Result<Directory> {
    // The directory's rows become its domain types here: parsed (INN, role, dates), so mapped by hand.
    let accountants = sqlx::query_as::<_, (String, String, String, Option<String>)>(
        "SELECT email, name, role, manager FROM accountants WHERE active = 1 ORDER BY email",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read accountants")?
    .into_iter()
    .map(|(email, name, role, manager)| {
        Ok(Accountant {
            email,
            name,
            role: role
                .parse()
                .map_err(|e| anyhow::anyhow!("accountant role {role:?}: {e}"))?,
            manager,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    let contacts: Vec<(String, String)> = sqlx::query_as(
        "SELECT client_inn, address FROM client_contacts ORDER BY client_inn, position",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read client contacts")?;
    let mut emails: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (inn, address) in contacts {
        emails.entry(inn).or_default().push(address);
    }
    let clients = sqlx::query_as::<_, ClientRow>(
        "SELECT inn, name, kpp, regime, has_employees, vat_payer, accountant, backup_accountant, region, attributes \
         FROM clients WHERE active = 1 ORDER BY inn",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read clients")?
    .into_iter()
    .map(|r| {
        let ClientRow { inn, regime, .. } = &r;
        Ok(Client {
            inn: crate::ids::Inn::parse(inn)?,
            kpp: r.kpp.as_deref().map(crate::ids::Kpp::parse).transpose()?,
            regime: regime.parse().map_err(|e| anyhow::anyhow!("client {inn} regime {regime:?}: {e}"))?,
            has_employees: r.has_employees,
            vat_payer: r.vat_payer,
            emails: emails.remove(inn).unwrap_or_default(),
            attributes: r.attributes.split('|').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
            name: r.name,
            accountant: r.accountant,
            backup_accountant: r.backup_accountant,
            region: r.region,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    let absences = sqlx::query_as::<_, (String, String, String, Option<String>)>(
        "SELECT email, date_from, date_to, substitute FROM absences ORDER BY email, date_from",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read absences")?
    .into_iter()
    .map(|(email, from, to, substitute)| {
        Ok(Absence {
            email,
            from: from.parse()?,
            to: to.parse()?,
            substitute,
        })
    })
    .collect::<anyhow::Result<Vec<_>>>()?;
    // Deactivated people's absences and deactivated clients' patents stay stored but are no part of the register.
    let absences = absences
        .into_iter()
        .filter(|a| accountants.iter().any(|p| p.email == a.email))
        .collect();
    let patents = super::patents::load_patents(conn)
        .await?
        .into_iter()
        .filter(|p| clients.iter().any(|c| c.inn.as_str() == p.inn.as_str()))
        .collect();
    Ok(Directory::new(clients, accountants, absences).with_patents(patents))
}

/// Deactivates the active clients whose INN is not in `keep`; returns their INNs.
pub async fn deactivate_clients_except(
    conn: &mut AnyConnection,
    keep: &std::collections::BTreeSet<String>,
    now: &str,
) -> anyhow::Result<Vec<String>> {
    let active: Vec<String> =
        sqlx::query_scalar("SELECT inn FROM clients WHERE active = 1 ORDER BY inn")
            .fetch_all(&mut *conn)
            .await
            .context("read active clients")?;
    let mut gone = Vec::new();
    for inn in active.into_iter().filter(|inn| !keep.contains(inn)) {
        sqlx::query("UPDATE clients SET active = 0, deactivated_at = $1 WHERE inn = $2")
            .bind(now)
            .bind(&inn)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("deactivate client {inn}"))?;
        gone.push(inn);
    }
    Ok(gone)
}

/// Deactivates the active members of staff whose e-mail is not in `keep`; returns their e-mails.
pub async fn deactivate_accountants_except(
    conn: &mut AnyConnection,
    keep: &std::collections::BTreeSet<String>,
    now: &str,
) -> anyhow::Result<Vec<String>> {
    let active: Vec<String> =
        sqlx::query_scalar("SELECT email FROM accountants WHERE active = 1 ORDER BY email")
            .fetch_all(&mut *conn)
            .await
            .context("read active staff")?;
    let mut gone = Vec::new();
    for email in active.into_iter().filter(|e| !keep.contains(e)) {
        set_accountant_active(conn, &email, false, now).await?;
        gone.push(email);
    }
    Ok(gone)
}

/// Deactivates or reactivates a member of staff (`taxinbox user disable|enable`); `false` when the register has
/// nobody of that address in the other state. Bumps the register generation when something changed.
pub async fn set_accountant_active(
    conn: &mut AnyConnection,
    email: &str,
    active: bool,
    now: &str,
) -> anyhow::Result<bool> {
    let changed = sqlx::query(
        "UPDATE accountants SET active = $1, deactivated_at = CASE WHEN $1 = 1 THEN NULL ELSE $2 END \
         WHERE email = $3 AND active <> $1",
    )
    .bind(i64::from(active))
    .bind(now)
    .bind(email)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("change whether {email} is active"))?
    .rows_affected();
    if changed > 0 {
        super::generation::bump_directory_generation(conn).await?;
    }
    Ok(changed > 0)
}

/// Whether `email` is a member of staff the register once had and has deactivated.
pub async fn is_deactivated(conn: &mut AnyConnection, email: &str) -> anyhow::Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) AS n FROM accountants WHERE email = $1 AND active = 0")
            .bind(email)
            .fetch_one(&mut *conn)
            .await
            .context("read whether a person is deactivated")?;
    Ok(n > 0)
}

/// An open task to hand over when its assignee leaves.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenTaskOf {
    pub id: i64,
    pub message: Option<i64>,
    pub client_inn: Option<String>,
    pub step: String,
}

/// The open tasks assigned to `email`, by id.
pub async fn open_tasks_assigned_to(
    conn: &mut AnyConnection,
    email: &str,
) -> anyhow::Result<Vec<OpenTaskOf>> {
    sqlx::query_as(
        "SELECT id, message, client_inn, step FROM tasks WHERE assignee = $1 AND status = 'open' ORDER BY id",
    )
    .bind(email)
    .fetch_all(&mut *conn)
    .await
    .context("read a person's open tasks")
}

/// Gives open task `id` to `to` (`None`: the unassigned queue); `false` when it was not open.
pub async fn hand_over_task(
    conn: &mut AnyConnection,
    id: i64,
    to: Option<&str>,
) -> anyhow::Result<bool> {
    let moved = sqlx::query("UPDATE tasks SET assignee = $1 WHERE id = $2 AND status = 'open'")
        .bind(to)
        .bind(id)
        .execute(&mut *conn)
        .await
        .context("hand over a task")?;
    Ok(moved.rows_affected() == 1)
}
