//! What `devloop up` prints: one summary line per iteration and a line per state change, as text for people
//! or, with `--json`, as one JSON object per line for editors and scripts. On a terminal, a status block
//! ([`board`]) stays below the lines. The lines come from the engine's reports, in order; the status block
//! and the status page ([`page`]) both draw the core's latest snapshot, the same `Arc` for both. Keys in
//! the terminal ([`keys`]) select a row of the block and ask the core for what the page's buttons do.

pub mod board;
pub mod keys;
pub mod page;
pub mod writer;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::decide::{Report, Summary, SyncSummary};
use crate::engine::out::Snapshot;
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
        let on = s.buildkit.as_ref().map(|b| format!(" on {b}")).unwrap_or_default();
        format!("build {} ({}/{} cached){on}", short(s.build), s.steps.1, s.steps.0)
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

/// What `up` leaves behind when it stops without `--cleanup`: which pods run files synced on top of which
/// image, and what brings the real image back.
/// `n` and `one`, pluralized with an `s`.
fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn left_synced_text(tag: &str, synced: usize, content: Option<&str>, pods: &[String]) -> String {
    let content = content.map(|c| format!(" (content {})", &c[..c.len().min(12)])).unwrap_or_default();
    let which = if pods.is_empty() { "the running pods are".to_string() } else { format!("pod(s) {} are", pods.join(", ")) };
    format!(
        "{which} left as they are: image {} + {synced} synced file(s){content}, which no image holds; \
         the next `devloop up` or `devloop deploy` rolls out the real image",
        &tag[..tag.len().min(12)]
    )
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
        Self::start(out, None, Box::new(|| (80, 24)), json)
    }

    /// Text to `out` with a status block `width` columns wide below it (as on a terminal).
    pub fn with_board(out: Box<dyn Write + Send>, width: usize) -> Self {
        Self::start(out, Some(Board::default()), Box::new(move || (width, usize::MAX)), false)
    }

    fn start(out: Box<dyn Write + Send>, board: Option<Board>, width: Box<dyn Fn() -> (usize, usize) + Send>, json: bool) -> Self {
        Ui { out: Arc::new(writer::Writer::start(out, writer::Block { board, width }, json)), page: None }
    }

    /// To stdout; with a status block when `board` is asked for, the output is text and stdout is a
    /// terminal. While an image is at work its running clock is redrawn twice a second.
    pub fn stdout(json: bool, board: bool) -> Self {
        if json || !board || !board::wanted() {
            return Self::new(json, Box::new(std::io::stdout()));
        }
        let ui = Self::start(Box::new(std::io::stdout()), Some(Board::default()), Box::new(|| board::terminal_size().unwrap_or((80, 24))), false);
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
            let (kind, image) = (value["event"].as_str().unwrap_or("line"), value["image"].as_str().unwrap_or("devloop"));
            hub.log(image, kind, None, None, text);
        }
        let log = value["event"] == "log";
        self.out.line(if self.out.json() { value.to_string() } else { text.to_string() }, log);
    }

    /// What every image is doing now: the status block and the page draw this snapshot from now on.
    pub fn state(&self, snapshot: &Arc<Snapshot>) {
        if let Some(hub) = &self.page {
            hub.state(snapshot.clone());
        }
        let mut block = self.out.block.lock().expect("not poisoned");
        if let Some(b) = block.board.as_mut() {
            b.show(snapshot.clone());
            drop(block);
            self.out.redraw();
        }
    }

    /// The phase of `image` on the status block (or the page's, without a block; none without either).
    pub fn current(&self, image: &str) -> Option<Phase> {
        let on_terminal = self.out.block.lock().expect("not poisoned").board.as_ref().and_then(|b| b.phase(image).cloned());
        on_terminal.or_else(|| self.page.as_ref().and_then(|hub| hub.shown().images.get(image).map(|v| v.phase.clone())))
    }

    /// A free-form line about an image (deploy steps, log lines, forwards).
    pub fn line(&self, image: &str, kind: &str, text: &str) {
        self.emit(&format!("{image}: {text}"), json!({"event": kind, "image": image, "message": text}));
    }

    /// A decision's report.
    pub fn report(&self, r: &Report) {
        if let Some(hub) = &self.page {
            match r {
                Report::Iteration(s) => hub.iteration(s),
                Report::Synced(s) => hub.synced(s),
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
                       "steps": s.steps.0, "cached_steps": s.steps.1, "registry_hit": s.registry_hit, "buildkit": s.buildkit,
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
            Report::BuildkitMoved { image, message } => {
                self.emit(message, json!({"event": "buildkit-moved", "image": image, "message": message}))
            }
            Report::Retrying { image, error, after } => self.line(image, "retry", &format!("{error}; retrying in {}s", after.as_secs())),
            Report::Held { image, changes, paused } => {
                let what = if *changes == 0 { "a change to everything".to_string() } else { plural(*changes, "changed path") };
                let text = if *paused {
                    format!("{what} held: paused (p here or the page's resume acts on it)")
                } else {
                    format!("{what} held: trigger = \"manual\" (Enter here, the page's button, or `devloop trigger {image}`)")
                };
                self.emit(&format!("{image}: {text}"), json!({"event": "held", "image": image, "changes": changes, "message": text}))
            }
            Report::Triggered { image, changes } => {
                let text = match changes {
                    Some(0) => "triggered: looking at everything again".to_string(),
                    Some(n) => format!("triggered: {} released", plural(*n, "held path")),
                    None => "triggered: nothing was held; looking again".to_string(),
                };
                self.emit(&format!("{image}: {text}"), json!({"event": "triggered", "image": image, "changes": changes, "message": text}))
            }
            Report::Paused { image, paused, released } => {
                let text = match (paused, released) {
                    (true, _) => "paused: its changes are held until it is resumed".to_string(),
                    (false, None) => "resumed: nothing changed meanwhile".to_string(),
                    (false, Some(0)) => "resumed: looking at everything again".to_string(),
                    (false, Some(n)) => format!("resumed: {} released", plural(*n, "held path")),
                };
                self.emit(&format!("{image}: {text}"), json!({"event": if *paused { "paused" } else { "resumed" }, "image": image, "changes": released, "message": text}))
            }
            Report::Rebuilding { image } => {
                let text = "rebuild asked: hashing again and building even if the tag is deployed or in the registry";
                self.emit(&format!("{image}: {text}"), json!({"event": "rebuild", "image": image, "message": text}))
            }
            Report::NothingToTrigger => {
                let text = "trigger: no image holds a change";
                self.emit(&format!("devloop: {text}"), json!({"event": "triggered", "image": "devloop", "changes": null, "message": text}))
            }
            Report::QueuedBuild { image, tag, running, limit } => {
                let text = format!("{tag} waits for a build slot ({running} of {limit} running; [buildkit] parallel = {limit})");
                self.emit(&format!("{image}: {text}"), json!({"event": "queued", "image": image, "tag": tag, "running": running, "limit": limit, "message": text}))
            }
            Report::WaitsFor { image, tag, on } => {
                let text = format!("{tag} is built; its first rollout waits for {}'s (depends-on)", on.join(", "));
                self.emit(&format!("{image}: {text}"), json!({"event": "waiting", "image": image, "tag": tag, "on": on, "message": text}))
            }
            Report::LeftSynced { image, tag, synced, content, pods } => {
                let text = left_synced_text(tag, *synced, content.as_deref(), pods);
                self.emit(
                    &format!("{image}: {text}"),
                    json!({"event": "synced-left", "image": image, "message": text, "tag": tag, "synced": synced, "content": content, "pods": pods}),
                )
            }
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
    fn state(&self, snapshot: &Arc<Snapshot>) {
        Ui::state(self, snapshot)
    }
    fn page_url(&self, url: &str) {
        Ui::page_url(self, url)
    }
    fn detail(&self, image: &str, kind: &str, text: &str) {
        if let Some(hub) = &self.page {
            hub.record(&json!({"event": kind, "image": image, "message": text}));
            hub.log(image, kind, None, None, text);
        }
    }
    fn pod_log(&self, image: &str, pod: &str, container: &str, several: bool, line: &str) {
        let text = format!("{} {line}", crate::engine::out::pod_prefix(pod, container, several));
        let value = json!({"event": "log", "image": image, "message": text, "pod": pod, "container": container});
        if let Some(hub) = &self.page {
            hub.record(&value);
            // The pane shows the pod and container apart.
            hub.log(image, "log", Some(pod), Some(container), line);
        }
        self.out.line(if self.out.json() { value.to_string() } else { format!("{image}: {text}") }, true);
    }
}

#[cfg(test)]
mod tests;
