//! The authenticated registry end to end on the real stack (10.201.0.2:5443: htpasswd Basic auth, TLS from
//! the stack's CA): credentials come from a real credential helper (`credsStore` in a temp DOCKER_CONFIG,
//! a `docker-credential-devloop-test` script on PATH answering from the stack's password file), the
//! manifest check and BuildKit's push use them, and `[registry] pull-secret = true` makes the kubelet pull
//! with a Secret devloop keeps — in patch mode and manifest mode. No output may contain the password.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The Secret name `pull-secret = true` gives the stack's authenticated registry.
fn secret_name() -> String {
    let host = env("DEVLOOP_STACK_AUTH_REGISTRY");
    format!("devloop-registry-{}", host.replace(['.', ':'], "-"))
}

fn password() -> String {
    std::fs::read_to_string(env("DEVLOOP_STACK_AUTH_PASSWORD_FILE")).unwrap().trim().to_string()
}

fn assert_no_password(text: &str) {
    assert!(!text.contains(&password()), "the registry password was printed:\n{text}");
}

/// A Docker config directory and a PATH with the credential helper it names.
struct Creds {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Creds {
    /// `config.json` with `json`; a `docker-credential-devloop-test` script that knows the stack's
    /// authenticated registry only.
    fn new(json: &str) -> Creds {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(dir.path().join("docker/config.json"), json).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let helper = dir.path().join("bin/docker-credential-devloop-test");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n\
             if [ \"$server\" = \"{reg}\" ]; then\n  \
               printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" \"{user}\" \"$(cat '{pw}')\"\n\
             else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
            reg = env("DEVLOOP_STACK_AUTH_REGISTRY"),
            user = env("DEVLOOP_STACK_AUTH_USER"),
            pw = env("DEVLOOP_STACK_AUTH_PASSWORD_FILE"),
        );
        std::fs::write(&helper, script).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = PathBuf::from(format!("{}:{}", dir.path().join("bin").display(), std::env::var("PATH").unwrap()));
        Creds { dir, path }
    }

