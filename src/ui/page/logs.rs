//! The page's log panes: every line `up` says about each image — BuildKit's steps and output, rollout and
//! sync lines, warnings, failures, and its pods' logs with pod and container — kept per image in a bounded
//! buffer, each line numbered once (`seq`, across images) so that a page that reconnects asks for what it
//! missed and the "all" pane interleaves images in the order they were said.
//!
//! Bounded so that a page open all day costs what it cost after an hour: at most [`LINES`] lines per image
//! (oldest dropped first), each cut to [`LINE_BYTES`].

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Lines kept per image (and for devloop's own lines), oldest dropped first.
pub const LINES: usize = 2000;
/// A longer line is cut to this many bytes (at a character boundary), ending in `…`.
pub const LINE_BYTES: usize = 1000;

/// One line of a pane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// Its number among every line of this `up` (1, 2, …): increasing, across images.
    pub seq: u64,
    /// When it was said (ms since the epoch).
    pub at: u64,
    /// The image it is about; `devloop` for lines about none.
    pub image: String,
    /// `pods` (a pod's log), `build` (what devloop did for the image: steps, rollout, sync, failures) or
    /// `devloop` (about no image).
    pub source: &'static str,
    /// The event it came from (`log`, `build`, `deploy`, `failed`, …).
    pub kind: String,
    /// The pod and container of a pod's log line.
    pub pod: Option<String>,
    /// The container of a pod's log line.
    pub container: Option<String>,
    /// The line, without the image's name in front.
    pub text: String,
    /// It reports an error: a failure, a retry, BuildKit's `ERROR`, a pod line saying error, panic or fatal.
    pub error: bool,
}

/// Every pane's lines.
#[derive(Debug, Default)]
pub struct Logs {
    by_image: BTreeMap<String, VecDeque<Line>>,
    seq: u64,
}

/// Kinds of event that are errors whatever they say.
const ERROR_KINDS: &[&str] = &["failed", "rollout-failed", "crashed", "sync-failed", "retry"];

/// Words that mark a pod's or a build's line as an error when they start a word.
const ERROR_WORDS: &[&str] = &["error", "panic", "fatal", "exception", "traceback", "failed"];

impl Logs {
    /// Keeps each line of `text` (said about `image` by an event of `kind`; a pod's line with its pod and
    /// container); returns how many lines it kept.
    pub fn push(&mut self, image: &str, kind: &str, pod: Option<&str>, container: Option<&str>, text: &str, at: u64) -> usize {
        let source = match (kind, image) {
            ("log", _) => "pods",
            (_, "devloop") => "devloop",
            _ => "build",
        };
        let prefix = format!("{image}: ");
        let lines = self.by_image.entry(image.to_string()).or_default();
        let mut kept = 0;
        for l in text.lines() {
            let l = l.strip_prefix(&prefix).unwrap_or(l);
            self.seq += 1;
            let error = ERROR_KINDS.contains(&kind) || (kind != "sync-failed" && says_error(l));
            let line = Line {
                seq: self.seq,
                at,
                image: image.to_string(),
                source,
                kind: kind.to_string(),
                pod: pod.map(str::to_string),
                container: container.map(str::to_string),
                text: cut(l),
                error,
            };
            if lines.len() == LINES {
                lines.pop_front();
            }
            lines.push_back(line);
            kept += 1;
        }
        kept
    }

    /// The lines numbered after `seq`, in order, across images.
    pub fn after(&self, seq: u64) -> Vec<&Line> {
        let mut out: Vec<&Line> = Vec::new();
        for lines in self.by_image.values() {
            // Each pane is in order: only its tail can be newer.
            let newer = lines.len() - lines.iter().rev().take_while(|l| l.seq > seq).count();
            out.extend(lines.range(newer..));
        }
        out.sort_by_key(|l| l.seq);
        out
    }

    /// The last number given.
    pub fn last(&self) -> u64 {
        self.seq
    }

    /// Lines kept now, per image.
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        self.by_image.iter().map(|(i, l)| (i.as_str(), l.len())).collect()
    }
}

