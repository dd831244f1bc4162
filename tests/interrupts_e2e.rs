//! Interrupts leave nothing behind, against the real stack: `devloop check` stopped by SIGINT or SIGTERM
//! deletes its namespace and the cluster-scoped objects it created and ends its command's processes; a
//! command past `[check] timeout` is killed with its background children; `devloop deploy` interrupted
//! during a rollout rolls back (with rollback-on-failure) or says exactly where the Deployment stands.
//! Run through scripts/test.

mod common;
use common::*;

use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A devloop process whose stdout is collected as it comes.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(p: &Project, args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_devloop"))
            .args(args)
            .current_dir(p.dir.path())
            .env_remove("DEVLOOP_REGISTRY")
            .env_remove("BUILDKIT_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (o, pipe) = (stdout.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                o.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let (e, mut pipe) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, stdout, stderr }
    }

    fn output(&self) -> String {
        format!("{}\n--- stderr ---\n{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    /// Waits until stdout contains `text`; returns stdout.
    fn wait_for(&mut self, text: &str, secs: u64) -> String {
        eventually(&format!("`{text}` in devloop's output"), secs, || {
            let out = self.stdout.lock().unwrap().clone();
            if out.contains(text) {
                return Ok(out);
            }
            match self.child.try_wait().unwrap() {
                Some(status) => panic!("devloop exited ({status}) before printing `{text}`:\n{}", self.output()),
                None => Err(self.output()),
            }
        })
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Waits for the exit; returns its code (None when a signal killed it) and the output.
    fn exit(&mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200)); // let the readers take the last lines
                return (status.code(), self.output());
            }
            assert!(Instant::now() < deadline, "devloop did not exit within {secs}s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process runs (a zombie does not: it is only waiting for its new parent to reap it).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')))
}

fn read_pid(path: &std::path::Path) -> String {
    eventually(&format!("pid file {}", path.display()), 5, || std::fs::read_to_string(path).map_err(|e| e.to_string()))
        .trim()
        .to_string()
}

fn gone(args: &[&str]) -> Result<(), String> {
    match try_kubectl(args) {
        Err(e) if e.contains("NotFound") => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A manifest-mode project (in `ns`) whose manifests also hold a ClusterRole with a unique name, and whose
/// `[check]` table is `check`. Returns the project and the ClusterRole's name.
fn check_project(ns: &Namespace, check: &str) -> (Project, String) {
    let p = manifest_project(&ns.0, &format!("[check]\n{check}\n"));
    let role = format!("devloop-e2e-{}", nonce());
    p.write(
        "app/k8s/clusterrole.yaml",
        &format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n"),
    );
    (p, role)
}

fn check_namespace(out: &str) -> String {
    out.split("check: namespace ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

/// `devloop check` is interrupted while its command runs: namespace, ClusterRole and the command's
/// processes are all gone afterwards, and the exit code is 128 + the signal.
fn interrupted_check_cleans_up(sig: &str, code: i32, name: &str) {
    let ns = Namespace::new("intr-check");
    let scratch = tempfile::tempdir().unwrap();
    let (cmd_pid, child_pid) = (scratch.path().join("cmd.pid"), scratch.path().join("child.pid"));
    let command = format!("echo $$ > {}; sleep 1000 & echo $! > {}; wait", cmd_pid.display(), child_pid.display());
    let (p, role) = check_project(&ns, &format!("commands = [{command:?}]"));
    let report = scratch.path().join("junit.xml");
    let mut run = Running::start(&p, &["check", "--report", report.to_str().unwrap()]);
    let out = run.wait_for(&format!("check: $ {command}"), 240);
    let check_ns = check_namespace(&out);
    let (cmd_pid, child_pid) = (read_pid(&cmd_pid), read_pid(&child_pid));
    // Both exist while the command runs: the check created them.
    kubectl(&["get", "namespace", &check_ns]);
    kubectl(&["get", "clusterrole", &role]);
    assert!(running(&cmd_pid) && running(&child_pid));

    run.signal(sig);
    let (exit, out) = run.exit(60);
    assert_eq!(exit, Some(code), "{out}");
    assert!(out.contains(&format!("check: interrupted ({name}): cleaning up")), "{out}");
    assert!(out.contains(&format!("check: deleted clusterrole/{role}")), "{out}");
    assert!(out.contains(&format!("check: deleted namespace {check_ns}")), "{out}");
    assert!(!out.contains("LEFT BEHIND"), "{out}");
    assert!(!running(&cmd_pid) && !running(&child_pid), "the check command's processes survived:\n{out}");
    gone(&["get", "clusterrole", &role]).unwrap_or_else(|e| panic!("the ClusterRole is still there: {e}\n{out}"));
    eventually("the check namespace is deleted", 90, || gone(&["get", "namespace", &check_ns]));
    // The report says what ran: the build and rollout passed, the command was interrupted.
    let r = junit::read(&report);
    let verdicts: Vec<(&str, &str)> = r.cases.iter().map(|c| (c.suite.as_str(), c.verdict.as_str())).collect();
    assert_eq!(verdicts, [("build", "passed"), ("rollout", "passed"), ("command", "error")], "{r:?}");
    let cmd = &r.suite("command")[0];
    assert_eq!((cmd.kind.as_str(), cmd.message.clone()), ("interrupted", format!("interrupted by {name}")), "{cmd:?}");
    eprintln!("{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn check_interrupted_by_sigint_deletes_its_namespace_and_cluster_objects() {
    interrupted_check_cleans_up("-INT", 130, "SIGINT");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn check_stopped_by_sigterm_deletes_its_namespace_and_cluster_objects() {
    interrupted_check_cleans_up("-TERM", 143, "SIGTERM");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_check_command_past_the_timeout_fails_and_leaves_no_process_behind() {
    let ns = Namespace::new("intr-timeout");
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("child.pid");
    let command = format!("sleep 1000 & echo $! > {}; sleep 1000", pidfile.display());
    let (p, role) = check_project(&ns, &format!("timeout = \"2s\"\ncommands = [{command:?}, \"echo second-command-ran\"]"));
    let started = Instant::now();
    let report = scratch.path().join("junit.xml");
    let out = p.devloop(&["check", "--report", report.to_str().unwrap()]);
    let stdout = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("check: FAILED `{command}` (timed out after 2s")), "{stdout}");
    // In the report: a `timeout` failure of about the timeout, then the next command, which passed.
    let r = junit::read(&report);
    let commands = r.suite("command");
    assert_eq!((commands[0].verdict.as_str(), commands[0].kind.as_str()), ("failure", "timeout"), "{r:?}");
    assert!(commands[0].message.contains("timed out after 2s") && (2.0..30.0).contains(&commands[0].time), "{r:?}");
    assert_eq!((commands[1].verdict.as_str(), commands[1].out.as_str()), ("passed", "second-command-ran\n"), "{r:?}");
    assert!(stdout.contains("second-command-ran"), "the commands after a timed-out one did not run:\n{stdout}");
    assert!(stdout.trim_end().lines().any(|l| l == "check: FAILED"), "{stdout}");
    let child = read_pid(&pidfile);
    assert!(!running(&child), "the background child {child} survived the timeout:\n{stdout}");
    assert!(started.elapsed() < Duration::from_secs(300), "took {:?}", started.elapsed());
    // A check that ends by itself deletes its cluster-scoped objects too, not only its namespace.
    assert!(stdout.contains(&format!("check: deleted clusterrole/{role}")), "{stdout}");
    gone(&["get", "clusterrole", &role]).unwrap_or_else(|e| panic!("the ClusterRole is still there: {e}\n{stdout}"));
    eprintln!("{stdout}");
}

/// A patch-mode project whose next version runs but never becomes Ready (it serves on another port), so its
/// rollout hangs.
fn never_ready_patch_project(ns: &Namespace, extra: &str) -> Project {
    let p = running_patch_project(ns, "90s", extra);
    p.write("app/serve.sh", "#!/bin/sh\necho never-ready\nexec httpd -f -p 8081 -h /www\n");
    p
}

/// Starts `devloop deploy` and waits until the new pod exists (the rollout is being watched).
fn deploy_until_watching(p: &Project, ns: &Namespace) -> Running {
    let before = live_pods(&ns.0, &p.name);
    let mut run = Running::start(p, &["deploy"]);
    run.wait_for(&format!("deployment {}/{} container web: ", ns.0, p.name), 240);
    eventually("the new pod appears", 60, || {
        let pods = live_pods(&ns.0, &p.name);
        if pods.iter().any(|x| !before.contains(x)) { Ok(()) } else { Err(format!("{pods:?}")) }
    });
    run
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn deploy_interrupted_with_rollback_on_failure_rolls_back() {
    let ns = Namespace::new("intr-rollback");
    let p = never_ready_patch_project(&ns, "rollback-on-failure = true\n");
    let before = template_image(&ns.0, &p.name);
    let mut run = deploy_until_watching(&p, &ns);
    assert_ne!(template_image(&ns.0, &p.name), before, "devloop did not patch the Deployment");

    run.signal("-INT");
    let (exit, out) = run.exit(120);
    assert_eq!(exit, Some(130), "{out}");
    assert!(out.contains("interrupted (SIGINT) while watching the rollout"), "{out}");
    assert!(out.contains(&format!("rolled back: it is back on {before}")), "{out}");
    assert!(out.contains("rollback finished"), "{out}");
    assert_eq!(template_image(&ns.0, &p.name), before, "the Deployment's template is not the previous image again");
    eprintln!("{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn deploy_interrupted_without_rollback_says_where_the_deployment_stands() {
    let ns = Namespace::new("intr-state");
    let p = never_ready_patch_project(&ns, "");
    let mut run = deploy_until_watching(&p, &ns);
    let new = template_image(&ns.0, &p.name);

    run.signal("-TERM");
    let (exit, out) = run.exit(60);
    assert_eq!(exit, Some(143), "{out}");
    assert!(out.contains("interrupted (SIGTERM) while watching the rollout"), "{out}");
    let state = out
        .lines()
        .find(|l| l.contains(&format!("deployment {}/{}: template image ", ns.0, p.name)))
        .unwrap_or_else(|| panic!("no state line in:\n{out}"));
    assert!(state.contains(&format!("template image {new};")), "{state}");
    // One replica wanted; the new pod exists (updated) but is not ready; the old one still serves.
    assert!(state.contains("1 desired, 1 updated, 1 ready, 1 available"), "{state}");
    assert!(!out.contains("rolling") && !out.contains("rolled back"), "{out}");
    assert_eq!(template_image(&ns.0, &p.name), new, "nothing rolls back without rollback-on-failure");
    eprintln!("{out}");
}
