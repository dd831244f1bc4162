use super::*;

fn changed(images: &[&str]) -> Event {
    Event::Changed { images: images.iter().map(|s| s.to_string()).collect(), at: Instant::now() }
}
fn hashed(image: &str, tag: &str) -> Event {
    Event::Hashed { image: image.into(), tag: tag.into(), took: Duration::from_millis(3) }
}
fn built(image: &str, tag: &str) -> Event {
    Event::Built { image: image.into(), tag: tag.into(), digest: format!("sha256:{tag}"), took: Duration::from_millis(500), steps: (5, 3), cached: false, export: Some(Duration::from_millis(120)) }
}
fn rolled(image: &str, tag: &str, ok: bool) -> Event {
    Event::RolledOut { image: image.into(), tag: tag.into(), ok, took: Duration::from_secs(1), at: Instant::now(), pod: PodStages::default() }
}

/// The actions, without reports, as short strings.
fn acts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Hash(i) => Some(format!("hash {i}")),
            Action::Build { image, tag } => Some(format!("build {image} {tag}")),
            Action::CancelBuild(i) => Some(format!("cancel {i}")),
            Action::Deploy { image, tag, .. } => Some(format!("deploy {image} {tag}")),
            Action::Report(_) => None,
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
    let a = step(&mut s, Event::RolledOut { image: "b".into(), tag: "b2".into(), ok: true, took: Duration::from_secs(1), at: Instant::now(), pod: stages });
    let [Action::Report(Report::Iteration(sum))] = a.as_slice() else { panic!("{a:?}") };
    assert_eq!((sum.image.as_str(), sum.tag.as_str(), sum.steps), ("b", "b2", (5, 3)));
    assert_eq!((sum.hash, sum.build, sum.rollout), (Duration::from_millis(3), Duration::from_millis(500), Duration::from_secs(1)));
    assert_eq!((sum.export, sum.pod), (Some(Duration::from_millis(120)), stages), "where the time went");
    assert_eq!(s.deployed("a"), Some("a1"));
}
