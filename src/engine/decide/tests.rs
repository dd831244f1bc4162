use super::*;
use std::collections::BTreeSet;

fn paths(p: &[&str]) -> Scope {
    Scope::Paths(p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>())
}
fn changed(images: &[&str]) -> Event {
    Event::Changed { changes: images.iter().map(|s| (s.to_string(), paths(&["x"]))).collect(), outside: BTreeSet::new(), at: Instant::now(), debounce: Duration::ZERO }
}
fn changed_paths(image: &str, p: &[&str]) -> Event {
    Event::Changed { changes: BTreeMap::from([(image.to_string(), paths(p))]), outside: BTreeSet::new(), at: Instant::now(), debounce: Duration::ZERO }
}
fn filter() -> Hashed {
    Hashed(Arc::new(Filter::new::<&str>(&[]).unwrap()))
}
fn hashed(image: &str, tag: &str) -> Event {
    Event::Hashed { image: image.into(), tag: tag.into(), filter: filter(), took: Duration::from_millis(3) }
}
fn hash_failed(image: &str) -> Event {
    Event::HashFailed { image: image.into(), error: "cannot read src: No such file or directory".into() }
}
fn built(image: &str, tag: &str) -> Event {
    Event::Built { image: image.into(), tag: tag.into(), digest: format!("sha256:{tag}"), took: Duration::from_millis(500), steps: (5, 3), cached: false, export: Some(Duration::from_millis(120)), buildkit: None }
}
fn rolled(image: &str, tag: &str, ok: bool) -> Event {
    Event::RolledOut { image: image.into(), tag: tag.into(), ok, took: Duration::from_secs(1), at: Instant::now(), pod: PodStages::default(), reference: format!("reg/{image}:{tag}"), error: None, reason: None, undo: vec![] }
}

/// The actions, without reports, as short strings.
fn acts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Hash { image, scope: Scope::Rescan } => Some(format!("rescan {image}")),
            Action::Hash { image, scope: Scope::Paths(p) } if p.len() == 1 && p.contains("x") => Some(format!("hash {image}")),
            Action::Hash { image, scope: Scope::Paths(p) } => Some(format!("hash {image} {}", p.iter().cloned().collect::<Vec<_>>().join(","))),
            Action::Build { image, tag, .. } => Some(format!("build {image} {tag}")),
            Action::CancelBuild(i) => Some(format!("cancel {i}")),
            Action::Forget(i) => Some(format!("forget {i}")),
            Action::Deploy { image, tag, .. } => Some(format!("deploy {image} {tag}")),
            Action::RollBack { image, tag, .. } => Some(format!("roll back {image} {tag}")),
            Action::Sync { image, paths, replay: false, .. } => Some(format!("sync {image} {}", paths.iter().cloned().collect::<Vec<_>>().join(","))),
            Action::Sync { image, paths, into, replay: true, .. } => {
                let pods: Vec<String> = into.iter().map(|r| r.pod.clone()).collect();
                Some(format!("replay {image} {} → {}", paths.iter().cloned().collect::<Vec<_>>().join(","), pods.join(",")))
            }
            Action::CleanUp => Some("clean up".into()),
            Action::Prune { image, newest, keep } => Some(format!("prune {image} {newest} keep {}", keep.join(","))),
            Action::Report(_) | Action::ReplaceStale { .. } => None,
        })
        .collect()
}

fn run(state: &mut State, events: Vec<Event>) -> Vec<String> {
    events.into_iter().flat_map(|e| acts(&step(state, e))).collect()
}

/// A deployed image at tag `t1`.
fn deployed_at_t1() -> State {
    let mut s = State::default();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]);
    assert_eq!(s.deployed("app"), Some("t1"));
    s
}

#[test]
fn first_iteration_hashes_builds_and_deploys() {
    let mut s = State::default();
    assert_eq!(
        run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]),
        ["hash app", "build app t1", "deploy app t1"]
    );
    assert!(!s.busy());
}

#[test]
fn an_unchanged_tag_does_nothing_at_all() {
    let mut s = deployed_at_t1();
    let a = step(&mut s, changed(&["app"]));
    assert_eq!(acts(&a), ["hash app"]);
    let a = step(&mut s, hashed("app", "t1"));
    assert_eq!(acts(&a), Vec::<String>::new());
    assert!(matches!(a.as_slice(), [Action::Report(Report::Unchanged { .. })]));
}

#[test]
fn newer_content_during_a_build_cancels_it_and_the_stale_result_is_never_deployed() {
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]), ["hash app", "build app t2"]);
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t3")]), ["hash app", "cancel app", "build app t3"]);
    // The cancelled build may still report success: it is ignored.
    assert_eq!(run(&mut s, vec![built("app", "t2")]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![built("app", "t3"), rolled("app", "t3", true)]), ["deploy app t3"]);
    assert_eq!(s.deployed("app"), Some("t3"));
}

