//! The status block `up` keeps at the bottom of a terminal: one line per image saying what it is doing right
//! now, redrawn in place while events and pod logs scroll above it. Off a terminal (or with `--json`) there is
//! no block and the output stays line by line.
//!
//! It is a few lines of ANSI (move up, clear to the end of the screen, write) rather than indicatif: its rows
//! are states, not progress bars, and every line above them must go through the same lock as the redraw.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::short;
pub use crate::engine::out::Phase;

#[derive(Debug, Clone)]
struct Row {
    phase: Phase,
    since: Instant,
    /// The last phase that was not work in progress: what an image goes back to when a change turns out to
    /// change nothing.
    settled: Phase,
    /// The Deployments its last rollout rolled (their forwarded URLs are shown).
    deployments: Vec<String>,
}

/// One image's row, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowView {
    /// The image.
    pub image: String,
    /// What it is doing ([`describe`] says it in words).
    pub phase: Phase,
    /// How long it has been in this phase.
    pub since: Duration,
    /// The forwarded URLs of the Deployments it rolled.
    pub urls: Vec<String>,
}

/// The rows and how many lines the last drawing took.
#[derive(Debug, Default)]
pub struct Board {
    rows: BTreeMap<String, Row>,
    /// Forwarded URLs by Deployment name.
    forwards: BTreeMap<String, String>,
    drawn: usize,
}

impl Board {
    /// Puts `image` in `phase` (an image not seen before gets a row).
    pub fn set(&mut self, image: &str, phase: Phase) {
        let now = Instant::now();
        let row = self.rows.entry(image.to_string()).or_insert_with(|| Row {
            phase: Phase::Watching,
            since: now,
            settled: Phase::Watching,
            deployments: vec![],
        });
        if row.phase != phase {
            // A new step of the same build keeps the build's clock.
            let same_kind = std::mem::discriminant(&row.phase) == std::mem::discriminant(&phase);
            if !same_kind {
                row.since = now;
            }
            if !phase.busy() {
                row.settled = phase.clone();
            }
            row.phase = phase;
        }
    }

    /// `image` is being hashed, unless it is busy with something else (a build the hash may supersede).
    pub fn hashing(&mut self, image: &str) {
        if !self.rows.get(image).is_some_and(|r| r.phase.busy()) {
            self.set(image, Phase::Hashing);
        }
    }

    /// A change that changed nothing: a hashing image goes back to what it did before.
    pub fn settle(&mut self, image: &str) {
        if let Some(row) = self.rows.get_mut(image).filter(|r| r.phase == Phase::Hashing) {
            row.phase = row.settled.clone();
            row.since = Instant::now();
        }
    }

    /// The content hashes to `tag`, the one the pods run: a failure before it is undone (the edit that
    /// broke the build was reverted), anything else goes back to what it was.
    pub fn unchanged(&mut self, image: &str, tag: &str) {
        let failed = self.rows.get(image).is_some_and(|r| {
            matches!(r.phase, Phase::Failed(_)) || (r.phase == Phase::Hashing && matches!(r.settled, Phase::Failed(_)))
        });
        if failed {
            self.set(image, Phase::Serving { tag: tag.to_string(), synced: 0 });
        } else {
            self.settle(image);
        }
    }

    /// Whether any image is at work (its row shows a running clock, so it is worth redrawing).
    pub fn busy(&self) -> bool {
        self.rows.values().any(|r| r.phase.busy())
    }

    /// The phase `image` is in.
    pub fn phase(&self, image: &str) -> Option<&Phase> {
        self.rows.get(image).map(|r| &r.phase)
    }

    /// Notes that `deployment` is forwarded at `url`.
    pub fn forward(&mut self, deployment: &str, url: &str) {
        self.forwards.insert(deployment.to_string(), url.to_string());
    }

    /// Notes the Deployments `image` rolled: their forwarded URLs are shown on its row.
    pub fn deployments(&mut self, image: &str, deployments: &[String]) {
        if let Some(row) = self.rows.get_mut(image) {
            row.deployments = deployments.to_vec();
        }
    }

    /// Each row as data: for the status page, and for the block's lines.
    pub fn views(&self) -> Vec<RowView> {
        self.rows
            .iter()
            .map(|(image, row)| RowView {
                image: image.clone(),
                phase: row.phase.clone(),
                since: row.since.elapsed(),
                urls: row.deployments.iter().filter_map(|d| self.forwards.get(d).cloned()).collect(),
            })
            .collect()
    }

    /// The block's lines, each cut to `width` columns.
    pub fn lines(&self, width: usize) -> Vec<String> {
        let name_width = self.rows.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        self.views()
            .into_iter()
            .map(|v| {
                let mut what = describe(&v.phase);
                if v.phase.busy() {
                    what.push_str(&format!(" · {}", short_secs(v.since)));
                }
                if matches!(v.phase, Phase::Serving { .. }) && !v.urls.is_empty() {
                    what.push_str(&format!(" at {}", v.urls.join(", ")));
                }
                cut(&format!("{} {:<name_width$}  {what}", marker(&v.phase), v.image), width)
            })
            .collect()
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
        Phase::Serving { tag: t, synced: 0 } => format!("serving {}", tag(t)),
        Phase::Serving { tag: t, synced } => format!("serving {} + {synced} synced file(s)", tag(t)),
        Phase::Failed(why) => format!("failed: {why}"),
    }
}

fn marker(phase: &Phase) -> &'static str {
    match phase {
        Phase::Failed(_) => "✗",
        Phase::Serving { .. } => "●",
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

/// The terminal's width in columns, if stdout is one.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given and nothing else; fd 1 is only read.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Whether `up` should keep a status block: stdout is a terminal that can move its cursor.
pub fn wanted() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    tty && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

#[cfg(test)]
mod tests;
