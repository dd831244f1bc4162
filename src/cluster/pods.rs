//! The pods a workload runs, as the layers above pick them.

use k8s_openapi::api::core::v1::Pod;

/// The newest of `pods` that is Ready and not being deleted.
pub fn newest_ready<'a>(pods: impl Iterator<Item = &'a Pod>) -> Option<String> {
    pods.filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .max_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
        .and_then(|p| p.metadata.name.clone())
}
