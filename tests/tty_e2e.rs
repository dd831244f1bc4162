//! `devloop up` on a real pseudo-terminal (a tmux pane of its own server): the status block at the bottom
//! says what each image is doing, is redrawn in place (never repeated as the lines above it scroll), and
//! follows a save through building and rolling out to serving the new tag; keys select a row and pause,
//! resume, rebuild or trigger its image, and the terminal is the shell's again after Ctrl-C. Run through
//! scripts/test.
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

    /// `devloop up` in `dir`, typed into a shell (dash, which leaves the terminal's echo to the terminal) in a
    /// 150×40 pane, as a person would run it; the stack's DEVLOOP_REGISTRY and BUILDKIT_HOST removed, as for
    /// the other tests, so the project's devloop.toml decides.
    fn up(dir: &std::path::Path) -> Tmux {
        let t = Tmux { socket: format!("devloop-test-{}", nonce()) };
        // A person at a terminal: not under CI (a CI job running this test sets CI, which turns the block off).
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_devloop")).parent().unwrap().display().to_string();
        let shell = format!("env -u DEVLOOP_REGISTRY -u BUILDKIT_HOST -u CI TERM=xterm-256color PS1='$ ' PATH=\"{bin}:$PATH\" sh -i");
        t.run(&["new-session", "-d", "-x", "150", "-y", "40", "-c", dir.to_str().unwrap(), &shell]);
        t.run(&["set-option", "-t", "0", "remain-on-exit", "on"]);
        eventually("the shell's prompt", 10, || if t.screen() == ["$"] { Ok(()) } else { Err(t.screen().join("\n")) });
        t.keys(&["devloop up", "Enter"]);
        t
    }

    /// Presses keys in the pane (tmux key names: `Enter`, `Down`, `C-c`; other words are typed as they are).
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            match *k {
                "Enter" | "Down" | "Up" | "C-c" => self.run(&["send-keys", "-t", "0", k]),
                _ => self.run(&["send-keys", "-t", "0", "-l", k]),
            };
        }
    }

    /// Every line the pane printed (what scrolled off the screen too), without trailing blank lines.
    fn history(&self) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p", "-S", "-", "-E", "-", "-t", "0"]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
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
        .map(|l| match ["● ", "✗ ", "… ", "○ "].iter().position(|m| unmarked(l).starts_with(m)) {
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

/// The line under the status block while keys act on it.
const KEYS_LINE: &str = "↑↓ select · r rebuild · p pause · t trigger · ⏎ trigger held · ? help";

/// A status row without the selection's mark (`› ` on the selected row, two spaces on the others).
fn unmarked(l: &str) -> &str {
    l.strip_prefix("› ").or_else(|| l.strip_prefix("  ")).unwrap_or(l)
}

/// The image's status row: the line that starts with a state marker and the image's name.
fn row<'a>(screen: &'a [String], image: &str) -> Vec<&'a String> {
    screen.iter().filter(|l| ["○ ", "… ", "● ", "✗ ", "◆ ", "‖ "].iter().any(|m| unmarked(l).starts_with(&format!("{m}{image} ")))).collect()
}

/// The status block at the bottom of the screen: the rows just above the keys' line, which is the last line.
fn block(screen: &[String]) -> &[String] {
    if screen.last().map(String::as_str) != Some(KEYS_LINE) {
        return &[];
    }
    let rows = &screen[..screen.len() - 1];
    let status = |l: &String| ["○ ", "… ", "● ", "✗ ", "◆ ", "‖ "].iter().any(|m| unmarked(l).starts_with(m));
    let first = rows.iter().rposition(|l| !status(l)).map_or(0, |i| i + 1);
    &rows[first..]
}