#[test]
fn changes_while_hashing_rehash_before_anything_is_built() {
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed(&["app"]), changed(&["app"]), changed(&["app"])]), ["hash app"]);
    // The first hash result may already be stale: hash again, build nothing yet.
    assert_eq!(run(&mut s, vec![hashed("app", "t2")]), ["hash app"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t3")]), ["build app t3"]);
}

#[test]
fn a_build_done_during_a_rollout_waits_and_only_the_newest_is_deployed() {
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]), ["hash app", "build app t2", "deploy app t2"]);
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t3"), built("app", "t3")]), ["hash app", "build app t3"]);
    assert_eq!(run(&mut s, vec![rolled("app", "t2", true)]), ["deploy app t3"]);
    assert_eq!(run(&mut s, vec![rolled("app", "t3", true)]), Vec::<String>::new());
    assert_eq!(s.deployed("app"), Some("t3"));
}

#[test]
fn reverting_during_a_build_cancels_it_and_deploys_nothing() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]);
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t1")]), ["hash app", "cancel app"]);
    assert_eq!(run(&mut s, vec![built("app", "t2")]), Vec::<String>::new());
    assert!(!s.busy());
}

#[test]
fn after_a_failed_rollout_going_back_to_the_last_good_content_deploys_it_again() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2")]);
    let a = step(&mut s, rolled("app", "t2", false));
    assert!(matches!(a.as_slice(), [Action::Report(Report::RolloutFailed { .. })]));
    assert_eq!(s.deployed("app"), None, "the Deployment asks for t2 now");
    // The revert: t1 is what the Deployment must ask for again (its build is a cache or registry hit).
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled("app", "t1", true)]), ["hash app", "build app t1", "deploy app t1"]);
    assert_eq!(s.deployed("app"), Some("t1"));
}

#[test]
fn a_failed_build_leaves_the_deployment_alone_and_the_next_change_retries() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]);
    let a = step(&mut s, Event::BuildFailed { image: "app".into(), tag: "t2".into(), error: "exit 1".into(), cancelled: false });
    assert!(matches!(a.as_slice(), [Action::Report(Report::Failed { .. })]));
    assert_eq!(s.deployed("app"), Some("t1"));
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2b")]), ["hash app", "build app t2b"]);
}

#[test]
fn only_changed_images_are_touched_and_summaries_carry_the_figures() {
    let mut s = State::default();
    run(&mut s, vec![changed(&["a", "b"]), hashed("a", "a1"), hashed("b", "b1"), built("a", "a1"), built("b", "b1")]);
    run(&mut s, vec![rolled("a", "a1", true), rolled("b", "b1", true)]);
    assert_eq!(run(&mut s, vec![changed(&["b"]), hashed("b", "b2"), built("b", "b2")]), ["hash b", "build b b2", "deploy b b2"]);
    let stages = PodStages { created: Some(Duration::from_millis(20)), running: Some(Duration::from_millis(400)), ready: Some(Duration::from_millis(900)) };
    let a = step(&mut s, Event::RolledOut { image: "b".into(), tag: "b2".into(), ok: true, took: Duration::from_secs(1), at: Instant::now(), pod: stages, reference: String::new(), error: None, reason: None, undo: vec![] });
    let [Action::ReplaceStale { .. }, Action::Report(Report::Iteration(sum))] = a.as_slice() else { panic!("{a:?}") };
    assert_eq!((sum.image.as_str(), sum.tag.as_str(), sum.steps), ("b", "b2", (5, 3)));
    assert_eq!((sum.hash, sum.build, sum.rollout), (Duration::from_millis(3), Duration::from_millis(500), Duration::from_secs(1)));
    assert_eq!((sum.export, sum.pod), (Some(Duration::from_millis(120)), stages), "where the time went");
    assert_eq!(s.deployed("a"), Some("a1"));
}

#[test]
fn the_iteration_counts_the_debounce_of_the_batch_that_started_it_not_of_later_ones() {
    let mut s = deployed_at_t1();
    let batch = |ms: u64| {
        let Event::Changed { changes, outside, at, .. } = changed(&["app"]) else { unreachable!() };
        Event::Changed { changes, outside, at, debounce: Duration::from_millis(ms) }
    };
    // A second batch while the first is hashed joins the same iteration: its wait is not the iteration's.
    run(&mut s, vec![batch(250), batch(90), hashed("app", "t2"), hashed("app", "t2"), built("app", "t2")]);
    let a = step(&mut s, Event::RolledOut { image: "app".into(), tag: "t2".into(), ok: true, took: Duration::from_secs(1), at: Instant::now(), pod: PodStages::default(), reference: String::new(), error: None, reason: None, undo: vec![] });
    let [Action::ReplaceStale { .. }, Action::Report(Report::Iteration(sum))] = a.as_slice() else { panic!("{a:?}") };
    assert_eq!(sum.debounce, Duration::from_millis(250));
    // The next iteration starts afresh.
    run(&mut s, vec![batch(40), hashed("app", "t3"), built("app", "t3")]);
    let a = step(&mut s, Event::RolledOut { image: "app".into(), tag: "t3".into(), ok: true, took: Duration::from_secs(1), at: Instant::now(), pod: PodStages::default(), reference: String::new(), error: None, reason: None, undo: vec![] });
    let [Action::ReplaceStale { .. }, Action::Report(Report::Iteration(sum))] = a.as_slice() else { panic!("{a:?}") };
    assert_eq!(sum.debounce, Duration::from_millis(40));
}

