//! `[http]`: the address the status page, the metrics and the web view listen on; the status listener of its own;
//! the connection timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Loopback only: the status page is not meant to face the network without a proxy in front. The port is outside
/// Prometheus' exporter range 9100–9999, every port of which is allocated to some exporter on the project's "Default
/// port allocations" list (9187 is postgres_exporter's, which often runs on the same host as our database), and
/// outside 10000+ where new exporters now get theirs; it is none of the usual web alternatives (8000, 8008, 8080,
/// 8081, 8088, 8443, 8888) either, since the web view listens here too.
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8437";
/// A browser sends its headers in one packet; ten seconds is generous even over a poor link, and short enough
/// that trickled headers (slowloris) do not hold connections for long.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// A kept-alive connection with nothing to say is closed after this long.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// A listener of its own for `/healthz` in full and `/metrics` (monitoring only); `listen` then answers
    /// `/healthz` with a bare liveness answer. `None`: the details on `listen`, for direct loopback connections only.
    pub status_listen: Option<SocketAddr>,
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout: Duration,
    /// A connection without traffic is closed after this long.
    pub idle_timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
    status_listen: Option<String>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
}

fn address(problems: &mut Vec<String>, key: &str, text: &str) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "http.{key}: {text:?} is not an address:port such as 127.0.0.1:8437"
            ));
            None
        }
    }
}

/// Validates `[http]`; `None` when an address is not one (the problem is recorded).
pub(super) fn validate(problems: &mut Vec<String>, raw: RawHttp) -> Option<HttpSettings> {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let listen = address(problems, "listen", &listen_text);
    let status_listen = match raw.status_listen.as_deref() {
        Some(text) => Some(address(problems, "status_listen", text)?),
        None => None,
    };
    let header_read = raw
        .header_read_timeout_secs
        .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_SECS);
    let idle = raw.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
    if header_read == 0 || idle == 0 {
        problems.push(
            "http: header_read_timeout_secs and idle_timeout_secs must be at least 1".to_owned(),
        );
        return None;
    }
    Some(HttpSettings {
        listen: listen?,
        status_listen,
        header_read_timeout: Duration::from_secs(header_read),
        idle_timeout: Duration::from_secs(idle),
    })
}
