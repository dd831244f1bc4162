use super::fake::{built, changed, hashed, progress, rolled, runs};
use super::*;

/// The core, stepped as `up` steps it, with the snapshot published after each step.
struct Core {
    state: State,
    shown: Snapshot,
}

impl Core {
    fn new() -> Self {
        Core { state: State::default(), shown: Snapshot::default() }
    }
    fn step(&mut self, ev: Event) -> Vec<Action> {
        let actions = step(&mut self.state, ev);
        self.shown = self.state.snapshot(&self.shown, Instant::now());
        actions
    }
    fn phase(&self, image: &str) -> Phase {
        self.shown.images[image].phase.clone()
    }
}

fn step_of(n: usize, name: &str) -> Progress {
    Progress::Step { step: n, of: 5, name: name.into() }
}

#[test]
fn an_iteration_reads_as_phases_from_the_core_and_the_workers_news_about_its_tag() {
    let mut c = Core::new();
    c.state.forwarded("web", "http://127.0.0.1:8080");
    c.step(changed(&["app"]));
    assert_eq!(c.phase("app"), Phase::Hashing);
    c.step(hashed("app", "t1"));
    assert_eq!(c.phase("app"), Phase::Building { step: 0, of: 0, name: String::new() });
    c.step(progress("app", "t1", step_of(2, "[2/5] RUN make")));
    assert_eq!(c.phase("app"), Phase::Building { step: 2, of: 5, name: "[2/5] RUN make".into() });
    c.step(progress("app", "t1", Progress::Pushing));
    assert_eq!(c.phase("app"), Phase::Pushing);
    c.step(built("app", "t1"));
    assert_eq!(c.phase("app"), Phase::RollingOut(String::new()));
    c.step(progress("app", "t1", Progress::Waiting("deployment ns/web: 0/1 pods updated".into())));
    assert_eq!(c.phase("app"), Phase::RollingOut("deployment ns/web: 0/1 pods updated".into()));
    c.step(progress("app", "t1", Progress::Rolled(vec!["web".into()])));
    c.step(rolled("app", "t1", true));
    let v = &c.shown.images["app"];
    assert_eq!((&v.phase, v.deployed.as_deref()), (&Phase::Serving { tag: "t1".into(), synced: 0 }, Some("t1")));
    assert_eq!((v.deployments.clone(), v.urls()), (vec!["web".to_string()], vec!["http://127.0.0.1:8080"]));
    assert!(!c.shown.busy());
    // A StatefulSet's forward is keyed as its rollout names it.
    let db = crate::forward::Workload { kind: crate::config::WorkloadKind::StatefulSet, name: "db".into() };
    c.state.forwarded(&db.shown(), "http://127.0.0.1:5432");
    for ev in [changed(&["db"]), hashed("db", "d1"), built("db", "d1"), progress("db", "d1", Progress::Rolled(vec!["statefulset/db".into()])), rolled("db", "d1", true)] {
        c.step(ev);
    }
    assert_eq!(c.shown.images["db"].urls(), ["http://127.0.0.1:5432"]);
}

#[test]
fn news_about_a_build_or_rollout_that_is_over_is_dropped() {
    let mut c = Core::new();
    for ev in [changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)] {
        c.step(ev);
    }
    // A step of t1's build, or what its rollout waited for, taken by the loop after its result.
    for late in [step_of(5, "[5/5] RUN x"), Progress::Pushing, Progress::Waiting("0/1".into()), Progress::Rolled(vec![])] {
        assert!(c.step(progress("app", "t1", late.clone())).is_empty(), "progress decides nothing");
        assert_eq!(c.phase("app"), Phase::Serving { tag: "t1".into(), synced: 0 }, "{late:?}");
    }
    // A newer build: the old one's steps do not show on it, and it starts without them.
    c.step(changed(&["app"]));
    c.step(hashed("app", "t2"));
    c.step(progress("app", "t1", step_of(4, "old")));
    assert_eq!(c.phase("app"), Phase::Building { step: 0, of: 0, name: String::new() });
    // The build of a tag built before starts afresh (the last attempt's steps are gone).
    c.step(progress("app", "t2", step_of(3, "RUN x")));
    c.step(Event::BuildFailed { image: "app".into(), tag: "t2".into(), error: "boom".into(), cancelled: false });
    c.step(changed(&["app"]));
    c.step(hashed("app", "t2"));
    assert_eq!(c.phase("app"), Phase::Building { step: 0, of: 0, name: String::new() });
}

