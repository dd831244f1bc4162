//! Helpers for tests that run the `devloop` binary on a scratch project.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod junit;

/// A throwaway project: a copy of examples/hello plus a devloop.toml pointing at the stack.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub registry: String,
    pub name: String,
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through scripts/test (it starts the stack)")
    })
}

/// A unique suffix, so runs do not find each other's images in the registry.
pub fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{:x}{:x}", t.as_secs() & 0xffff, t.subsec_nanos())
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

impl Project {
    /// The hello example under a unique image name, with unique content (so the first build really builds).
    pub fn hello(registry: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
        copy_dir(&example, &dir.path().join("app"));
        let name = format!("e2e-{}", nonce());
        std::fs::write(dir.path().join("app/www/nonce.txt"), &name).unwrap();
        let p = Project { dir, registry: registry.to_string(), name };
        p.write_config("");
        p
    }

    /// Writes devloop.toml; `extra` is appended inside the [[image]] table.
    pub fn write_config(&self, extra: &str) {
        self.write_config_with_args("", extra)
    }

    /// Writes devloop.toml with more build args (`K = "v", …`) besides REGISTRY.
    pub fn write_config_with_args(&self, args: &str, extra: &str) {
        let bk = format!(
            "addr = \"{}\"",
            std::env::var("BUILDKIT_HOST").unwrap_or_else(|_| "unix:///nonexistent.sock".into())
        );
        self.write_config_full(&bk, args, extra)
    }

    /// Writes devloop.toml with `buildkit` as the body of its [buildkit] table.
    pub fn write_config_full(&self, buildkit: &str, args: &str, extra: &str) {
        let args = if args.is_empty() { String::new() } else { format!(", {args}") };
        let cfg = format!(
            "[buildkit]\n{buildkit}\n[registry]\nhost = \"{reg}\"\ninsecure = true\n\
             [[image]]\nname = \"{name}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{reg}\"{args} }}\n{extra}\n",
            reg = self.registry,
            name = self.name,
        );
        std::fs::write(self.dir.path().join("devloop.toml"), cfg).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, body: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    /// Runs `devloop ARGS` in the project directory.
    pub fn devloop(&self, args: &[&str]) -> Output {
        self.devloop_at(self.dir.path(), args, &[])
    }

    /// Runs `devloop ARGS` in `dir` with extra environment variables. The stack's DEVLOOP_REGISTRY and
    /// BUILDKIT_HOST are removed first, so the project's devloop.toml decides unless `envs` says otherwise.
    pub fn devloop_at(&self, dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devloop"));
        cmd.args(args).current_dir(dir).env_remove("DEVLOOP_REGISTRY").env_remove("BUILDKIT_HOST");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs devloop and asserts success; returns (stdout, stderr).
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.devloop(args);
        let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "devloop {args:?} failed ({}):\n{o}\n{e}", out.status);
        (o, e)
    }

    /// The tag `devloop hash` prints for this project's image.
    pub fn tag(&self) -> String {
        let (out, _) = self.ok(&["hash"]);
        out.split(':').next_back().unwrap().trim().to_string()
    }
}

/// The digest the registry serves for `name:tag` (HEAD with curl: independent of devloop's own client),
/// or None on 404.
pub fn registry_digest(registry: &str, name: &str, tag: &str) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-sI",
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
            &format!("http://{registry}/v2/{name}/manifests/{tag}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("docker-content-digest:").then(|| l[22..].trim().to_string()))
}

/// The image of the first container of a Deployment's pod template.
pub fn template_image(ns: &str, deployment: &str) -> String {
    kubectl(&["-n", ns, "get", "deployment", deployment, "-o", "jsonpath={.spec.template.spec.containers[0].image}"])
}

/// Runs kubectl (the stack's, from PATH) and returns stdout; panics with stderr on failure.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl").args(args).output().expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kubectl, returning Err(stderr) instead of panicking.
pub fn try_kubectl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("kubectl").args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A namespace made for one test, deleted (without waiting) when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        let name = format!("{prefix}-{}", nonce());
        kubectl(&["create", "namespace", &name]);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = try_kubectl(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

/// Polls `f` every 300 ms until it returns Ok, or panics naming `what` after `secs`.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: still failing after {secs}s: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(300)),
        }
    }
}

