//! The daemon's state as systemd's `Type=notify` reads it (`sd_notify(3)`): READY=1 once the sources, the web view
//! and the metrics are up, RELOADING=1 … READY=1 around a SIGHUP reload, STOPPING=1 when it winds down. Outside
//! systemd (no `NOTIFY_SOCKET`) every call does nothing. A message that cannot be sent is logged and otherwise
//! ignored: the service manager's bookkeeping never stops mail.

use sd_notify::NotifyState;

/// The daemon is up: systemd ends `systemctl start` here and starts the units ordered after it.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (SIGHUP) begins; [`reloaded`] ends it. systemd wants the monotonic time of the reload's start with it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    states.push(NotifyState::Status("reloading the rules"));
    send(&states);
}

/// The reload is over (whether it was taken or refused: the rules in force are in force).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The daemon winds down: the mail in hand is finished, leases are released.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot tell systemd the daemon's state: {e}");
    }
}
