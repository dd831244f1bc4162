//! A team on the stack, as the README's team setup has it: developers who are real Kubernetes users (client
//! certificates from the stack's CA) holding only the roles of examples/team/rbac.yaml, each with the
//! authenticated registry's credentials in their own Docker config; and a simulated team of K of them
//! (issue 23), each running `devloop up --json` on their own copy of examples/hello in `dev-{user}`, all
//! building on one in-cluster BuildKit, each saving a page every few seconds while a client polls their own
//! port-forward until the new page is served.
//!
//! Shared by benches/team.rs (the figures), tests/team_sim_e2e.rs (isolation, every save served) and
//! tests/team_e2e.rs (the developers), which include benches/common by path.

use super::{copy_dir, http_get, sh};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An environment variable `scripts/stack env` sets.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: needs the stack (eval \"$(scripts/stack env)\")"))
}

/// Base64 of `bytes` (the `base64` tool: no dependency for three lines of config).
pub fn base64_of(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
}

/// A developer: an OS user name, a kubeconfig authenticating as that user, and a Docker config holding the
/// authenticated registry's credentials.
pub struct Developer {
    pub user: String,
    pub home: tempfile::TempDir,
}

impl Developer {
    /// A client certificate for `user` signed by the stack's CA, a kubeconfig using it, and a Docker config
    /// with the credentials of `registry` (the stack's authenticated one).
    pub fn new(user: &str, registry: &str) -> Developer {
        let home = tempfile::tempdir().unwrap();
        let pki = PathBuf::from(var("DEVLOOP_STACK_PKI"));
        let d = home.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(d).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "user.key", "-out", "user.csr", "-subj", &format!("/CN={user}")]);
        std::fs::write(d.join("user.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        let (ca, ca_key) = (pki.join("ca.crt"), pki.join("ca.key"));
        run(&[
            "x509", "-req", "-in", "user.csr", "-CA", ca.to_str().unwrap(), "-CAkey", ca_key.to_str().unwrap(),
            "-CAcreateserial", "-CAserial", "ca.srl", "-out", "user.crt", "-days", "1", "-extfile", "user.ext",
        ]);
        let b64 = |p: &Path| base64_of(&std::fs::read(p).unwrap());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: devloop-local\n  cluster: {{server: \"https://10.201.0.2:6443\", certificate-authority-data: \"{}\"}}\n\
             users:\n- name: {user}\n  user: {{client-certificate-data: \"{}\", client-key-data: \"{}\"}}\n\
             contexts:\n- name: devloop-local\n  context: {{cluster: devloop-local, user: {user}}}\ncurrent-context: devloop-local\n",
            b64(&ca),
            b64(&d.join("user.crt")),
            b64(&d.join("user.key")),
        );
        std::fs::write(d.join("kubeconfig"), kubeconfig).unwrap();
        let password = std::fs::read_to_string(var("DEVLOOP_STACK_AUTH_PASSWORD_FILE")).unwrap();
        let auth = base64_of(format!("{}:{}", var("DEVLOOP_STACK_AUTH_USER"), password.trim()).as_bytes());
        std::fs::create_dir_all(d.join("docker")).unwrap();
        std::fs::write(d.join("docker/config.json"), format!("{{\"auths\": {{\"{registry}\": {{\"auth\": \"{auth}\"}}}}}}")).unwrap();
        Developer { user: user.to_string(), home }
    }

    /// The environment a process of this developer's runs with.
    pub fn envs(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("USER", PathBuf::from(&self.user)), ("KUBECONFIG", self.kubeconfig()), ("DOCKER_CONFIG", self.home.path().join("docker"))]
    }

    /// The kubeconfig authenticating as this developer.
    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join("kubeconfig")
    }

    /// `dev-{user}`, the namespace the team's config gives this developer.
    pub fn namespace(&self) -> String {
        format!("dev-{}", self.user)
    }
}