#[test]
fn changes_that_arrive_while_hashing_are_hashed_next_not_dropped() {
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["a"])]), ["hash app a"]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["b"]), changed_paths("app", &["c/d"])]), Vec::<String>::new());
    // The paths that came in meanwhile, all of them, go to the next hash.
    assert_eq!(run(&mut s, vec![hashed("app", "t2")]), ["hash app b,c/d"]);
}

/// `git checkout` of another branch: a directory vanishes under a running hash, which fails, while the
/// checkout's later writes arrive. Nothing is lost: the next hash is a full rescan, and it starts at once.
#[test]
fn a_failed_hash_loses_nothing_the_next_hash_is_a_full_rescan() {
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["src/a"])]), ["hash app src/a"]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["src/b"])]), Vec::<String>::new());
    let a = step(&mut s, hash_failed("app"));
    assert_eq!(acts(&a), ["rescan app"], "changes came in while it ran: look again now, everything");
    assert!(a.iter().any(|a| matches!(a, Action::Report(Report::Failed { .. }))), "the failure is still told");
    assert_eq!(run(&mut s, vec![hashed("app", "t2"), built("app", "t2")]), ["build app t2", "deploy app t2"]);

    // A failure with nothing after it (a permission error): wait for the next change, which rescans.
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed_paths("app", &["secret"])]);
    assert_eq!(run(&mut s, vec![hash_failed("app")]), Vec::<String>::new());
    assert!(!s.busy());
    assert_eq!(run(&mut s, vec![changed_paths("app", &["secret"])]), ["rescan app"]);
}

#[test]
fn a_failed_hash_during_a_build_still_rescans_next() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]);
    run(&mut s, vec![changed_paths("app", &["gone"]), hash_failed("app")]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["back"])]), ["rescan app"]);
    // The rescan's tag supersedes the running build.
    assert_eq!(run(&mut s, vec![hashed("app", "t3")]), ["cancel app", "build app t3"]);
}

#[test]
fn the_build_sends_what_the_filter_that_hashed_its_tag_allows() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"])]);
    let f = filter();
    let a = step(&mut s, Event::Hashed { image: "app".into(), tag: "t2".into(), filter: f.clone(), took: Duration::ZERO });
    let build = a.iter().find_map(|a| if let Action::Build { filter, .. } = a { Some(filter) } else { None }).unwrap();
    assert_eq!(*build, f, "the same filter, not one rebuilt from the config");
}

#[test]
fn a_new_config_rescans_changed_images_redeploys_changed_deploys_and_drops_removed_ones() {
    let mut s = State::default();
    run(&mut s, vec![changed(&["a", "b", "c"]), hashed("a", "a1"), hashed("b", "b1"), hashed("c", "c1")]);
    run(&mut s, vec![built("a", "a1"), built("b", "b1"), rolled("a", "a1", true), rolled("b", "b1", true)]);
    // c is still building when the config drops it; a's build args changed; b's deploy target changed.
    let a = step(&mut s, Event::Reconfigured { rescan: vec!["a".into(), "b".into()], redeploy: vec!["b".into()], removed: vec!["c".into()], rules: Rules::new(), plan: Plan::default(), at: Instant::now() });
    // …and everything it left running (its pods' log streams, its pod watch) is stopped.
    assert_eq!(acts(&a), ["cancel c", "forget c", "rescan a", "rescan b"]);
    // a: same tag as before, nothing to do; b: same tag but its deploy changed, so it is deployed again.
    assert_eq!(run(&mut s, vec![hashed("a", "a1"), hashed("b", "b1"), built("b", "b1")]), ["build b b1", "deploy b b1"]);
    // A late result for the removed image is ignored.
    assert_eq!(run(&mut s, vec![built("c", "c1")]), Vec::<String>::new());
    assert_eq!(s.deployed("c"), None);
}

