use super::*;
use crate::engine::decide::view::fake::{built, changed, hashed, progress, rolled};
use crate::engine::decide::{self, Action, Event, PodStages, Progress};
use crate::engine::out::Publisher;
use crate::engine::progress::Latest;
use crate::test_util::SharedBuf;
use board::Phase;

/// The core feeding a [`Ui`] as `up` runs it: workers' progress taken first, each event stepped, the view
/// published, the reports told.
pub(crate) struct Driven {
    pub(crate) state: decide::State,
    shown: Publisher,
    pub(crate) ui: Ui,
    /// Where workers tell their progress.
    pub(crate) latest: Latest,
}

impl Driven {
    pub(crate) fn new(ui: Ui) -> Self {
        Driven { state: Default::default(), shown: Default::default(), ui, latest: Latest::default() }
    }

    /// Steps `events`; returns the reports.
    pub(crate) fn step(&mut self, events: Vec<Event>) -> Vec<Report> {
        let mut reports = Vec::new();
        for ev in self.latest.take().into_iter().chain(events) {
            let actions = decide::step(&mut self.state, ev);
            self.shown.publish(&self.state, &self.ui);
            for a in actions {
                if let Action::Report(r) = a {
                    self.ui.report(&r);
                    reports.push(r);
                }
            }
        }
        reports
    }

    /// A whole iteration of `image` to `tag`.
    pub(crate) fn iteration(&mut self, image: &str, tag: &str) -> Vec<Report> {
        self.step(vec![changed(&[image]), hashed(image, tag), built(image, tag), rolled(image, tag, true)])
    }
}

