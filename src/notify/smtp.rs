//! Sending one message through an SMTP server with lettre: implicit TLS, STARTTLS, or plain text only when
//! `tls = "none"` is written in the configuration; AUTH with the password read from its source (never logged);
//! every conversation bounded by timeouts. Failures are sorted into "try again later" and "will never work".

use crate::settings::{PasswordSource, Tls};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls as SmtpTls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::ExposeSecret as _;
use std::path::Path;
use std::time::Duration;

/// Why a message was not delivered, and whether trying again makes sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server is unreachable, timed out, or answered 4xx: the same message may go through later.
    #[error("{0}")]
    Transient(String),
    /// The server refused the message or its recipient (5xx), or the message cannot be built: retrying repeats it.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// Whether the same message may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// A configured SMTP relay.
#[derive(Clone)]
pub struct SmtpDelivery {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    host: String,
    port: u16,
    /// The bound of one whole send (connect, TLS, AUTH, envelope, data), above lettre's per-command timeout.
    overall: Duration,
}

impl std::fmt::Debug for SmtpDelivery {
    // The transport holds the credentials: show only where it points.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpDelivery")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Each SMTP command waits at most `timeout`; a whole send has a few commands (EHLO, STARTTLS, AUTH, MAIL, RCPT,
/// DATA, the body), so it is bounded by this many times that.
const COMMANDS_PER_SEND: u32 = 8;

impl SmtpDelivery {
    /// Builds the transport; the password is read from its source now, so a rotated secret is used from the next
    /// pass on without a restart. The server's certificate is checked against the public roots.
    pub fn new(
        host: &str,
        port: u16,
        tls: Tls,
        user: Option<&str>,
        password: Option<&PasswordSource>,
        timeout: Duration,
    ) -> anyhow::Result<SmtpDelivery> {
        Self::with_tls_ca(host, port, tls, user, password, timeout, None)
    }

    /// As [`SmtpDelivery::new`], with the CA certificates of `ca_file` (PEM) trusted besides the public roots: a
    /// relay with a certificate of the firm's own CA (`[notify] tls_ca_file`). Verification is never switched off.
    #[tracing::instrument(skip_all, fields(host = %host, port))]
    pub fn with_tls_ca(
        host: &str,
        port: u16,
        tls: Tls,
        user: Option<&str>,
        password: Option<&PasswordSource>,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<SmtpDelivery> {
        let parameters = || -> anyhow::Result<TlsParameters> {
            let mut builder = TlsParameters::builder(host.to_owned());
            if let Some(path) = ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("notify.tls_ca_file {}: {e}", path.display()))?;
                if !pem.windows(17).any(|w| w == b"BEGIN CERTIFICATE") {
                    anyhow::bail!(
                        "notify.tls_ca_file {}: no certificate in the file",
                        path.display()
                    );
                }
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("notify.tls_ca_file {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            Ok(builder.build()?)
        };
        let builder = match tls {
            Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(SmtpTls::Wrapper(parameters()?)),
            // STARTTLS is required: without it no credentials and no mail are sent (no downgrade).
            Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(SmtpTls::Required(parameters()?)),
            // Written in the configuration (never a default): a relay on the same host or a trusted network.
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder.port(port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (user, password) {
            let secret = password.resolve()?;
            builder = builder.credentials(Credentials::new(
                user.to_owned(),
                secret.expose_secret().to_owned(),
            ));
        }
        Ok(SmtpDelivery {
            transport: builder.build(),
            host: host.to_owned(),
            port,
            overall: timeout.saturating_mul(COMMANDS_PER_SEND),
        })
    }

    /// Sends one message; `Ok` only once the server accepted it (2xx after DATA).
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match tokio::time::timeout(self.overall, self.transport.send(message)).await {
            Err(_) => Err(SendError::Transient(format!(
                "SMTP {}:{}: no answer within {:?}",
                self.host, self.port, self.overall
            ))),
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => {
                let text = format!("SMTP {}:{}: {e}", self.host, self.port);
                // 5xx is the server's final word on this message (unknown recipient, refused content). Everything
                // else — 4xx, refused connection, timeout, TLS trouble, a dropped line — may pass later. So does a
                // refused login (530, 534, 535, 538): the configuration is at fault, not the message, and once an
                // admin fixes the password the same message goes through; it must wait, not fail for good.
                let login_refused = e.status().is_some_and(|code| {
                    matches!(code.to_string().as_str(), "530" | "534" | "535" | "538")
                });
                if e.is_permanent() && !login_refused {
                    Err(SendError::Permanent(text))
                } else {
                    Err(SendError::Transient(text))
                }
            }
        }
    }
}
