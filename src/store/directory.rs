//! The firm's directory in the database: clients, their contact addresses, accountants, absences.

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
             ON CONFLICT (email) DO UPDATE SET name = excluded.name, role = excluded.role, manager = excluded.manager",
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
             region = excluded.region, attributes = excluded.attributes, updated_at = excluded.updated_at",
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
        "SELECT email, name, role, manager FROM accountants ORDER BY email",
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
         FROM clients ORDER BY inn",
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
    let patents = super::patents::load_patents(conn).await?;
    Ok(Directory::new(clients, accountants, absences).with_patents(patents))
}
