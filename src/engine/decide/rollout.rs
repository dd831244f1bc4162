//! What a rollout's end means: a success is the iteration's end (or, after a crash, the tag put back), a
//! failure is reported once and undone where its deployers can; a crash soon after a success is taken for
//! its failure. One rollout per image at a time: what was built meanwhile goes next.

use super::*;

/// A rollout ended, was undone, or its pods crashed afterwards.
pub(super) fn step(state: &mut State, event: Event, out: &mut Vec<Action>) {
    match event {
        Event::Undone { image, tag, ok: _, at } => {
            let Some(s) = state.images.get_mut(&image) else { return };
            if !s.undoing || s.deploying.as_ref() != Some(&tag) {
                return;
            }
            // What it said is said; the failure was reported already. One rollout at a time: the next one now.
            (s.undoing, s.deploying) = (false, None);
            if let Some((next, digest)) = s.queued.take().filter(|(next, _)| s.disk.as_ref() == Some(next)) {
                s.started = Some(at);
                deploy(s, image, next, digest, out);
            }
        }
        Event::RolledOut { image, tag, ok, took, at, pod, reference, error, reason, undo } => {
            let (warm, newest) = (state.rules.contains_key(&image), state.plan.keep);
            let Some(s) = state.images.get_mut(&image) else { return };
            if s.deploying.as_ref() != Some(&tag) || s.undoing {
                return;
            }
            s.deploying = None;
            let digest = s.deploying_digest.take().unwrap_or_default();
            if ok {
                out.push(Action::ReplaceStale { image: image.clone(), reference: reference.clone(), warm });
                s.running = Some(reference);
                s.served = true;
            }
            let was_rollback = std::mem::take(&mut s.rolling_back);
            if ok && was_rollback {
                // Not an iteration: the crash was the news, and a change may be on its way meanwhile.
                s.deployed = Some(tag.clone());
                s.live.rolled_out();
                (s.good, s.rolled_at) = (Some((tag.clone(), digest)), Some(at));
                out.push(Action::Report(Report::RolledBack { image: image.clone(), tag }));
                if let Some((next, digest)) = s.queued.take().filter(|(next, _)| s.disk.as_ref() == Some(next)) {
                    deploy(s, image, next, digest, out);
                }
                return;
            }
            if ok {
                s.deployed = Some(tag.clone());
                s.live.rolled_out();
                s.live.reroll = false;
                if s.good.as_ref().is_none_or(|(g, _)| *g != tag) {
                    s.fallback = s.good.take();
                }
                (s.good, s.rolled_at) = (Some((tag.clone(), digest)), Some(at));
                let mut summary = std::mem::take(&mut s.summary);
                summary.image = image.clone();
                summary.tag = tag.clone();
                summary.rollout = took;
                summary.pod = pod;
                summary.total = s.started.map_or(took, |t0| at.saturating_duration_since(t0));
                out.push(Action::Report(Report::Iteration(summary)));
                if newest > 0 {
                    // Never what a crash would roll back to, nor what is built or being built to go next.
                    let next = s.queued.iter().map(|(t, _)| t).chain(&s.building);
                    let keep = s.fallback.iter().map(|(t, _)| t).chain(next).chain([&tag]).cloned().collect();
                    out.push(Action::Prune { image: image.clone(), newest, keep });
                }
            } else {
                // The Deployment now asks for `tag`, whatever its pods run: going back to the last good content
                // must deploy that again, not be taken for "unchanged".
                s.deployed = None;
                s.summary = Summary::default();
                // One report: the deploy's own error when it has one (every line of it), else the rollout's.
                out.push(Action::Report(match error {
                    Some(error) => Report::Failed { image: image.clone(), tag: Some(tag.clone()), error },
                    None => Report::RolloutFailed { image: image.clone(), tag: tag.clone(), reason },
                }));
                // Undone where its deployers can, before anything else rolls out — but not a rollout that
                // was itself the rollback after a crash: undoing it would put back what crashed.
                if !undo.is_empty() && !was_rollback {
                    (s.deploying, s.undoing, s.started) = (Some(tag.clone()), true, None);
                    out.push(Action::RollBack { image, tag, undo });
                    return;
                }
            }
            s.started = None;
            if let Some((next, digest)) = s.queued.take() {
                if s.disk.as_ref() == Some(&next) {
                    s.started = Some(at);
                    deploy(s, image, next, digest, out);
                }
            }
        }
        Event::Crashed { image, tag, error, at, rollback } => crashed(state, image, tag, error, at, rollback, out),
        _ => unreachable!("only a rollout's end comes here"),
    }
}

/// Rolls the image out to `tag`.
pub(super) fn deploy(s: &mut ImageState, image: String, tag: String, digest: String, out: &mut Vec<Action>) {
    s.deploying = Some(tag.clone());
    s.deploying_digest = Some(digest.clone());
    s.deploy_retries = 0;
    out.push(Action::Deploy { image, tag, digest, after: Duration::ZERO });
}

/// Pods of `tag` crashed after its rollout succeeded. Only the tag the image runs, with no rollout under way
/// (that one replaces these pods), and once: a crash loop is one report. The Deployment then asks for a tag
/// that does not work, so the next save deploys even the same content again (as after a failed rollout); a
/// crash within [`ROLLOUT_CRASH_WINDOW`] puts the last good tag back when `rollback`.
fn crashed(state: &mut State, image: String, tag: String, error: String, at: Instant, rollback: bool, out: &mut Vec<Action>) {
    let Some(s) = state.images.get_mut(&image) else { return };
    if s.deployed.as_ref() != Some(&tag) || s.deploying.is_some() {
        return;
    }
    s.deployed = None;
    let after = s.rolled_at.map_or(Duration::ZERO, |t| at.saturating_duration_since(t));
    let late = after >= ROLLOUT_CRASH_WINDOW;
    // `tag` is no good: the last good one is what a later crash falls back to.
    s.good = s.fallback.take().filter(|(t, _)| *t != tag);
    let back = s.good.clone().filter(|_| rollback && !late);
    out.push(Action::Report(Report::Crashed { image: image.clone(), tag, error, after, rollback: back.as_ref().map(|b| b.0.clone()), late }));
    if let Some((tag, digest)) = back {
        s.good = None; // good again once it is back
        s.rolling_back = true;
        deploy(s, image, tag, digest, out);
    }
}

