//! Which kube contexts devloop may deploy to. Checked before any request is sent: a dev loop must never
//! roll pods on the wrong cluster.

/// Context names of local clusters, always allowed (`*` matches any suffix).
pub const BUILTIN_LOCAL: &[&str] =
    &["devloop-local", "kind-*", "k3d-*", "minikube", "docker-desktop", "rancher-desktop", "orbstack", "colima"];

/// The context is not allow-listed.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to deploy to kube context `{context}`: it is not a known local cluster and not allow-listed\n  \
     to allow it, add it to devloop.toml:  [kube] allow-contexts = [\"{context}\"]\n  \
     or pass --allow-context {context} (local names always allowed: {builtin})"
)]
pub struct NotAllowed {
    /// The refused context.
    pub context: String,
    builtin: String,
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
        }
    }
}

/// Ok when `context` is a built-in local name or matches one of `allowed`.
pub fn check(context: &str, allowed: &[String]) -> Result<(), NotAllowed> {
    let ok = BUILTIN_LOCAL.iter().copied().chain(allowed.iter().map(String::as_str)).any(|p| matches(p, context));
    if ok {
        Ok(())
    } else {
        Err(NotAllowed { context: context.to_string(), builtin: BUILTIN_LOCAL.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_and_allow_list() {
        // (context, allow-list, allowed?)
        let cases: &[(&str, &[&str], bool)] = &[
            ("devloop-local", &[], true),
            ("kind-dev", &[], true),
            ("k3d-x", &[], true),
            ("minikube", &[], true),
            ("kind", &[], false),
            ("prod-eu", &[], false),
            ("prod-eu", &["prod-eu"], true),
            ("lab-3", &["lab-*"], true),
            ("my-minikube", &[], false),
            ("", &[], false),
        ];
        for (ctx, allow, want) in cases {
            let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
            assert_eq!(check(ctx, &allow).is_ok(), *want, "{ctx} with {allow:?}");
        }
        let msg = check("prod-eu", &[]).unwrap_err().to_string();
        assert!(msg.contains("allow-contexts = [\"prod-eu\"]") && msg.contains("--allow-context prod-eu"), "{msg}");
    }
}
