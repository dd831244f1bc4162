//! A real headless browser for the page tests: Debian's Chromium, driven over the DevTools protocol (one
//! websocket to the page's target). Only the process this starts is stopped, when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::WebSocket;

/// A Chromium showing one page.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    next: u64,
}

/// The Chromium binary: `$CHROMIUM`, else Debian's.
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

/// Chromium's flags for a quiet, throwaway, sandbox-less (as root in a test) headless run.
pub fn headless_args(profile: &Path, width: u32, height: u32) -> Vec<String> {
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display()), format!("--window-size={width},{height}")])
    .collect()
}

/// One HTTP GET to loopback `port`. Chromium's DevTools endpoint keeps the connection open, so the body is
/// read by its length.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
            });
            if len.is_some_and(|len| body.len() >= len) {
                return Ok(body.to_string());
            }
        }
        if n == 0 {
            return Err(format!("the connection closed: {text:?}"));
        }
    }
}

fn log(profile: &Path) -> String {
    std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default()
}

/// Finds the DevTools port (Chromium writes it into the profile) and connects to the page target.
fn connect(child: &mut Child, profile: &Path, url: &str) -> Result<WebSocket<TcpStream>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            return Err(format!("Chromium never offered the page {url}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("Chromium exited ({status})"));
        }
        let port = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()));
        let target = port.and_then(|port| {
            let list: Value = serde_json::from_str(&http_get(port, "/json/list").ok()?).ok()?;
            let page = list.as_array()?.iter().find(|t| t["type"] == "page")?.clone();
            Some((port, page["webSocketDebuggerUrl"].as_str()?.to_string()))
        });
        if let Some((port, ws_url)) = target {
            let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let (ws, _) = tungstenite::client(ws_url.as_str(), stream).map_err(|e| format!("the DevTools websocket: {e}"))?;
            return Ok(ws);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Browser {
    /// Starts Chromium on `url` in a `width`×`height` window and connects to the page.
    pub fn open(url: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(binary())
            .args(headless_args(profile.path(), width, height))
            .arg("--remote-debugging-port=0")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (scripts/stack installs Debian's chromium)", binary()));
        let mut child = child;
        match connect(&mut child, profile.path(), url) {
            Ok(ws) => {
                let mut b = Browser { child, profile, ws, next: 0 };
                b.call("Runtime.enable", json!({}));
                b
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{e}; Chromium's log:\n{}", log(profile.path()));
            }
        }
    }

    /// What Chromium wrote to stderr (for a failing test's message).
    pub fn log(&self) -> String {
        log(self.profile.path())
    }

    /// Calls a DevTools method and returns its result (events that arrive meanwhile are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws.send(tungstenite::Message::text(json!({"id": id, "method": method, "params": params}).to_string())).unwrap();
        loop {
            let msg = self.ws.read().unwrap_or_else(|e| panic!("{method}: {e}; Chromium's log:\n{}", self.log()));
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (a thrown exception fails the test).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true}));
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy in the page (at most `secs`); returns its value. An exception counts as not
    /// yet (the page may still be loading). The page is never reloaded: what it shows must come by itself.
    pub fn until(&mut self, what: &str, secs: u64, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true}));
            let v = r["result"]["value"].clone();
            if r.get("exceptionDetails").is_none() && !(v.is_null() || v == false || v == 0 || v == "") {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.call("Runtime.evaluate", json!({"expression": "document.body?.innerText", "returnByValue": true}));
                let shown = body["result"]["value"].as_str().unwrap_or("").to_string();
                panic!("the page never showed {what} within {secs}s ({expr} gave {r}); it shows:\n{shown}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().expect("image data")).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// A PNG of the element `selector` picks (its box, scrolled into view first), written to `path`.
    pub fn screenshot_of(&mut self, selector: &str, path: &Path) {
        use base64::Engine;
        let js = format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView(); const r = e.getBoundingClientRect(); \
             return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; }})()"
        );
        let r = self.eval(&js);
        let clip = json!({"x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1});
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "clip": clip, "captureBeyondViewport": true}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("image data")).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PNG of `html` as Chromium renders it in a `width`×`height` window (for pictures of text, such as the
/// terminal view).
pub fn render_png(html: &str, width: u32, height: u32, path: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let page = profile.path().join("page.html");
    std::fs::write(&page, html).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new(binary())
        .args(headless_args(profile.path(), width, height))
        .arg(format!("--screenshot={}", path.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary()));
    assert!(path.exists(), "Chromium wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
}
