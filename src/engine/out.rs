//! What the engine tells the people and programs watching it. The engine decides and reports; a [`Sink`]
//! (the `ui` layer: lines, JSON, the status block, the page) shows. The engine knows nothing of how: it
//! holds an [`Out`], which `main` wires to the terminal and the page.
//!
//! A sink learns by two routes only, both from the core: the ordered stream of lines and reports, and the
//! immutable [`Snapshot`]s of what every image is doing (published by [`Publisher`] after each step that
//! changed it). The status block and the page both draw from the same snapshot and keep no state of their
//! own about the images; workers tell the core (`Event::Progress`), never the sink.

use std::sync::Arc;
use std::time::Instant;

use super::decide::{Report, State};
pub use super::decide::view::{Failure, ImageView, Phase, Snapshot};

/// Where the engine's news goes. Every method returns at once: a sink that writes to a reader that may stall
/// (a paused terminal, an editor not reading `--json`) queues or drops, and never makes the engine wait.
pub trait Sink: Send + Sync {
    /// A free-form line about an image (`kind`: deploy steps, log lines, forwards…).
    fn line(&self, image: &str, kind: &str, text: &str);
    /// A decision's report.
    fn report(&self, r: &Report);
    /// What every image is doing now (replaces the last snapshot; shared, never copied).
    fn state(&self, snapshot: &Arc<Snapshot>);
    /// The status page is served at `url`.
    fn page_url(&self, url: &str);
    /// A log line of a pod running `image`'s build: said as a line of kind `log`, `[pod] line` (or
    /// `[pod/container] line` when the pod runs the image in `several` containers), unless the sink keeps
    /// them apart.
    fn pod_log(&self, image: &str, pod: &str, container: &str, several: bool, line: &str) {
        self.line(image, "log", &format!("{} {line}", pod_prefix(pod, container, several)));
    }
    /// A line about an image for whoever keeps each image's full output (the page's panes), too many for
    /// the terminal: BuildKit's steps and their output (`kind` `build`). Nothing by default.
    fn detail(&self, image: &str, kind: &str, text: &str) {
        let _ = (image, kind, text);
    }
}

/// What a pod's log line is said after: `[pod]`, or `[pod/container]` when the pod runs the image in
/// `several` containers.
pub fn pod_prefix(pod: &str, container: &str, several: bool) -> String {
    if several {
        format!("[{pod}/{container}]")
    } else {
        format!("[{pod}]")
    }
}

/// A writer that tells `out` each line written to it as a [`Sink::detail`] of `kind` about `image`, and,
/// when `echo` is set, copies it to stderr prefixed with the image's name (`-v`).
pub struct DetailWriter {
    out: Out,
    image: String,
    kind: &'static str,
    echo: bool,
    partial: Vec<u8>,
}

impl DetailWriter {
    /// Lines of `kind` about `image` to `out` (and stderr when `echo`).
    pub fn new(out: Out, image: &str, kind: &'static str, echo: bool) -> Self {
        DetailWriter { out, image: image.to_string(), kind, echo, partial: Vec::new() }
    }
}

impl std::io::Write for DetailWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..i]);
            self.out.detail(&self.image, self.kind, &line);
            if self.echo {
                eprintln!("{}: {line}", self.image);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The engine's handle on its sink.
pub type Out = Arc<dyn Sink>;

/// A `forward::Say` that tells `out` a line of `kind` about `image`.
pub fn say(out: &Out, image: &str, kind: &'static str) -> crate::forward::Say {
    let (out, image) = (out.clone(), image.to_string());
    Arc::new(move |text: &str| out.line(&image, kind, text))
}

/// Publishes the core's view: a new snapshot, to the sink, whenever a step changed what it shows.
#[derive(Default)]
pub struct Publisher {
    shown: Arc<Snapshot>,
}

impl Publisher {
    /// Tells `out` the view of `state` if it differs from the last one told.
    pub fn publish(&mut self, state: &State, out: &dyn Sink) {
        let next = state.snapshot(&self.shown, Instant::now());
        if next != *self.shown {
            self.shown = Arc::new(next);
            out.state(&self.shown);
        }
    }

    /// The last snapshot published.
    pub fn shown(&self) -> &Arc<Snapshot> {
        &self.shown
    }
}
