//! Which BuildKit replica builds an image, when BuildKit runs as a StatefulSet of several (`devloop buildkit
//! install --replicas N`): rendezvous (highest random weight) hashing of the image name over the replicas'
//! stable names. Each replica keeps its own cache, so an image always goes to the same one (its *home*) while
//! the set is the same; a replica that is not Ready lends its images to the one that ranks next for each
//! (only its own images move), and they go home when it is Ready again.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// One replica as the choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its pod's name (`buildkitd-1`).
    pub name: String,
    /// Ready and not being deleted.
    pub ready: bool,
    /// When not Ready, what state it is in (`no pod`, `Pending, ContainerCreating`, …).
    pub state: String,
}

/// Where an image builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The replica the image belongs to.
    pub home: String,
    /// The replica it builds on now: `home` unless that is not Ready.
    pub on: String,
    /// Why it is not home: the home's state.
    pub why: Option<String>,
}

/// The pod names of StatefulSet `name` with `count` replicas: `name-0` … `name-(count-1)`.
pub fn names(name: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{name}-{i}")).collect()
}

/// The weight of `replica` for `image`: the first 8 bytes of SHA-256 over both (stable across runs,
/// platforms and versions of devloop, unlike std's hasher).
fn weight(image: &str, replica: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(replica.as_bytes());
    h.update([0]);
    h.update(image.as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// The highest-weighted of `candidates` for `image` (ties, never seen in practice, go to the smaller name).
fn best<'a>(image: &str, candidates: impl Iterator<Item = &'a Replica>) -> Option<&'a Replica> {
    candidates.max_by(|a, b| weight(image, &a.name).cmp(&weight(image, &b.name)).then_with(|| b.name.cmp(&a.name)))
}

/// Where `image` builds among `replicas`: its home is the best of all of them, Ready or not (so it does not
/// change while a replica restarts); it builds there when that is Ready, else on the best Ready one. None
/// when no replica is Ready.
pub fn choose(image: &str, replicas: &[Replica]) -> Option<Placement> {
    let home = best(image, replicas.iter())?;
    let on = best(image, replicas.iter().filter(|r| r.ready))?;
    let why = (on.name != home.name).then(|| home.state.clone());
    Some(Placement { home: home.name.clone(), on: on.name.clone(), why })
}

/// The line to say when `image`'s build moves away from its home or back, once per move: `moved` holds,
/// per image, the home it was moved away from (kept by the caller across builds).
pub fn notice(image: &str, moved: &mut BTreeMap<String, String>, p: &Placement) -> Option<String> {
    if p.on != p.home {
        if moved.get(image) == Some(&p.home) {
            return None;
        }
        moved.insert(image.to_string(), p.home.clone());
        let why = p.why.as_deref().unwrap_or("not ready");
        return Some(format!("{image}: {} is not ready ({why}): building on {} until it is back", p.home, p.on));
    }
    match moved.remove(image) {
        Some(h) if h == p.home => Some(format!("{image}: {} is Ready again: building on it", p.home)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize, down: &[usize]) -> Vec<Replica> {
        names("buildkitd", n)
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let ready = !down.contains(&i);
                Replica { name, ready, state: if ready { String::new() } else { "Pending, ContainerCreating".into() } }
            })
            .collect()
    }

    fn images() -> Vec<String> {
        (0..200).map(|i| format!("svc-{i}")).collect()
    }

    #[test]
    fn an_image_has_one_home_and_the_images_spread_over_the_replicas() {
        let three = set(3, &[]);
        let mut per = BTreeMap::<String, usize>::new();
        for img in images() {
            let p = choose(&img, &three).unwrap();
            assert_eq!(p.on, p.home);
            assert_eq!(p.why, None);
            assert_eq!(choose(&img, &three), Some(p.clone()), "the same answer every time");
            *per.entry(p.home).or_default() += 1;
        }
        assert_eq!(per.len(), 3, "{per:?}");
        assert!(per.values().all(|&n| n > 40), "roughly even: {per:?}");
        // The order the replicas are listed in does not matter.
        let mut reversed = three.clone();
        reversed.reverse();
        assert!(images().iter().all(|i| choose(i, &three) == choose(i, &reversed)));
    }

    #[test]
    fn a_replica_that_is_not_ready_lends_only_its_own_images_and_they_come_back() {
        let all = set(3, &[]);
        let one_down = set(3, &[1]);
        for img in images() {
            let before = choose(&img, &all).unwrap();
            let during = choose(&img, &one_down).unwrap();
            assert_eq!(during.home, before.home, "the home stays while a replica restarts");
            if before.home == "buildkitd-1" {
                assert_ne!(during.on, "buildkitd-1");
                assert_eq!(during.why.as_deref(), Some("Pending, ContainerCreating"));
            } else {
                assert_eq!(during, before, "{img}: an image of another replica does not move");
            }
        }
        assert_eq!(choose("api", &set(2, &[0, 1])), None, "nothing Ready");
        assert_eq!(choose("api", &[]), None);
    }

    #[test]
    fn a_move_and_the_return_are_said_once_each() {
        let img = images().into_iter().find(|i| choose(i, &set(2, &[])).unwrap().home == "buildkitd-1").unwrap();
        let mut moved = BTreeMap::new();
        let home = choose(&img, &set(2, &[])).unwrap();
        let away = choose(&img, &set(2, &[1])).unwrap();
        assert_eq!(notice(&img, &mut moved, &home), None, "at home: nothing to say");
        assert_eq!(
            notice(&img, &mut moved, &away).as_deref(),
            Some(&*format!("{img}: buildkitd-1 is not ready (Pending, ContainerCreating): building on buildkitd-0 until it is back"))
        );
        assert_eq!(notice(&img, &mut moved, &away), None, "said once");
        assert_eq!(notice(&img, &mut moved, &home).as_deref(), Some(&*format!("{img}: buildkitd-1 is Ready again: building on it")));
        assert_eq!(notice(&img, &mut moved, &home), None, "said once");
    }

    #[test]
    fn weights_are_fixed_across_versions() {
        // The mapping must not change with a new devloop (each replica's cache would be lost to its images):
        // SHA-256 of `replica NUL image`, first 8 bytes big-endian (computed apart, with Python's hashlib).
        assert_eq!(weight("api", "buildkitd-0"), 0x02236de5233ba1b0);
        let homes: Vec<String> = ["api", "web", "worker", "db"].iter().map(|i| choose(i, &set(2, &[])).unwrap().home).collect();
        assert_eq!(homes, ["buildkitd-1", "buildkitd-1", "buildkitd-0", "buildkitd-0"]);
    }
}
