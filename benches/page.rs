//! The status page's memory over a day: its server (the hub behind `devloop up --ui`) with 8 images whose
//! log panes are full — every pane at its bound, lines of a typical length and lines at the longest kept —
//! measured as the process's resident memory before and after (each length in a process of its own, so that
//! one case does not reuse what another freed), against the bound the README documents. Then
//! what a page that (re)connects is sent: the replay of every line kept, over a real loopback connection.
//! `cargo bench --bench page` prints the figures. DEVLOOP_BENCH_IMAGES sets the image count (default 8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use devloop::ui::page::logs::{LINES, LINE_BYTES};
use devloop::ui::page::{server, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Resident memory now, in bytes (Linux's VmRSS).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux");
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmRSS");
    kb * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Fills every image's pane (and devloop's own) to its bound, twice over, with lines of `len` bytes: pod
/// lines with their pod and container, and build lines.
fn fill(hub: &Hub, images: usize, len: usize) {
    let body = "x".repeat(len.saturating_sub(24));
    for round in 0..2 * LINES {
        for i in 0..images {
            let image = format!("service-{i}");
            if round % 4 == 0 {
                hub.log(&image, "build", None, None, &format!("#{round} RUN make {body}"));
            } else {
                hub.log(&image, "log", Some(&format!("{image}-7d9f8c-x2k4q")), Some("app"), &format!("GET /{round} 200 {body}"));
            }
        }
        hub.log("devloop", "config", None, None, &format!("devloop line {round} {body}"));
    }
}

/// Opens `/events` on `addr` as a page that has nothing and reads until the state: the bytes and the time.
async fn replay(addr: std::net::SocketAddr) -> (usize, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /events HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        // The state comes after the replayed lines.
        if n == 0 || got.windows(12).any(|w| w == b"event: state") {
            return (got.len(), started.elapsed());
        }
    }
}

/// The case a child process measures: lines of this many bytes.
const CASE: &str = "DEVLOOP_BENCH_PAGE_LINE";

fn main() {
    let images: usize = std::env::var("DEVLOOP_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    if let Some(len) = std::env::var(CASE).ok().and_then(|v| v.parse().ok()) {
        return tokio::runtime::Runtime::new().unwrap().block_on(measure(images, len));
    }
    println!("page memory: {images} images + devloop's own pane, {LINES} lines each, lines cut to {LINE_BYTES} bytes");
    for len in [120, LINE_BYTES] {
        let status = std::process::Command::new(std::env::current_exe().unwrap()).env(CASE, len.to_string()).status().unwrap();
        assert!(status.success(), "the case of {len}-byte lines failed");
    }
}

async fn measure(images: usize, len: usize) {
    let panes = images as u64 + 1;
    {
        let before = rss();
        let hub = Arc::new(Hub::default());
        let started = Instant::now();
        fill(&hub, images, len);
        let took = started.elapsed();
        let after = rss();
        let kept: usize = hub.line_counts().values().sum();
        assert_eq!(kept as u64, panes * LINES as u64, "every pane at its bound");
        let payload = panes * LINES as u64 * len as u64;
        let grown = after.saturating_sub(before);
        println!(
            "  lines of {len:>4} B: {kept} lines kept ({} of text), resident memory grew {} ({:.0} B a line); filled {} lines in {:.2}s",
            mib(payload),
            mib(grown),
            grown as f64 / kept as f64,
            2 * LINES as u64 * panes,
            took.as_secs_f64()
        );
        // What a page that connects is sent: every line kept, then the state.
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let served = tokio::spawn(server::serve(listener, hub.clone(), stop.clone()));
        let (bytes, took) = replay(addr).await;
        println!("    a page connecting is sent {} of replay in {:.0} ms", mib(bytes as u64), took.as_secs_f64() * 1000.0);
        stop.cancel();
        let _ = served.await;
        drop(hub);
    }
}
