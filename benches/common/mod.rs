//! What the benches share: running a command, copying the example, `devloop up` and GETs through its
//! forward, figures.

#![allow(dead_code)]

pub mod team;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `program`; its stdout, or a panic with its stderr.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The `p` quantile of `v` (nearest rank).
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// Whole milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The mean.
pub fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / v.len().max(1) as u32
}


/// GET over plain TCP, reading exactly Content-Length bytes (not waiting for the forward to close).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().ok()))??;
            if body.len() >= len {
                return head.lines().next().is_some_and(|l| l.contains(" 200 ")).then(|| body.to_string());
            }
        }
    }
    None
}

/// Polls until `get()` returns a body containing `marker`.
pub fn wait_for(marker: &str, mut get: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if get().is_some_and(|b| b.contains(marker)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{marker} never served");
}

/// Starts `devloop up --json` in `dir` with `envs` set; returns it, its events, and its forward's address
/// once the first rollout is done.
pub fn start_up(dir: &Path, envs: &[(&str, &str)]) -> (std::process::Child, mpsc::Receiver<serde_json::Value>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devloop"));
    cmd.args(["up", "--json"]).current_dir(dir).stdout(Stdio::piped()).envs(envs.iter().copied());
    let mut up = cmd.spawn().unwrap();
    let (tx, events) = mpsc::channel::<serde_json::Value>();
    let stdout = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = tx.send(v);
            }
        }
    });
    let mut forward = String::new();
    loop {
        let v = events.recv_timeout(Duration::from_secs(120)).expect("devloop up started");
        if v["event"] == "forward" {
            forward = v["message"].as_str().unwrap().split_whitespace().nth(1).unwrap().trim_start_matches("http://").to_string();
        }
        if v["event"] == "iteration" {
            break;
        }
    }
    (up, events, forward)
}
