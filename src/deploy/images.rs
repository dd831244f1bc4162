//! Image references: which references in a manifest or a Deployment are devloop's images, and the one-line
//! explanations of `imagePullPolicy` and `:latest` traps.

use crate::reference::Reference;

/// The repository part of a reference: without `@digest` and without `:tag`.
pub fn repository(reference: &str) -> &str {
    Reference::parse(reference).repository
}

/// Whether `reference` names image `name` as pushed to `host` or pulled from `pull_host`, or the bare name
/// as manifests often write it.
pub fn is_ours(reference: &str, name: &str, host: &str, pull_host: &str) -> bool {
    let repo = repository(reference);
    repo == name || repo == format!("{host}/{name}") || repo == format!("{pull_host}/{name}")
}

/// Whether `rendered` (a reference to the image as a chart or manifest writes it) names the build `deployed`:
/// the same tag, or no tag and the same digest; a digest it has must be the same. A chart may leave the
/// digest out: the content tag still names one build.
pub fn same_build(rendered: &str, deployed: &str) -> bool {
    let (r, d) = (Reference::parse(rendered), Reference::parse(deployed));
    let digest = r.digest.is_none() || r.digest == d.digest;
    let tag = r.tag == d.tag || (r.tag.is_none() && r.digest.is_some());
    r.pinned() && digest && tag
}

/// A one-line explanation for an image reference in a manifest, if it deserves one. `managed` is true for
/// references devloop replaces with `repo:tag@digest`.
pub fn hint(reference: &str, pull_policy: Option<&str>, managed: bool) -> Option<String> {
    if managed {
        return match pull_policy {
            Some("Always") => Some(format!(
                "{reference}: imagePullPolicy Always makes every pod start pull from the registry; devloop deploys \
                 by digest, so IfNotPresent is safe and also works when the registry is briefly unreachable"
            )),
            _ => None,
        };
    }
    let r = Reference::parse(reference);
    if r.tag == Some("latest") || !r.pinned() {
        return Some(format!(
            "{reference}: `:latest` (or no tag) is pulled again on every pod start (imagePullPolicy defaults to \
             Always) and a rebuilt image under the same tag does not roll pods; pin a tag or a digest"
        ));
    }
    None
}

/// What devloop's destination needs of a managed container's `imagePullPolicy`: `wanted` (from
/// [`Destination::pull_policy`](crate::deliver::Destination::pull_policy)) replaces a policy that would pull
/// more eagerly (unset counts as eager: its default depends on the tag), and the hint says why; `None` leaves
/// the container's own policy. Only ever applied to containers whose image devloop manages.
pub fn managed_pull_policy(reference: &str, current: Option<&str>, wanted: Option<&str>, store: &str) -> Option<String> {
    let wanted = wanted?;
    let eagerness = |p: &str| match p {
        "Never" => 0,
        "IfNotPresent" => 1,
        _ => 2,
    };
    if current.is_some_and(|c| eagerness(c) <= eagerness(wanted)) {
        return None;
    }
    let was = current.map_or_else(|| "unset".to_string(), |c| c.to_string());
    let why = if wanted == "Never" {
        "there is no registry to pull it from, and a pull attempt would fail the pod"
    } else {
        "the node's copy must be used rather than a pull from a registry that does not have it"
    };
    Some(format!(
        "{reference}: imagePullPolicy {was} -> {wanted}: the image is in {store}, not in a registry; {why} \
         (devloop sets this only on containers running its images)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_changes_only_where_it_would_pull() {
        let store = "Docker Engine's image store";
        // (current, wanted, changed)
        let table = [
            (None, Some("Never"), true),
            (Some("Always"), Some("Never"), true),
            (Some("IfNotPresent"), Some("Never"), true),
            (Some("Never"), Some("Never"), false),
            (None, Some("IfNotPresent"), true),
            (Some("Always"), Some("IfNotPresent"), true),
            (Some("IfNotPresent"), Some("IfNotPresent"), false),
            (Some("Never"), Some("IfNotPresent"), false),
            (Some("Always"), None, false),
            (None, None, false),
        ];
        for (current, wanted, changed) in table {
            let h = managed_pull_policy("hello:t1", current, wanted, store);
            assert_eq!(h.is_some(), changed, "{current:?} -> {wanted:?}");
            if let Some(h) = h {
                assert!(h.starts_with(&format!("hello:t1: imagePullPolicy {} -> {}", current.unwrap_or("unset"), wanted.unwrap())), "{h}");
                assert!(h.contains(store), "{h}");
            }
        }
    }

    #[test]
    fn repositories_and_ownership() {
        let cases = [
            ("reg:5000/app:v1", "reg:5000/app"),
            ("reg:5000/app@sha256:ab", "reg:5000/app"),
            ("reg:5000/app:v1@sha256:ab", "reg:5000/app"),
            ("reg:5000/app", "reg:5000/app"),
            ("app", "app"),
            ("app:1", "app"),
        ];
        for (r, want) in cases {
            assert_eq!(repository(r), want, "{r}");
        }
        assert!(is_ours("hello", "hello", "h:5000", "p:5000"));
        assert!(is_ours("p:5000/hello:abc@sha256:1", "hello", "h:5000", "p:5000"));
        assert!(is_ours("h:5000/hello", "hello", "h:5000", "p:5000"));
        assert!(!is_ours("h:5000/hello-db:1", "hello", "h:5000", "p:5000"));
        assert!(!is_ours("other/hello:1", "hello", "h:5000", "p:5000"));
    }

    #[test]
    fn a_rendering_names_the_build_by_its_tag_and_any_digest_it_has() {
        let d = "reg/kiamol/bb:abc-kiamol@sha256:1";
        // (rendered, same build)
        let table = [
            ("reg/kiamol/bb:abc-kiamol@sha256:1", true),
            ("reg/kiamol/bb:abc-kiamol", true),
            ("docker.io/kiamol/bb:abc-kiamol", true),
            ("reg/kiamol/bb@sha256:1", true),
            ("reg/kiamol/bb:abc-kiamol-kiamol", false),
            ("reg/kiamol/bb:dev-kiamol", false),
            ("reg/kiamol/bb:abc-kiamol@sha256:2", false),
            ("reg/kiamol/bb@sha256:2", false),
            ("reg/kiamol/bb", false),
        ];
        for (rendered, same) in table {
            assert_eq!(same_build(rendered, d), same, "{rendered}");
        }
    }

    #[test]
    fn hints_explain_latest_and_pull_policy() {
        assert!(hint("redis", None, false).unwrap().contains(":latest"));
        assert!(hint("redis:latest", Some("IfNotPresent"), false).is_some());
        assert_eq!(hint("redis:7.2", None, false), None);
        assert_eq!(hint("redis@sha256:ab", None, false), None);
        assert!(hint("reg/app:t@sha256:1", Some("Always"), true).unwrap().contains("IfNotPresent is safe"));
        assert_eq!(hint("reg/app:t@sha256:1", Some("IfNotPresent"), true), None);
    }
}
