//! BuildKit's status stream rendered for people: one line when a step starts and one when it ends
//! (CACHED, DONE with its time, or ERROR), the step's log lines kept for the failure report.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;

/// Log lines kept per step for the failure report.
const KEEP_LOG_LINES: usize = 20;

#[derive(Debug, Default)]
struct Step {
    number: usize,
    name: String,
    cached: bool,
    started: bool,
    completed: bool,
    started_at: Option<f64>,
    completed_at: Option<f64>,
    /// First start and last completion among the step's sub-statuses (an export's layers, its push).
    sub_span: Option<(f64, f64)>,
    error: String,
    logs: VecDeque<String>,
    partial: String,
}

/// Told (step number, steps known so far, step name) when a step starts running.
pub type OnStart = Box<dyn FnMut(usize, usize, &str) + Send>;

/// Accumulates status updates and prints step lines to `out`.
pub struct Progress {
    steps: HashMap<String, Step>,
    out: Box<dyn Write + Send>,
    prefix: String,
    verbose: bool,
    on_start: Option<OnStart>,
}

/// A failed step: its name, error and last log lines.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedStep {
    /// The step as BuildKit names it, e.g. `[2/3] RUN make`.
    pub name: String,
    /// BuildKit's error for it.
    pub error: String,
    /// Its last log lines.
    pub logs: Vec<String>,
}

fn seconds(t: &Option<Timestamp>) -> Option<f64> {
    t.as_ref().map(|t| t.seconds as f64 + t.nanos as f64 / 1e9)
}

impl Progress {
    /// Prints to `out`, each line prefixed (e.g. with the image name). `verbose` also prints log lines.
    pub fn new(out: Box<dyn Write + Send>, prefix: &str, verbose: bool) -> Self {
        Progress { steps: HashMap::new(), out, prefix: prefix.to_string(), verbose, on_start: None }
    }

    /// Also tells `f` (step number, steps known so far, step name) each time a step starts running.
    pub fn on_start(mut self, f: OnStart) -> Self {
        self.on_start = Some(f);
        self
    }

    /// Folds one status message in, printing what changed.
    pub fn update(&mut self, resp: &StatusResponse) {
        let mut begun = Vec::new();
        for v in &resp.vertexes {
            let next = self.steps.len() + 1;
            let step = self.steps.entry(v.digest.clone()).or_insert_with(|| Step { number: next, ..Default::default() });
            step.name = v.name.clone();
            step.cached |= v.cached;
            if v.started.is_some() {
                step.started_at = seconds(&v.started);
            }
            if !v.error.is_empty() {
                step.error = v.error.clone();
            }
            let (number, name) = (step.number, step.name.clone());
            if v.started.is_some() && !step.started && !step.completed && !v.cached && v.completed.is_none() {
                step.started = true;
                let _ = writeln!(self.out, "{}#{number} {name}", self.prefix);
                begun.push((number, name.clone()));
            }
            if v.completed.is_some() && !step.completed {
                step.completed = true;
                step.completed_at = seconds(&v.completed);
                let status = if !v.error.is_empty() {
                    format!("ERROR: {}", v.error)
                } else if step.cached {
                    "CACHED".to_string()
                } else {
                    let d = step.completed_at.unwrap_or(0.0) - step.started_at.unwrap_or(0.0);
                    format!("DONE {:.1}s", d.max(0.0))
                };
                let _ = writeln!(self.out, "{}#{number} {name} {status}", self.prefix);
            }
        }
        let known = self.steps.len();
        if let Some(f) = self.on_start.as_mut() {
            for (number, name) in begun {
                f(number, known, &name);
            }
        }
        for st in &resp.statuses {
            let (Some(step), Some(start)) = (self.steps.get_mut(&st.vertex), seconds(&st.started)) else { continue };
            let end = seconds(&st.completed).unwrap_or(start);
            step.sub_span = Some(step.sub_span.map_or((start, end), |(a, b)| (a.min(start), b.max(end))));
        }
        for l in &resp.logs {
            let Some(step) = self.steps.get_mut(&l.vertex) else { continue };
            step.partial.push_str(&String::from_utf8_lossy(&l.msg));
            while let Some(i) = step.partial.find('\n') {
                let line: String = step.partial.drain(..=i).collect();
                let line = line.trim_end().to_string();
                if self.verbose {
                    let _ = writeln!(self.out, "{}#{} {line}", self.prefix, step.number);
                }
                if step.logs.len() == KEEP_LOG_LINES {
                    step.logs.pop_front();
                }
                step.logs.push_back(line);
            }
        }
        let _ = self.out.flush();
    }

    /// How long BuildKit spent exporting the image and pushing it (its "exporting to image" step).
    pub fn export_time(&self) -> Option<std::time::Duration> {
        let s = self.steps.values().find(|s| s.name.starts_with("exporting to "))?;
        // BuildKit may report the step itself as instantaneous and the work in its sub-statuses.
        let own = s.completed_at.zip(s.started_at).map(|(c, a)| c - a);
        let subs = s.sub_span.map(|(a, b)| b - a);
        let secs = [own, subs].into_iter().flatten().reduce(f64::max)?;
        Some(std::time::Duration::from_secs_f64(secs.max(0.0)))
    }

    /// Steps seen and how many of them were cached.
    pub fn counts(&self) -> (usize, usize) {
        (self.steps.len(), self.steps.values().filter(|s| s.cached).count())
    }

