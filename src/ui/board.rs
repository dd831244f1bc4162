//! The status block `up` keeps at the bottom of a terminal: one line per image saying what it is doing right
//! now, redrawn in place while events and pod logs scroll above it. Off a terminal (or with `--json`) there is
//! no block and the output stays line by line.
//!
//! It is a few lines of ANSI (move up, clear to the end of the screen, write) rather than indicatif: its rows
//! are states, not progress bars, and every line above them must go through the same lock as the redraw.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::short;
pub use crate::engine::out::Phase;
use crate::engine::out::{ImageView, Snapshot};

/// The snapshot the block draws (the core's, shared with the page) and how many lines the last drawing took.
/// With keys ([`super::keys`]), also which image is selected (UI state: the engine never knows it) and a
/// line under the rows saying the keys.
#[derive(Debug)]
pub struct Board {
    shown: Arc<Snapshot>,
    drawn: usize,
    /// At most this many lines (a third of the terminal): the log lines above must stay readable.
    max_rows: usize,
    /// The keys act on the rows: a selected row is marked and the keys' line is drawn.
    keys: bool,
    /// The selected image (none yet: the first).
    selected: Option<String>,
}

impl Default for Board {
    fn default() -> Self {
        Board { shown: Arc::default(), drawn: 0, max_rows: usize::MAX, keys: false, selected: None }
    }
}

/// The line under the rows while keys act on them.
pub const KEYS_LINE: &str = "↑↓ select · r rebuild · p pause · t trigger · ⏎ trigger held · ? help";

/// Rows the block may take at least, however short the terminal.
const MIN_ROWS: usize = 6;

impl Board {
    /// Draws `snapshot` from now on. A selected image a reload removed hands the selection to the image
    /// now where it was (or the last one).
    pub fn show(&mut self, snapshot: Arc<Snapshot>) {
        if let Some(sel) = &self.selected {
            if !snapshot.images.contains_key(sel) {
                let at = self.shown.images.keys().position(|i| i == sel).unwrap_or(0);
                let n = snapshot.images.len();
                self.selected = (n > 0).then(|| snapshot.images.keys().nth(at.min(n - 1)).cloned()).flatten();
            }
        }
        self.shown = snapshot;
    }

    /// Marks the selected row and draws the keys' line from now on.
    pub fn show_keys(&mut self) {
        self.keys = true;
    }

    /// The selected image and what it is doing (the first image until one is chosen; none without images).
    pub fn selected(&self) -> Option<(&String, &ImageView)> {
        let images = &self.shown.images;
        self.selected.as_ref().and_then(|s| images.get_key_value(s)).or_else(|| images.iter().next())
    }

    /// Selects the image `step` rows down (up when negative), in the rows' order, wrapping at the ends.
    pub fn select(&mut self, step: isize) {
        let images = &self.shown.images;
        let n = images.len() as isize;
        if n == 0 {
            return;
        }
        let at = self.selected().and_then(|(s, _)| images.keys().position(|i| i == s)).unwrap_or(0) as isize;
        self.selected = images.keys().nth((at + step).rem_euclid(n) as usize).cloned();
    }

    /// The snapshot drawn.
    pub fn shown(&self) -> &Arc<Snapshot> {
        &self.shown
    }

    /// Whether any image is at work (its row shows a running clock, so it is worth redrawing).
    pub fn busy(&self) -> bool {
        self.shown.busy()
    }

    /// The phase `image` is in.
    pub fn phase(&self, image: &str) -> Option<&Phase> {
        self.shown.images.get(image).map(|v| &v.phase)
    }

    /// Fits the block to a terminal `rows` high: at most a third of it (at least [`MIN_ROWS`]).
    pub fn fit(&mut self, rows: usize) {
        self.max_rows = (rows / 3).max(MIN_ROWS);
    }

    /// Rows the images may take: the keys' line takes one of the block's.
    fn image_rows(&self) -> usize {
        if self.keys { self.max_rows.saturating_sub(1).max(2) } else { self.max_rows }
    }

    /// The block's lines, each cut to `width` columns: a row per image, or when there are more images than
    /// rows, a row per image that needs an eye (at work, failed, holding changes) and one line for the
    /// quiet rest (serving or watching), by name. With keys, the selected row starts with `›` (the others
    /// with two spaces; it is always shown) and [`KEYS_LINE`] comes last.
    pub fn lines(&self, width: usize) -> Vec<String> {
        let images = &self.shown.images;
        let selected = self.keys.then(|| self.selected().map(|(s, _)| s.as_str())).flatten();
        let quiet = |i: &str, v: &ImageView| matches!(v.phase, Phase::Serving { .. } | Phase::Watching) && Some(i) != selected;
        let max = self.image_rows();
        let shown: Vec<(&String, &ImageView)> = if images.len() <= max {
            images.iter().collect()
        } else {
            images.iter().filter(|(i, v)| !quiet(i, v)).take(max - 1).collect()
        };
        let name_width = shown.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let select = |image: &str| match (self.keys, Some(image) == selected) {
            (false, _) => "",
            (true, true) => "› ",
            (true, false) => "  ",
        };
        let mut lines: Vec<String> = shown
            .iter()
            .map(|(image, v)| cut(&format!("{}{} {image:<name_width$}  {}", select(image), marker(&v.phase), row_text(v)), width))
            .collect();
        if shown.len() < images.len() {
            let rest: Vec<(&String, &ImageView)> = images.iter().filter(|(i, _)| !shown.iter().any(|(s, _)| s == i)).collect();
            let count = |f: &dyn Fn(&Phase) -> bool| rest.iter().filter(|(_, v)| f(&v.phase)).count();
            let serving = count(&|p| matches!(p, Phase::Serving { .. }));
            let watching = count(&|p| matches!(p, Phase::Watching));
            let mut head = format!("● {serving} more serving");
            if watching > 0 {
                head.push_str(&format!(", {watching} watching"));
            }
            if rest.len() > serving + watching {
                head.push_str(&format!(", {} more at work", rest.len() - serving - watching));
            }
            let names: Vec<&str> = rest.iter().map(|(i, _)| i.as_str()).collect();
            lines.push(cut(&format!("{}{head}: {}", select(""), names.join(" ")), width));
        }
        if self.keys {
            lines.push(cut(KEYS_LINE, width));
        }
        lines
    }

