//! `devloop up` on a real pseudo-terminal (a tmux pane of its own server): the status block at the bottom
//! says what each image is doing, is redrawn in place (never repeated as the lines above it scroll), and
//! follows a save through building and rolling out to serving the new tag. Run through scripts/test.
//!
//! With `DEVLOOP_SCREENSHOTS=DIR`, the test also writes `DIR/terminal.png` (scripts/screenshots): the pane
//! after the save was served, rendered by the same headless Chromium the page test uses.

mod common;
#[path = "common/browser.rs"]
mod browser;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of the test's own (its own socket), killed when dropped: nothing else's is touched.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `devloop up` in `dir`, in a 150×40 pane (the stack's DEVLOOP_REGISTRY and BUILDKIT_HOST removed, as
    /// for the other tests, so the project's devloop.toml decides).
    fn up(dir: &std::path::Path) -> Tmux {
        let t = Tmux { socket: format!("devloop-test-{}", nonce()) };
        // A person at a terminal: not under CI (a CI job running this test sets CI, which turns the block off).
        let cmd = format!("env -u DEVLOOP_REGISTRY -u BUILDKIT_HOST -u CI TERM=xterm-256color {} up", env!("CARGO_BIN_EXE_devloop"));
        t.run(&["new-session", "-d", "-x", "150", "-y", "40", "-c", dir.to_str().unwrap(), &cmd]);
        t.run(&["set-option", "-t", "0", "remain-on-exit", "on"]);
        t
    }

    /// What the pane shows now, without trailing blank lines.
    fn screen(&self) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p", "-t", "0"]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").status();
    }
}

/// The pane's text as a dark terminal page, status rows coloured by their marker, as a PNG.
fn screenshot(screen: &[String], path: &std::path::Path) {
    let escape = |l: &str| l.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body: Vec<String> = screen
        .iter()
        .map(|l| match ["● ", "✗ ", "… ", "○ "].iter().position(|m| l.starts_with(m)) {
            Some(i) => format!("<b class=m{i}>{}</b>", escape(l)),
            None => escape(l),
        })
        .collect();
    let html = format!(
        "<!doctype html><meta charset=utf-8><style>body{{margin:0;background:#1b1d23;color:#d0d3da}}\
         pre{{margin:0;padding:14px 16px;font:13px/1.4 'DejaVu Sans Mono',monospace}}b{{font-weight:normal}}\
         .m0{{color:#7fd88f}}.m1{{color:#ff7b7b}}.m2{{color:#f0b45e}}.m3{{color:#9aa3b2}}</style><pre>{}</pre>",
        body.join("\n")
    );
    let height = 28 + 18 * screen.len() as u32 + 10;
    browser::render_png(&html, 1230, height, path);
}

/// The image's status row: the line that starts with a state marker and the image's name.
fn row<'a>(screen: &'a [String], image: &str) -> Vec<&'a String> {
    screen.iter().filter(|l| ["○ ", "… ", "● ", "✗ "].iter().any(|m| l.starts_with(&format!("{m}{image} ")))).collect()
}

