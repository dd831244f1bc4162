//! Many services under one `up`: a manual image holds its changes until a trigger, `depends-on` orders only
//! the first rollouts, and builds beyond `[buildkit] parallel` wait for a slot.

use super::*;

fn planned(manual: &[&str], depends: &[(&str, &[&str])], parallel: usize) -> State {
    let mut s = State::default();
    s.plan(Plan {
        manual: manual.iter().map(|m| m.to_string()).collect(),
        depends: depends.iter().map(|(i, d)| (i.to_string(), d.iter().map(|d| d.to_string()).collect())).collect(),
        parallel,
        keep: 0,
    });
    s
}
fn trigger(images: &[&str]) -> Event {
    Event::Trigger { images: images.iter().map(|i| i.to_string()).collect(), at: Instant::now() }
}
fn phase(s: &State, image: &str) -> Phase {
    s.snapshot(&Snapshot::default(), Instant::now()).images[image].phase.clone()
}

#[test]
fn a_manual_image_builds_at_the_start_then_holds_its_changes_until_a_trigger() {
    let mut s = planned(&["app"], &[], 0);
    // The session's first build comes by itself.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]), ["hash app", "build app t1", "deploy app t1"]);
    // Later saves are held: nothing hashed, the count shown.
    let a = step(&mut s, changed_paths("app", &["a.go"]));
    assert_eq!(reports(&a), [Report::Held { image: "app".into(), changes: 1, paused: false }]);
    assert_eq!(acts(&a), Vec::<String>::new());
    let a = step(&mut s, changed_paths("app", &["b.go", "a.go"]));
    assert_eq!(reports(&a), [Report::Held { image: "app".into(), changes: 2, paused: false }]);
    assert_eq!(phase(&s, "app"), Phase::Held { changes: 2 });
    assert!(!s.busy());
    // A trigger hands every held path to the hash, and the loop goes on as for any change.
    let a = step(&mut s, trigger(&["app"]));
    assert_eq!(acts(&a), ["hash app a.go,b.go"]);
    assert_eq!(reports(&a)[0], Report::Triggered { image: "app".into(), changes: Some(2) });
    assert_eq!(run(&mut s, vec![hashed("app", "t2"), built("app", "t2"), rolled("app", "t2", true)]), ["build app t2", "deploy app t2"]);
    assert_eq!(phase(&s, "app"), Phase::Serving { tag: "t2".into(), synced: 0 });
    // Nothing held: a trigger looks again (same bytes: nothing to do); none named and none holding: said so.
    assert_eq!(run(&mut s, vec![trigger(&["app"]), hashed("app", "t2")]), ["rescan app"]);
    let a = step(&mut s, trigger(&[]));
    assert_eq!((acts(&a), reports(&a)), (vec![], vec![Report::NothingToTrigger]));
}

#[test]
fn an_auto_image_beside_a_manual_one_builds_at_once_and_a_trigger_of_all_takes_only_held_changes() {
    let mut s = planned(&["api"], &[], 0);
    for image in ["api", "web"] {
        run(&mut s, vec![changed(&[image]), hashed(image, "t1"), built(image, "t1"), rolled(image, "t1", true)]);
    }
    assert_eq!(run(&mut s, vec![changed(&["api", "web"])]), ["hash web"]);
    assert_eq!(run(&mut s, vec![trigger(&[])]), ["hash api"], "only the image holding a change");
}

#[test]
fn a_held_save_that_sync_rules_cover_is_synced_when_triggered() {
    let mut s = live_at_t1();
    s.plan(Plan { manual: BTreeSet::from(["app".to_string()]), ..Plan::default() });
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![trigger(&["app"])]), ["sync app www/a"]);
}

#[test]
fn no_longer_manual_after_a_reload_the_held_changes_go_at_once() {
    let mut s = planned(&["app"], &[], 0);
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]);
    run(&mut s, vec![changed_paths("app", &["a.go"])]);
    let a = step(&mut s, Event::Reconfigured { rescan: vec![], redeploy: vec![], removed: vec![], rules: Rules::new(), plan: Plan::default(), at: Instant::now() });
    assert_eq!(acts(&a), ["hash app a.go"]);
}

#[test]
fn the_first_rollout_waits_for_the_dependencies_first_rollout_and_later_saves_do_not() {
    let mut s = planned(&[], &[("api", &["db"])], 0);
    // Both start; api is built first but its rollout waits for db's.
    assert_eq!(run(&mut s, vec![changed(&["api", "db"]), hashed("api", "a1"), hashed("db", "d1"), built("api", "a1")]), ["hash api", "hash db", "build api a1", "build db d1"]);
    assert_eq!(phase(&s, "api"), Phase::Waiting(vec!["db".into()]));
    assert!(s.busy(), "a built image waiting to roll out is work under way");
    assert_eq!(run(&mut s, vec![built("db", "d1")]), ["deploy db d1"]);
    // db's rollout failed: api still waits (it needs db); db's fix rolls out, then api.
    assert_eq!(run(&mut s, vec![rolled("db", "d1", false)]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![changed(&["db"]), hashed("db", "d2"), built("db", "d2")]), ["hash db", "build db d2", "deploy db d2"]);
    assert_eq!(run(&mut s, vec![rolled("db", "d2", true)]), ["deploy api a1"]);
    assert_eq!(run(&mut s, vec![rolled("api", "a1", true)]), Vec::<String>::new());
    // From now on, api's saves roll out whatever db is doing.
    run(&mut s, vec![changed(&["db"]), hashed("db", "d3"), built("db", "d3")]);
    assert_eq!(run(&mut s, vec![changed(&["api"]), hashed("api", "a2"), built("api", "a2")]), ["hash api", "build api a2", "deploy api a2"]);
}