#[test]
fn a_failure_is_kept_whole_and_the_row_says_its_first_line_until_something_succeeds() {
    let mut c = Core::new();
    for ev in [changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true), changed(&["app"]), hashed("app", "t2")] {
        c.step(ev);
    }
    let error = "Dockerfile:3: RUN exit 3\nexit code 3";
    c.step(Event::BuildFailed { image: "app".into(), tag: "t2".into(), error: error.into(), cancelled: false });
    assert_eq!(c.phase("app"), Phase::Failed("Dockerfile:3: RUN exit 3".into()));
    let f = c.shown.images["app"].failure.clone().expect("kept");
    assert_eq!((f.tag.as_deref(), f.error.as_str()), (Some("t2"), error));
    // Work in progress shows over it; when it ends, the failure shows again.
    c.step(changed(&["app"]));
    assert_eq!(c.phase("app"), Phase::Hashing);
    std::thread::sleep(Duration::from_millis(5));
    // Reverted: the content is what the pods run, the row serves it again, the failure is kept (the same one).
    c.step(hashed("app", "t1"));
    assert_eq!(c.phase("app"), Phase::Serving { tag: "t1".into(), synced: 0 });
    assert_eq!(c.shown.images["app"].failure, Some(f.clone()), "the same failure, first seen at the same time");

    // A failed rollout: its reason on the row, the reason as the failure; a new failure has a new number.
    c.step(changed(&["app"]));
    c.step(hashed("app", "t3"));
    c.step(built("app", "t3"));
    let why = "Exited (pod p, container web): exited with code 3 (Error)";
    let mut failed = rolled("app", "t3", false);
    if let Event::RolledOut { reason, .. } = &mut failed {
        *reason = Some(why.into());
    }
    c.step(failed);
    assert_eq!(c.phase("app"), Phase::Failed(format!("rollout: {why}")));
    let g = c.shown.images["app"].failure.clone().unwrap();
    assert_eq!((g.error.as_str(), g.n > f.n, g.at > f.at), (why, true, true));
    // One without a reason says which tag.
    c.step(changed(&["app"]));
    c.step(hashed("app", "t4abcdef"));
    c.step(built("app", "t4abcdef"));
    c.step(rolled("app", "t4abcdef", false));
    assert_eq!(c.phase("app"), Phase::Failed("rollout of t4abcd failed".into()));
    assert_eq!(c.shown.images["app"].failure.as_ref().unwrap().error, "rollout of t4abcd failed");
}

#[test]
fn a_phase_keeps_its_clock_while_it_goes_on_and_starts_a_new_one_when_it_changes() {
    let mut c = Core::new();
    c.step(changed(&["app"]));
    c.step(hashed("app", "t1"));
    let began = c.shown.images["app"].since;
    std::thread::sleep(Duration::from_millis(5));
    c.step(progress("app", "t1", step_of(1, "a")));
    c.step(progress("app", "t1", step_of(2, "b")));
    assert_eq!(c.shown.images["app"].since, began, "a new step keeps the build's clock");
    c.step(built("app", "t1"));
    assert!(c.shown.images["app"].since > began, "the rollout has its own");
}

#[test]
fn a_sync_shows_as_syncing_until_its_report_then_the_synced_files_on_top_of_the_tag() {
    let text = "[registry]\nhost = \"r\"\n[[image]]\nname = \"app\"\ncontext = \".\"\n[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n";
    let rules = crate::config::parse(std::path::Path::new("/p/devloop.toml"), text).unwrap().images.remove(0).sync;
    let mut c = Core::new();
    c.state = State::new(crate::engine::decide::Rules::from([("app".to_string(), rules)]));
    for ev in [changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true), runs("app", "t1", "p1")] {
        c.step(ev);
    }
    let run = |c: &Core| c.shown.images["app"].runs.iter().map(|r| (r.pod.clone(), r.ready, r.synced)).collect::<Vec<_>>();
    assert_eq!(run(&c), [("p1".to_string(), true, 0)], "the container running the image, with nothing synced into it");
    let paths = BTreeSet::from(["www/a".to_string()]);
    let change = Event::Changed { changes: BTreeMap::from([("app".into(), Scope::Paths(paths))]), outside: BTreeSet::new(), at: Instant::now(), debounce: Duration::ZERO };
    c.step(change);
    assert_eq!(c.phase("app"), Phase::Syncing);
    c.step(Event::Synced { image: "app".into(), files: 1, deleted: 0, missed: vec![], took: Duration::from_millis(60), at: Instant::now() });
    assert_eq!(c.phase("app"), Phase::Syncing, "its content tag is still being hashed");
    let a = c.step(hashed("app", "t2"));
    assert!(matches!(a.as_slice(), [Action::Report(Report::Synced(_))]), "{a:?}");
    let v = &c.shown.images["app"];
    assert_eq!((&v.phase, v.synced), (&Phase::Serving { tag: "t1".into(), synced: 1 }, 1));
    assert_eq!(run(&c), [("p1".to_string(), true, 1)], "the synced file is in it");
    // A pod that comes later lacks it until its replay is done.
    c.step(runs("app", "t1", "p2"));
    assert_eq!(run(&c), [("p1".to_string(), true, 1), ("p2".to_string(), true, 0)]);
    assert_eq!(c.phase("app"), Phase::Syncing, "the replay");
    c.step(Event::Synced { image: "app".into(), files: 1, deleted: 0, missed: vec![], took: Duration::from_millis(60), at: Instant::now() });
    assert_eq!(run(&c), [("p1".to_string(), true, 1), ("p2".to_string(), true, 1)]);
}

