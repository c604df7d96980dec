//! The listener's limits on a real server: thousands of half-open
//! connections do not starve a pull; slow uploads that keep making
//! progress succeed while stalled ones are closed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::Berth;
use crate::oci::*;

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(addr.parse().unwrap()).await
}

/// Whether the server closed `s` (EOF, a reset, or an answer followed by
/// EOF) within `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn half_open_connections_do_not_starve_a_pull() {
    let b = Berth::start_with(&["--header-read-timeout", "3s"], None);
    let u = b.url();
    let c = client();
    let (digest, _) = push_image(&c, &u, "lib/app", "v1", "half-open").await;

    // One host opens 3,000 connections and sends half a request on each.
    let mut held = Vec::new();
    for _ in 0..3000 {
        match connect_from("127.0.0.2", &b.addr).await {
            Ok(mut s) => {
                let _ = s
                    .write_all(b"GET /v2/lib/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n")
                    .await;
                held.push(s);
            }
            Err(_) => break,
        }
    }
    assert!(held.len() > 2000, "opened {}", held.len());

    // Another client pulls at once.
    let started = Instant::now();
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m: serde_json::Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = c
        .get(format!("{u}/v2/lib/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    let pulled = started.elapsed();
    assert!(pulled < Duration::from_secs(1), "pull took {pulled:?}");
    assert!(digest.starts_with("sha256:"));

    // Past the per-client cap (256) the server closed them at once...
    let mut closed = 0;
    for s in held.iter_mut().skip(300) {
        if closed_by_server(s, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 2400,
        "closed at once: {closed} of {}",
        held.len() - 300
    );
    // ...and the ones it took are closed when their headers do not come.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(2)).await,
            "connection {i} still open after the header read timeout"
        );
    }
}

#[tokio::test]
async fn slow_uploads_that_progress_succeed_and_stalled_ones_are_closed() {
    let b = Berth::start_with(&["--body-timeout", "1s", "--idle-timeout", "2s"], None);
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);
    let head = format!(
        "POST /v2/lib/slow/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );

    // 10 pieces, 400 ms apart: 3.6 s in total, never 1 s without progress.
    let mut s = TcpStream::connect(&b.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in data.chunks(400) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(piece).await.unwrap();
    }
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // Half a body, then nothing: closed after the body timeout.
    let mut s = TcpStream::connect(&b.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&data[..1000]).await.unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut s, Duration::from_secs(5)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A kept-alive connection that sends nothing more: closed when idle.
    let c = client();
    let r = c.get(format!("{}/v2/", b.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut s = TcpStream::connect(&b.addr).await.unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(5)).await);
}
