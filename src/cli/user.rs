//! `taxinbox user set-password EMAIL`: the password is read from a prompt without echo, or from standard input when it
//! is not a terminal — never from the command line; it ends the person's sessions.
//! `taxinbox user disable|enable EMAIL`: a member of staff leaves (or comes back).

use crate::app::Instance;
use anyhow::Context as _;
use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub async fn set_password(config: Option<&Path>, email: &str) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    let password = read_password(email)?;
    crate::web::set_password(&app.store, &app.settings.web, email, &password).await?;
    writeln!(
        std::io::stdout(),
        "password set for {}",
        email.trim().to_lowercase()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub async fn disable(config: Option<&Path>, email: &str) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    let done =
        crate::directory_import::disable_person(&app.store, &app.settings.web, email).await?;
    println!(
        "disabled {}: {} session(s) ended, calendar feed {}, {} open task(s) handed over",
        email.trim().to_lowercase(),
        done.sessions_ended,
        if done.feed_revoked { "revoked" } else { "none" },
        done.tasks_moved
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn enable(config: Option<&Path>, email: &str) -> anyhow::Result<ExitCode> {
    let app = Instance::open(config).await?;
    crate::directory_import::enable_person(&app.store, email).await?;
    println!("enabled {}", email.trim().to_lowercase());
    Ok(ExitCode::SUCCESS)
}

/// A password from a prompt without echo on a terminal, else the first line of standard input.
fn read_password(email: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {email}: "))
            .context("read the password")?;
        let again = rpassword::prompt_password("Repeat it: ").context("read the password")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("read the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