/// An editor saves while BuildKit reads the context: the file is refused (it is not what was hashed), the
/// build is void, and the image is hashed again even if the save's own event was hashed during the build.
#[test]
fn a_build_whose_context_changed_under_it_is_hashed_and_built_again() {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]);
    // The save's event is hashed while the build runs: the same bytes again, so nothing new starts.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]), ["hash app"]);
    let stale = Event::BuildStale { image: "app".into(), tag: "t2".into(), reason: "refusing to send context/x".into(), at: Instant::now() };
    let a = step(&mut s, stale);
    assert!(matches!(a.first(), Some(Action::Report(Report::Stale { .. }))), "{a:?}");
    assert_eq!(acts(&a), ["hash app "]);
    assert_eq!(run(&mut s, vec![hashed("app", "t2"), built("app", "t2")]), ["build app t2", "deploy app t2"]);
}

// Live update.

fn rules() -> Vec<crate::config::SyncRule> {
    let text = "[registry]\nhost = \"r\"\n[[image]]\nname = \"app\"\ncontext = \".\"\n[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n";
    crate::config::parse(std::path::Path::new("/p/devloop.toml"), text).unwrap().images.remove(0).sync
}
/// The facts of pod `name` whose container `web` runs `reference` (`restarts` restarts), Ready.
fn pod(name: &str, reference: &str, restarts: i32) -> PodFacts {
    let web = crate::cluster::pods::ContainerFacts { name: "web".into(), image: reference.into(), running: true, ready: true, restarts, waiting: None };
    PodFacts { uid: format!("uid-{name}"), name: name.into(), deleting: false, containers: vec![web] }
}
/// Pod `name` runs `app`'s t1 now.
fn runs_t1(name: &str) -> Event {
    Event::Pods { change: PodChange::Applied(pod(name, "reg/app:t1", 0)), at: Instant::now() }
}
/// A pod of the rollout of `tag` runs it now.
fn runs(tag: &str) -> Event {
    Event::Pods { change: PodChange::Applied(pod(&format!("p-{tag}"), &format!("reg/app:{tag}"), 0)), at: Instant::now() }
}
/// `app` deployed at t1 in pod p1, with a rule syncing `www/**`.
fn live_at_t1() -> State {
    let mut s = deployed_at_t1();
    // The rules came with a reload of devloop.toml: nothing to rescan or redeploy.
    let rules = Rules::from([("app".to_string(), rules())]);
    let a = step(&mut s, Event::Reconfigured { rescan: vec![], redeploy: vec![], removed: vec![], rules, plan: Plan::default(), at: Instant::now() });
    assert!(a.is_empty(), "{a:?}");
    assert!(step(&mut s, runs_t1("p1")).is_empty());
    s
}
fn dockerfile_and(p: &[&str]) -> Event {
    Event::Changed { changes: BTreeMap::from([("app".to_string(), paths(p))]), outside: BTreeSet::from(["app".to_string()]), at: Instant::now(), debounce: Duration::ZERO }
}
fn synced(files: usize) -> Event {
    Event::Synced { image: "app".into(), files, deleted: 0, missed: vec![], took: Duration::from_millis(60), at: Instant::now() }
}
fn reports(actions: &[Action]) -> Vec<Report> {
    actions.iter().filter_map(|a| if let Action::Report(r) = a { Some(r.clone()) } else { None }).collect()
}

/// (the batch, what it does): covered paths sync (the sync's own read gives the content tag); anything else
/// builds.
#[test]
fn a_batch_syncs_only_when_every_path_is_covered_else_it_builds() {
    let cases: Vec<(&str, Event, Vec<&str>)> = vec![
        ("a covered file", changed_paths("app", &["www/index.html"]), vec!["sync app www/index.html"]),
        ("two covered files", changed_paths("app", &["www/a", "www/b/c"]), vec!["sync app www/a,www/b/c"]),
        ("one path outside the rules", changed_paths("app", &["www/a", "serve.sh"]), vec!["hash app serve.sh,www/a"]),
        ("the Dockerfile with a covered file", dockerfile_and(&["www/a"]), vec!["hash app www/a"]),
        ("the Dockerfile alone", dockerfile_and(&[]), vec!["hash app "]),
        ("an ignore file (a rescan)", Event::Changed { changes: BTreeMap::from([("app".into(), Scope::Rescan)]), outside: BTreeSet::new(), at: Instant::now(), debounce: Duration::ZERO }, vec!["rescan app"]),
    ];
    for (what, event, want) in cases {
        let mut s = live_at_t1();
        assert_eq!(run(&mut s, vec![event]), want, "{what}");
    }
    // The build case goes on to build; the sync case never does.
    let mut s = live_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]), ["sync app www/a"]);
    assert_eq!(s.deployed("app"), Some("t1"));
    assert_eq!(s.live(), [("app".to_string(), "t1".to_string(), 1, Some("t2".to_string()))], "image t1 + 1 synced file, content t2");
    assert!(!s.busy());
}

