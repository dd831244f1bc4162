//! What a `devloop check` did, stage by stage, as plain data: each image's build, each rollout, each
//! `[check]` command, with its time, its verdict and what it said. Recorded by [`super::check`] from the
//! results the engine already has (build outcomes, [`Deployed`](crate::deploy::deployer::Deployed), a
//! command's exit); rendered by the JUnit report (a layer above). What was planned and did not run is
//! recorded as skipped, so a report never silently lacks a stage.

use std::time::{Duration, Instant};

/// A check's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// An image's build (or finding it in the registry).
    Build,
    /// A workload's rollout in the check's namespace.
    Rollout,
    /// A `[check]` command.
    Command,
    /// What the check needed besides those (the cluster, the namespace): only when it failed.
    Setup,
}

impl Stage {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Rollout => "rollout",
            Stage::Command => "command",
            Stage::Setup => "setup",
        }
    }
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure, in a word or two (`CrashLoopBackOff`, `exit code 3`, `timeout`, `interrupted`).
    pub kind: String,
    /// One line saying it.
    pub message: String,
    /// The details: the build's report, the pod's last log lines, the command's last output lines.
    pub detail: String,
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It ran and passed.
    Passed,
    /// It ran and failed (what the check exists to find).
    Failed(Failure),
    /// devloop could not run or judge it (an API error, an interrupt).
    Error(Failure),
    /// It did not run; why.
    Skipped(String),
}

/// One build, rollout or command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Its stage.
    pub stage: Stage,
    /// The image, `image: kind/workload`, or the command line.
    pub name: String,
    /// How long it took.
    pub time: Duration,
    /// How it ended.
    pub verdict: Verdict,
    /// What it said (the reference and cached steps, the rolled workload, the command's output).
    pub output: String,
}

/// A check's record: the cases in the order they ran, and what was planned.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The cases so far.
    pub cases: Vec<Case>,
    /// The images to build and roll out, and the commands to run, in order.
    planned: Vec<(Stage, String)>,
    /// The check's namespace, once known.
    pub namespace: Option<String>,
    /// The whole check's time (set when it ends).
    pub time: Duration,
    /// The case under way: its stage, name and start.
    running: Option<(Stage, String, Instant)>,
}

impl Checked {
    /// A record for a check that will build and roll out `images` and run `commands`.
    pub fn plan(images: &[String], commands: &[String]) -> Checked {
        let mut planned: Vec<(Stage, String)> = images.iter().map(|i| (Stage::Build, i.clone())).collect();
        planned.extend(images.iter().map(|i| (Stage::Rollout, i.clone())));
        planned.extend(commands.iter().map(|c| (Stage::Command, c.clone())));
        Checked { planned, ..Default::default() }
    }

    /// Starts a case; [`Checked::end`] records it, with the time since. One left running when the check
    /// ends (an interrupt, an error) is recorded as an error.
    pub fn begin(&mut self, stage: Stage, name: &str) {
        self.running = Some((stage, name.to_string(), Instant::now()));
    }

    /// Records the case begun last.
    pub fn end(&mut self, verdict: Verdict, output: String) {
        if let Some((stage, name, began)) = self.running.take() {
            self.add(stage, &name, began.elapsed(), verdict, output);
        }
    }

    /// Adds a case.
    pub fn add(&mut self, stage: Stage, name: &str, time: Duration, verdict: Verdict, output: String) {
        self.cases.push(Case { stage, name: name.to_string(), time, verdict, output });
    }

    /// Whether a case of `stage` for `name` (an image's rollouts: `image` or `image: …`) is recorded.
    fn has(&self, stage: Stage, name: &str) -> bool {
        self.cases.iter().any(|c| {
            c.stage == stage && (c.name == name || (stage == Stage::Rollout && c.name.strip_prefix(name).is_some_and(|r| r.starts_with(": "))))
        })
    }

    /// Whether any case failed or erred.
    pub fn any_failed(&self) -> bool {
        self.cases.iter().any(|c| matches!(c.verdict, Verdict::Failed(_) | Verdict::Error(_)))
    }

