//! The status page of `devloop up --ui`: each image's state, what is live (its reference, the pods running
//! it, what was synced, where its forward goes) and last failure, drawn from the core's snapshot (the very
//! one the terminal's status block draws), each image's lines in a pane of its own ([`logs`]), and the last
//! iterations split into where their time went (from the reports, in order). [`server`] serves it (one page,
//! `/state`, `/events`, the actions).

pub mod logs;
pub mod server;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::board::describe;
use super::ms;
use crate::engine::decide::{Summary, SyncSummary};
use crate::engine::out::Snapshot;

/// Iterations the chart keeps.
pub const ITERATIONS: usize = 40;
/// Lines kept per image, the tail of which a failure shows.
const RECENT: usize = 40;
/// Lines a failure shows.
const FAILURE_LINES: usize = 25;

/// The page's state, shared by the loop (which reports into it) and the server (which sends snapshots).
pub struct Hub {
    model: Mutex<Model>,
    /// Where the action buttons' requests go (`up`'s queue).
    triggers: std::sync::OnceLock<Arc<crate::engine::control::Triggers>>,
    /// Bumped on every change (state or lines): each open page waits on it for what is new.
    changed: watch::Sender<u64>,
    /// What a request must carry to act: given to the page at load, unknown to any other origin.
    token: String,
    /// This process's id: a page that reconnects to another `up` (restarted) starts its panes afresh.
    boot: String,
}

#[derive(Default)]
struct Model {
    /// The core's view, as last published.
    shown: Arc<Snapshot>,
    /// The loop's start line: context, namespace, images.
    header: String,
    iterations: VecDeque<Bar>,
    /// Per image, the lines that led to its last failure: the failure's number, the lines.
    led: BTreeMap<String, (u64, Vec<String>)>,
    /// Per image, its last lines (deploy steps, pod logs, retries).
    recent: BTreeMap<String, VecDeque<String>>,
    /// Iterations so far (the chart numbers its bars with it).
    count: u64,
    /// Each image's pane.
    logs: logs::Logs,
    /// Bumped when what `/state` shows changed (not by lines: a chatty pod must not resend the state).
    version: u64,
}

/// One iteration on the chart: a stacked bar.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bar {
    /// Its number since `up` started.
    pub n: u64,
    /// The image.
    pub image: String,
    /// The content tag, short.
    pub tag: String,
    /// `build` (built and rolled out) or `sync` (files copied into the pods).
    pub kind: &'static str,
    /// When it ended (ms since the epoch).
    pub at: u64,
    /// `[stage, ms]` from first to last: the bar's segments.
    pub segments: Vec<(&'static str, u64)>,
    /// A short remark: `3/5 cached`, `registry hit`, `2 files → 1 pod`.
    pub note: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(ms).unwrap_or(0)
}

fn short(tag: &str) -> String {
    tag[..tag.len().min(12)].to_string()
}

/// Where a built iteration's time went: the debounce, then hashing, building, exporting and pushing, the new
/// pod starting (scheduled, image pulled, containers running), readiness (until the rollout is done), and
/// what is left of the total (waits between stages).
pub fn build_segments(s: &Summary) -> Vec<(&'static str, u64)> {
    let export = s.export.unwrap_or_default().min(s.build);
    let running = s.pod.running.unwrap_or_default().min(s.rollout);
    let counted = s.hash + s.build + s.rollout;
    vec![
        ("debounce", ms(s.debounce)),
        ("hash", ms(s.hash)),
        ("build", ms(s.build - export)),
        ("push", ms(export)),
        ("pod start", ms(running)),
        ("ready", ms(s.rollout - running)),
        ("other", ms(s.total.saturating_sub(counted))),
    ]
}

/// Where a sync's time went: the debounce, the copy into the pods, and the rest of its total.
pub fn sync_segments(s: &SyncSummary) -> Vec<(&'static str, u64)> {
    vec![("debounce", ms(s.debounce)), ("sync", ms(s.sync)), ("other", ms(s.total.saturating_sub(s.sync)))]
}

