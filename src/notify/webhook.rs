//! The webhook sink: every task event is POSTed as JSON to the firm's URL, signed with HMAC-SHA256 over the exact
//! body (`X-Taxinbox-Signature: sha256=<hex>`), with `X-Taxinbox-Event` (created, linked, escalated, done,
//! reopened, reassigned) and `X-Taxinbox-Delivery` (the event's stable key, e.g. `created:12`). `done`, `reopened`
//! (the undo of done) and `reassigned` carry
//! a `change` object (who, when, the status and assignee after it, the assignee before a reassignment, the log
//! entry) as of that change, while `task` is the task as it stands at delivery.
//!
//! **At-least-once.** An event is marked delivered only after a 2xx answer; if taxinbox dies between the POST and
//! the marking, the same event is POSTed again with the same `X-Taxinbox-Delivery`, so a receiver that remembers
//! the delivery ids it processed drops the copy.

use super::sink::{http_error, status_error, SinkError};
use crate::store::{PendingSinkEvent, SinkTask, TaskChange};
use hmac::Mac as _;
use secrecy::{ExposeSecret as _, SecretString};

/// The header carrying `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Taxinbox-Signature";
/// The header naming the event (`created`, `linked`, `escalated`, `done`, `reopened`, `reassigned`).
pub const EVENT_HEADER: &str = "X-Taxinbox-Event";
/// The header carrying the event's stable key, the same on every retry.
pub const DELIVERY_HEADER: &str = "X-Taxinbox-Delivery";

/// `sha256=<hex>`: the signature of `body` with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of one event.
pub fn body(
    sink: &str,
    event: &PendingSinkEvent,
    task: &SinkTask,
    change: Option<&TaskChange>,
) -> serde_json::Value {
    let linked = event
        .message
        .and_then(|id| task.linked_mail.iter().find(|m| m.id == id));
    let rung = (event.event == crate::store::EVENT_ESCALATED)
        .then(|| event.event_key.rsplit(':').next())
        .flatten()
        .and_then(|r| r.parse::<u32>().ok());
    serde_json::json!({
        "event": event.event,
        "delivery": event.event_key,
        "sink": sink,
        "occurred_at": event.created_at,
        "task": task,
        "linked_mail": linked,
        "escalation_rung": rung,
        "change": change,
    })
}

/// POSTs one event; `Ok` on a 2xx answer.
pub async fn deliver(
    client: &reqwest::Client,
    url: &SecretString,
    secret: Option<&SecretString>,
    sink: &str,
    event: &PendingSinkEvent,
    task: &SinkTask,
    change: Option<&TaskChange>,
) -> Result<(), SinkError> {
    let bytes = serde_json::to_vec(&body(sink, event, task, change))
        .map_err(|e| SinkError::Permanent(format!("encode the event: {e}")))?;
    let mut request = client
        .post(url.expose_secret())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &event.event)
        .header(DELIVERY_HEADER, &event.event_key);
    if let Some(secret) = secret {
        request = request.header(
            SIGNATURE_HEADER,
            signature(secret.expose_secret().as_bytes(), &bytes),
        );
    }
    let response = request.body(bytes).send().await.map_err(http_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(status_error(status, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