#[test]
fn without_rules_or_a_rollout_or_while_building_a_covered_change_builds() {
    // No rules (`--no-sync`).
    let mut s = deployed_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), ["hash app www/a"]);
    // Nothing rolled out yet in this session: the pods may run anything.
    let mut s = State::new(Rules::from([("app".to_string(), rules())]));
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), ["hash app www/a"]);
    // A build under way: it will carry the change (a newer tag supersedes it).
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["serve.sh"]), hashed("app", "t2")]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t3")]), ["hash app www/a", "cancel app", "build app t3"]);
    // A build-needing hash running: the covered change waits and builds with it.
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["serve.sh"])]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2")]), ["hash app www/a"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t3")]), ["build app t3"]);
}

#[test]
fn the_sync_report_tells_the_content_tag_of_what_it_sent_and_the_honest_state() {
    let mut s = live_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a", "www/b"])]), ["sync app www/a,www/b"], "no hash of its own: the sync reads once");
    assert!(s.busy());
    let a = step(&mut s, hashed("app", "t2"));
    assert!(reports(&a).is_empty(), "the tag of what it read, before it is in the pods: {a:?}");
    let a = step(&mut s, synced(2));
    let [Report::Synced(sum)]: [Report; 1] = reports(&a).try_into().unwrap() else { panic!("{a:?}") };
    assert_eq!((sum.files, sum.pods, sum.tag.as_str(), sum.synced, sum.content.as_deref()), (2, 1, "t1", 2, Some("t2")));
    assert_eq!(sum.sync, Duration::from_millis(60));
    let a = run(&mut s, vec![changed_paths("app", &["www/c"]), hashed("app", "t3")]);
    assert_eq!(a, ["sync app www/c"]);
    let [Report::Synced(sum)]: [Report; 1] = reports(&step(&mut s, synced(1))).try_into().unwrap() else { panic!() };
    assert_eq!((sum.synced, sum.content.as_deref()), (3, Some("t3")));
    // Reverting every synced file: the tree is the image's again, nothing is synced on top of it.
    run(&mut s, vec![changed_paths("app", &["www/a", "www/b", "www/c"])]);
    let a = run(&mut s, vec![hashed("app", "t1"), synced(3)]);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(s.live(), []);
}

#[test]
fn one_sync_at_a_time_what_comes_meanwhile_goes_next_in_one() {
    let mut s = live_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), ["sync app www/a"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t2"), changed_paths("app", &["www/b"]), changed_paths("app", &["www/c"])]), Vec::<String>::new());
    assert_eq!(s.live()[0].2, 1, "queued paths are not synced yet");
    assert_eq!(run(&mut s, vec![synced(1)]), ["sync app www/b,www/c"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t3"), synced(2)]), Vec::<String>::new());
    assert!(!s.busy());
    assert_eq!(s.live(), [("app".to_string(), "t1".to_string(), 3, Some("t3".to_string()))]);
}

/// A change that needs a build while covered paths wait for the running sync: the build's hash waits for the
/// sync's (which puts what it sent into the tree), and carries the waiting paths; they are not synced.
#[test]
fn a_change_that_needs_a_build_carries_the_paths_waiting_for_a_sync() {
    let mut s = live_at_t1();
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"]), changed_paths("app", &["www/b"])]), ["sync app www/a"]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["serve.sh"])]), Vec::<String>::new(), "the sync's own hash runs");
    assert_eq!(run(&mut s, vec![hashed("app", "t2")]), ["hash app serve.sh,www/b"]);
    assert_eq!(run(&mut s, vec![synced(1)]), Vec::<String>::new(), "www/b goes with the build, not by a sync");
    assert_eq!(run(&mut s, vec![hashed("app", "t3")]), ["build app t3"]);
    assert_eq!(s.live()[0].2, 1);
}

/// After a failed hash the hasher's tree is gone and a rescan is owed: a covered save goes into it and builds.
#[test]
fn after_a_failed_hash_a_covered_save_rescans_and_builds() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["serve.sh"]), hash_failed("app")]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), ["rescan app"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t2")]), ["build app t2"]);
}

/// A sync that fails before it could put what it read into the tree (too large, nothing to take it): the
/// core's hash is not left waiting for it, and the build hashes its paths.
#[test]
fn a_sync_that_fails_before_its_hash_leaves_no_hash_waiting() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"])]);
    let a = step(&mut s, Event::SyncFailed { image: "app".into(), error: "too large".into(), unsupported: false, skipped: true, at: Instant::now() });
    assert_eq!(acts(&a), ["hash app www/a"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t2")]), ["build app t2"]);
}

#[test]
fn a_change_no_rule_covers_rebuilds_and_the_rollout_clears_the_synced_state() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]);
    assert_eq!(s.live().len(), 1);
    assert_eq!(run(&mut s, vec![dockerfile_and(&[]), hashed("app", "t3"), built("app", "t3")]), ["hash app ", "build app t3", "deploy app t3"]);
    assert_eq!(s.live().len(), 1, "until the new pods are Ready, the old ones still run synced files");
    // While it rolls out, covered changes build too (the new pods would not have them).
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/b"])]), ["hash app www/b"]);
    run(&mut s, vec![hashed("app", "t4"), built("app", "t4"), rolled("app", "t3", true)]);
    run(&mut s, vec![rolled("app", "t4", true), runs("t4")]);
    assert_eq!((s.deployed("app"), s.live()), (Some("t4"), vec![]));
    // And syncing works again on top of the new image.
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/c"])]), ["sync app www/c"]);
}

