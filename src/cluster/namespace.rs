//! Per-developer namespaces: the placeholders of `[kube] namespace` (and `--namespace`) filled in from the
//! process's world (the OS user, the repository's git user; the expansion itself is
//! [`crate::config::names::expand`]), so two developers sharing a cluster land in different namespaces;
//! creating the namespace on first use with devloop's label, and deleting it in `devloop down` only when
//! that label says devloop created it.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use super::{Error, Target};
use crate::config::names::{expand, Placeholder};

/// The label devloop puts on namespaces it creates; `down` deletes only namespaces carrying it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "devloop");
/// The annotation saying who created a namespace, and with which command.
pub const CREATED_BY: &str = "devloop.dev/created-by";

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
