//! The simulated team of benches/team.rs, short: two developers (Kubernetes users with the team's roles),
//! each running `devloop up` on their own copy of examples/hello under the same image name in `dev-{user}`,
//! sharing one in-cluster BuildKit and the authenticated registry, each saving every 3 s (±50 %) for 30 s.
//! Asserts isolation only, not timing: every save is served through the developer's own port-forward, each
//! namespace runs only that developer's builds, and no developer's build was cancelled by the other's.

#[path = "../benches/common/mod.rs"]
mod bench;
use bench::team::{install_buildkit, run, Sim};
use std::time::Duration;

/// The BuildKit namespace, deleted (without waiting) when dropped, also after a failure.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kubectl").args(["delete", "namespace", &self.0, "--wait=false"]).output();
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn two_developers_saving_at_once_see_only_their_own_builds() {
    let nonce = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() & 0xffffff);
    let bk = Namespace(format!("teamsim-bk-{nonce}"));
    install_buildkit(&bk.0, 1);
    let f = run(&Sim { k: 2, seconds: 30, every: Duration::from_secs(3), bk: bk.0.clone(), nonce });
    assert_eq!(f.devs.len(), 2);
    for d in &f.devs {
        assert!(d.saves >= 3, "{}: only {} saves in 30 s", d.user, d.saves);
        assert!(d.unserved.is_empty(), "{}: saves never served through their forward: {:?}", d.user, d.unserved);
        assert_eq!(d.served.len(), d.saves, "{}", d.user);
        assert!(d.images >= 1, "{}: no pod found in their namespace to check", d.user);
        assert!(d.foreign.is_empty(), "{}: pods running images that are not theirs: {:?}", d.user, d.foreign);
        assert!(d.crossings.is_empty(), "{}: builds cancelled without a newer save of theirs: {:?}", d.user, d.crossings);
        assert!(d.failures.is_empty(), "{}: {:?}", d.user, d.failures);
        // One iteration per save at least (and the first): the check above compared pods with real builds.
        assert!(d.tags.len() > d.saves, "{}: {} iterations for {} saves", d.user, d.tags.len(), d.saves);
    }
    // Same image name, different content: no tag is both developers'.
    let (a, b) = (&f.devs[0].tags, &f.devs[1].tags);
    assert!(a.iter().all(|t| !b.contains(t)), "shared tags: {a:?} {b:?}");
}