#[test]
fn pods_that_come_later_get_the_synced_set_replayed() {
    let mut s = live_at_t1();
    let ready = runs_t1;
    // Nothing synced yet: nothing to replay.
    assert_eq!(run(&mut s, vec![ready("p0")]), Vec::<String>::new());
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1), changed_paths("app", &["www/b"]), hashed("app", "t3"), synced(1)]);
    assert_eq!(run(&mut s, vec![ready("p2")]), ["replay app www/a,www/b → p2"]);
    let a = step(&mut s, synced(2));
    let [Report::Synced(sum)]: [Report; 1] = reports(&a).try_into().unwrap() else { panic!("{a:?}") };
    assert!(sum.replay);
    // A pod during a sync waits for it; with a change queued too, the whole set goes to every pod.
    run(&mut s, vec![changed_paths("app", &["www/c"])]);
    assert_eq!(run(&mut s, vec![ready("p3"), ready("p4")]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![hashed("app", "t4"), synced(1)]), ["replay app www/a,www/b,www/c → p3,p4"]);
    run(&mut s, vec![changed_paths("app", &["www/d"]), ready("p5")]);
    assert_eq!(run(&mut s, vec![synced(3)]), ["sync app www/a,www/b,www/c,www/d"]);
}

#[test]
fn a_failed_sync_rebuilds_and_one_without_tar_stops_syncing() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2")]);
    let a = step(&mut s, Event::SyncFailed { image: "app".into(), error: "pod gone".into(), unsupported: false, skipped: false, at: Instant::now() });
    assert!(matches!(reports(&a).as_slice(), [Report::SyncFallback { for_good: false, .. }]), "{a:?}");
    assert_eq!(acts(&a), ["hash app www/a"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t2"), built("app", "t2"), rolled("app", "t2", true), runs("t2")]), ["build app t2", "deploy app t2"]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/b"])]), ["sync app www/b"], "a passing failure: sync again");

    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2")]);
    let a = step(&mut s, Event::SyncFailed { image: "app".into(), error: "no tar".into(), unsupported: true, skipped: false, at: Instant::now() });
    assert!(matches!(reports(&a).as_slice(), [Report::SyncFallback { for_good: true, .. }]));
    run(&mut s, vec![hashed("app", "t2"), built("app", "t2"), rolled("app", "t2", true)]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/b"])]), ["hash app www/b"], "no tar: build from now on");
}

fn sync_failed() -> Event {
    Event::SyncFailed { image: "app".into(), error: "in pod p: exec: connection reset".into(), unsupported: false, skipped: false, at: Instant::now() }
}

/// The revert of a synced edit hashes to the deployed tag before its sync's result comes; the sync then
/// fails. The pods still hold the edit: the fallback must roll the image out again, not call it unchanged.
#[test]
fn a_revert_whose_sync_fails_rolls_out_the_image_again() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"]), hashed("app", "t2"), synced(1)]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/a"])]), ["sync app www/a"], "the revert");
    run(&mut s, vec![hashed("app", "t1")]);
    assert_eq!(s.live().len(), 1, "the revert is not in the pods yet: {:?}", s.live());
    let a = step(&mut s, sync_failed());
    assert_eq!(acts(&a), ["hash app www/a"]);
    assert_eq!(s.live().len(), 1, "until the rollout, the pods still run the edit (said at exit)");
    let a = step(&mut s, hashed("app", "t1"));
    assert!(!reports(&a).iter().any(|r| matches!(r, Report::Unchanged { .. })), "{a:?}");
    assert_eq!(acts(&a), ["build app t1"]);
    assert_eq!(run(&mut s, vec![built("app", "t1"), rolled("app", "t1", true)]), ["deploy app t1"]);
    assert_eq!((s.deployed("app"), s.live()), (Some("t1"), vec![]));
}

/// A restored file whose sync reaches no pod (none can take it): the file is built into the image and
/// rolled out even though its tag is the deployed one (the pods ran a deletion no image has).
#[test]
fn a_restore_that_reaches_no_pod_rolls_out_even_to_the_deployed_tag() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/index.html"]), hashed("app", "t2"), synced(0)]);
    run(&mut s, vec![changed_paths("app", &["www/index.html"]), hashed("app", "t1")]);
    let a = step(&mut s, Event::SyncFailed { image: "app".into(), error: "no running container can take the sync".into(), unsupported: false, skipped: true, at: Instant::now() });
    assert!(matches!(reports(&a).as_slice(), [Report::SyncFallback { skipped: true, .. }]), "{a:?}");
    // A covered save meanwhile goes into the build: nothing syncs until the rollout.
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/b"])]), Vec::<String>::new());
    assert_eq!(run(&mut s, vec![hashed("app", "t1")]), ["hash app www/b"]);
    assert_eq!(run(&mut s, vec![hashed("app", "t3"), built("app", "t3"), rolled("app", "t3", true), runs("t3")]), ["build app t3", "deploy app t3"]);
    assert_eq!(run(&mut s, vec![changed_paths("app", &["www/c"])]), ["sync app www/c"], "syncing again after it");
}

