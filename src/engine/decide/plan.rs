//! Many services under one `up`: which images wait for a trigger, which roll out first, and how many build at
//! once. All three are the core's decisions, over the same state as the rest:
//!
//! - **Manual trigger** (`trigger = "manual"`): once the image's first hash of the session is in, a change is
//!   held (noted, counted, shown) instead of hashed; [`Event::Trigger`] hands what was held to the usual path,
//!   so a held save that sync rules cover is still synced rather than built.
//! - **Order of the first rollout** (`depends-on`): a built image whose dependencies have not yet rolled out
//!   successfully in this session waits, built, and rolls out as soon as the last of them has. Only the
//!   first rollout waits: later saves never serialize behind another image.
//! - **Build slots** (`[buildkit] parallel`): at most that many builds at once, the rest queued in the order
//!   they came; a superseded queued build is replaced in place, a cancelled one dropped.

use super::*;

/// How the session's images relate, from the config: set at the start and again on every reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Images built only when asked.
    pub manual: BTreeSet<String>,
    /// Per image, the images whose first rollout comes before its own (only images of this session).
    pub depends: BTreeMap<String, Vec<String>>,
    /// Builds at once; 0: no limit.
    pub parallel: usize,
    /// Images of each name kept in the node's store the images are loaded into, pruned after each new
    /// rollout ([`Action::Prune`]); 0: never pruned (images pushed to a registry, or `keep = 0`).
    pub keep: usize,
}

/// Whether a change to `image` is held for a trigger (or, paused, until resumed) rather than acted on.
pub(super) fn holds(state: &State, image: &str) -> bool {
    state.images.get(image).is_some_and(|s| s.disk.is_some() && (s.paused || state.plan.manual.contains(image)))
}

/// Holds a change to a manual image (see [`holds`]) and says what waits.
pub(super) fn hold(state: &mut State, image: String, scope: Scope, outside: bool, out: &mut Vec<Action>) {
    let Some(s) = state.images.get_mut(&image) else { return };
    match &mut s.held {
        Some(h) => h.merge(scope),
        None => s.held = Some(scope),
    }
    s.held_outside |= outside;
    let changes = held_count(s);
    out.push(Action::Report(Report::Held { image, changes, paused: s.paused }));
}

/// Paths held (0: everything, a rescan).
pub(super) fn held_count(s: &ImageState) -> usize {
    match &s.held {
        Some(Scope::Paths(p)) => p.len().max(1),
        _ => 0,
    }
}

/// Takes what the image holds: the change, whether inputs outside the context changed too, and how many
/// paths that is ([`held_count`]); none when nothing is held.
pub(super) fn take_held(s: &mut ImageState) -> Option<(Scope, bool, usize)> {
    let changes = held_count(s);
    let scope = s.held.take()?;
    Some((scope, std::mem::take(&mut s.held_outside), changes))
}

/// What a trigger releases: per image, the held change (a rescan when nothing was held: a trigger looks
/// again) and whether inputs outside the context changed. `images` empty: every image holding a change.
pub(super) fn trigger(state: &mut State, images: Vec<String>, out: &mut Vec<Action>) -> Vec<(String, Scope, bool)> {
    let images: Vec<String> = if images.is_empty() {
        // A paused image keeps what it holds until it is resumed or named.
        state.images.iter().filter(|(_, s)| s.held.is_some() && !s.paused).map(|(i, _)| i.clone()).collect()
    } else {
        images.into_iter().filter(|i| state.images.contains_key(i)).collect()
    };
    if images.is_empty() {
        out.push(Action::Report(Report::NothingToTrigger));
    }
    let mut released = Vec::new();
    for image in images {
        let Some(s) = state.images.get_mut(&image) else { continue };
        let held = take_held(s);
        let changes = held.as_ref().map(|h| h.2);
        let (scope, outside) = held.map_or((Scope::Rescan, false), |(scope, outside, _)| (scope, outside));
        out.push(Action::Report(Report::Triggered { image: image.clone(), changes }));
        released.push((image, scope, outside));
    }
    released
}

