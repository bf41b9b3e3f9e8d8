//! The HTTP listener's own defences (issue 18): a header-read and an idle timeout cut off clients that trickle or
//! sit idle (slowloris), and the status details stay off the public listener.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use taxinbox::http::{ConnectionLimits, Server};

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read: Duration::from_secs(1),
        idle: Duration::from_secs(2),
    }
}

/// Writes `bytes` one at a time, `pause` apart, at most `max` of them; `true` when the server closed the
/// connection before they were all sent.
fn trickle(stream: &mut TcpStream, bytes: &[u8], pause: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            return true;
        }
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
        std::thread::sleep(pause);
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_and_idle_connections_are_cut_off() {
    let metrics = Arc::new(taxinbox::metrics::Metrics::new());
    let server = Server::start_with(
        "127.0.0.1:0".parse().unwrap(),
        None,
        metrics,
        None,
        limits(),
    )
    .await
    .unwrap();
    let address = server.address;
    let (trickled, idle, normal) = tokio::task::spawn_blocking(move || {
        // Headers one byte every 200 ms: 60 bytes would take 12 s; the header deadline is 1 s.
        let mut slow = TcpStream::connect(address).unwrap();
        let headers = format!(
            "GET /healthz HTTP/1.1\r\nHost: {address}\r\nX-Slow: {}\r\n\r\n",
            "a".repeat(30)
        );
        let trickled = trickle(&mut slow, headers.as_bytes(), Duration::from_millis(200));
        // Connected and silent: closed after the idle timeout (bounded wait: 10 s of reads).
        let mut silent = TcpStream::connect(address).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 16];
        let idle = matches!(silent.read(&mut buf), Ok(0));
        // A request sent at once is answered.
        let mut quick = TcpStream::connect(address).unwrap();
        quick
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        quick
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = quick.read_to_string(&mut answer);
        (trickled, idle, answer.starts_with("HTTP/1.1 200"))
    })
    .await
    .unwrap();
    assert!(trickled, "a client trickling its headers is cut off");
    assert!(idle, "an idle connection is closed");
    assert!(normal, "a request sent at once is answered");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_gives_only_a_bare_liveness_answer() {
    let world = crate::web::WebWorld::with(
        crate::helpers::Engine::Sqlite,
        "",
        &[&crate::helpers::corpus().join("mail").join("0001.eml")],
    )
    .await;
    let metrics = Arc::new(taxinbox::metrics::Metrics::new());
    let server = Server::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
        metrics,
        Some(world.web.clone()),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let get = |url: String, proxied: bool| {
        let mut r = http.get(url);
        if proxied {
            r = r.header("X-Forwarded-For", "203.0.113.9");
        }
        async move {
            let a = r.send().await.unwrap();
            (a.status().as_u16(), a.text().await.unwrap())
        }
    };
    let public = format!("http://{}", server.address);
    let status = format!("http://{}", server.status_address.unwrap());
    // With a status listener: the public one says only that it lives, and has no metrics.
    let (code, body) = get(format!("{public}/healthz"), false).await;
    assert_eq!((code, body.as_str()), (200, "{\"status\":\"ok\"}"));
    assert_eq!(get(format!("{public}/metrics"), false).await.0, 404);
    let (code, body) = get(format!("{status}/healthz"), false).await;
    assert_eq!(code, 200);
    assert!(
        body.contains("\"mailboxes\"") && body.contains("\"rules\""),
        "{body}"
    );
    assert_eq!(get(format!("{status}/metrics"), false).await.0, 200);
    // Without one: details only for a direct loopback connection, not through a proxy.
    let shared = format!("http://{}", world.server.address);
    let (_, direct) = get(format!("{shared}/healthz"), false).await;
    assert!(direct.contains("\"mailboxes\""), "{direct}");
    let (code, proxied) = get(format!("{shared}/healthz"), true).await;
    assert_eq!((code, proxied.as_str()), (200, "{\"status\":\"ok\"}"));
    assert_eq!(get(format!("{shared}/metrics"), true).await.0, 404);
    server.stop().await;
    world.finish().await;
}