#[test]
fn a_sync_sends_what_the_filter_of_the_latest_hash_allows() {
    let mut s = live_at_t1();
    run(&mut s, vec![changed_paths("app", &["www/a"])]);
    let f = filter();
    run(&mut s, vec![Event::Hashed { image: "app".into(), tag: "t2".into(), filter: f.clone(), took: Duration::ZERO }, synced(1)]);
    let a = step(&mut s, changed_paths("app", &["www/b"]));
    let sync = a.iter().find_map(|a| if let Action::Sync { filter, .. } = a { Some(filter) } else { None }).unwrap();
    assert_eq!(*sync, f, "the filter that judged the tree, not one rebuilt from the config");
}

fn rolled_at(image: &str, tag: &str, at: Instant) -> Event {
    Event::RolledOut { image: image.into(), tag: tag.into(), ok: true, took: Duration::from_secs(1), at, pod: PodStages::default(), reference: format!("reg/{image}:{tag}"), error: None, reason: None, undo: vec![] }
}
fn crashed(image: &str, tag: &str, at: Instant, rollback: bool) -> Event {
    Event::Crashed { image: image.into(), tag: tag.into(), error: "Exited (pod p, container web): exited with code 3 (Error)".into(), at, rollback }
}
/// The crash reports among `actions`: (tag, rolled back to, late).
fn crash_reports(actions: &[Action]) -> Vec<(String, Option<String>, bool)> {
    reports(actions)
        .into_iter()
        .filter_map(|r| match r {
            Report::Crashed { tag, rollback, late, .. } => Some((tag, rollback, late)),
            _ => None,
        })
        .collect()
}
/// `app` at t1, then t2 rolled out at `at`.
fn t2_rolled_out_at(at: Instant) -> State {
    let mut s = deployed_at_t1();
    run(&mut s, vec![changed(&["app"]), hashed("app", "t2"), built("app", "t2"), rolled_at("app", "t2", at)]);
    assert_eq!(s.deployed("app"), Some("t2"));
    s
}

#[test]
fn a_crash_soon_after_a_rollout_is_its_failure_and_rolls_back_to_the_last_good_tag_where_configured() {
    let t0 = Instant::now();
    let mut s = t2_rolled_out_at(t0);
    let a = step(&mut s, crashed("app", "t2", t0 + Duration::from_secs(3), true));
    assert_eq!(acts(&a), ["deploy app t1"]);
    assert_eq!(crash_reports(&a), [("t2".to_string(), Some("t1".to_string()), false)]);
    let Some(Action::Deploy { digest, .. }) = a.iter().find(|a| matches!(a, Action::Deploy { .. })) else { unreachable!() };
    assert_eq!(digest, "sha256:t1", "the digest t1 was deployed with");
    assert!(s.busy(), "the rollback is a rollout");
    // The rollback's rollout is no iteration: it says what runs again.
    let a = step(&mut s, rolled("app", "t1", true));
    assert_eq!(reports(&a), [Report::RolledBack { image: "app".into(), tag: "t1".into() }]);
    assert_eq!(s.deployed("app"), Some("t1"));
    // The crashing content is still on disk: a save that keeps it deploys it again (a registry hit), not
    // "unchanged"; going back to t1's content is unchanged, t1 runs.
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]), ["hash app", "build app t2"]);
    let mut back = t2_rolled_out_at(t0);
    run(&mut back, vec![crashed("app", "t2", t0 + Duration::from_secs(3), true), rolled("app", "t1", true)]);
    let a = step(&mut back, changed(&["app"]));
    assert_eq!(acts(&a), ["hash app"]);
    assert!(matches!(step(&mut back, hashed("app", "t1")).as_slice(), [Action::Report(Report::Unchanged { .. })]));
}