/// A new plan (a reload): changes held for an image no longer manual are released at once (a paused image
/// keeps holding them until it is resumed).
pub(super) fn replan(state: &mut State, plan: Plan) -> Vec<(String, Scope, bool)> {
    state.plan = plan;
    let manual = &state.plan.manual;
    let mut released = Vec::new();
    for (image, s) in state.images.iter_mut().filter(|(i, s)| !manual.contains(*i) && !s.paused) {
        if let Some((scope, outside, _)) = take_held(s) {
            released.push((image.clone(), scope, outside));
        }
    }
    released
}

/// The dependencies `image` still waits for before its first rollout (none once it has rolled out).
pub(super) fn waits_for(state: &State, image: &str) -> Vec<String> {
    if state.images.get(image).is_some_and(|s| s.served) {
        return Vec::new();
    }
    let deps = state.plan.depends.get(image).into_iter().flatten();
    deps.filter(|d| !state.images.get(*d).is_some_and(|s| s.served)).cloned().collect()
}

/// Built images waiting for their dependencies roll out once none is left to wait for.
pub(super) fn release(state: &mut State, at: Instant, out: &mut Vec<Action>) {
    let gated: Vec<String> = state.images.iter().filter(|(_, s)| !s.gated.is_empty()).map(|(i, _)| i.clone()).collect();
    for image in gated {
        let waits = waits_for(state, &image);
        let s = state.images.get_mut(&image).expect("listed");
        let done = waits.is_empty();
        s.gated = waits;
        if !done {
            continue;
        }
        if s.deploying.is_some() {
            continue;
        }
        if let Some((tag, digest)) = s.queued.take().filter(|(t, _)| s.disk.as_ref() == Some(t)) {
            s.started.get_or_insert(at);
            rollout::deploy(s, image, tag, digest, out);
        }
    }
}

/// Keeps the builds of this step's actions within the limit: a build beyond it waits for a slot (reported),
/// and a slot freed by a build that ended goes to the build that has waited longest.
pub(super) fn admit(state: &mut State, out: &mut Vec<Action>) {
    let limit = state.plan.parallel;
    if limit == 0 {
        return;
    }
    let images = &mut state.images;
    // A queued build never started: there is nothing to cancel.
    let started = state.slots.clone();
    out.retain(|a| !matches!(a, Action::CancelBuild(i) if !started.contains(i)));
    // A slot is held from the build's start to its end; a superseding build of the same image keeps it.
    state.slots.retain(|i| images.get(i).is_some_and(|s| s.building.is_some() && s.slot_wait.is_none()));
    for s in images.values_mut() {
        // A queued build superseded or cancelled meanwhile is not started.
        if s.slot_wait.as_ref().is_some_and(|(tag, ..)| s.building.as_ref() != Some(tag)) {
            s.slot_wait = None;
        }
    }
    let mut kept = Vec::with_capacity(out.len());
    for a in out.drain(..) {
        let Action::Build { image, tag, filter, after, force } = a else {
            kept.push(a);
            continue;
        };
        if state.slots.contains(&image) || state.slots.len() < limit {
            state.slots.insert(image.clone());
            if let Some(s) = images.get_mut(&image) {
                s.slot_wait = None;
            }
            kept.push(Action::Build { image, tag, filter, after, force });
            continue;
        }
        let Some(s) = images.get_mut(&image) else { continue };
        s.slot_wait = Some((tag.clone(), filter, after, force));
        // It is not building yet: said when it starts.
        kept.retain(|a| !matches!(a, Action::Report(Report::Building { image: i, .. }) if *i == image));
        if !state.waiting.contains(&image) {
            state.waiting.push_back(image.clone());
        }
        kept.push(Action::Report(Report::QueuedBuild { image, tag, running: state.slots.len(), limit }));
    }
    *out = kept;
    while state.slots.len() < limit {
        let Some(image) = state.waiting.pop_front() else { break };
        let Some(s) = images.get_mut(&image) else { continue };
        let Some((tag, filter, after, force)) = s.slot_wait.take() else { continue };
        state.slots.insert(image.clone());
        out.push(Action::Report(Report::Building { image: image.clone(), tag: tag.clone() }));
        out.push(Action::Build { image, tag, filter, after, force });
    }
}