/// `examples/team/rbac.yaml` as the README tells an admin to apply it, for developers `users` and BuildKit's
/// namespace `bk`: the file's own ClusterRoles, and its per-developer objects (namespace `dev-{user}` and
/// the two RoleBindings) with the names replaced.
pub fn apply_rbac(users: &[&str], bk: &str) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/team/rbac.yaml")).unwrap();
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let (roles, per_dev): (Vec<&str>, Vec<&str>) = docs.iter().partition(|d| d.contains("kind: ClusterRole\n"));
    let mut all = roles.join("\n---\n");
    for u in users {
        let mine = per_dev
            .join("\n---\n")
            .replace("name: alice", &format!("name: {u}"))
            .replace("-alice", &format!("-{u}"))
            .replace("namespace: buildkit", &format!("namespace: {bk}"));
        all.push_str("\n---\n");
        all.push_str(&mine);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &all).unwrap();
    sh("kubectl", &["apply", "-f", file.path().to_str().unwrap()]);
}

/// The admin's part: BuildKit installed into namespace `bk` (created here), trusting the registries it
/// pulls from and pushes to; `--replicas N` only when `replicas` says more than one (the flag is newer than
/// a single replica). Returns what `devloop buildkit install` printed.
pub fn install_buildkit(bk: &str, replicas: u32) -> String {
    sh("kubectl", &["create", "namespace", bk]);
    let dir = tempfile::tempdir().unwrap();
    let reg = var("DEVLOOP_STACK_AUTH_REGISTRY");
    let (image, plain, ca) = (var("DEVLOOP_STACK_BUILDKIT_IMAGE"), var("DEVLOOP_REGISTRY"), format!("{reg}={}", var("DEVLOOP_STACK_CA")));
    let mut args = vec!["buildkit", "install", "--namespace", bk, "--image", &image, "--insecure-registry", &plain, "--registry-ca", &ca];
    let n = replicas.to_string();
    if replicas != 1 {
        args.extend(["--replicas", &n]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_devloop")).args(&args).current_dir(dir.path()).env_remove("BUILDKIT_HOST").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "devloop {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// One simulated team: `k` developers, each saving every `every` (±50 %) for `seconds` once all are up.
pub struct Sim {
    pub k: usize,
    pub seconds: u64,
    pub every: Duration,
    /// BuildKit's namespace (`install_buildkit`).
    pub bk: String,
    /// Unique per run: the developers' names and the app's image name.
    pub nonce: String,
}

/// What one developer saw.
pub struct DevFigures {
    pub user: String,
    /// Save → the new page served through their port-forward, per save served.
    pub served: Vec<Duration>,
    pub saves: usize,
    /// Saves whose page was never served (within 180 s).
    pub unserved: Vec<String>,
    /// Builds cancelled while this developer had made no newer save: another's doing.
    pub crossings: Vec<String>,
    /// `failed`, `rollout-failed`, `crashed` and `stale` events.
    pub failures: Vec<String>,
    /// Pods in their namespace running an image that is not one of their own builds.
    pub foreign: Vec<String>,
    /// The container images checked for that.
    pub images: usize,
    /// The content tags of their iterations.
    pub tags: Vec<String>,
    /// The saving phase's iterations, as devloop split them: build, rollout, and from the change to rolled
    /// out (ms).
    pub split: Vec<[u64; 3]>,
    /// Their `devloop up`'s CPU time while the team saved.
    pub cpu: Duration,
}

/// CPU time spent while the team saved, where it could be read.
#[derive(Default)]
pub struct Cpu {
    /// The buildkitd pods' cgroups (cpuacct.usage), found through a container pid's /proc/<pid>/cgroup.
    pub buildkit: Option<Duration>,
    /// Every pod's cgroup (kubepods), BuildKit's included.
    pub pods: Option<Duration>,
    /// kubelet, containerd, kube-apiserver, etcd (from their pid files, /proc/<pid>/stat).
    pub node: Vec<(String, Duration)>,
    /// The whole machine (/proc/stat: not idle, not iowait), other engineers' work included.
    pub machine: Duration,
}

/// A run's figures.
pub struct Figures {
    pub k: usize,
    pub devs: Vec<DevFigures>,
    /// From the start until every developer's first page was served.
    pub startup: Duration,
    /// The saving phase.
    pub wall: Duration,
    pub cpu: Cpu,
    /// /proc/loadavg before and after the saving phase.
    pub load: (String, String),
}

impl Figures {
    /// Every developer's save → served, together.
    pub fn all_served(&self) -> Vec<Duration> {
        self.devs.iter().flat_map(|d| d.served.iter().copied()).collect()
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// USER_HZ, what /proc/<pid>/stat and /proc/stat count in: 100 on Linux whatever the kernel's HZ.
fn ticks() -> f64 {
    100.0
}

/// utime + stime of `pid`, or zero when it is gone.
pub fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    if f.len() < 13 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((f[11] + f[12]) as f64 / ticks())
}

fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    let busy: u64 = f.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Duration::from_secs_f64(busy as f64 / ticks())
}

fn cgroup_usage(path: &str) -> Option<Duration> {
    let ns: u64 = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")).ok()?.trim().parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The cpuacct cgroups of the pods in `ns`: the pod level of a container pid's cgroup (this machine is the
/// node, so the kubelet's containers are processes here).
fn pod_cgroups(ns: &str) -> Vec<String> {
    let uids = sh("kubectl", &["-n", ns, "get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let uids: Vec<String> = uids.split_whitespace().map(|u| format!("/pod{u}/")).collect();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("cgroup")) else { continue };
        let Some(path) = text.lines().find_map(|l| l.split_once(":cpuacct:").map(|(_, p)| p.to_string()).or_else(|| l.split_once(":cpu,cpuacct:").map(|(_, p)| p.to_string()))) else { continue };
        if let Some(u) = uids.iter().find(|u| path.contains(u.as_str())) {
            let pod = format!("{}{}", &path[..path.find(u.as_str()).unwrap()], u.trim_end_matches('/'));
            if !found.contains(&pod) {
                found.push(pod);
            }
        }
    }
    found
}

/// The node's daemons, from the stack's pid files.
fn node_pids() -> Vec<(String, u32)> {
    let run = PathBuf::from(std::env::var("DEVLOOP_STACK_STATE").unwrap_or_else(|_| "/var/lib/devloop-stack".into())).join("run");
    ["kubelet", "containerd", "kube-apiserver", "etcd"]
        .iter()
        .filter_map(|d| Some((d.to_string(), std::fs::read_to_string(run.join(format!("{d}.pid"))).ok()?.trim().parse().ok()?)))
        .collect()
}

/// CPU counters at one moment.
struct Sample {
    buildkit: Option<Duration>,
    pods: Option<Duration>,
    node: Vec<(String, Duration)>,
    machine: Duration,
}

fn sample(bk_cgroups: &[String], node: &[(String, u32)]) -> Sample {
    let buildkit = if bk_cgroups.is_empty() { None } else { bk_cgroups.iter().map(|c| cgroup_usage(c)).sum() };
    Sample { buildkit, pods: cgroup_usage("/kubepods"), node: node.iter().map(|(n, p)| (n.clone(), proc_cpu(*p))).collect(), machine: machine_cpu() }
}

fn since(before: &Sample, after: &Sample) -> Cpu {
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    Cpu {
        buildkit: diff(before.buildkit, after.buildkit),
        pods: diff(before.pods, after.pods),
        node: before.node.iter().zip(&after.node).map(|((n, a), (_, b))| (n.clone(), b.saturating_sub(*a))).collect(),
        machine: after.machine.saturating_sub(before.machine),
    }
}

/// The team's devloop.toml for image `app` (its manifests under `app/k8s`): the in-cluster BuildKit in
/// namespace `bk`, the authenticated registry with a pull Secret, `dev-{user}`; `extra` appended.
pub fn team_config(app: &str, bk: &str, extra: &str) -> String {
    format!(
        "[buildkit]\naddr = \"kube-deployment://buildkitd?namespace={bk}\"\n\
         [kube]\ncontext = \"devloop-local\"\nnamespace = \"dev-{{user}}\"\n\
         [registry]\nhost = \"{reg}\"\nca = \"{ca}\"\npull-secret = true\n\
         [[image]]\nname = \"{app}\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{plain}\" }}\n\
         [[deploy]]\nimage = \"{app}\"\nmanifests = [\"app/k8s/*.yaml\"]\n{extra}",
        reg = var("DEVLOOP_STACK_AUTH_REGISTRY"),
        ca = var("DEVLOOP_STACK_CA"),
        plain = var("DEVLOOP_REGISTRY"),
    )
}

/// The developer's copy of examples/hello under image `app` (the same name for everyone: namespaces tell
/// them apart), content of their own (`nonce.txt`: every developer's tags are theirs), the team's config:
/// in-cluster BuildKit, the authenticated registry with a pull Secret, `dev-{user}`, a port-forward.
fn project(dir: &Path, app: &str, user: &str, bk: &str) {
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello"), &dir.join("app"));
    std::fs::write(dir.join("app/www/nonce.txt"), user).unwrap();
    for f in ["app/k8s/deployment.yaml", "app/k8s/service.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap().replace("image: hello", &format!("image: {app}"));
        std::fs::write(dir.join(f), text).unwrap();
    }
    let forward = "[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n";
    std::fs::write(dir.join("devloop.toml"), team_config(app, bk, forward)).unwrap();
}

/// A developer's `devloop up --json`, its events stamped with their arrival.
struct Up {
    child: Child,
    events: mpsc::Receiver<(Instant, serde_json::Value)>,
    seen: Vec<(Instant, serde_json::Value)>,
}

impl Up {
    fn start(dir: &Path, dev: &Developer) -> Up {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_devloop"))
            .args(["up", "--json"])
            .current_dir(dir)
            .envs(dev.envs())
            .env_remove("DEVLOOP_REGISTRY")
            .env_remove("BUILDKIT_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send((Instant::now(), v));
                }
            }
        });
        Up { child, events, seen: vec![] }
    }

    /// Records the events that have arrived.
    fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
    }
}

impl Drop for Up {
    /// SIGINT, as Ctrl-C: the workloads stay (the namespace goes after the run).
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small xorshift: pauses that do not lock onto the kubelet's 1 s cycles.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Writes `text` as an editor saves: a new file renamed over the old (one change for the watcher, never a
/// half-written page).
fn save(dir: &Path, rel: &str, text: &str) {
    let tmp = dir.join(".save.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(rel)).unwrap();
}

/// Waits (at most `secs`) until the forward serves a page containing `marker`.
fn served(forward: &str, marker: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if http_get(forward, "/").is_some_and(|b| b.contains(marker)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One developer's session: up, the first page served, then (all together) a save every `every` ±50 %, each
/// waited for until served (a developer looks before saving again), then the isolation check.
fn developer(dev: Developer, app: String, sim: (u64, Duration, String), seed: u64, gates: Gates) -> DevFigures {
    let (seconds, every, bk) = sim;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    project(dir, &app, &dev.user, &bk);
    let mut up = Up::start(dir, &dev);
    let mut forward = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = false;
    while forward.is_none() || !first {
        let (t, v) = up.events.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| panic!("{}: not up within 600 s: {:?}", dev.user, up.seen));
        if v["event"] == "forward" {
            forward = v["message"].as_str().and_then(|m| m.split_whitespace().nth(1)).map(|u| u.trim_start_matches("http://").to_string());
        }
        first |= v["event"] == "iteration";
        up.seen.push((t, v));
    }
    let forward = forward.unwrap();
    assert!(served(&forward, "Hello from devloop", 120), "{}: the first page was never served through {forward}", dev.user);
    gates.ready.send(up.child.id()).unwrap();
    gates.go.recv().expect("the run went on");
    let cpu0 = proc_cpu(up.child.id());
    let (mut figures, mut saves) = (DevFigures { user: dev.user.clone(), served: vec![], saves: 0, unserved: vec![], crossings: vec![], failures: vec![], foreign: vec![], images: 0, tags: vec![], split: vec![], cpu: Duration::ZERO }, vec![]);
    let (start, mut seed) = (Instant::now(), seed | 1);
    while start.elapsed() < Duration::from_secs(seconds) {
        let ms = every.as_millis() as u64;
        std::thread::sleep(Duration::from_millis(ms / 2 + next(&mut seed) % ms.max(1)));
        let marker = format!("{}-save-{}", dev.user, figures.saves + 1);
        let t0 = Instant::now();
        save(dir, "app/www/index.html", &format!("<p>{marker}</p>\n"));
        saves.push(t0);
        figures.saves += 1;
        if served(&forward, &marker, 180) {
            figures.served.push(t0.elapsed());
        } else {
            figures.unserved.push(marker);
        }
    }
    figures.cpu = proc_cpu(up.child.id()).saturating_sub(cpu0);
    gates.done.send(()).unwrap();
    // Judged once everyone is done: kubectl does not load the others' saves.
    gates.go.recv().expect("the run went on");
    // The last iteration may follow the page by a moment (the old pod's end): wait for it to be reported.
    std::thread::sleep(Duration::from_secs(2));
    up.drain();
    judge(&mut figures, &up.seen, &saves, start, &app, &dev.namespace());
    drop(up);
    figures
}

/// The isolation verdicts: a cancelled build (`superseded`) is this developer's own doing only if they saved
/// after the save that build was for (the last save before its `building` event); every pod in their
/// namespace runs one of their own iterations' images.
fn judge(f: &mut DevFigures, seen: &[(Instant, serde_json::Value)], saves: &[Instant], start: Instant, app: &str, ns: &str) {
    let saves_by = |t: Instant| saves.iter().filter(|s| **s <= t).count();
    for (t, v) in seen {
        match v["event"].as_str().unwrap_or("") {
            "iteration" => {
                f.tags.push(v["tag"].as_str().unwrap_or("").to_string());
                if *t >= start {
                    f.split.push(["build_ms", "rollout_ms", "total_ms"].map(|k| v[k].as_u64().unwrap_or(0)));
                }
            }
            "superseded" => {
                let old = v["old"].as_str().unwrap_or("");
                let building = seen.iter().filter(|(tb, b)| tb <= t && b["event"] == "building" && b["tag"] == old).map(|(tb, _)| *tb).next_back();
                let own = building.is_some_and(|tb| saves_by(*t) > saves_by(tb));
                if !own {
                    f.crossings.push(v.to_string());
                }
            }
            "failed" | "rollout-failed" | "crashed" | "stale" => f.failures.push(v.to_string()),
            _ => {}
        }
    }
    let reg = var("DEVLOOP_STACK_AUTH_REGISTRY");
    let images = sh("kubectl", &["-n", ns, "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}{range .spec.containers[*]} {.image}{end}{\"\\n\"}{end}"]);
    for line in images.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let pod = words.next().unwrap_or("");
        for image in words {
            f.images += 1;
            let tag = image.strip_prefix(&format!("{reg}/{app}:")).and_then(|r| r.split('@').next());
            if !tag.is_some_and(|t| f.tags.iter().any(|m| m == t)) {
                f.foreign.push(format!("{ns}/{pod} runs {image}"));
            }
        }
    }
}

/// A developer thread's side of the run's rhythm: it says when its session serves, waits for the go, says when
/// its saves are done, and waits for the go again before judging. A closed channel (the run gave up) ends it.
struct Gates {
    ready: mpsc::Sender<u32>,
    done: mpsc::Sender<()>,
    go: mpsc::Receiver<()>,
}

/// `n` messages from the developer threads, or Err when one of them ended early (it panicked).
fn gather<T>(rx: &mpsc::Receiver<T>, n: usize, threads: &[std::thread::JoinHandle<DevFigures>]) -> Result<Vec<T>, ()> {
    let mut got = vec![];
    while got.len() < n {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(v) => got.push(v),
            Err(_) if threads.iter().any(|t| t.is_finished()) => return Err(()),
            Err(_) => {}
        }
    }
    Ok(got)
}

/// A developer thread ended early: the others stop their sessions (a closed go), the namespaces go, and the
/// first panic is passed on.
fn fail(go: Vec<mpsc::Sender<()>>, threads: Vec<std::thread::JoinHandle<DevFigures>>, namespaces: &[String]) -> ! {
    drop(go);
    let panics: Vec<_> = threads.into_iter().filter_map(|t| t.join().err()).collect();
    for ns in namespaces {
        let _ = Command::new("kubectl").args(["delete", "namespace", ns, "--wait=false"]).output();
    }
    std::panic::resume_unwind(panics.into_iter().next().unwrap_or_else(|| Box::new("a developer ended early")))
}

/// Runs a team of `sim.k` on the stack: the developers (users with the team's roles), their sessions, the
/// saving phase with CPU counted, then each one's verdicts; their namespaces are deleted afterwards.
pub fn run(sim: &Sim) -> Figures {
    let reg = var("DEVLOOP_STACK_AUTH_REGISTRY");
    let devs: Vec<Developer> = (0..sim.k).map(|i| Developer::new(&format!("sim{i}-{}", sim.nonce), &reg)).collect();
    let users: Vec<&str> = devs.iter().map(|d| d.user.as_str()).collect();
    apply_rbac(&users, &sim.bk);
    let namespaces: Vec<String> = devs.iter().map(Developer::namespace).collect();
    let app = format!("team-{}", sim.nonce);
    let ((ready, readies), (done, dones)) = (mpsc::channel(), mpsc::channel());
    let mut go = vec![];
    let t0 = Instant::now();
    let mut seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) | 1;
    let threads: Vec<_> = devs
        .into_iter()
        .map(|dev| {
            let (go_tx, go_rx) = mpsc::channel();
            go.push(go_tx);
            let gates = Gates { ready: ready.clone(), done: done.clone(), go: go_rx };
            let (app, sim, seed) = (app.clone(), (sim.seconds, sim.every, sim.bk.clone()), next(&mut seed));
            std::thread::spawn(move || developer(dev, app, sim, seed, gates))
        })
        .collect();
    // Every session up and serving: then all start saving at once.
    if gather(&readies, sim.k, &threads).is_err() {
        fail(go, threads, &namespaces);
    }
    let startup = t0.elapsed();
    let (bk_cgroups, node) = (pod_cgroups(&sim.bk), node_pids());
    let load_before = load();
    let before = sample(&bk_cgroups, &node);
    let started = Instant::now();
    go.iter().for_each(|g| g.send(()).unwrap());
    if gather(&dones, sim.k, &threads).is_err() {
        fail(go, threads, &namespaces);
    }
    let wall = started.elapsed();
    let cpu = since(&before, &sample(&bk_cgroups, &node));
    let load_after = load();
    go.iter().for_each(|g| g.send(()).unwrap());
    let mut devs = vec![];
    let mut panics = vec![];
    for t in threads {
        match t.join() {
            Ok(d) => devs.push(d),
            Err(p) => panics.push(p),
        }
    }
    for ns in &namespaces {
        let _ = Command::new("kubectl").args(["delete", "namespace", ns, "--wait=false"]).output();
    }
    if let Some(p) = panics.into_iter().next() {
        std::panic::resume_unwind(p);
    }
    Figures { k: sim.k, devs, startup, wall, cpu, load: (load_before, load_after) }
}
