//! What `devloop up` prints: one summary line per iteration and a line per state change, as text for people
//! or, with `--json`, as one JSON object per line for editors and scripts. On a terminal, a status block
//! ([`board`]) stays below the lines.

pub mod board;
pub mod page;
pub mod writer;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::decide::{Report, Summary, SyncSummary};
use board::{Board, Phase};

/// Where `up`'s reports go: lines (or JSON lines) through one [`writer`] thread, the status block below them
/// on a terminal, and the status page's state. Cheap to clone; every call returns at once (see [`writer`]).
#[derive(Clone)]
pub struct Ui {
    out: Arc<writer::Writer>,
    /// The status page's state (`up --ui`), told everything the terminal is.
    page: Option<Arc<page::Hub>>,
}

/// A duration in whole milliseconds, as the JSON figures give it.
fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A duration the way the summary line shows it: `4ms`, `812ms`, `1.9s`.
pub fn short(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The summary line of one iteration.
pub fn summary_line(s: &Summary) -> String {
    let build = if s.registry_hit {
        "build skipped (already in the registry)".to_string()
    } else {
        format!("build {} ({}/{} cached)", short(s.build), s.steps.1, s.steps.0)
    };
    // Where the rollout's time went: until the new pod runs (scheduling, image pull, start), then readiness.
    let stages = match (s.pod.running, s.pod.ready) {
        (Some(r), Some(ready)) => format!(" (running {}, ready {})", short(r), short(ready)),
        _ => String::new(),
    };
    format!(
        "{}  {}  hash {} · {build} · rollout {}{stages} · total {}",
        s.image,
        &s.tag[..s.tag.len().min(6)],
        short(s.hash),
        short(s.rollout),
        short(s.total)
    )
}

/// The summary line of one sync: `hello  sync 2 files → 1 pod · 84ms · total 140ms`.
pub fn sync_line(s: &SyncSummary) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let what = if s.replay { "replay" } else { "sync" };
    let deleted = if s.deleted > 0 { format!(" ({} deleted)", s.deleted) } else { String::new() };
    let pods = plural(s.pods, if s.replay { "new pod" } else { "pod" }, if s.replay { "new pods" } else { "pods" });
    format!("{}  {what} {}{deleted} → {pods} · {} · total {}", s.image, plural(s.files, "file", "files"), short(s.sync), short(s.total))
}

/// What the pods run after a sync: `hello: pods run image a1b2c3 + 3 synced files (content d4e5f6)`.
pub fn state_line(s: &SyncSummary) -> String {
    let tag = |t: &str| t[..t.len().min(12)].to_string();
    match &s.content {
        _ if s.synced == 0 => format!("{}: pods run image {} (the synced files are the image's own)", s.image, tag(&s.tag)),
        Some(c) => format!("{}: pods run image {} + {} synced file(s) (content {})", s.image, tag(&s.tag), s.synced, tag(c)),
        None => format!("{}: pods run image {} + {} synced file(s)", s.image, tag(&s.tag), s.synced),
    }
}

/// What a crash after a rollout says: where, how, its last lines, and what devloop does about it.
fn crash_text(image: &str, tag: &str, error: &str, after: Duration, rollback: Option<&str>, late: bool) -> String {
    let mut text = format!("{image}: {tag} CRASHED {} after its rollout: ", short(after));
    text.push_str(&error.lines().collect::<Vec<_>>().join(&format!("\n{image}: ")));
    let window = humantime::format_duration(crate::engine::decide::ROLLOUT_CRASH_WINDOW);
    let then = match rollback {
        Some(back) => format!("rolling back to {back} (a crash within {window} of a rollout is the rollout's failure)"),
        None if late => format!("left as it is: it ran more than {window} first, so this is a bug to debug, not a failed rollout"),
        None => "left as it is (no rollback configured, or no earlier good tag)".to_string(),
    };
    format!("{text}\n{image}: {then}; the next save deploys again")
}

impl Ui {
    /// Text (or JSON lines) to `out`.
    pub fn new(json: bool, out: Box<dyn Write + Send>) -> Self {
        Self::start(out, None, Box::new(|| 80), json)
    }