#[test]
fn builds_beyond_the_limit_wait_for_a_slot_first_come_first_served() {
    let mut s = planned(&[], &[], 2);
    let a = step(&mut s, changed(&["a", "b", "c", "d"]));
    assert_eq!(acts(&a), ["hash a", "hash b", "hash c", "hash d"], "hashing is not limited");
    assert_eq!(run(&mut s, vec![hashed("a", "a1"), hashed("b", "b1"), hashed("c", "c1"), hashed("d", "d1")]), ["build a a1", "build b b1"]);
    assert_eq!(phase(&s, "c"), Phase::Queued);
    // c's newer content replaces its queued build in place; a's build ends and c (first in line) starts.
    let a = step(&mut s, changed(&["c"]));
    assert_eq!(acts(&a), ["hash c"]);
    assert_eq!(run(&mut s, vec![hashed("c", "c2")]), Vec::<String>::new(), "still waiting");
    assert_eq!(run(&mut s, vec![built("a", "a1")]), ["deploy a a1", "build c c2"]);
    // A failed build frees its slot too; a newer build of a running image keeps the image's slot.
    assert_eq!(run(&mut s, vec![changed(&["b"]), hashed("b", "b2")]), ["hash b", "cancel b", "build b b2"]);
    let failed = Event::BuildFailed { image: "c".into(), tag: "c2".into(), error: "RUN false".into(), cancelled: false };
    assert_eq!(run(&mut s, vec![failed]), ["build d d1"]);
    assert_eq!(phase(&s, "d"), Phase::Building { step: 0, of: 0, name: String::new() });
}

#[test]
fn a_queued_build_is_said_to_wait_and_said_to_build_when_it_starts() {
    let mut s = planned(&[], &[], 1);
    run(&mut s, vec![changed(&["a", "b"]), hashed("a", "a1")]);
    let a = step(&mut s, hashed("b", "b1"));
    assert_eq!(reports(&a), [Report::QueuedBuild { image: "b".into(), tag: "b1".into(), running: 1, limit: 1 }]);
    let a = step(&mut s, built("a", "a1"));
    assert!(reports(&a).contains(&Report::Building { image: "b".into(), tag: "b1".into() }), "{a:?}");
}

#[test]
fn a_new_rollout_prunes_the_node_store_sparing_what_a_crash_or_the_next_rollout_needs() {
    let mut s = State::default();
    s.plan(Plan { keep: 3, ..Plan::default() });
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]), ["hash app", "build app t1", "deploy app t1", "prune app 3 keep t1"]);
    // t2 rolls out while t3 builds: t1 is what a crash goes back to, t3 what comes next.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2"), changed(&["app"]), hashed("app", "t3")]), ["hash app", "build app t2", "deploy app t2", "hash app", "build app t3"]);
    assert_eq!(run(&mut s, vec![rolled("app", "t2", true)]), ["prune app 3 keep t1,t3,t2"]);
    // A failed rollout adds nothing worth pruning for; pushing to a registry (keep 0) never prunes.
    assert_eq!(run(&mut s, vec![built("app", "t3"), rolled("app", "t3", false)]), ["deploy app t3"]);
    let mut s = State::default();
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]), ["hash app", "build app t1", "deploy app t1"]);
}

fn rebuild(image: &str) -> Event {
    Event::Rebuild { image: image.into(), at: Instant::now() }
}
fn pause(image: &str, paused: bool) -> Event {
    Event::Pause { image: image.into(), paused, at: Instant::now() }
}
fn forced(a: &[Action]) -> Vec<bool> {
    a.iter().filter_map(|a| if let Action::Build { force, .. } = a { Some(*force) } else { None }).collect()
}

#[test]
fn a_rebuild_builds_the_deployed_tag_again_forced_once_and_rolls_it_out() {
    let mut s = planned(&[], &[], 0);
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]);
    // Same bytes would be nothing to do; a rebuild looks at everything again and builds it anyway.
    let a = step(&mut s, rebuild("app"));
    assert_eq!((acts(&a), reports(&a)), (vec!["rescan app".to_string()], vec![Report::Rebuilding { image: "app".into() }]));
    let a = step(&mut s, hashed("app", "t1"));
    assert_eq!((acts(&a), forced(&a)), (vec!["build app t1".to_string()], vec![true]));
    // A retry of the forced build stays forced; its result rolls out.
    let a = step(&mut s, Event::BuildDeferred { image: "app".into(), tag: "t1".into(), error: "buildkitd does not answer".into() });
    assert_eq!(forced(&a), [true]);
    assert_eq!(run(&mut s, vec![built("app", "t1"), rolled("app", "t1", true)]), ["deploy app t1"]);
    // Only that once: the next save of the same bytes is nothing to do again.
    let a = step(&mut s, changed(&["app"]));
    assert_eq!(acts(&a), ["hash app"]);
    let a = step(&mut s, hashed("app", "t1"));
    assert_eq!(reports(&a), [Report::Unchanged { image: "app".into(), tag: "t1".into() }]);
    // An unknown image is not built.
    assert!(step(&mut s, rebuild("nope")).is_empty());
}

