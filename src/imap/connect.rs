//! Opening an authenticated IMAP session: TCP, then TLS from the first byte, STARTTLS, or plain text (only when
//! `tls = "none"` is written in the configuration), then LOGIN.
//!
//! Certificates are always verified: against the public web roots, or against the CA file the mailbox names
//! (`tls_ca_file`). The password is read from its source at each connect (a rotated secret needs no restart),
//! passed to LOGIN and dropped; it appears in no log line and no error text.

use super::{Error, NETWORK_TIMEOUT};
use crate::settings::{MailboxSettings, Tls};
use secrecy::ExposeSecret as _;
use std::fmt;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::instrument;

/// Any byte stream a session runs over (plain TCP or TLS), boxed so that one session type serves all.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}

/// An authenticated IMAP session.
pub type Session = async_imap::Session<Box<dyn Transport>>;

/// Connects and logs in to `mailbox`'s server.
#[instrument(skip_all, fields(mailbox = %mailbox.name))]
pub async fn connect(mailbox: &MailboxSettings) -> Result<Session, Error> {
    let name = mailbox.name.as_str();
    let config_error = |reason: String| Error::Config {
        mailbox: name.to_owned(),
        reason,
    };
    // Read before any network work: a missing secret is a configuration problem, not a network one.
    let password = mailbox
        .password
        .resolve()
        .map_err(|e| config_error(e.to_string()))?;
    let tcp = match tokio::time::timeout(
        NETWORK_TIMEOUT,
        TcpStream::connect((mailbox.host.as_str(), mailbox.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(Error::Network {
                mailbox: name.to_owned(),
                reason: format!("connect to {}:{}: {e}", mailbox.host, mailbox.port),
            })
        }
        Err(_) => {
            return Err(Error::timeout(
                name,
                &format!("connect to {}:{}", mailbox.host, mailbox.port),
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let client = match mailbox.tls {
        Tls::Tls => {
            let tls = tls_handshake(mailbox, tcp).await?;
            let mut client = async_imap::Client::new(Box::new(tls) as Box<dyn Transport>);
            read_greeting(name, &mut client).await?;
            client
        }
        Tls::Starttls => {
            let mut plain = async_imap::Client::new(tcp);
            read_greeting(name, &mut plain).await?;
            super::timed(
                name,
                "STARTTLS",
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let tls = tls_handshake(mailbox, plain.into_inner()).await?;
            // No greeting after STARTTLS (RFC 3501 6.2.1).
            async_imap::Client::new(Box::new(tls) as Box<dyn Transport>)
        }
        Tls::None => {
            let mut client = async_imap::Client::new(Box::new(tcp) as Box<dyn Transport>);
            read_greeting(name, &mut client).await?;
            client
        }
    };
    match tokio::time::timeout(
        NETWORK_TIMEOUT,
        client.login(&mailbox.user, password.expose_secret()),
    )
    .await
    {
        Ok(Ok(session)) => Ok(session),
        Ok(Err((error, _client))) => Err(login_error(mailbox, error)),
        Err(_) => Err(Error::timeout(name, "LOGIN")),
    }
}

/// A refused LOGIN is `Auth`; a broken connection during LOGIN stays a network problem worth retrying, and so
/// does a refusal the server marks as temporary (RFC 5530: `[UNAVAILABLE]`, `[LIMIT]` — too many connections —,
/// `[INUSE]`, `[SERVERBUG]`): the password was not what failed.
fn login_error(mailbox: &MailboxSettings, error: async_imap::error::Error) -> Error {
    use async_imap::error::Error as E;
    let reason = match error {
        E::No(text) | E::Bad(text) => text,
        // The only validation LOGIN does is on the user and password strings; naming the character class is
        // enough and never shows the password.
        E::Validate(_) => "the user name or password holds a character IMAP cannot send".to_owned(),
        other => return Error::from_imap(&mailbox.name, "LOGIN", other),
    };
    if refusal_is_temporary(&reason) {
        return Error::Server {
            mailbox: mailbox.name.clone(),
            reason: format!("LOGIN refused for now: {}", reason.trim()),
        };
    }
    Error::Auth {
        mailbox: mailbox.name.clone(),
        user: mailbox.user.clone(),
        host: mailbox.host.clone(),
        reason: reason.trim().to_owned(),
    }
}

/// Whether a refusal carries an RFC 5530 code for a temporary condition.
fn refusal_is_temporary(reason: &str) -> bool {
    let reason = reason.to_ascii_uppercase();
    ["[UNAVAILABLE]", "[LIMIT]", "[INUSE]", "[SERVERBUG]"]
        .iter()
        .any(|code| reason.contains(code))
}

async fn read_greeting<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug>(
    mailbox: &str,
    client: &mut async_imap::Client<T>,
) -> Result<(), Error> {
    match tokio::time::timeout(NETWORK_TIMEOUT, client.read_response()).await {
        Ok(Ok(Some(_greeting))) => Ok(()),
        Ok(Ok(None)) => Err(Error::Network {
            mailbox: mailbox.to_owned(),
            reason: "the server closed the connection before its greeting".to_owned(),
        }),
        Ok(Err(e)) => Err(Error::Network {
            mailbox: mailbox.to_owned(),
            reason: format!("read the greeting: {e}"),
        }),
        Err(_) => Err(Error::timeout(mailbox, "read the greeting")),
    }
}

async fn tls_handshake(
    mailbox: &MailboxSettings,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = mailbox.name.as_str();
    let config = tls_config(mailbox)?;
    let server_name = ServerName::try_from(mailbox.host.clone()).map_err(|e| Error::Config {
        mailbox: name.to_owned(),
        reason: format!(
            "host {:?} is not a valid TLS server name: {e}",
            mailbox.host
        ),
    })?;
    match tokio::time::timeout(
        NETWORK_TIMEOUT,
        TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => {
            // rustls reports certificate and protocol failures as InvalidData: retrying cannot fix those.
            let reason = format!("TLS with {}:{}: {e}", mailbox.host, mailbox.port);
            if e.kind() == std::io::ErrorKind::InvalidData {
                Err(Error::Config {
                    mailbox: name.to_owned(),
                    reason,
                })
            } else {
                Err(Error::Network {
                    mailbox: name.to_owned(),
                    reason,
                })
            }
        }
        Err(_) => Err(Error::timeout(name, "TLS handshake")),
    }
}

/// The client configuration: ring, TLS 1.2+, and the roots to verify against.
fn tls_config(mailbox: &MailboxSettings) -> Result<Arc<ClientConfig>, Error> {
    let config_error = |reason: String| Error::Config {
        mailbox: mailbox.name.clone(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    match &mailbox.tls_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| config_error(format!("tls_ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| config_error(format!("tls_ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| config_error(format!("tls_ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(config_error(format!(
                    "tls_ca_file {}: no certificate in the file",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_refused_for_a_connection_limit_is_temporary_and_a_wrong_password_is_not() {
        assert!(refusal_is_temporary(
            "code: None, info: Some(\"[LIMIT] Maximum number of connections from user+IP exceeded\")"
        ));
        assert!(refusal_is_temporary(
            "[UNAVAILABLE] Temporary authentication failure."
        ));
        assert!(!refusal_is_temporary(
            "[AUTHENTICATIONFAILED] Authentication failed."
        ));
        assert!(!refusal_is_temporary("Login failed"));
    }
}