impl Default for Hub {
    fn default() -> Self {
        let random = |bytes: usize| hex::encode((0..bytes).map(|_| rand::random::<u8>()).collect::<Vec<u8>>());
        Hub { model: Mutex::default(), triggers: std::sync::OnceLock::new(), changed: watch::channel(0).0, token: random(16), boot: random(8) }
    }
}

/// What the page's buttons ask `up` to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Build what the image holds (`POST /trigger`).
    Trigger,
    /// Build it again, forced (`POST /rebuild`).
    Rebuild,
    /// Hold its changes (`POST /pause`).
    Pause,
    /// Act on them again (`POST /resume`).
    Resume,
}

impl Hub {
    fn change(&self, f: impl FnOnce(&mut Model)) {
        let mut m = self.model.lock().expect("not poisoned");
        f(&mut m);
        m.version += 1;
        drop(m);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The token a request must carry to act (the page gets it at load and on every reconnect).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// This `up`'s id, told to the page on every connection.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// Keeps each line of `text` in `image`'s pane (a pod's line with its pod and container) and wakes the
    /// open pages.
    pub fn log(&self, image: &str, kind: &str, pod: Option<&str>, container: Option<&str>, text: &str) {
        let kept = self.model.lock().expect("not poisoned").logs.push(image, kind, pod, container, text, now_ms());
        if kept > 0 {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The lines after `seq` as the page's `logs` event data, and the last number in it (none: no line).
    pub fn lines_after(&self, seq: u64) -> Option<(String, u64)> {
        let m = self.model.lock().expect("not poisoned");
        let lines = m.logs.after(seq);
        let last = lines.last()?.seq;
        Some((serde_json::json!({ "lines": lines }).to_string(), last))
    }

    /// The number of the last line kept, and the version of the state.
    pub fn versions(&self) -> (u64, u64) {
        let m = self.model.lock().expect("not poisoned");
        (m.logs.last(), m.version)
    }

    /// Lines kept per pane now.
    pub fn line_counts(&self) -> BTreeMap<String, usize> {
        self.model.lock().expect("not poisoned").logs.counts().into_iter().map(|(i, n)| (i.to_string(), n)).collect()
    }

    /// Takes the buttons' requests to `triggers` (set once, before `up` starts).
    pub fn take_triggers(&self, triggers: Arc<crate::engine::control::Triggers>) {
        let _ = self.triggers.set(triggers);
    }

    /// Asks `up` to `act` on `image` (one the page shows); the status to answer and why not.
    pub fn act(&self, act: Act, image: &str) -> Result<(), (axum::http::StatusCode, String)> {
        use crate::engine::control::Request;
        use axum::http::StatusCode;
        if !self.shown().images.contains_key(image) {
            return Err((StatusCode::NOT_FOUND, format!("no image `{image}` in this `devloop up`")));
        }
        let Some(t) = self.triggers.get() else { return Err((StatusCode::SERVICE_UNAVAILABLE, "this page takes no requests".into())) };
        let image = image.to_string();
        let request = match act {
            Act::Trigger => Request::Trigger(vec![image]),
            Act::Rebuild => Request::Rebuild(image),
            Act::Pause => Request::Pause(image, true),
            Act::Resume => Request::Pause(image, false),
        };
        if !t.ask(request) {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "devloop up is not taking requests now".into()));
        }
        Ok(())
    }

    /// Waits on this for changes (its value means nothing; that it changed does).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The core's view changed: a failure not seen before takes the image's recent lines with it.
    pub fn state(&self, snapshot: Arc<Snapshot>) {
        self.change(|m| {
            for (image, v) in &snapshot.images {
                let Some(f) = &v.failure else { continue };
                if m.led.get(image).is_some_and(|(n, _)| *n == f.n) {
                    continue;
                }
                let recent = m.recent.remove(image).unwrap_or_default();
                let lines = recent.iter().skip(recent.len().saturating_sub(FAILURE_LINES)).cloned().collect();
                m.led.insert(image.clone(), (f.n, lines));
            }
            m.shown = snapshot;
        });
    }

    /// The snapshot the page shows.
    pub fn shown(&self) -> Arc<Snapshot> {
        self.model.lock().expect("not poisoned").shown.clone()
    }

    /// Any event `up` emits (its JSON form): lines are kept per image for the failure they may lead to.
    pub fn record(&self, event: &Value) {
        let (Some(kind), Some(image), Some(message)) = (event["event"].as_str(), event["image"].as_str(), event["message"].as_str()) else {
            return;
        };
        // The recent lines are not on the page until a failure takes them: only the header is news.
        {
            let mut m = self.model.lock().expect("not poisoned");
            if kind == "start" {
                m.header = message.to_string();
                m.version += 1; // the header is part of the state
            }
            let recent = m.recent.entry(image.to_string()).or_default();
            recent.extend(message.lines().map(str::to_string));
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        if kind == "start" {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn push(&self, image: &str, tag: &str, kind: &'static str, segments: Vec<(&'static str, u64)>, note: String) {
        self.change(|m| {
            m.count += 1;
            let bar = Bar { n: m.count, image: image.to_string(), tag: short(tag), kind, at: now_ms(), segments, note };
            m.iterations.push_back(bar);
            while m.iterations.len() > ITERATIONS {
                m.iterations.pop_front();
            }
            // Its lines led to this success, not to a later failure.
            m.recent.remove(image);
        });
    }

    /// A built iteration rolled out.
    pub fn iteration(&self, s: &Summary) {
        let note = if s.registry_hit { "registry hit".to_string() } else { format!("{}/{} cached", s.steps.1, s.steps.0) };
        self.push(&s.image, &s.tag, "build", build_segments(s), note);
    }

    /// A sync (or replay) done.
    pub fn synced(&self, s: &SyncSummary) {
        let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
        let note = format!("{} → {}", plural(s.files, "file"), plural(s.pods, "pod"));
        self.push(&s.image, &s.tag, "sync", sync_segments(s), note);
    }

    /// The page's data now, as JSON: `header`, `images` (state, text, `for_ms`, urls, what is live: the
    /// deployed tag and reference, the synced tree's content tag, the forwards and their pods, the
    /// containers of its reference: `runs`; `paused`), `iterations`, `failures`.
    pub fn snapshot(&self) -> String {
        let m = self.model.lock().expect("not poisoned");
        let images: Vec<Value> = m
            .shown
            .images
            .iter()
            .map(|(image, v)| {
                let runs: Vec<Value> = v
                    .runs
                    .iter()
                    .map(|r| serde_json::json!({"pod": r.pod, "container": r.container, "restarts": r.restarts, "ready": r.ready, "waiting": r.waiting, "synced": r.synced}))
                    .collect();
                let forwards: Vec<Value> = v.forwards.iter().map(|f| serde_json::json!({"url": f.url, "pod": f.pod})).collect();
                serde_json::json!({"image": image, "state": v.phase.kind(), "text": describe(&v.phase), "busy": v.phase.busy(),
                                   "for_ms": ms(v.since.elapsed()), "urls": v.urls(), "forwards": forwards, "runs": runs,
                                   "deployed": v.deployed, "reference": v.reference, "content": v.content, "synced": v.synced, "paused": v.paused})
            })
            .collect();
        let failures: Vec<Value> = m
            .shown
            .images
            .iter()
            .filter_map(|(image, v)| {
                let f = v.failure.as_ref()?;
                let lines = m.led.get(image).filter(|(n, _)| *n == f.n).map(|(_, l)| l.clone()).unwrap_or_default();
                let at = now_ms().saturating_sub(ms(f.at.elapsed()));
                Some(serde_json::json!({"image": image, "tag": f.tag.as_deref().map(short), "error": f.error, "lines": lines, "at": at}))
            })
            .collect();
        serde_json::json!({"header": m.header, "images": images, "iterations": m.iterations, "failures": failures}).to_string()
    }
}

#[cfg(test)]
mod tests;