#[test]
fn a_paused_image_holds_its_changes_while_the_others_build_and_resuming_acts_on_them() {
    let mut s = planned(&[], &[], 0);
    for image in ["api", "web"] {
        run(&mut s, vec![changed(&[image]), hashed(image, "t1"), built(image, "t1"), rolled(image, "t1", true)]);
    }
    let a = step(&mut s, pause("api", true));
    assert_eq!(reports(&a), [Report::Paused { image: "api".into(), paused: true, released: None }]);
    assert_eq!(phase(&s, "api"), Phase::Paused { changes: 0, held: false });
    // A save to both: only web is hashed; api's change is held and counted.
    let a = step(&mut s, changed_paths("api", &["a.go"]));
    assert_eq!(acts(&a), Vec::<String>::new());
    assert_eq!(reports(&a), [Report::Held { image: "api".into(), changes: 1, paused: true }]);
    assert_eq!(run(&mut s, vec![changed(&["web"])]), ["hash web"]);
    assert_eq!(phase(&s, "api"), Phase::Paused { changes: 1, held: true });
    assert!(s.snapshot(&Snapshot::default(), Instant::now()).images["api"].paused);
    // A trigger of every held change leaves a paused image alone.
    let a = step(&mut s, trigger(&[]));
    assert_eq!((acts(&a), reports(&a)), (vec![], vec![Report::NothingToTrigger]));
    // A reload of the config does not release what a paused image holds.
    let reload = Event::Reconfigured { rescan: vec![], redeploy: vec![], removed: vec![], rules: Rules::new(), plan: Plan::default(), at: Instant::now() };
    assert_eq!(acts(&step(&mut s, reload)), Vec::<String>::new());
    assert_eq!(phase(&s, "api"), Phase::Paused { changes: 1, held: true });
    // Pausing twice says nothing; resuming acts on what was held, at once.
    assert!(step(&mut s, pause("api", true)).is_empty());
    let a = step(&mut s, pause("api", false));
    assert_eq!(acts(&a), ["hash api a.go"]);
    assert_eq!(reports(&a)[0], Report::Paused { image: "api".into(), paused: false, released: Some(1) });
    assert_eq!(run(&mut s, vec![hashed("api", "t2"), built("api", "t2"), rolled("api", "t2", true)]), ["build api t2", "deploy api t2"]);
    assert!(!s.snapshot(&Snapshot::default(), Instant::now()).images["api"].paused);
    // Resumed with nothing held: nothing to do, and said.
    step(&mut s, pause("api", true));
    let a = step(&mut s, pause("api", false));
    assert_eq!((acts(&a), reports(&a)), (vec![], vec![Report::Paused { image: "api".into(), paused: false, released: None }]));
}

#[test]
fn a_paused_manual_image_resumed_still_waits_for_its_trigger_and_a_rebuild_takes_what_it_held() {
    let mut s = planned(&["app"], &[], 0);
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]);
    step(&mut s, pause("app", true));
    step(&mut s, changed_paths("app", &["a.go"]));
    let a = step(&mut s, pause("app", false));
    assert_eq!(acts(&a), Vec::<String>::new(), "manual: resuming does not build");
    assert_eq!(phase(&s, "app"), Phase::Held { changes: 1 });
    // A rebuild takes the held paths with it, and a full look.
    let a = step(&mut s, rebuild("app"));
    assert_eq!(acts(&a), ["rescan app"]);
    assert_eq!(phase(&s, "app"), Phase::Hashing);
}

#[test]
fn the_forward_s_pod_is_shown_on_the_rows_of_the_images_that_roll_it() {
    let mut s = planned(&[], &[], 0);
    s.forwarded("deployment/web", "http://127.0.0.1:9000");
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1")]);
    step(&mut s, Event::Progress { image: "app".into(), tag: "t1".into(), progress: Progress::Rolled(vec!["deployment/web".into()]) });
    step(&mut s, rolled("app", "t1", true));
    let view = |s: &State| s.snapshot(&Snapshot::default(), Instant::now()).images["app"].forwards.clone();
    assert_eq!(view(&s), [crate::engine::decide::view::Forward { url: "http://127.0.0.1:9000".into(), pod: None }]);
    assert!(step(&mut s, Event::Forwarding { deployment: "deployment/web".into(), pod: "web-7d9f-abc".into() }).is_empty());
    assert_eq!(view(&s)[0].pod.as_deref(), Some("web-7d9f-abc"));
}