/// Whether a line says it is an error: one of [`ERROR_WORDS`] starting a word, any case (`Error:`,
/// `panic!`, `level=fatal`), but not inside another word (`terrors`).
fn says_error(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ERROR_WORDS.iter().any(|w| {
        lower.match_indices(w).any(|(i, _)| i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric())
    })
}

/// `line` cut to [`LINE_BYTES`] at a character boundary, marked with `…` when cut.
fn cut(line: &str) -> String {
    if line.len() <= LINE_BYTES {
        return line.to_string();
    }
    let mut end = LINE_BYTES - '…'.len_utf8();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_keeps_its_last_lines_numbered_across_images_and_a_reader_gets_what_it_missed() {
        let mut logs = Logs::default();
        logs.push("api", "build", None, None, "api: #1 [1/2] FROM scratch\napi: #2 [2/2] COPY . /", 1);
        logs.push("web", "log", Some("web-1"), Some("web"), "listening on :80", 2);
        logs.push("devloop", "config", None, None, "devloop.toml reloaded; 2 image(s)", 3);
        let all: Vec<(u64, &str, &str, &str)> = logs.after(0).iter().map(|l| (l.seq, l.image.as_str(), l.source, l.text.as_str())).collect();
        assert_eq!(
            all,
            [
                (1, "api", "build", "#1 [1/2] FROM scratch"),
                (2, "api", "build", "#2 [2/2] COPY . /"),
                (3, "web", "pods", "listening on :80"),
                (4, "devloop", "devloop", "devloop.toml reloaded; 2 image(s)"),
            ]
        );
        assert_eq!(logs.after(0)[2].pod.as_deref(), Some("web-1"));
        let missed: Vec<u64> = logs.after(2).iter().map(|l| l.seq).collect();
        assert_eq!(missed, [3, 4]);
        assert!(logs.after(4).is_empty());
        // A chatty pod fills its own pane only: the others keep theirs.
        for i in 0..LINES + 500 {
            logs.push("web", "log", Some("web-1"), Some("web"), &format!("request {i}"), 4);
        }
        assert_eq!(logs.counts(), BTreeMap::from([("api", 2), ("devloop", 1), ("web", LINES)]));
        let web: Vec<&Line> = logs.after(0).into_iter().filter(|l| l.image == "web").collect();
        assert_eq!(web[0].text, "request 500", "the oldest went first");
        assert_eq!(web.last().unwrap().seq, logs.last());
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary_and_marked() {
        let mut logs = Logs::default();
        let long = "é".repeat(LINE_BYTES);
        logs.push("api", "log", None, None, &long, 1);
        let text = &logs.after(0)[0].text;
        assert!(text.len() <= LINE_BYTES && text.ends_with('…'), "{} bytes", text.len());
        assert!(text.starts_with("éé"));
    }

    #[test]
    fn errors_are_marked_by_kind_or_by_what_a_line_says() {
        let cases = [
            ("failed", "FAILED (a1b2c3): [2/2] RUN make", true),
            ("retry", "buildkitd does not answer; retrying in 2s", true),
            ("crashed", "a1b2c3 CRASHED 3.1s after its rollout", true),
            ("build", "#5 [2/2] RUN exit 3 ERROR: process did not complete successfully", true),
            ("log", "Error: cannot open /data", true),
            ("log", "thread 'main' panicked at src/main.rs:3", true),
            ("log", "panic: runtime error: index out of range", true),
            ("log", "level=fatal msg=\"no config\"", true),
            ("log", "0 errors, 12 terrors", true),
            ("log", "GET / 200 (no terrors)", false),
            ("deploy", "deployment ns/web rolled out", false),
            ("log", "serving /www on :8080", false),
        ];
        for (kind, text, want) in cases {
            let mut logs = Logs::default();
            logs.push("api", kind, None, None, text, 1);
            assert_eq!(logs.after(0)[0].error, want, "{kind}: {text}");
        }
    }
}