/// Waits until the image's one status row satisfies `pred`, and the row is in the block at the bottom.
fn until_row(t: &Tmux, image: &str, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> Vec<String> {
    eventually(what, secs, || {
        let s = t.screen();
        let rows = row(&s, image);
        match rows.as_slice() {
            [one] if pred(one) && block(&s).contains(one) => Ok(s.clone()),
            _ => Err(s.join("\n")),
        }
    })
}

/// Ctrl-C stops `up`, which says so and ends (a terminal read must not keep it waiting for a key), and the
/// shell's terminal works as before: what is typed is echoed, a line at a time.
fn stop_and_type_in_the_shell(t: &Tmux) {
    t.keys(&["C-c"]);
    eventually("devloop stopped", 60, || {
        let s = t.screen();
        if s.iter().any(|l| l == "devloop: stopped") { Ok(()) } else { Err(s.join("\n")) }
    });
    eventually("the shell's prompt back", 30, || {
        let s = t.screen();
        if s.last().is_some_and(|l| l == "$") { Ok(()) } else { Err(s.join("\n")) }
    });
    t.keys(&["echo ok", "Enter"]);
    eventually("`echo ok` echoed as typed, then run", 10, || {
        let s = t.screen();
        let typed = s.iter().position(|l| l == "$ echo ok");
        if typed.is_some_and(|i| s.get(i + 1).is_some_and(|l| l == "ok")) { Ok(()) } else { Err(s.join("\n")) }
    });
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
        let below = row(&s, &image).first().is_some_and(|r| block(&s).contains(r));
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
    until_row(&t, &image, "the failure on the block", 120, |r| unmarked(r).starts_with(&format!("✗ {image}  failed: ")));

    // A build that works but a container that crashes: the row gives the rollout's reason.
    std::fs::write(p.path("app/Dockerfile"), &dockerfile).unwrap();
    p.write("app/serve.sh", "#!/bin/sh\necho crashing\nexit 1\n");
    let failed = |r: &str| ["Exited", "CrashLoopBackOff"].iter().any(|why| unmarked(r).starts_with(&format!("✗ {image}  failed: rollout: {why} (pod ")));
    let s = until_row(&t, &image, "the rollout failure on the block", 180, failed);
    eprintln!("after the failures:\n{}", s.join("\n"));
    // Enter asks for a build of what manual images hold: none here, and it says so.
    t.keys(&["Enter"]);
    eventually("the trigger answered", 30, || {
        let s = t.screen();
        if s.iter().any(|l| l.contains("trigger: no image holds a change")) { Ok(()) } else { Err(s.join("\n")) }
    });
    // Ctrl-C: devloop stops and says so; the block is left as the last state; the terminal is the shell's again.
    stop_and_type_in_the_shell(&t);
}

/// The content tag `devloop hash IMAGE` prints.
fn tag_of(p: &Project, image: &str) -> String {
    let (out, _) = p.ok(&["hash", image]);
    out.trim().rsplit(':').next().unwrap().to_string()
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn keys_select_an_image_pause_it_resume_it_and_rebuild_it() {
    let ns = Namespace::new("keys");
    let (p, b) = two_images(&ns.0);
    let a = p.name.clone();
    let t = Tmux::up(p.dir.path());
    let first = tag_of(&p, &a);
    let serving = |image: &str, what: &str| until_row(&t, image, what, 180, |r| r.contains("  serving "));
    serving(&a, "the first image served");
    let s = serving(&b, "the second image served");
    // The keys' line is under the block; the first row is selected.
    assert_eq!(block(&s).len(), 2, "{}", s.join("\n"));
    assert!(row(&s, &a)[0].starts_with(&format!("› ● {a} ")) && row(&s, &b)[0].starts_with(&format!("  ● {b} ")), "{}", s.join("\n"));

    // `?` says what each key does, above the block.
    t.keys(&["?"]);
    eventually("the help", 10, || {
        let s = t.screen();
        let said = ["r rebuild it", "p pause it", "t trigger it", "Enter trigger every image holding a change"];
        if said.iter().all(|k| s.iter().any(|l| l.starts_with("devloop: keys: ") && l.contains(k))) && block(&s).len() == 2 { Ok(()) } else { Err(s.join("\n")) }
    });

    // `p` pauses the selected image: a save is held, nothing built.
    t.keys(&["p"]);
    until_row(&t, &a, "the first image paused", 30, |r| r.starts_with(&format!("› ‖ {a} ")) && r.contains("paused"));
    p.write("app/www/index.html", "<p>saved while paused</p>\n");
    let second = tag_of(&p, &a);
    assert_ne!(first, second);
    until_row(&t, &a, "the save held", 30, |r| r.contains("paused: 1 changed path held until resumed"));
    std::thread::sleep(Duration::from_secs(3));
    let summary = |tag: &str| format!("{a}  {}  hash ", &tag[..6]);
    let s = t.history();
    assert!(!s.iter().any(|l| l.starts_with(&summary(&second))), "built while paused:\n{}", s.join("\n"));
    assert!(row(&t.screen(), &a)[0].contains("paused: 1 changed path held"));

    // `p` again resumes it: the held save is built and served.
    t.keys(&["p"]);
    until_row(&t, &a, "the held save served", 180, |r| r.contains(&format!("serving {}", &second[..6])));
    eventually("its summary line", 10, || {
        let s = t.history();
        if s.iter().filter(|l| l.starts_with(&summary(&second))).count() == 1 { Ok(()) } else { Err(s.join("\n")) }
    });

    // `r` rebuilds it: the same tag built again for real (not found in the registry), rolled out again.
    t.keys(&["r"]);
    let s = eventually("a second build of the same tag", 180, || {
        let s = t.history();
        let asked = s.iter().any(|l| l.starts_with(&format!("{a}: rebuild asked")));
        let builds: Vec<&String> = s.iter().filter(|l| l.starts_with(&summary(&second))).collect();
        if asked && builds.len() == 2 { Ok(builds[1].clone()) } else { Err(s.join("\n")) }
    });
    assert!(!s.contains("build skipped (already in the registry)") && s.contains(" · build "), "{s}");
    until_row(&t, &a, "the rebuilt tag served", 60, |r| r.contains(&format!("serving {}", &second[..6])));

    // `↓` selects the other row, and `p` pauses that one, not the first.
    t.keys(&["Down"]);
    until_row(&t, &b, "the second row selected", 10, |r| r.starts_with(&format!("› ● {b} ")));
    t.keys(&["p"]);
    let s = until_row(&t, &b, "the second image paused", 30, |r| r.starts_with(&format!("› ‖ {b} ")));
    assert!(row(&s, &a)[0].starts_with(&format!("  ● {a} ")), "{}", s.join("\n"));
    eprintln!("after the keys:\n{}", s.join("\n"));
    stop_and_type_in_the_shell(&t);
}
