//! `[http]`: the address the status page, the metrics and the web view listen on.

use std::net::SocketAddr;

use serde::Deserialize;

/// Loopback only: the status page is not meant to face the network without a proxy in front.
const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9187";

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
}

/// Validates `[http]`; `None` when the address is not one (the problem is recorded).
pub(super) fn validate(problems: &mut Vec<String>, raw: RawHttp) -> Option<HttpSettings> {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    match listen_text.trim().parse::<SocketAddr>() {
        Ok(listen) => Some(HttpSettings { listen }),
        Err(_) => {
            problems.push(format!(
                "http.listen: {listen_text:?} is not an address:port such as 127.0.0.1:9187"
            ));
            None
        }
    }
}