    /// Text to `out` with a status block `width` columns wide below it (as on a terminal).
    pub fn with_board(out: Box<dyn Write + Send>, width: usize) -> Self {
        Self::start(out, Some(Board::default()), Box::new(move || width), false)
    }

    fn start(out: Box<dyn Write + Send>, board: Option<Board>, width: Box<dyn Fn() -> usize + Send>, json: bool) -> Self {
        Ui { out: Arc::new(writer::Writer::start(out, writer::Block { board, width }, json)), page: None }
    }

    /// To stdout; with a status block when `board` is asked for, the output is text and stdout is a
    /// terminal. While an image is at work its running clock is redrawn twice a second.
    pub fn stdout(json: bool, board: bool) -> Self {
        if json || !board || !board::wanted() {
            return Self::new(json, Box::new(std::io::stdout()));
        }
        let ui = Self::start(Box::new(std::io::stdout()), Some(Board::default()), Box::new(|| board::terminal_width().unwrap_or(80)), false);
        let out = Arc::downgrade(&ui.out);
        std::thread::spawn(move || {
            while let Some(strong) = out.upgrade() {
                let busy = strong.block.lock().expect("not poisoned").board.as_ref().is_some_and(Board::busy);
                if busy {
                    strong.redraw();
                }
                drop(strong); // the last `Ui` may go while this sleeps
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        ui
    }

    /// Waits until everything said so far is written, for at most `within` (a reader that stopped reading
    /// is not waited for longer); false if it was not.
    pub fn flush(&self, within: Duration) -> bool {
        self.out.flush(within)
    }

    /// Tells `hub` (the status page) everything from now on, as well as the terminal.
    pub fn with_page(mut self, hub: Arc<page::Hub>) -> Self {
        self.page = Some(hub);
        self
    }

    /// The status page is served at `url`.
    pub fn page_url(&self, url: &str) {
        self.emit(&format!("devloop: status page at {url}"), json!({"event": "ui", "url": url}));
    }

    fn emit(&self, text: &str, value: Value) {
        if let Some(hub) = &self.page {
            hub.record(&value);
        }
        let log = value["event"] == "log";
        self.out.line(if self.out.json() { value.to_string() } else { text.to_string() }, log);
    }

    /// Changes the status block, when there is one: `f` gets the board.
    fn board(&self, f: impl Fn(&mut Board)) {
        if let Some(hub) = &self.page {
            hub.board(&f);
        }
        let mut block = self.out.block.lock().expect("not poisoned");
        if let Some(b) = block.board.as_mut() {
            f(b);
            drop(block);
            self.out.redraw();
        }
    }

    /// Puts `image` in `phase` on the status block.
    pub fn phase(&self, image: &str, phase: Phase) {
        self.board(|b| b.set(image, phase.clone()));
    }

    /// `image` is being hashed (on the status block, unless it is busy with a build or rollout).
    pub fn hashing(&self, image: &str) {
        self.board(|b| b.hashing(image));
    }

    /// `image`'s row on the status block shows the URLs of these Deployments' forwards.
    pub fn deployments(&self, image: &str, deployments: &[String]) {
        self.board(|b| b.deployments(image, deployments));
    }

    /// `deployment` is forwarded at `url` (shown on the rows of the images it runs).
    pub fn forward_url(&self, deployment: &str, url: &str) {
        self.board(|b| b.forward(deployment, url));
    }

    /// The phase of `image` on the status block (or the page's, without a block; none without either).
    pub fn current(&self, image: &str) -> Option<Phase> {
        let on_terminal = self.out.block.lock().expect("not poisoned").board.as_ref().and_then(|b| b.phase(image).cloned());
        on_terminal.or_else(|| self.page.as_ref().and_then(|hub| hub.phase(image)))
    }

    /// A free-form line about an image (deploy steps, log lines, forwards).
    pub fn line(&self, image: &str, kind: &str, text: &str) {
        self.emit(&format!("{image}: {text}"), json!({"event": kind, "image": image, "message": text}));
    }

    /// What a report changes on the status block.
    fn track(&self, r: &Report) {
        let first = |e: &str| e.lines().next().unwrap_or("").to_string();
        match r {
            Report::Unchanged { image, tag } => self.board(|b| b.unchanged(image, tag)),
            Report::Building { image, .. } => self.phase(image, Phase::Building { step: 0, of: 0, name: String::new() }),
            Report::Stale { image, .. } => self.phase(image, Phase::Hashing),
            Report::Superseded { .. } => {}
            Report::Failed { image, error, .. } => self.phase(image, Phase::Failed(first(error))),
            Report::RolloutFailed { image, reason: Some(why), .. } => self.phase(image, Phase::Failed(format!("rollout: {why}"))),
            Report::RolloutFailed { image, tag, reason: None } => {
                self.phase(image, Phase::Failed(format!("rollout of {} failed", &tag[..tag.len().min(6)])))
            }
            Report::Synced(s) => self.phase(&s.image, Phase::Serving { tag: s.tag.clone(), synced: s.synced }),
            Report::SyncFallback { image, .. } => self.phase(image, Phase::Building { step: 0, of: 0, name: String::new() }),
            Report::Iteration(s) => self.phase(&s.image, Phase::Serving { tag: s.tag.clone(), synced: 0 }),
            Report::Crashed { image, error, .. } => self.phase(image, Phase::Failed(format!("crashed: {}", first(error)))),
            Report::RolledBack { image, tag } => self.phase(image, Phase::Serving { tag: tag.clone(), synced: 0 }),
            Report::Retrying { .. } => {}
        }
    }

    /// A decision's report.
    pub fn report(&self, r: &Report) {
        self.track(r);
        if let Some(hub) = &self.page {
            match r {
                Report::Iteration(s) => hub.iteration(s),
                Report::Synced(s) => hub.synced(s),
                Report::Failed { image, tag, error } => hub.failed(image, tag.as_deref(), Some(error)),
                Report::RolloutFailed { image, tag, reason } => hub.failed(image, Some(tag), reason.as_deref()),
                Report::Crashed { image, tag, error, .. } => hub.failed(image, Some(tag), Some(error)),
                _ => {}
            }
        }
        match r {
            Report::Unchanged { image, tag } => {
                self.emit(&format!("{image}: unchanged ({tag}), nothing to do"), json!({"event": "unchanged", "image": image, "tag": tag}))
            }
            Report::Building { image, tag } => {
                self.emit(&format!("{image}: building {tag}"), json!({"event": "building", "image": image, "tag": tag}))
            }
            Report::Stale { image, tag, reason } => self.emit(
                &format!("{image}: the context changed while BuildKit read it, so {tag} was not pushed ({reason}); hashing again"),
                json!({"event": "stale", "image": image, "tag": tag, "reason": reason}),
            ),
            Report::Superseded { image, old, new } => self.emit(
                &format!("{image}: newer content ({new}) supersedes the build of {old}: cancelled"),
                json!({"event": "superseded", "image": image, "old": old, "new": new}),
            ),
            Report::Failed { image, tag, error } => self.emit(
                &format!("{image}: FAILED{}: {error}\n{image}: the running pods were left as they are", tag.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()),
                json!({"event": "failed", "image": image, "tag": tag, "error": error}),
            ),
            Report::RolloutFailed { image, tag, reason } => self.emit(
                &format!("{image}: rollout of {tag} failed{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()),
                json!({"event": "rollout-failed", "image": image, "tag": tag, "reason": reason}),
            ),
            Report::Synced(s) => self.emit(
                &format!("{}\n{}", sync_line(s), state_line(s)),
                json!({"event": "sync", "image": s.image, "files": s.files, "deleted": s.deleted, "pods": s.pods, "replay": s.replay,
                       "debounce_ms": ms(s.debounce), "sync_ms": ms(s.sync), "hash_ms": ms(s.hash), "total_ms": ms(s.total), "tag": s.tag, "synced": s.synced,
                       "content": s.content}),
            ),
            Report::SyncFallback { image, error, for_good, skipped } => self.emit(
                &if *skipped {
                    // Not a failure: one line says why a build comes instead.
                    format!("{image}: {error}: building the image instead")
                } else {
                    format!(
                        "{image}: sync failed: {error}\n{image}: {}",
                        if *for_good { "building the image instead, now and from now on" } else { "building the image instead" }
                    )
                },
                json!({"event": "sync-failed", "image": image, "error": error, "for_good": for_good, "skipped": skipped}),
            ),
            Report::Iteration(s) => self.emit(
                &summary_line(s),
                json!({"event": "iteration", "image": s.image, "tag": s.tag, "debounce_ms": ms(s.debounce), "hash_ms": ms(s.hash), "build_ms": ms(s.build),
                       "steps": s.steps.0, "cached_steps": s.steps.1, "registry_hit": s.registry_hit,
                       "export_ms": s.export.map(ms), "rollout_ms": ms(s.rollout),
                       "pod_created_ms": s.pod.created.map(ms), "pod_running_ms": s.pod.running.map(ms),
                       "pod_ready_ms": s.pod.ready.map(ms), "total_ms": ms(s.total)}),
            ),
            Report::Crashed { image, tag, error, after, rollback, late } => self.emit(
                &crash_text(image, tag, error, *after, rollback.as_deref(), *late),
                json!({"event": "crashed", "image": image, "tag": tag, "error": error, "after_ms": ms(*after), "rollback": rollback, "late": late}),
            ),
            Report::RolledBack { image, tag } => {
                self.emit(&format!("{image}: rolled back: {tag} runs again"), json!({"event": "rolled-back", "image": image, "tag": tag}))
            }
            Report::Retrying { image, error, after } => self.line(image, "retry", &format!("{error}; retrying in {}s", after.as_secs())),
        }
    }
}

impl crate::engine::out::Sink for Ui {
    fn line(&self, image: &str, kind: &str, text: &str) {
        Ui::line(self, image, kind, text)
    }
    fn report(&self, r: &Report) {
        Ui::report(self, r)
    }
    fn phase(&self, image: &str, phase: Phase) {
        Ui::phase(self, image, phase)
    }
    fn hashing(&self, image: &str) {
        Ui::hashing(self, image)
    }
    fn deployments(&self, image: &str, deployments: &[String]) {
        Ui::deployments(self, image, deployments)
    }
    fn forward_url(&self, deployment: &str, url: &str) {
        Ui::forward_url(self, deployment, url)
    }
    fn page_url(&self, url: &str) {
        Ui::page_url(self, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decide::PodStages;
    use crate::test_util::SharedBuf;
    use board::Phase;

    fn summary() -> Summary {
        Summary {
            image: "hello".into(),
            tag: "a1b2c3d4e5".into(),
            hash: Duration::from_millis(4),
            build: Duration::from_millis(812),
            steps: (7, 5),
            registry_hit: false,
            export: Some(Duration::from_millis(120)),
            rollout: Duration::from_millis(1900),
            pod: PodStages { created: Some(Duration::from_millis(30)), running: Some(Duration::from_millis(700)), ready: Some(Duration::from_millis(1850)) },
            total: Duration::from_millis(2800),
            debounce: Duration::from_millis(150),
        }
    }

    #[test]
    fn the_summary_line_reads_like_the_issue_says() {
        assert_eq!(
            summary_line(&summary()),
            "hello  a1b2c3  hash 4ms · build 812ms (5/7 cached) · rollout 1.9s (running 700ms, ready 1.9s) · total 2.8s"
        );
        let unknown = Summary { pod: PodStages::default(), ..summary() };
        assert_eq!(summary_line(&unknown), "hello  a1b2c3  hash 4ms · build 812ms (5/7 cached) · rollout 1.9s · total 2.8s");
    }

    #[test]
    fn the_sync_line_reads_like_the_issue_says_and_tells_what_the_pods_run() {
        let s = SyncSummary {
            image: "hello".into(),
            files: 2,
            pods: 1,
            sync: Duration::from_millis(84),
            total: Duration::from_millis(140),
            tag: "a1b2c3d4e5f6a7b8".into(),
            synced: 3,
            content: Some("d4e5f6a7b8c9d0e1".into()),
            ..Default::default()
        };
        assert_eq!(sync_line(&s), "hello  sync 2 files → 1 pod · 84ms · total 140ms");
        assert_eq!(state_line(&s), "hello: pods run image a1b2c3d4e5f6 + 3 synced file(s) (content d4e5f6a7b8c9)");
        let replay = SyncSummary { replay: true, files: 1, deleted: 1, pods: 2, ..s.clone() };
        assert_eq!(sync_line(&replay), "hello  replay 1 file (1 deleted) → 2 new pods · 84ms · total 140ms");
        let buf = SharedBuf::default();
        let ui = Ui::new(true, Box::new(buf.clone()));
        ui.report(&Report::Synced(s));
        assert!(ui.flush(Duration::from_secs(5)));
        let v: Value = serde_json::from_str(buf.text().trim()).unwrap();
        assert_eq!((v["event"].as_str(), v["files"].as_u64(), v["sync_ms"].as_u64(), v["total_ms"].as_u64()), (Some("sync"), Some(2), Some(84), Some(140)));
        assert_eq!((v["synced"].as_u64(), v["content"].as_str()), (Some(3), Some("d4e5f6a7b8c9d0e1")));
    }

    /// A sync not tried (nothing to take it, too large) is one line saying why a build comes; a failed one
    /// says it failed, then what comes.
    #[test]
    fn a_sync_fallback_says_why_a_build_comes() {
        let text = |skipped: bool, error: &str| {
            let buf = SharedBuf::default();
            let ui = Ui::new(false, Box::new(buf.clone()));
            ui.report(&Report::SyncFallback { image: "hello".into(), error: error.into(), for_good: false, skipped });
            assert!(ui.flush(Duration::from_secs(5)));
            buf.text()
        };
        assert_eq!(text(true, "no running container can take the sync"), "hello: no running container can take the sync: building the image instead\n");
        assert_eq!(text(false, "in pod p: exec: denied"), "hello: sync failed: in pod p: exec: denied\nhello: building the image instead\n");
        let buf = SharedBuf::default();
        let ui = Ui::new(true, Box::new(buf.clone()));
        ui.report(&Report::SyncFallback { image: "hello".into(), error: "too large".into(), for_good: false, skipped: true });
        assert!(ui.flush(Duration::from_secs(5)));
        let v: Value = serde_json::from_str(buf.text().trim()).unwrap();
        assert_eq!((v["event"].as_str(), v["skipped"].as_bool(), v["error"].as_str()), (Some("sync-failed"), Some(true), Some("too large")));
    }

    #[test]
    fn json_mode_writes_one_object_per_line() {
        let buf = SharedBuf::default();
        let ui = Ui::new(true, Box::new(buf.clone()));
        ui.report(&Report::Iteration(summary()));
        ui.line("hello", "log", "GET / 200");
        assert!(ui.flush(Duration::from_secs(5)));
        let text = buf.text();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["event"], "iteration");
        assert_eq!(lines[0]["build_ms"], 812);
        assert_eq!((lines[0]["export_ms"].as_u64(), lines[0]["pod_running_ms"].as_u64(), lines[0]["pod_ready_ms"].as_u64()), (Some(120), Some(700), Some(1850)));
        assert_eq!(lines[1]["message"], "GET / 200");
    }

    #[test]
    fn a_crash_after_a_rollout_says_how_with_its_lines_what_is_done_about_it_and_turns_the_row_failed() {
        let crash = |rollback: Option<&str>, late: bool| Report::Crashed {
            image: "hello".into(),
            tag: "a1b2c3".into(),
            error: "deployment ns/hello: Exited (pod p, container web): exited with code 3 (Error)\n  last log lines:\n    no config".into(),
            after: Duration::from_millis(15200),
            rollback: rollback.map(str::to_string),
            late,
        };
        let buf = SharedBuf::default();
        let ui = Ui::with_board(Box::new(buf.clone()), 200);
        ui.report(&crash(Some("d4e5f6"), false));
        assert!(ui.flush(Duration::from_secs(5)));
        let text = buf.text();
        assert!(text.contains("hello: a1b2c3 CRASHED 15.2s after its rollout: deployment ns/hello: Exited (pod p, container web): exited with code 3 (Error)\n"), "{text:?}");
        assert!(text.contains("hello:     no config\n") && text.contains("hello: rolling back to d4e5f6"), "{text:?}");
        assert_eq!(ui.current("hello"), Some(Phase::Failed("crashed: deployment ns/hello: Exited (pod p, container web): exited with code 3 (Error)".into())));
        ui.report(&Report::RolledBack { image: "hello".into(), tag: "d4e5f6".into() });
        assert_eq!(ui.current("hello"), Some(Phase::Serving { tag: "d4e5f6".into(), synced: 0 }));
        let late = SharedBuf::default();
        let ui = Ui::new(false, Box::new(late.clone()));
        ui.report(&crash(None, true));
        assert!(ui.flush(Duration::from_secs(5)));
        assert!(late.text().contains("hello: left as it is: it ran more than 1m first, so this is a bug to debug"), "{:?}", late.text());

        let buf = SharedBuf::default();
        let ui = Ui::new(true, Box::new(buf.clone()));
        ui.report(&crash(Some("d4e5f6"), false));
        assert!(ui.flush(Duration::from_secs(5)));
        let v: Value = serde_json::from_str(buf.text().trim()).unwrap();
        assert_eq!((v["event"].as_str(), v["tag"].as_str(), v["rollback"].as_str(), v["late"].as_bool(), v["after_ms"].as_u64()), (Some("crashed"), Some("a1b2c3"), Some("d4e5f6"), Some(false), Some(15200)));
        assert!(v["error"].as_str().unwrap().ends_with("no config"), "{v}");
    }

    #[test]
    fn reports_move_the_status_block_and_lines_without_a_block_stay_plain() {
        let buf = SharedBuf::default();
        let ui = Ui::with_board(Box::new(buf.clone()), 100);
        ui.phase("hello", Phase::Watching);
        ui.report(&Report::Building { image: "hello".into(), tag: "a1b2c3d4e5".into() });
        assert!(matches!(ui.current("hello"), Some(Phase::Building { .. })));
        ui.report(&Report::Iteration(summary()));
        assert_eq!(ui.current("hello"), Some(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }));
        ui.hashing("hello");
        ui.report(&Report::Unchanged { image: "hello".into(), tag: "a1b2c3d4e5".into() });
        assert_eq!(ui.current("hello"), Some(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }), "back to serving");
        ui.report(&Report::Failed { image: "hello".into(), tag: None, error: "Dockerfile:3: RUN false\nlogs".into() });
        assert_eq!(ui.current("hello"), Some(Phase::Failed("Dockerfile:3: RUN false".into())));
        // Every line was written above the block: the text ends with the block's one row.
        assert!(ui.flush(Duration::from_secs(5)));
        let text = buf.text();
        assert!(text.ends_with("✗ hello  failed: Dockerfile:3: RUN false\n"), "{text:?}");
        assert!(text.contains(&format!("\x1b[1A\x1b[J{}\n", summary_line(&summary()))), "{text:?}");

        let plain = SharedBuf::default();
        let ui = Ui::new(false, Box::new(plain.clone()));
        ui.phase("hello", Phase::Watching);
        ui.report(&Report::Iteration(summary()));
        assert!(ui.flush(Duration::from_secs(5)));
        assert_eq!((plain.text(), ui.current("hello")), (format!("{}\n", summary_line(&summary())), None));
    }

    /// A rollout's reason comes with its report, as data: the row, the line and the JSON say it (nothing
    /// reads it back out of the deploy's text).
    #[test]
    fn a_failed_rollout_says_its_reason_on_the_row_the_line_and_in_json() {
        let reason = "Exited (pod web-1, container web): exited with code 3 (Error)";
        let r = Report::RolloutFailed { image: "hello".into(), tag: "a1b2c3d4".into(), reason: Some(reason.into()) };
        let buf = SharedBuf::default();
        let ui = Ui::with_board(Box::new(buf.clone()), 200);
        ui.report(&r);
        assert_eq!(ui.current("hello"), Some(Phase::Failed(format!("rollout: {reason}"))));
        assert!(ui.flush(Duration::from_secs(5)));
        assert!(buf.text().contains(&format!("hello: rollout of a1b2c3d4 failed: {reason}\n")), "{:?}", buf.text());
        let json = SharedBuf::default();
        let ui = Ui::new(true, Box::new(json.clone()));
        ui.report(&r);
        assert!(ui.flush(Duration::from_secs(5)));
        let v: Value = serde_json::from_str(json.text().trim()).unwrap();
        assert_eq!((v["event"].as_str(), v["reason"].as_str()), (Some("rollout-failed"), Some(reason)));
    }
}