/// Names of the pods with label app=`app` that are not being deleted.
pub fn live_pods(ns: &str, app: &str) -> Vec<String> {
    let out = kubectl(&[
        "-n", ns, "get", "pods", "-l", &format!("app={app}"),
        "-o", "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{''}{end}{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines().filter(|l| l.split_whitespace().count() == 1).map(|l| l.trim().to_string()).collect()
}

/// All pods with label app=`app`, deleting or not.
pub fn all_pods(ns: &str, app: &str) -> Vec<String> {
    kubectl(&["-n", ns, "get", "pods", "-l", &format!("app={app}"), "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_string())
        .collect()
}

/// The page a pod serves on :8080, through the API server's proxy to the pod on the stack's network.
pub fn page(ns: &str, pod: &str) -> Result<String, String> {
    try_kubectl(&["get", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/")])
}

/// A project whose image is deployed in manifest mode into namespace `ns` (its Deployment is `hello`).
pub fn manifest_project(ns: &str, extra: &str) -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(p.path(f)).unwrap().replace("image: hello", &format!("image: {}", p.name));
        std::fs::write(p.path(f), text).unwrap();
    }
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n[[deploy]]\nimage = \"{}\"\nmanifests = [\"app/k8s/*.yaml\"]\n{extra}",
        p.name
    ));
    p
}

/// A running `devloop up --json` in a project, its events read by a thread.
pub struct Up {
    pub child: std::process::Child,
    pub events: std::sync::mpsc::Receiver<serde_json::Value>,
    pub seen: Vec<serde_json::Value>,
}

impl Up {
    pub fn start(p: &Project) -> Up {
        Self::start_with(p, &[])
    }

    /// `devloop up --json ARGS`.
    pub fn start_with(p: &Project, args: &[&str]) -> Up {
        Self::start_env(p, args, &[])
    }

    /// `devloop up --json ARGS` with extra environment variables (as `Project::devloop_at`).
    pub fn start_env(p: &Project, args: &[&str], envs: &[(&str, &Path)]) -> Up {
        use std::io::BufRead;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devloop"));
        cmd.args(["up", "--json"])
            .args(args)
            .current_dir(p.dir.path())
            .env_remove("DEVLOOP_REGISTRY")
            .env_remove("BUILDKIT_HOST")
            .stdout(std::process::Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Up { child, events, seen: vec![] }
    }

    /// The next event for which `pred` holds (others are recorded and skipped), within `secs`.
    pub fn wait_for(&mut self, what: &str, secs: u64, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self.events.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within {secs}s; saw {:#?}", self.seen));
            self.seen.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }

    /// An event for which `pred` holds, already recorded or the next one within `secs`: for lines whose order
    /// against others is not fixed (a new pod's log line may come before the iteration's own line).
    pub fn seen_or_wait_for(&mut self, what: &str, secs: u64, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        match self.seen.iter().find(|v| pred(v)) {
            Some(v) => v.clone(),
            None => self.wait_for(what, secs, pred),
        }
    }

    /// Waits for the next event with `"event": kind`, failing on a `failed` event unless that is awaited.
    pub fn wait(&mut self, kind: &str, secs: u64) -> serde_json::Value {
        let v = self.wait_for(kind, secs, |v| v["event"] == kind || v["event"] == "failed");
        assert!(v["event"] == kind, "unexpected failure: {v}");
        v
    }

    /// Events that arrive within `d` (also recorded in `seen`).
    pub fn quiet_for(&mut self, d: std::time::Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + d;
        let mut got = vec![];
        while let Ok(v) = self.events.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            self.seen.push(v.clone());
            got.push(v);
        }
        got
    }

    /// Waits until no event has come for `quiet`; returns every event seen until then (at most `secs`).
    pub fn settle(&mut self, quiet: std::time::Duration, secs: u64) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut got = vec![];
        loop {
            let more = self.quiet_for(quiet);
            if more.is_empty() {
                return got;
            }
            got.extend(more);
            assert!(std::time::Instant::now() < deadline, "devloop up never settled within {secs}s: {got:#?}");
        }
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGINT, as Ctrl-C does; returns how long the exit took.
    pub fn interrupt(&mut self) -> std::time::Duration {
        let t = std::time::Instant::now();
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.alive() {
            assert!(std::time::Instant::now() < deadline, "devloop up did not exit after SIGINT");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        t.elapsed()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project whose image is deployed by patching Deployment `<name>` in `ns` (with `rollout-timeout`), which
/// runs its first build and has rolled out.
pub fn running_patch_project(ns: &Namespace, rollout_timeout: &str, extra: &str) -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (out, _) = p.ok(&["build"]);
    let first = out.split(": pushed ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let manifest = std::fs::read_to_string(p.path("app/k8s/deployment.yaml"))
        .unwrap()
        .replace("name: hello", &format!("name: {}", p.name))
        .replace("app: hello", &format!("app: {}", p.name))
        .replace("image: hello", &format!("image: {first}"));
    let file = p.path("first.yaml");
    std::fs::write(&file, manifest).unwrap();
    kubectl(&["-n", &ns.0, "apply", "-f", file.to_str().unwrap()]);
    kubectl(&["-n", &ns.0, "rollout", "status", &format!("deployment/{}", p.name), "--timeout=120s"]);
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n[[deploy]]\nimage = \"{}\"\ndeployment = \"{}\"\n\
         rollout-timeout = \"{rollout_timeout}\"\n{extra}",
        ns.0, p.name, p.name
    ));
    p
}

/// Two images, `<name>` (app/, Deployment hello) and `<name>-b` (app2/, Deployment hello2), in namespace `ns`.
pub fn two_images(ns: &str) -> (Project, String) {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let b = format!("{}-b", p.name);
    copy_dir(&p.path("app"), &p.path("app2"));
    p.write("app2/www/nonce.txt", &b);
    for (dir, image, name) in [("app", &p.name, "hello"), ("app2", &b, "hello2")] {
        for f in ["deployment.yaml", "service.yaml"] {
            let path = p.path(&format!("{dir}/k8s/{f}"));
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("image: hello", &format!("image: {image}"))
                .replace("name: hello", &format!("name: {name}"))
                .replace("app: hello", &format!("app: {name}"));
            std::fs::write(path, text).unwrap();
        }
    }
    let bk = std::env::var("BUILDKIT_HOST").unwrap_or_else(|_| "unix:///nonexistent.sock".into());
    let cfg = format!(
        "[buildkit]\naddr = \"{bk}\"\n[registry]\nhost = \"{reg}\"\ninsecure = true\n\
         [[image]]\nname = \"{a}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n\
         [[image]]\nname = \"{b}\"\ncontext = \"app2\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n\
         [kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
         [[deploy]]\nimage = \"{a}\"\nmanifests = [\"app/k8s/*.yaml\"]\n[[deploy]]\nimage = \"{b}\"\nmanifests = [\"app2/k8s/*.yaml\"]\n",
        reg = p.registry,
        a = p.name,
    );
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
    (p, b)
}