    /// The credentials only through the helper (`credsStore`).
    fn helper() -> Creds {
        Creds::new(r#"{"credsStore": "devloop-test"}"#)
    }

    /// `devloop ARGS` in `p` with this Docker config and PATH; (success, stdout, stderr), none of which may
    /// contain the password.
    fn devloop(&self, p: &Project, args: &[&str]) -> (bool, String, String) {
        let docker = self.dir.path().join("docker");
        let envs: [(&str, &Path); 2] = [("DOCKER_CONFIG", &docker), ("PATH", &self.path)];
        let out = p.devloop_at(p.dir.path(), args, &envs);
        let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_no_password(&o);
        assert_no_password(&e);
        (out.status.success(), o, e)
    }

    fn ok(&self, p: &Project, args: &[&str]) -> String {
        let (ok, o, e) = self.devloop(p, args);
        assert!(ok, "devloop {args:?} failed:\n{o}\n{e}");
        o
    }
}

/// devloop.toml for the authenticated registry: the stack's buildkitd (which trusts the CA), the base image
/// from the plain registry, `pull-secret = true`, and `rest` (kube and deploy tables).
fn auth_config(p: &Project, rest: &str) {
    auth_config_with(p, "true", rest)
}

/// [`auth_config`] with `pull-secret = <pull_secret>`.
fn auth_config_with(p: &Project, pull_secret: &str, rest: &str) {
    let cfg = format!(
        "[buildkit]\naddr = \"{bk}\"\n[registry]\nhost = \"{reg}\"\nca = \"{ca}\"\npull-secret = {pull_secret}\n\
         [[image]]\nname = \"{name}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{plain}\" }}\n{rest}",
        bk = env("BUILDKIT_HOST"),
        reg = env("DEVLOOP_STACK_AUTH_REGISTRY"),
        ca = env("DEVLOOP_STACK_CA"),
        name = p.name,
        plain = env("DEVLOOP_REGISTRY"),
    );
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
}

/// The names in a pod spec's imagePullSecrets (`what`: `deployment/x` template, or `pod/x`).
fn pull_secrets(ns: &str, what: &str) -> Vec<String> {
    let path = if what.starts_with("pod/") { "{.spec.imagePullSecrets[*].name}" } else { "{.spec.template.spec.imagePullSecrets[*].name}" };
    kubectl(&["-n", ns, "get", what, "-o", &format!("jsonpath={path}")]).split_whitespace().map(str::to_string).collect()
}

/// The Secret is devloop's dockerconfigjson for the pull host, holding the registry's user (never printed).
fn assert_secret(ns: &str) {
    let name = secret_name();
    let ty = kubectl(&["-n", ns, "get", "secret", &name, "-o", "jsonpath={.type}"]);
    assert_eq!(ty, "kubernetes.io/dockerconfigjson");
    let label = kubectl(&["-n", ns, "get", "secret", &name, "-o", "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}"]);
    assert_eq!(label, "devloop");
    let data = kubectl(&["-n", ns, "get", "secret", &name, "-o", "jsonpath={.data.\\.dockerconfigjson}"]);
    let out = std::process::Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    let mut out = out;
    out.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.wait_with_output().unwrap().stdout).unwrap();
    let auths = json["auths"].as_object().unwrap();
    assert_eq!(auths.keys().collect::<Vec<_>>(), [&env("DEVLOOP_STACK_AUTH_REGISTRY")], "only the pull host");
    let entry = &auths[&env("DEVLOOP_STACK_AUTH_REGISTRY")];
    assert_eq!(entry["username"], env("DEVLOOP_STACK_AUTH_USER"));
    assert!(entry["password"] == password(), "the Secret does not hold the registry's password");
}

/// The one live pod of app `app`, once it runs `prefix…` and is Ready.
fn ready_pod(ns: &str, app: &str, prefix: &str) -> String {
    eventually("a Ready pod on the new image", 120, || {
        let pods = live_pods(ns, app);
        let [pod] = pods.as_slice() else { return Err(format!("{pods:?}")) };
        let image = kubectl(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.spec.containers[0].image}"]);
        let ready = kubectl(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        if image.starts_with(prefix) && ready == "True" { Ok(pod.clone()) } else { Err(format!("{pod}: {image} ready={ready}")) }
    })
}

/// The kubelet pulled the pod's image from the authenticated registry (not a copy the node had).
fn assert_pulled(ns: &str, pod: &str) {
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    eventually("the kubelet's Pulled event", 30, || {
        let events = kubectl(&["-n", ns, "get", "events", "--field-selector", &format!("involvedObject.name={pod}"), "-o", "jsonpath={.items[*].message}"]);
        if events.contains(&format!("Successfully pulled image \"{reg}/")) { Ok(()) } else { Err(events) }
    });
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn patch_mode_pushes_with_a_credential_helper_and_the_kubelet_pulls_with_the_secret() {
    let ns = Namespace::new("authreg-patch");
    // A Deployment running the image from the plain registry, as a team's would before the switch.
    let p = running_patch_project(&ns, "120s", "");
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    auth_config(&p, &format!("[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\ndeployment = \"{}\"\n", ns.0, p.name, p.name));
    // New content: a digest no node has pulled, so the kubelet must pull it, with the Secret.
    p.write("app/www/authreg.txt", &p.name);
    let creds = Creds::helper();

    let out = creds.ok(&p, &["deploy"]);
    let secret = secret_name();
    assert!(out.contains(&format!("pull secret {}/{secret} applied", ns.0)), "{out}");
    assert!(out.contains(&format!("imagePullSecrets += {secret}")), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/{} done", ns.0, p.name)), "{out}");
    assert_secret(&ns.0);
    assert_eq!(pull_secrets(&ns.0, &format!("deployment/{}", p.name)), [secret.as_str()]);
    let pod = ready_pod(&ns.0, &p.name, &format!("{reg}/{}:", p.name));
    assert_eq!(pull_secrets(&ns.0, &format!("pod/{pod}")), [secret.as_str()]);
    assert_pulled(&ns.0, &pod);
    assert!(page(&ns.0, &pod).unwrap().contains("Hello from devloop"));

    // The registry has it now: the team's cache, found through the helper's credentials over TLS.
    let out = creds.ok(&p, &["build"]);
    assert!(out.contains("is already in") && out.contains("nothing to build"), "{out}");
    let out = creds.ok(&p, &["deploy"]);
    assert!(out.contains("nothing to do") && !out.contains("applied"), "{out}");
    assert_eq!(pull_secrets(&ns.0, &format!("deployment/{}", p.name)), [secret.as_str()], "no duplicate reference");

    // `down` deletes the Secret devloop made; the patched Deployment and the namespace were not devloop's.
    let out = creds.ok(&p, &["down"]);
    assert!(out.contains(&format!("pull secret {}/{secret} deleted", ns.0)), "{out}");
    assert!(try_kubectl(&["-n", &ns.0, "get", "secret", &secret]).is_err());
    kubectl(&["-n", &ns.0, "get", "deployment", &p.name]);
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn manifest_mode_references_the_secret_from_the_applied_pod_template_and_check_makes_its_own() {
    let ns = Namespace(format!("authreg-man-{}", nonce()));
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {}", p.name));
        std::fs::write(p.path(f), text).unwrap();
    }
    let secret = secret_name();
    let rest = format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n\
         rollout-timeout = \"60s\"\n\
         [check]\ncommands = [\"kubectl -n $DEVLOOP_NAMESPACE get secret {secret} -o jsonpath='{{.type}}' | grep -qx kubernetes.io/dockerconfigjson\"]\n",
        ns.0, p.name
    );
    // Without a pull secret the kubelet is refused (its pull is anonymous): a hint says why, and the rollout
    // fails with the pull error.
    auth_config_with(&p, "false", &rest);
    let creds = Creds::helper();
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    let (ok, out, err) = creds.devloop(&p, &["deploy"]);
    assert!(!ok && out.contains(&format!("namespace {} created", ns.0)), "{out}\n{err}");
    assert!(out.contains(&format!("hint: registry {reg} asks for credentials")) && out.contains("pull-secret = true"), "{out}");
    assert!(out.contains("FAILED") && (out.contains("ErrImagePull") || out.contains("ImagePullBackOff")), "{out}");
    assert!(pull_secrets(&ns.0, "deployment/hello").is_empty());

    auth_config(&p, &rest);
    let out = creds.ok(&p, &["deploy"]);
    assert!(out.contains(&format!("pull secret {}/{secret} applied", ns.0)), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{out}");
    assert_secret(&ns.0);
    assert_eq!(pull_secrets(&ns.0, "deployment/hello"), [secret.as_str()]);
    let pod = ready_pod(&ns.0, "hello", &format!("{reg}/{}:", p.name));
    assert_eq!(pull_secrets(&ns.0, &format!("pod/{pod}")), [secret.as_str()]);
    assert_pulled(&ns.0, &pod);

    let out = creds.ok(&p, &["deploy"]);
    assert!(out.contains("unchanged") && !out.contains("applied ("), "{out}");
    assert_eq!(pull_secrets(&ns.0, "deployment/hello"), [secret.as_str()], "no duplicate reference");

    // The throwaway namespace of `check` gets its own Secret (the command checks it is there).
    let out = creds.ok(&p, &["check"]);
    assert!(out.contains("check: PASSED") && out.contains("pull secret devloop-check-"), "{out}");

    let out = creds.ok(&p, &["down"]);
    assert!(out.contains(&format!("pull secret {}/{secret} deleted", ns.0)), "{out}");
    assert!(out.contains(&format!("namespace {} deleted", ns.0)), "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn without_credentials_the_registry_is_named_and_a_missing_helper_too() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    auth_config(&p, "");
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");

    // No credentials at all: the manifest check says the registry wants them.
    let none = Creds::new("{}");
    let (ok, o, e) = none.devloop(&p, &["build"]);
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains(&format!("registry {reg}")) && e.contains("requires credentials") && e.contains("docker login"), "{o}\n{e}");
    // --force skips the check: BuildKit's push is refused, and the failure names the registry.
    let (ok, o, e) = none.devloop(&p, &["build", "--force"]);
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains(&reg) && (e.contains("401") || e.contains("nauthorized")), "{o}\n{e}");

    // A helper that is not installed: named with the registry, before anything is built.
    let missing = Creds::new(r#"{"credsStore": "devloop-missing"}"#);
    let (ok, o, e) = missing.devloop(&p, &["build"]);
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains("docker-credential-devloop-missing") && e.contains(&reg) && e.contains("not on PATH"), "{o}\n{e}");
    // Past the check, BuildKit asks devloop's session for the credentials: the push fails with the same
    // reason (a failed build, not a BuildKit connection lost and retried).
    let (ok, o, e) = missing.devloop(&p, &["build", "--force"]);
    assert!(!ok, "{o}\n{e}");
    assert!(e.contains("failed at step") && e.contains("docker-credential-devloop-missing") && !e.contains("went away"), "{o}\n{e}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_helm_release_gets_the_secret_through_its_pull_secrets_value() {
    let ns = Namespace::new("authreg-helm");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    auth_config(
        &p,
        &format!(
            "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n[[deploy]]\nimage = \"{name}\"\nrollout-timeout = \"60s\"\n\
             helm = {{ chart = \"app/chart\", release = \"{name}\", image-values = {{ pull-secrets = \"imagePullSecrets\" }} }}\n",
            ns = ns.0,
            name = p.name
        ),
    );
    let creds = Creds::helper();
    let out = creds.ok(&p, &["deploy"]);
    let secret = secret_name();
    assert!(out.contains(&format!("pull secret {}/{secret} applied", ns.0)) && out.contains("upgraded to revision 1"), "{out}");
    assert_eq!(pull_secrets(&ns.0, &format!("deployment/{}", p.name)), [secret.as_str()]);
    let pod = ready_pod(&ns.0, &p.name, &format!("{}/{}:", env("DEVLOOP_STACK_AUTH_REGISTRY"), p.name));
    assert_pulled(&ns.0, &pod);
    assert_secret(&ns.0);
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_keeps_the_secret_and_every_new_version_is_pulled_with_it() {
    let ns = Namespace::new("authreg-up");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {}", p.name));
        std::fs::write(p.path(f), text).unwrap();
    }
    auth_config(
        &p,
        &format!("[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n", ns.0, p.name),
    );
    let creds = Creds::helper();
    let docker = creds.dir.path().join("docker");
    let mut up = Up::start_env(&p, &[], &[("DOCKER_CONFIG", &docker), ("PATH", &creds.path)]);
    let reg = env("DEVLOOP_STACK_AUTH_REGISTRY");
    up.wait("iteration", 300);
    let first = ready_pod(&ns.0, "hello", &format!("{reg}/{}:", p.name));
    assert_pulled(&ns.0, &first);

    p.write("app/www/index.html", "<p>second version</p>\n");
    up.wait("iteration", 300);
    let second = eventually("the second version's pod", 120, || {
        let pod = ready_pod(&ns.0, "hello", &format!("{reg}/{}:", p.name));
        if pod != first { Ok(pod) } else { Err("still the first pod".to_string()) }
    });
    assert_pulled(&ns.0, &second);
    assert_eq!(pull_secrets(&ns.0, &format!("pod/{second}")), [secret_name()]);
    up.interrupt();
    let all: Vec<String> = up.seen.iter().map(|e| e.to_string()).collect();
    for e in &all {
        assert_no_password(e);
    }
    // Applied once; the second deploy found it unchanged and said nothing.
    assert_eq!(all.iter().filter(|e| e.contains("pull secret") && e.contains("applied")).count(), 1, "{all:#?}");
}
