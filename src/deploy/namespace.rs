//! Per-developer namespaces: `{user}` / `{git-user}` in `[kube] namespace` (and `--namespace`), expanded and
//! sanitized to a DNS-1123 label, so two developers sharing a cluster land in different namespaces; creating
//! the namespace on first use with devloop's label, and deleting it in `devloop down` only when that label
//! says devloop created it.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use super::{Error, Target};

/// The label devloop puts on namespaces it creates; `down` deletes only namespaces carrying it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "devloop");
/// The annotation saying who created a namespace, and with which command.
pub const CREATED_BY: &str = "devloop.dev/created-by";

/// A `{placeholder}` in a namespace template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{user}`: the OS user.
    User,
    /// `{git-user}`: the local part of `git config user.email`.
    GitUser,
}

/// Expands the placeholders of `template` with `value` (asked only for those present) and sanitizes the
/// result to a DNS-1123 label. Err: what is wrong, for a message naming the key.
pub fn expand(template: &str, value: &dyn Fn(Placeholder) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{template}`: `{{` without a closing `}}`"))?;
        let p = match &after[..close] {
            "user" => Placeholder::User,
            "git-user" => Placeholder::GitUser,
            other => return Err(format!("`{template}`: unknown placeholder `{{{other}}}` (known: {{user}}, {{git-user}})")),
        };
        out.push_str(&value(p)?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let label = sanitize(&out);
    if label.is_empty() {
        return Err(format!("`{template}` expands to `{out}`, which leaves no valid namespace name ([a-z0-9-])"));
    }
    Ok(label)
}

/// A DNS-1123 label from `s`: lower case, every other character than `[a-z0-9-]` as `-`, at most 63
/// characters, no leading or trailing `-`. May be empty.
pub fn sanitize(s: &str) -> String {
    let mapped: String =
        s.chars().map(|c| c.to_ascii_lowercase()).map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).collect();
    let mapped: String = mapped.chars().take(63).collect();
    mapped.trim_matches('-').to_string()
}

/// A DNS-1123 label (namespaces, Deployment names for services): `[a-z0-9-]`, at most 63, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (pods, Deployments, Secrets): dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The OS user: `$USER`, else the name of the process's uid.
pub fn os_user() -> Option<String> {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return Some(u);
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied out at once, and
    // nothing else in devloop calls the getpw* family concurrently.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()).filter(|u| !u.is_empty())
    }
}

/// The local part of `git config user.email`, read in `dir` (so a repository's own setting counts).
pub fn git_user(dir: &Path) -> Result<String, String> {
    let out = std::process::Command::new("git")
        .args(["config", "user.email"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{{git-user}}: cannot run `git config user.email`: {e}"))?;
    let email = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match email.split('@').next() {
        Some(local) if out.status.success() && !local.is_empty() => Ok(local.to_string()),
        _ => Err(format!("{{git-user}}: `git config user.email` in {} gives no address; set it, or use {{user}}", dir.display())),
    }
}

/// [`expand`] with the real OS user and the git user of `dir`.
pub fn resolve(template: &str, dir: &Path) -> Result<String, String> {
    expand(template, &|p| match p {
        Placeholder::User => os_user().ok_or_else(|| "{user}: neither $USER nor the uid's name is known".to_string()),
        Placeholder::GitUser => git_user(dir),
    })
}

/// Creates the target's namespace when it does not exist, labelled as devloop's and annotated with who
/// created it and how (`command`). Some(message) when it was created; a namespace that exists is left as it
/// is. A namespace devloop may not read (RBAC) is assumed to exist: creating it would be refused too.
pub async fn ensure(t: &Target, command: &str) -> Result<Option<String>, Error> {
    let api: Api<Namespace> = Api::all(t.client.clone());
    let ns = &t.namespace;
    match api.get_opt(ns).await {
        Ok(Some(_)) => return Ok(None),
        Ok(None) => {}
        Err(kube::Error::Api(e)) if e.code == 403 => return Ok(None),
        Err(e) => return Err(Error::Api { what: format!("reading namespace {ns}"), source: e }),
    }
    let who = os_user().unwrap_or_else(|| "unknown user".into());
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": ns,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
            "annotations": {CREATED_BY: format!("{who} with `devloop {command}`")},
        }
    }))
    .expect("a namespace");
    match api.create(&PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..Default::default() }, &obj).await {
        Ok(_) => Ok(Some(format!("namespace {ns} created (context {}, labelled {}={})", t.context, MANAGED_BY.0, MANAGED_BY.1))),
        // Created meanwhile by someone else: theirs, not devloop's.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(Error::Api { what: format!("creating namespace {ns}"), source: e }),
    }
}

/// What `down` did with the target's namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    /// It carried devloop's label: deletion was asked for.
    Deleted,
    /// It exists without devloop's label: kept.
    Kept,
    /// It does not exist.
    Absent,
}

/// Deletes the target's namespace if devloop created it (it carries [`MANAGED_BY`]).
pub async fn delete_if_ours(t: &Target) -> Result<Down, Error> {
    let api: Api<Namespace> = Api::all(t.client.clone());
    let ns = &t.namespace;
    let Some(found) = api.get_opt(ns).await.map_err(super::Error::api(format!("reading namespace {ns}")))? else {
        return Ok(Down::Absent);
    };
    let ours = found.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY.0)).is_some_and(|v| v == MANAGED_BY.1);
    if !ours {
        return Ok(Down::Kept);
    }
    match api.delete(ns, &Default::default()).await {
        Ok(_) => Ok(Down::Deleted),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Down::Absent),
        Err(e) => Err(Error::Api { what: format!("deleting namespace {ns}"), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_sanitize_to_a_dns_label() {
        let values = |p: Placeholder| -> Result<String, String> {
            Ok(match p {
                Placeholder::User => "Alice".into(),
                Placeholder::GitUser => "bob.smith+dev".into(),
            })
        };
        let long = "x".repeat(70);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("dev-{user}", Ok("dev-alice")),
            ("dev-{git-user}", Ok("dev-bob-smith-dev")),
            ("{user}-{git-user}", Ok("alice-bob-smith-dev")),
            ("plain", Ok("plain")),
            ("Team_A.{user}", Ok("team-a-alice")),
            ("-{user}-", Ok("alice")),
            (&long, Ok(&long[..63])),
            ("dev-{host}", Err("unknown placeholder `{host}`")),
            ("dev-{user", Err("without a closing")),
            ("---", Err("no valid namespace name")),
            ("ü", Err("no valid namespace name")),
        ];
        for (template, want) in cases {
            let got = expand(template, &values);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{template}"),
                Err(w) => assert!(got.as_ref().is_err_and(|e| e.contains(w)), "{template}: {got:?}"),
            }
        }
    }

    #[test]
    fn truncation_does_not_leave_a_trailing_dash_and_lookups_are_lazy() {
        assert_eq!(sanitize(&format!("{}-tail", "a".repeat(62))), "a".repeat(62));
        assert_eq!(sanitize("ÄBC"), "bc");
        // {git-user} is not asked for (no git run) when the template does not name it.
        let only_user = |p: Placeholder| match p {
            Placeholder::User => Ok("u".to_string()),
            Placeholder::GitUser => Err("git asked".to_string()),
        };
        assert_eq!(expand("dev-{user}", &only_user).unwrap(), "dev-u");
        assert_eq!(expand("dev-{git-user}", &only_user).unwrap_err(), "git asked");
        // An empty value expands to nothing, and a template left empty is refused.
        let empty = |_: Placeholder| Ok(String::new());
        assert!(expand("{user}", &empty).is_err());
    }
}
