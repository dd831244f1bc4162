//! Custom resources in manifest mode (`[[deploy]] image-paths`, `ready-when`): devloop's references put at the
//! paths the user named, and the rollout judged by a status condition of the object — `True` for the
//! generation devloop applied is ready, `False` is the failure (its reason and message), anything else waits,
//! until `rollout-timeout`. The judging is pure ([`judge`]); [`watch`] reads the object until it decides.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::rollout::{Failure, Verdict};
use crate::config::custom::Segment;
use crate::config::FieldPath;

/// `<group>/<Kind>` of an object, as `image-paths` and `ready-when` are keyed.
pub fn kind_key(v: &Value) -> String {
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    format!("{group}/{}", v["kind"].as_str().unwrap_or_default())
}

/// Puts `subst`'s reference in place of each string at `paths` that names one of devloop's images; returns
/// the references put in.
pub fn substitute(v: &mut Value, paths: &[FieldPath], subst: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut refs = Vec::new();
    for p in paths {
        visit(v, &p.0, &mut |s| {
            if let Some(r) = s.as_str().and_then(subst) {
                *s = Value::String(r.clone());
                refs.push(r);
            }
        });
    }
    refs
}

/// The strings at `paths` under `v` (a chart's custom resource: the chart put the image there), in order.
pub fn images_at(v: &Value, paths: &[FieldPath]) -> Vec<String> {
    let (mut copy, mut out) = (v.clone(), Vec::new());
    for p in paths {
        visit(&mut copy, &p.0, &mut |s| out.extend(s.as_str().map(str::to_string)));
    }
    out
}

/// Calls `f` on every value at `path` under `v`.
fn visit(v: &mut Value, path: &[Segment], f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else { return f(v) };
    match (first, v) {
        (Segment::Key(k), Value::Object(m)) => {
            if let Some(child) = m.get_mut(k) {
                visit(child, rest, f);
            }
        }
        (Segment::All, Value::Array(items)) => items.iter_mut().for_each(|i| visit(i, rest, f)),
        (Segment::Index(n), Value::Array(items)) => {
            if let Some(i) = items.get_mut(*n) {
                visit(i, rest, f);
            }
        }
        _ => {}
    }
}

/// Where a custom resource stands by its `condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Not decided yet: what it waits for.
    Waiting(String),
    /// The condition is `True` for the current generation.
    Ready,
    /// The condition is `False` for the current generation: its reason and message.
    Failed(String, String),
}

/// A generation as controllers write it: a number, or (Argo Rollouts) a number in a string.
fn generation(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Judges `obj` by its `condition`: a controller that has not seen the current generation yet (by
/// `status.observedGeneration`, or the condition's own `observedGeneration`) is waited for, whatever the
/// condition says, since it may still be about the previous template.
pub fn judge(obj: &Value, condition: &str) -> Readiness {
    let current = generation(&obj["metadata"]["generation"]);
    let status = &obj["status"];
    let behind = |seen: Option<i64>| matches!((current, seen), (Some(c), Some(s)) if s < c);
    if behind(generation(&status["observedGeneration"])) {
        return Readiness::Waiting(format!("its controller has not seen generation {} yet", current.unwrap_or_default()));
    }
    let found = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"].as_str() == Some(condition));
    let Some(c) = found else { return Readiness::Waiting(format!("no {condition} condition yet")) };
    if behind(generation(&c["observedGeneration"])) {
        return Readiness::Waiting(format!("its {condition} condition is about an older generation"));
    }
    let (reason, message) = (c["reason"].as_str().unwrap_or_default().to_string(), c["message"].as_str().unwrap_or_default().to_string());
    match c["status"].as_str() {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::Failed(if reason.is_empty() { format!("{condition}=False") } else { reason }, message),
        other => {
            let why = [reason, message].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ");
            Readiness::Waiting(format!("{condition} is {}{}", other.unwrap_or("unset"), if why.is_empty() { String::new() } else { format!(" ({why})") }))
        }
    }
}

/// Reads `name` until [`judge`] decides or `timeout` passes (a timeout fails, saying what it waited for).
pub async fn watch(api: &Api<DynamicObject>, name: &str, condition: &str, timeout: Duration) -> Result<Verdict, kube::Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let obj = api.get(name).await?;
        let value = serde_json::to_value(&obj).unwrap_or_default();
        let waiting = match judge(&value, condition) {
            Readiness::Ready => return Ok(Verdict::Done { ready: 1, timeline: Default::default() }),
            Readiness::Failed(reason, message) => return Ok(Verdict::Failed(failure(reason, message))),
            Readiness::Waiting(w) => w,
        };
        if Instant::now() > deadline {
            let message = format!("{condition} not True after {}: {waiting}", humantime::format_duration(timeout));
            return Ok(Verdict::Failed(failure("Timeout".into(), message)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn failure(reason: String, message: String) -> Failure {
    Failure { pod: None, container: None, reason, message, previous_logs: false, logs: vec![] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "generation": generation}, "status": status})
    }

    #[test]
    fn the_images_at_the_named_paths_are_substituted_and_nothing_else() {
        let mut v = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                           "spec": {"image": "app", "sidecars": [{"image": "app"}, {"image": "envoy"}], "note": "app"}});
        let paths = [FieldPath::parse("spec.image").unwrap(), FieldPath::parse("spec.sidecars[*].image").unwrap(), FieldPath::parse("spec.missing[0].x").unwrap()];
        let refs = substitute(&mut v, &paths, &|i| (i == "app").then(|| "reg/app:t1@sha256:d".to_string()));
        assert_eq!(refs.len(), 2);
        assert_eq!(v["spec"]["image"], "reg/app:t1@sha256:d");
        assert_eq!(v["spec"]["sidecars"], json!([{"image": "reg/app:t1@sha256:d"}, {"image": "envoy"}]));
        assert_eq!(v["spec"]["note"], "app", "only what the paths name");
        assert_eq!(kind_key(&v), "example.com/Widget");
        assert_eq!(images_at(&v, &paths), ["reg/app:t1@sha256:d", "reg/app:t1@sha256:d", "envoy"], "read back, as a chart wrote them");
    }

    #[test]
    fn a_custom_resource_is_ready_when_its_condition_is_true_for_the_applied_generation() {
        let cond = |status: &str, reason: &str| json!({"type": "Ready", "status": status, "reason": reason, "message": "m"});
        let cases = vec![
            (widget(2, json!({})), Readiness::Waiting("no Ready condition yet".into())),
            (widget(2, json!({"observedGeneration": 1, "conditions": [cond("True", "")]})), Readiness::Waiting("its controller has not seen generation 2 yet".into())),
            (widget(2, json!({"observedGeneration": "1", "conditions": [cond("True", "")]})), Readiness::Waiting("its controller has not seen generation 2 yet".into())),
            (widget(2, json!({"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]})), Readiness::Waiting("its Ready condition is about an older generation".into())),
            (widget(2, json!({"observedGeneration": 2, "conditions": [cond("Unknown", "Deploying")]})), Readiness::Waiting("Ready is Unknown (Deploying: m)".into())),
            (widget(2, json!({"observedGeneration": 2, "conditions": [cond("True", "")]})), Readiness::Ready),
            (widget(2, json!({"conditions": [cond("True", "")]})), Readiness::Ready),
            (widget(2, json!({"observedGeneration": 2, "conditions": [cond("False", "ImagePullBackOff")]})), Readiness::Failed("ImagePullBackOff".into(), "m".into())),
        ];
        for (obj, want) in cases {
            assert_eq!(judge(&obj, "Ready"), want, "{obj}");
        }
    }
}