#[test]
fn a_crash_minutes_later_or_without_rollback_is_reported_and_left_running_and_the_next_save_deploys_again() {
    let t0 = Instant::now();
    let mut s = t2_rolled_out_at(t0);
    let a = step(&mut s, crashed("app", "t2", t0 + ROLLOUT_CRASH_WINDOW, true));
    assert_eq!(acts(&a), Vec::<String>::new(), "no rollback minutes later: the pods are left to debug");
    assert_eq!(crash_reports(&a), [("t2".to_string(), None, true)]);
    assert_eq!(s.deployed("app"), None, "t2 is not taken for a good deploy any more");
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t2")]), ["hash app", "build app t2"]);

    let mut s = t2_rolled_out_at(t0);
    let a = step(&mut s, crashed("app", "t2", t0 + Duration::from_secs(3), false));
    assert_eq!((acts(&a), crash_reports(&a)), (vec![], vec![("t2".to_string(), None, false)]), "no rollback configured");
    // The first rollout of a session has nothing to go back to.
    let mut first = State::default();
    run(&mut first, vec![changed(&["app"]), hashed("app", "t1"), built("app", "t1"), rolled_at("app", "t1", t0)]);
    let a = step(&mut first, crashed("app", "t1", t0 + Duration::from_secs(1), true));
    assert_eq!((acts(&a), crash_reports(&a)), (vec![], vec![("t1".to_string(), None, false)]));
}

#[test]
fn a_crash_of_a_tag_being_replaced_is_not_reported_and_one_crash_report_per_rollout() {
    let t0 = Instant::now();
    let mut s = t2_rolled_out_at(t0);
    assert_eq!(step(&mut s, crashed("app", "t1", t0, true)), vec![], "t1's pods are the old ones");
    run(&mut s, vec![changed(&["app"]), hashed("app", "t3"), built("app", "t3")]);
    assert_eq!(step(&mut s, crashed("app", "t2", t0, true)), vec![], "t3 is rolling out: t2's pods are going");
    run(&mut s, vec![rolled_at("app", "t3", t0)]);
    assert_eq!(crash_reports(&step(&mut s, crashed("app", "t3", t0, false))).len(), 1);
    assert_eq!(step(&mut s, crashed("app", "t3", t0, false)), vec![], "a crash loop is one report");
}

#[test]
fn a_build_done_during_a_rollback_is_deployed_after_it() {
    let t0 = Instant::now();
    let mut s = t2_rolled_out_at(t0);
    run(&mut s, vec![crashed("app", "t2", t0, true)]);
    assert_eq!(run(&mut s, vec![changed(&["app"]), hashed("app", "t3"), built("app", "t3")]), ["hash app", "build app t3"]);
    let a = step(&mut s, rolled("app", "t1", true));
    assert_eq!(acts(&a), ["deploy app t3"]);
    assert!(reports(&a).contains(&Report::RolledBack { image: "app".into(), tag: "t1".into() }));
    let a = step(&mut s, rolled("app", "t3", true));
    assert!(matches!(reports(&a).as_slice(), [Report::Iteration(_)]), "{a:?}");
}

/// What each image runs has one owner, the core: the reference its last successful rollout put in place,
/// kept through a failed rollout, dropped with the image; and a deploy that failed with an error of its own
/// is reported once, with all of it.
#[test]
fn the_core_alone_says_which_reference_each_image_runs_and_reports_a_deploy_error_once() {
    let mut s = State::default();
    run(&mut s, vec![changed(&["a", "b"]), hashed("a", "a1"), hashed("b", "b1"), built("a", "a1"), built("b", "b1")]);
    run(&mut s, vec![rolled("a", "a1", true), rolled("b", "b1", true)]);
    let want = |pairs: &[(&str, &str)]| pairs.iter().map(|(i, r)| (i.to_string(), r.to_string())).collect::<BTreeMap<_, _>>();
    assert_eq!(s.references(), want(&[("a", "reg/a:a1"), ("b", "reg/b:b1")]));
    run(&mut s, vec![changed(&["b"]), hashed("b", "b2"), built("b", "b2"), rolled("b", "b2", false)]);
    assert_eq!(s.references()["b"], "reg/b:b1", "a failed rollout leaves the last good one");
    run(&mut s, vec![changed(&["b"]), hashed("b", "b3"), built("b", "b3")]);
    let error = "helm upgrade failed: exit status 1\nError: UPGRADE FAILED: another operation is in progress";
    let failed = Event::RolledOut {
        image: "b".into(),
        tag: "b3".into(),
        ok: false,
        took: Duration::from_secs(1),
        at: Instant::now(),
        pod: PodStages::default(),
        reference: "reg/b:b3".into(),
        error: Some(error.into()),
        reason: None,
        undo: vec![],
    };
    assert_eq!(reports(&step(&mut s, failed)), [Report::Failed { image: "b".into(), tag: Some("b3".into()), error: error.into() }]);
    step(&mut s, Event::Reconfigured { rescan: vec![], redeploy: vec![], removed: vec!["a".into()], rules: Rules::new(), plan: Plan::default(), at: Instant::now() });
    assert_eq!(s.references(), want(&[("b", "reg/b:b1")]));
}

/// Failures the core answers by trying again or undoing: a build with no server, a failed rollout.
mod again;
/// What the core has done after a rollout succeeds.
mod after;

mod pods;
/// Many services: triggers, the order of first rollouts, build slots.
mod plan;