    /// Ends the record: an error no case shows becomes a `setup` error case, and every planned build,
    /// rollout and command without a case is recorded as skipped, saying why.
    pub fn close(&mut self, error: Option<&str>, time: Duration) {
        self.time = time;
        if let (Some((stage, name, began)), Some(e)) = (self.running.take(), error) {
            let kind = if e.starts_with("interrupted") { "interrupted" } else { "error" };
            let f = Failure { kind: kind.into(), message: e.to_string(), detail: e.to_string() };
            self.add(stage, &name, began.elapsed(), Verdict::Error(f), String::new());
        }
        if let Some(e) = error {
            if !self.any_failed() {
                let f = Failure { kind: "error".into(), message: e.to_string(), detail: e.to_string() };
                self.add(Stage::Setup, "devloop check", Duration::ZERO, Verdict::Error(f), String::new());
            }
        }
        let why = match error {
            Some(e) if e.starts_with("interrupted") => format!("not run: {e}"),
            _ if self.any_failed() => "not run: an earlier stage failed".to_string(),
            Some(e) => format!("not run: {e}"),
            None => "not run".to_string(),
        };
        let planned = std::mem::take(&mut self.planned);
        for (stage, name) in &planned {
            if !self.has(*stage, name) {
                self.add(*stage, name, Duration::ZERO, Verdict::Skipped(why.clone()), String::new());
            }
        }
        self.planned = planned;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_did_not_run_after_a_failed_build_is_skipped_saying_why() {
        let mut c = Checked::plan(&["api".into(), "web".into()], &["make test".into()]);
        c.add(Stage::Build, "api", Duration::from_secs(2), Verdict::Passed, String::new());
        let f = Failure { kind: "build".into(), message: "RUN make failed".into(), detail: String::new() };
        c.add(Stage::Build, "web", Duration::from_secs(1), Verdict::Failed(f), String::new());
        c.close(Some("RUN make failed"), Duration::from_secs(3));
        let got: Vec<(Stage, &str, bool)> = c.cases.iter().map(|k| (k.stage, k.name.as_str(), matches!(k.verdict, Verdict::Skipped(_)))).collect();
        assert_eq!(
            got,
            [
                (Stage::Build, "api", false),
                (Stage::Build, "web", false),
                (Stage::Rollout, "api", true),
                (Stage::Rollout, "web", true),
                (Stage::Command, "make test", true)
            ]
        );
        assert_eq!(c.cases[4].verdict, Verdict::Skipped("not run: an earlier stage failed".into()));
    }

    #[test]
    fn an_error_no_case_shows_is_a_setup_case_and_a_rollout_case_counts_for_its_image() {
        let mut c = Checked::plan(&["api".into()], &[]);
        c.add(Stage::Build, "api", Duration::ZERO, Verdict::Passed, String::new());
        c.add(Stage::Rollout, "api: deployment/api", Duration::ZERO, Verdict::Passed, String::new());
        c.close(Some("creating namespace x: forbidden"), Duration::ZERO);
        assert_eq!(c.cases.len(), 3, "{:?}", c.cases);
        assert_eq!((c.cases[2].stage, c.cases[2].name.as_str()), (Stage::Setup, "devloop check"));
    }

    #[test]
    fn the_case_an_interrupt_stops_is_an_error_and_the_rest_are_skipped_as_interrupted() {
        let mut c = Checked::plan(&["api".into()], &["make test".into()]);
        c.add(Stage::Build, "api", Duration::ZERO, Verdict::Passed, String::new());
        c.begin(Stage::Rollout, "api");
        c.close(Some("interrupted by SIGTERM"), Duration::ZERO);
        assert!(matches!(&c.cases[1].verdict, Verdict::Error(f) if f.kind == "interrupted"), "{:?}", c.cases);
        assert_eq!(c.cases[2].verdict, Verdict::Skipped("not run: interrupted by SIGTERM".into()));
        assert_eq!(c.cases.len(), 3);
    }
}