#[test]
fn a_change_that_changes_nothing_goes_back_to_what_the_image_did_and_a_save_does_not_hide_a_build() {
    let mut c = Core::new();
    for ev in [changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true), changed(&["app"])] {
        c.step(ev);
    }
    assert_eq!(c.phase("app"), Phase::Hashing);
    assert!(c.shown.busy());
    c.step(hashed("app", "t1"));
    assert_eq!(c.phase("app"), Phase::Serving { tag: "t1".into(), synced: 0 });
    assert!(!c.shown.busy(), "an idle block needs no redrawing");
    // A save during a build is hashed without hiding the build.
    c.step(changed(&["app"]));
    c.step(hashed("app", "t2"));
    c.step(progress("app", "t2", step_of(1, "x")));
    c.step(changed(&["app"]));
    assert_eq!(c.phase("app"), Phase::Building { step: 1, of: 5, name: "x".into() });
    c.step(Event::HashFailed { image: "app".into(), error: "cannot read src".into() });
    assert_eq!(c.phase("app"), Phase::Building { step: 1, of: 5, name: "x".into() }, "the build goes on");
    // A failure shows again when work that came after it ends without news (a cancelled build), until
    // something succeeds.
    c.step(Event::BuildFailed { image: "app".into(), tag: "t2".into(), error: "boom".into(), cancelled: false });
    assert_eq!(c.phase("app"), Phase::Failed("boom".into()));
    c.step(changed(&["app"]));
    c.step(hashed("app", "t3"));
    assert_eq!(c.phase("app"), Phase::Building { step: 0, of: 0, name: String::new() });
    c.step(Event::BuildFailed { image: "app".into(), tag: "t3".into(), error: "cancelled".into(), cancelled: true });
    assert_eq!(c.phase("app"), Phase::Failed("boom".into()));
}

#[test]
fn the_live_view_lists_every_container_of_the_deployed_reference_with_why_one_does_not_run() {
    let mut c = Core::new();
    for ev in [changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true), runs("app", "t1", "app-a")] {
        c.step(ev);
    }
    let view = &c.shown.images["app"];
    assert_eq!((view.deployed.as_deref(), view.reference.as_deref()), (Some("t1"), Some("reg/app:t1")));
    // A second pod of the same reference crash-loops: it is listed with the kubelet's reason, not dropped.
    let crashing = crate::cluster::pods::ContainerFacts {
        name: "web".into(),
        image: "reg/app:t1".into(),
        running: false,
        ready: false,
        restarts: 4,
        waiting: Some("CrashLoopBackOff".into()),
    };
    let pod = PodFacts { uid: "uid-app-b".into(), name: "app-b".into(), deleting: false, containers: vec![crashing] };
    c.step(Event::Pods { change: PodChange::Applied(pod), at: Instant::now() });
    let runs: Vec<(String, bool, i32, Option<String>)> =
        c.shown.images["app"].runs.iter().map(|r| (r.pod.clone(), r.ready, r.restarts, r.waiting.clone())).collect();
    assert_eq!(runs, [("app-a".into(), true, 0, None), ("app-b".into(), false, 4, Some("CrashLoopBackOff".into()))]);
    // A pod being deleted is no longer listed.
    c.step(Event::Pods { change: PodChange::Deleted("uid-app-b".into()), at: Instant::now() });
    assert_eq!(c.shown.images["app"].runs.len(), 1);
}
