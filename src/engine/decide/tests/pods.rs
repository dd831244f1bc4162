//! The namespace's pods in the core's state: where a sync goes, what was synced into each container run,
//! and the replay into runs that lack it.

use super::*;

fn gone(name: &str) -> Event {
    Event::Pods { change: PodChange::Deleted(format!("uid-{name}")), at: Instant::now() }
}
fn applied(p: PodFacts) -> Event {
    Event::Pods { change: PodChange::Applied(p), at: Instant::now() }
}
/// The runs a sync goes to, as `pod/container#restarts`.
fn into(actions: &[Action]) -> Vec<String> {
    let sync = actions.iter().find_map(|a| if let Action::Sync { into, .. } = a { Some(into) } else { None });
    sync.into_iter().flatten().map(|r| format!("{}/{}#{}", r.pod, r.container, r.restarts)).collect()
}
/// Per pod, the synced paths the core says its container holds.
fn holds(s: &State) -> Vec<(String, usize)> {
    let shown = s.snapshot(&Snapshot::default(), Instant::now());
    shown.images["app"].runs.iter().map(|r| (r.pod.clone(), r.synced)).collect()
}

#[test]
fn a_sync_goes_to_every_running_container_of_the_deployed_reference_ready_or_not() {
    let mut s = live_at_t1();
    let mut unready = pod("p2", "reg/app:t1", 0);
    unready.containers[0].ready = false;
    let mut leaving = pod("p4", "reg/app:t1", 0);
    leaving.deleting = true;
    let mut waiting = pod("p5", "reg/app:t1", 0);
    waiting.containers[0].running = false;
    let mut sidecar = pod("p6", "reg/app:t1", 0);
    sidecar.containers.insert(0, crate::cluster::pods::ContainerFacts { name: "proxy".into(), image: "envoy".into(), running: true, ready: true, restarts: 0, waiting: None });
    for p in [unready, pod("p3", "reg/app:t0", 0), leaving, waiting, sidecar] {
        assert!(step(&mut s, applied(p)).is_empty());
    }
    let a = step(&mut s, changed_paths("app", &["www/a"]));
    assert_eq!(into(&a), ["p1/web#0", "p2/web#0", "p6/web#0"], "p2 runs but is not Ready (a sync can heal it); p3 runs another tag; p4 is going away; p5 does not run");
}

/// No container to take it (all replaced, crashed, scaled to zero): the save is built and rolled out instead,
/// said in one line — never reported as synced.
#[test]
fn with_no_container_to_take_it_a_covered_save_builds_and_says_why() {
    let mut s = live_at_t1();
    run(&mut s, vec![gone("p1")]);
    let a = step(&mut s, changed_paths("app", &["www/a"]));
    assert_eq!(acts(&a), ["hash app www/a"], "no sync: a build");
    let [Report::SyncFallback { error, skipped: true, for_good: false, .. }]: [Report; 1] = reports(&a).try_into().unwrap() else { panic!("{a:?}") };
    assert!(error.contains("no running container of reg/app:t1"), "{error}");
    // It builds and rolls out even the deployed tag: the pods may hold what no image does.
    assert_eq!(run(&mut s, vec![hashed("app", "t1")]), ["build app t1"]);
}

#[test]
fn what_was_synced_into_each_run_is_kept_and_a_restarted_container_gets_the_set_again() {
    let mut s = live_at_t1();
    assert_eq!(holds(&s), [("p1".to_string(), 0)], "the image's files only");
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]);
    assert_eq!(holds(&s), [("p1".to_string(), 1)]);
    assert_eq!(s.holding("app"), ["p1"]);
    // Its container restarts: the run starts from the image again, so it lacks the synced file.
    let a = step(&mut s, applied(pod("p1", "reg/app:t1", 1)));
    assert_eq!(acts(&a), ["replay app www/a → p1"]);
    assert_eq!(into(&a), ["p1/web#1"]);
    assert_eq!(holds(&s), [("p1".to_string(), 0)], "not until the replay is done");
    run(&mut s, vec![synced(1)]);
    assert_eq!(holds(&s), [("p1".to_string(), 1)]);
    // The same run seen again (a status change, a relist) is not news.
    assert_eq!(run(&mut s, vec![applied(pod("p1", "reg/app:t1", 1))]), Vec::<String>::new());
    let relist = Event::Pods { change: PodChange::All(vec![pod("p1", "reg/app:t1", 1)]), at: Instant::now() };
    assert_eq!(run(&mut s, vec![relist]), Vec::<String>::new());
    // A rollout of a new image: every run holds just the image again.
    run(&mut s, vec![dockerfile_and(&[]), hashed("app", "t3"), built("app", "t3"), rolled("app", "t3", true)]);
    assert!(s.holding("app").is_empty());
}

/// A pod deleted while a sync went to it: it does not hold the set, and it is not synced into again while
/// the pod watch has not yet said it is gone.
#[test]
fn a_run_gone_before_the_sync_reached_it_holds_nothing_and_is_not_retried() {
    let mut s = live_at_t1();
    run(&mut s, vec![applied(pod("p2", "reg/app:t1", 0))]);
    let a = step(&mut s, changed_paths("app", &["www/a"]));
    let p2 = a.iter().find_map(|a| if let Action::Sync { into, .. } = a { Some(into[1].clone()) } else { None }).unwrap();
    run(&mut s, vec![hashed("app", "t2")]);
    let done = Event::Synced { image: "app".into(), files: 1, deleted: 0, missed: vec![p2], took: Duration::from_millis(60), at: Instant::now() };
    let a = step(&mut s, done);
    assert_eq!(acts(&a), Vec::<String>::new(), "no replay into the pod that is gone");
    let [Report::Synced(sum)]: [Report; 1] = reports(&a).try_into().unwrap() else { panic!("{a:?}") };
    assert_eq!(sum.pods, 1, "one pod got it");
    assert_eq!(s.holding("app"), ["p1"]);
    assert_eq!(run(&mut s, vec![gone("p2")]), Vec::<String>::new());
    // Its replacement comes: it gets the synced set.
    assert_eq!(run(&mut s, vec![applied(pod("p3", "reg/app:t1", 0))]), ["replay app www/a → p3"]);
}

/// At the end of `up`: without `--cleanup` the core names the pods it leaves running synced files (those the
/// syncs reached, not every pod of the image); with it, it asks for the cleanup and says nothing of them.
#[test]
fn at_the_end_the_pods_left_with_synced_files_are_named_or_everything_is_cleaned_up() {
    let mut s = live_at_t1();
    run(&mut s, vec![applied(pod("p2", "reg/app:t1", 0)), changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]);
    // p3 came after the sync and its replay has not reported yet: it does not hold the file.
    assert_eq!(run(&mut s, vec![applied(pod("p3", "reg/app:t1", 0))]), ["replay app www/a → p3"]);
    let a = step(&mut s, Event::Stopping { cleanup: false });
    assert_eq!(
        reports(&a),
        [Report::LeftSynced { image: "app".into(), tag: "t1".into(), synced: 1, content: Some("t2".into()), pods: vec!["p1".into(), "p2".into()] }]
    );
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]);
    let a = step(&mut s, Event::Stopping { cleanup: true });
    assert_eq!(acts(&a), ["clean up"]);
    assert!(reports(&a).is_empty(), "{a:?}");
    // Nothing synced: nothing to say.
    assert!(step(&mut live_at_t1(), Event::Stopping { cleanup: false }).is_empty());
}