/// Waits until the image's one status row satisfies `pred`, and the row is the last line on the screen.
fn until_row(t: &Tmux, image: &str, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> Vec<String> {
    eventually(what, secs, || {
        let s = t.screen();
        let rows = row(&s, image);
        match rows.as_slice() {
            [one] if pred(one) && s.last() == Some(*one) => Ok(s.clone()),
            _ => Err(s.join("\n")),
        }
    })
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn on_a_terminal_a_status_block_follows_each_image_in_place() {
    let ns = Namespace::new("tty");
    let p = manifest_project(&ns.0, "[[port-forward]]\ndeployment = \"hello\"\nlocal = 0\nremote = 8080\n");
    let image = p.name.clone();
    let t = Tmux::up(p.dir.path());

    let first = p.tag();
    let s = until_row(&t, &image, "the first rollout served", 120, |r| r.contains(&format!("serving {}", &first[..6])) && r.contains(" at http://127.0.0.1:"));
    // The lines scroll above the block: the iteration's summary line is there, once.
    let summary = format!("{image}  {}  hash ", &first[..6]);
    assert_eq!(s.iter().filter(|l| l.starts_with(&summary)).count(), 1, "{}", s.join("\n"));
    // The new pod's log is followed once its rollout is done: its lines come just after the row turns.
    eventually("the pod's log scrolls above the block", 30, || {
        let s = t.screen();
        let logged = s.iter().any(|l| l.contains("hello: serving /www on :8080"));
        let below = row(&s, &image).first().is_some_and(|r| s.last() == Some(*r));
        if logged && below { Ok(()) } else { Err(s.join("\n")) }
    });

    // A save: the row goes through the build and the rollout, then serves the new tag.
    p.write("app/www/index.html", "<p>seen on the terminal</p>\n");
    let second = p.tag();
    let mut busy = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = loop {
        let s = t.screen();
        let rows = row(&s, &image);
        assert!(rows.len() <= 1, "the block was drawn twice:\n{}", s.join("\n"));
        if let Some(r) = rows.first() {
            for word in ["hashing", "building", "pushing", "rolling out"] {
                if r.contains(&format!("{image}  {word}")) {
                    busy.insert(word);
                }
            }
            if r.contains(&format!("serving {}", &second[..6])) {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "the save was not served within 120s:\n{}", s.join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("served the save (states seen on the way: {busy:?}):\n{}", s.join("\n"));
    if let Ok(dir) = std::env::var("DEVLOOP_SCREENSHOTS") {
        screenshot(&s, &std::path::Path::new(&dir).join("terminal.png"));
    }
    assert!(busy.contains("building") || busy.contains("rolling out"), "no work in progress was shown: {busy:?}");
    assert_eq!(row(&s, &image).len(), 1);
    assert!(s.iter().any(|l| l.starts_with(&format!("{image}  {}  hash ", &second[..6]))), "{}", s.join("\n"));

    // A broken build: the row says it failed, and why.
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    std::fs::write(p.path("app/Dockerfile"), format!("{dockerfile}RUN exit 3\n")).unwrap();
    until_row(&t, &image, "the failure on the block", 120, |r| r.starts_with(&format!("✗ {image}  failed: ")));

    // A build that works but a container that crashes: the row gives the rollout's reason.
    std::fs::write(p.path("app/Dockerfile"), &dockerfile).unwrap();
    p.write("app/serve.sh", "#!/bin/sh\necho crashing\nexit 1\n");
    let failed = |r: &str| ["Exited", "CrashLoopBackOff"].iter().any(|why| r.starts_with(&format!("✗ {image}  failed: rollout: {why} (pod ")));
    let s = until_row(&t, &image, "the rollout failure on the block", 180, failed);
    eprintln!("after the failures:\n{}", s.join("\n"));
    // Enter asks for a build of what manual images hold: none here, and it says so.
    t.run(&["send-keys", "-t", "0", "Enter"]);
    eventually("the trigger answered", 30, || {
        let s = t.screen();
        if s.iter().any(|l| l.contains("trigger: no image holds a change")) { Ok(()) } else { Err(s.join("\n")) }
    });
    // Ctrl-C: devloop stops and says so; the block is left as the last state; the process ends (a terminal
    // read must not keep it waiting for another Enter).
    t.run(&["send-keys", "-t", "0", "C-c"]);
    eventually("devloop stopped", 60, || {
        let s = t.screen();
        if s.iter().any(|l| l == "devloop: stopped") { Ok(()) } else { Err(s.join("\n")) }
    });
    eventually("the process gone", 10, || {
        let dead = t.run(&["display-message", "-p", "-t", "0", "#{pane_dead}"]);
        if dead.trim() == "1" { Ok(()) } else { Err(format!("pane_dead = {dead}")) }
    });
}