fn summary() -> Summary {
    Summary {
        image: "hello".into(),
        tag: "a1b2c3d4e5".into(),
        hash: Duration::from_millis(4),
        build: Duration::from_millis(812),
        steps: (7, 5),
        registry_hit: false,
        export: Some(Duration::from_millis(120)),
        buildkit: None,
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
    // Several BuildKit replicas: the one that built it.
    let on = Summary { buildkit: Some("buildkitd-1".into()), pod: PodStages::default(), ..summary() };
    assert_eq!(summary_line(&on), "hello  a1b2c3  hash 4ms · build 812ms (5/7 cached) on buildkitd-1 · rollout 1.9s · total 2.8s");
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

/// The crash's lines, JSON and row: the row from the core, which rolls back and then serves the last good tag.
#[test]
fn a_crash_after_a_rollout_says_how_with_its_lines_what_is_done_about_it_and_turns_the_row_failed() {
    let error = "deployment ns/hello: Exited (pod p, container web): exited with code 3 (Error)\n  last log lines:\n    no config";
    let crash = |rollback: Option<&str>, late: bool| Report::Crashed {
        image: "hello".into(),
        tag: "a1b2c3".into(),
        error: error.into(),
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

    let mut core = Driven::new(Ui::with_board(Box::new(SharedBuf::default()), 200));
    core.iteration("hello", "d4e5f6");
    core.iteration("hello", "a1b2c3");
    let crashed = Event::Crashed { image: "hello".into(), tag: "a1b2c3".into(), error: error.into(), at: std::time::Instant::now(), rollback: true };
    core.step(vec![crashed]);
    let first = "crashed: deployment ns/hello: Exited (pod p, container web): exited with code 3 (Error)";
    assert_eq!(core.ui.current("hello"), Some(Phase::RollingOut(String::new())), "rolling back");
    assert_eq!(core.ui.current("hello").map(|p| p.busy()), Some(true));
    let back = core.step(vec![rolled("hello", "d4e5f6", true)]);
    assert!(matches!(back.as_slice(), [Report::RolledBack { .. }]), "{back:?}");
    assert_eq!(core.ui.current("hello"), Some(Phase::Serving { tag: "d4e5f6".into(), synced: 0 }));
    // Without a rollback, the row says the crash.
    let mut core = Driven::new(Ui::with_board(Box::new(SharedBuf::default()), 200));
    core.iteration("hello", "a1b2c3");
    let crashed = Event::Crashed { image: "hello".into(), tag: "a1b2c3".into(), error: error.into(), at: std::time::Instant::now(), rollback: false };
    core.step(vec![crashed]);
    assert_eq!(core.ui.current("hello"), Some(Phase::Failed(first.into())));
}

#[test]
fn reports_move_the_status_block_and_lines_without_a_block_stay_plain() {
    let buf = SharedBuf::default();
    let mut core = Driven::new(Ui::with_board(Box::new(buf.clone()), 100));
    core.step(vec![changed(&["hello"]), hashed("hello", "a1b2c3d4e5")]);
    assert!(matches!(core.ui.current("hello"), Some(Phase::Building { .. })));
    let done = core.step(vec![built("hello", "a1b2c3d4e5"), rolled("hello", "a1b2c3d4e5", true)]);
    let Some(Report::Iteration(summary)) = done.last().cloned() else { panic!("{done:?}") };
    assert_eq!(core.ui.current("hello"), Some(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }));
    core.step(vec![changed(&["hello"])]);
    assert_eq!(core.ui.current("hello"), Some(Phase::Hashing));
    core.step(vec![hashed("hello", "a1b2c3d4e5")]);
    assert_eq!(core.ui.current("hello"), Some(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }), "back to serving");
    core.step(vec![changed(&["hello"]), hashed("hello", "f0f0f0")]);
    core.step(vec![Event::BuildFailed { image: "hello".into(), tag: "f0f0f0".into(), error: "Dockerfile:3: RUN false\nlogs".into(), cancelled: false }]);
    assert_eq!(core.ui.current("hello"), Some(Phase::Failed("Dockerfile:3: RUN false".into())));
    // Every line was written above the block: the text ends with the block's one row.
    assert!(core.ui.flush(Duration::from_secs(5)));
    let text = buf.text();
    assert!(text.ends_with("✗ hello  failed: Dockerfile:3: RUN false\n"), "{text:?}");
    assert!(text.contains(&format!("\x1b[1A\x1b[J{}\n", summary_line(&summary))), "{text:?}");

    let plain = SharedBuf::default();
    let mut core = Driven::new(Ui::new(false, Box::new(plain.clone())));
    let done = core.iteration("hello", "a1b2c3d4e5");
    let Some(Report::Iteration(summary)) = done.last().cloned() else { panic!("{done:?}") };
    assert!(core.ui.flush(Duration::from_secs(5)));
    let want = format!("hello: building a1b2c3d4e5\n{}\n", summary_line(&summary));
    assert_eq!((plain.text(), core.ui.current("hello")), (want, None));
}

/// A rollout's reason comes with its report, as data: the row, the line and the JSON say it (nothing
/// reads it back out of the deploy's text).
#[test]
fn a_failed_rollout_says_its_reason_on_the_row_the_line_and_in_json() {
    let reason = "Exited (pod web-1, container web): exited with code 3 (Error)";
    let failed = || {
        let mut ev = rolled("hello", "a1b2c3d4", false);
        if let Event::RolledOut { reason: r, .. } = &mut ev {
            *r = Some(reason.into());
        }
        vec![changed(&["hello"]), hashed("hello", "a1b2c3d4"), built("hello", "a1b2c3d4"), ev]
    };
    let buf = SharedBuf::default();
    let mut core = Driven::new(Ui::with_board(Box::new(buf.clone()), 200));
    core.step(failed());
    assert_eq!(core.ui.current("hello"), Some(Phase::Failed(format!("rollout: {reason}"))));
    assert!(core.ui.flush(Duration::from_secs(5)));
    assert!(buf.text().contains(&format!("hello: rollout of a1b2c3d4 failed: {reason}\n")), "{:?}", buf.text());
    let json = SharedBuf::default();
    let mut core = Driven::new(Ui::new(true, Box::new(json.clone())));
    core.step(failed());
    assert!(core.ui.flush(Duration::from_secs(5)));
    let v: Value = serde_json::from_str(json.text().lines().last().unwrap()).unwrap();
    assert_eq!((v["event"].as_str(), v["reason"].as_str()), (Some("rollout-failed"), Some(reason)));
}

/// The row on the terminal and the row on the page, for the same snapshot.
fn both(ui: &Ui, hub: &page::Hub, image: &str) -> (String, String, String, String) {
    let block = ui.out.block.lock().unwrap();
    let board = block.board.as_ref().unwrap();
    assert!(Arc::ptr_eq(board.shown(), &hub.shown()), "one snapshot, not two copies");
    let line = board.lines(200).into_iter().find(|l| l.contains(image)).unwrap();
    let page: Value = serde_json::from_str(&hub.snapshot()).unwrap();
    let row = page["images"].as_array().unwrap().iter().find(|r| r["image"] == image).unwrap().clone();
    let phase = board.phase(image).unwrap();
    (phase.kind().to_string(), row["state"].as_str().unwrap().to_string(), line, row["text"].as_str().unwrap().to_string())
}

#[test]
fn the_status_block_and_the_page_draw_the_same_phase_from_the_same_snapshot() {
    let hub = Arc::new(page::Hub::default());
    let mut core = Driven::new(Ui::with_board(Box::new(SharedBuf::default()), 200).with_page(hub.clone()));
    core.state.forwarded("web", "http://127.0.0.1:8080");
    let check = |core: &Driven, want: &str| {
        let (kind, state, line, text) = both(&core.ui, &hub, "hello");
        assert_eq!((kind.as_str(), state.as_str()), (want, want), "{line}");
        assert!(line.contains(&text), "the block says what the page says: {line:?} / {text:?}");
    };
    core.step(vec![changed(&["hello"])]);
    check(&core, "hashing");
    core.step(vec![hashed("hello", "a1b2c3d4")]);
    check(&core, "building");
    core.step(vec![built("hello", "a1b2c3d4")]);
    check(&core, "rolling-out");
    core.step(vec![progress("hello", "a1b2c3d4", Progress::Rolled(vec!["web".into()])), rolled("hello", "a1b2c3d4", true)]);
    check(&core, "serving");
    let (_, _, line, _) = both(&core.ui, &hub, "hello");
    assert!(line.ends_with("serving a1b2c3 at http://127.0.0.1:8080"), "{line}");
    let page: Value = serde_json::from_str(&hub.snapshot()).unwrap();
    assert_eq!(page["images"][0]["urls"], serde_json::json!(["http://127.0.0.1:8080"]));
    core.step(vec![changed(&["hello"]), hashed("hello", "ffff")]);
    core.step(vec![Event::BuildFailed { image: "hello".into(), tag: "ffff".into(), error: "RUN exit 3\nexit code 3".into(), cancelled: false }]);
    check(&core, "failed");
}

/// A build step a worker tells shows nowhere until the core has taken it, then on the block and the page
/// alike; a step of a build that is over shows on neither.
#[test]
fn a_workers_progress_reaches_the_block_and_the_page_only_through_the_core() {
    let hub = Arc::new(page::Hub::default());
    let mut core = Driven::new(Ui::with_board(Box::new(SharedBuf::default()), 200).with_page(hub.clone()));
    core.step(vec![changed(&["hello"]), hashed("hello", "t2")]);
    core.latest.tell("hello", "t2", Progress::Step { step: 2, of: 5, name: "[2/5] RUN make".into() });
    let (_, _, line, text) = both(&core.ui, &hub, "hello");
    assert!(!line.contains("step 2") && !text.contains("step 2"), "told, not yet taken: {line:?}");
    core.step(vec![]);
    let (_, _, line, text) = both(&core.ui, &hub, "hello");
    assert_eq!(text, "building step 2 of 5: [2/5] RUN make");
    assert!(line.contains(&text), "{line:?}");
    // A step of t2 that the loop takes only after t2's build is over shows on neither.
    core.step(vec![built("hello", "t2")]);
    core.latest.tell("hello", "t2", Progress::Step { step: 5, of: 5, name: "[5/5] RUN late".into() });
    core.step(vec![]);
    let (kind, state, line, _) = both(&core.ui, &hub, "hello");
    assert_eq!((kind.as_str(), state.as_str()), ("rolling-out", "rolling-out"), "{line}");
}