    /// Writes `text` (lines that scroll) above the block and draws the block again below it.
    pub fn write_above(&mut self, out: &mut dyn Write, text: Option<&str>, width: usize) -> std::io::Result<()> {
        let mut buf = String::new();
        if self.drawn > 0 {
            // Up to the block's first line, then clear everything from there down.
            buf.push_str(&format!("\r\x1b[{}A\x1b[J", self.drawn));
        } else {
            buf.push_str("\r\x1b[J");
        }
        if let Some(text) = text {
            buf.push_str(text);
            buf.push('\n');
        }
        let lines = self.lines(width);
        for l in &lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.drawn = lines.len();
        out.write_all(buf.as_bytes())?;
        out.flush()
    }
}

/// What an image's row says after its name: the phase in words ([`describe`], the page's text too), the
/// running clock while at work, and where it is served.
pub fn row_text(v: &ImageView) -> String {
    let mut what = describe(&v.phase);
    if v.phase.busy() {
        what.push_str(&format!(" · {}", short_secs(v.since.elapsed())));
    }
    let urls = v.urls();
    if matches!(v.phase, Phase::Serving { .. }) && !urls.is_empty() {
        what.push_str(&format!(" at {}", urls.join(", ")));
    }
    what
}

/// What a phase means, in words: `building step 2 of 3: [2/3] RUN make`, `serving a1b2c3`.
pub fn describe(phase: &Phase) -> String {
    let tag = |t: &str| t[..t.len().min(6)].to_string();
    match phase {
        Phase::Watching => "watching".into(),
        Phase::Hashing => "hashing".into(),
        Phase::Building { step, of, name } if *of > 0 => format!("building step {step} of {of}: {name}"),
        Phase::Building { .. } => "building".into(),
        Phase::Pushing => "pushing".into(),
        Phase::RollingOut(what) if what.is_empty() => "rolling out".into(),
        Phase::RollingOut(what) => format!("rolling out: {what}"),
        Phase::Syncing => "syncing".into(),
        Phase::Queued => "waiting for a build slot".into(),
        Phase::Waiting(on) => format!("built; first rollout waits for {}", on.join(", ")),
        Phase::Held { changes: 0 } => "changes held: trigger to build".into(),
        Phase::Held { changes: 1 } => "1 changed path held: trigger to build".into(),
        Phase::Held { changes } => format!("{changes} changed paths held: trigger to build"),
        Phase::Paused { held: false, .. } => "paused: changes are held until resumed".into(),
        Phase::Paused { changes: 0, .. } => "paused: a change to everything held until resumed".into(),
        Phase::Paused { changes: 1, .. } => "paused: 1 changed path held until resumed".into(),
        Phase::Paused { changes, .. } => format!("paused: {changes} changed paths held until resumed"),
        Phase::Serving { tag: t, synced: 0 } => format!("serving {}", tag(t)),
        Phase::Serving { tag: t, synced } => format!("serving {} + {synced} synced file(s)", tag(t)),
        Phase::Failed(why) => format!("failed: {why}"),
    }
}

fn marker(phase: &Phase) -> &'static str {
    match phase {
        Phase::Failed(_) => "✗",
        Phase::Serving { .. } => "●",
        Phase::Held { .. } => "◆",
        Phase::Paused { .. } => "‖",
        Phase::Watching => "○",
        _ => "…",
    }
}

/// Seconds with one decimal: a running clock should not jump between `ms` and `s` units every redraw.
fn short_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        short(d)
    }
}

/// `s` cut to `width` columns (one per char; the block's own text is what it is), ending in `…` when cut.
fn cut(s: &str, width: usize) -> String {
    let first_line = s.lines().next().unwrap_or("");
    if first_line.chars().count() <= width && first_line.len() == s.len() {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let mut out: String = first_line.chars().take(keep).collect();
    out.push('…');
    out
}

/// The terminal's size (columns, rows), if stdout is one.
pub fn terminal_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given and nothing else; fd 1 is only read.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    let rows = if ws.ws_row > 0 { ws.ws_row as usize } else { usize::MAX };
    (ok && ws.ws_col > 0).then_some((ws.ws_col as usize, rows))
}

/// Whether `up` should keep a status block: stdout is a terminal that can move its cursor.
pub fn wanted() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    tty && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

#[cfg(test)]
mod tests;