    /// The step that failed, if BuildKit reported one.
    pub fn failed(&self) -> Option<FailedStep> {
        let mut failed: Vec<&Step> = self.steps.values().filter(|s| !s.error.is_empty()).collect();
        failed.sort_by_key(|s| s.number);
        // The innermost failure: a step's error is often repeated by the steps that depend on it.
        let s = failed.into_iter().find(|s| !s.error.contains("context canceled"))?;
        let mut logs: Vec<String> = s.logs.iter().cloned().collect();
        if !s.partial.is_empty() {
            logs.push(s.partial.clone());
        }
        Some(FailedStep { name: s.name.clone(), error: s.error.clone(), logs })
    }
}

/// The Dockerfile line a failed step came from: `(line number, text)`. BuildKit names steps after their
/// instruction (`[stage 2/3] RUN make`), or says `line N` in parse errors.
pub fn dockerfile_line(dockerfile: &str, step_name: &str, error: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = dockerfile.lines().collect();
    if let Some(n) = error.split("line ").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()) {
        if let Ok(n) = n.parse::<usize>() {
            if n >= 1 && n <= lines.len() {
                return Some((n, lines[n - 1].to_string()));
            }
        }
    }
    let instruction = match step_name.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(step_name, |(_, i)| i),
        None => step_name,
    };
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let want = squash(instruction);
    if want.is_empty() {
        return None;
    }
    lines.iter().enumerate().find(|(_, l)| {
        let l = squash(l);
        !l.is_empty() && (l.eq_ignore_ascii_case(&want) || want.starts_with(&l) && l.len() > 4 || l.starts_with(&want))
    })
    .map(|(i, l)| (i + 1, l.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::SharedBuf;
    use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog, VertexStatus};

    fn ts(s: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds: s, nanos: 0 })
    }

    #[test]
    fn a_running_step_is_told_once_with_its_number_and_the_steps_known() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut p = Progress::new(Box::new(std::io::sink()), "", false)
            .on_start(Box::new(move |n, of, name| log.lock().unwrap().push(format!("{n}/{of} {name}"))));
        let v = |d: &str, name: &str, cached, started| Vertex { digest: d.into(), name: name.into(), cached, started, ..Default::default() };
        p.update(&StatusResponse {
            vertexes: vec![v("a", "[1/2] FROM base", true, ts(1)), v("b", "[2/2] RUN make", false, None), v("c", "exporting to image", false, None)],
            ..Default::default()
        });
        p.update(&StatusResponse { vertexes: vec![v("b", "[2/2] RUN make", false, ts(2))], ..Default::default() });
        p.update(&StatusResponse { vertexes: vec![v("b", "[2/2] RUN make", false, ts(2))], ..Default::default() });
        p.update(&StatusResponse { vertexes: vec![v("c", "exporting to image", false, ts(3))], ..Default::default() });
        assert_eq!(*seen.lock().unwrap(), vec!["2/3 [2/2] RUN make", "3/3 exporting to image"], "a cached step is not running");
    }

    #[test]
    fn steps_print_once_with_status_and_failures_keep_their_logs() {
        let buf = SharedBuf::default();
        let mut p = Progress::new(Box::new(buf.clone()), "app: ", false);
        let v = |d: &str, name: &str, cached, started, completed, error: &str| Vertex {
            digest: d.into(),
            name: name.into(),
            cached,
            started,
            completed,
            error: error.into(),
            ..Default::default()
        };
        p.update(&StatusResponse {
            vertexes: vec![v("a", "[1/2] FROM base", true, ts(1), ts(1), ""), v("b", "[2/2] RUN make", false, ts(1), None, "")],
            ..Default::default()
        });
        p.update(&StatusResponse {
            logs: vec![VertexLog { vertex: "b".into(), msg: b"compiling\nfailed: x\n".to_vec(), stream: 2, timestamp: None }],
            ..Default::default()
        });
        p.update(&StatusResponse {
            vertexes: vec![v("b", "[2/2] RUN make", false, ts(1), ts(4), "exit code: 2")],
            ..Default::default()
        });
        let out = buf.text();
        assert_eq!(out, "app: #1 [1/2] FROM base CACHED\napp: #2 [2/2] RUN make\napp: #2 [2/2] RUN make ERROR: exit code: 2\n");
        assert_eq!(p.counts(), (2, 1));
        let f = p.failed().unwrap();
        assert_eq!((f.name.as_str(), f.logs.clone()), ("[2/2] RUN make", vec!["compiling".to_string(), "failed: x".to_string()]));
    }

    #[test]
    fn export_time_comes_from_the_exporter_step_or_its_sub_statuses() {
        let mut p = Progress::new(Box::new(std::io::sink()), "", false);
        assert_eq!(p.export_time(), None);
        let vertex = Vertex { digest: "e".into(), name: "exporting to image".into(), started: ts(10), completed: ts(10), ..Default::default() };
        let sub = |name: &str, a, b| VertexStatus { vertex: "e".into(), id: name.into(), name: name.into(), started: ts(a), completed: ts(b), ..Default::default() };
        p.update(&StatusResponse { vertexes: vec![vertex], statuses: vec![sub("exporting layers", 10, 11), sub("pushing layers", 11, 13)], ..Default::default() });
        assert_eq!(p.export_time(), Some(std::time::Duration::from_secs(3)));
    }

    #[test]
    fn failing_steps_map_back_to_dockerfile_lines() {
        let df = "FROM base AS build\nCOPY . /src\nRUN  make   all\n\nFROM scratch\nCOPY --from=build /out /\n";
        assert_eq!(dockerfile_line(df, "[build 3/3] RUN make all", "exit code: 2").unwrap().0, 3);
        assert_eq!(dockerfile_line(df, "[stage-1 1/1] COPY --from=build /out /", "not found").unwrap().0, 6);
        assert_eq!(dockerfile_line(df, "", "dockerfile parse error on line 2: unknown instruction").unwrap(), (2, "COPY . /src".into()));
        assert_eq!(dockerfile_line(df, "[internal] load metadata", "x"), None);
    }
}
