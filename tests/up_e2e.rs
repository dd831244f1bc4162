//! `devloop up` and `devloop check` against the real stack: an editor's save becomes one build and one
//! rollout, the port-forward follows it, a broken build leaves pods alone, Ctrl-C cancels a running solve.
//! Run through scripts/test.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

/// A project deployed by manifests into a fresh namespace, with a port-forward on a free local port.
fn up_project(ns: &Namespace) -> Project {
    manifest_project(
        &ns.0,
        "[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n[check]\ncommands = [\"curl -sf $DEVLOOP_URL_HELLO | grep -q CHECK-ME\"]\n",
    )
}

fn get(url: &str) -> Result<String, String> {
    let out = Command::new("curl").args(["-sf", "-m", "5", url]).output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(format!("curl {url}: {}", out.status)) }
}

/// What vim does on `:w` with default settings: probe file, backup by rename, write anew, swap updates.
fn vim_save(p: &Project, rel: &str, body: &str) {
    let path = p.path(rel);
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    std::fs::write(dir.join("4913"), "").unwrap();
    std::fs::remove_file(dir.join("4913")).unwrap();
    std::fs::write(dir.join(format!(".{name}.swp")), "swap").unwrap();
    std::fs::rename(&path, dir.join(format!("{name}~"))).unwrap();
    std::fs::write(&path, body).unwrap();
    std::fs::remove_file(dir.join(format!("{name}~"))).unwrap();
    std::fs::write(dir.join(format!(".{name}.swp")), "swap2").unwrap();
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn an_editor_save_is_one_build_and_rollout_and_the_forward_follows() {
    let ns = Namespace::new("up");
    let p = up_project(&ns);
    let mut up = Up::start(&p);
    let fwd = up.wait("forward", 30);
    let url = fwd["message"].as_str().unwrap().split_whitespace().nth(1).unwrap().to_string();
    let first = up.wait("iteration", 90);
    assert!(eventually("first page", 30, || get(&url)).contains("Hello from devloop"));
    // The new pod's log lines are streamed, prefixed by the pod.
    let log = up.seen_or_wait_for("a log line", 30, |v| v["event"] == "log");
    assert!(log["message"].as_str().unwrap().contains("] hello: serving /www on :8080 (hello)"), "{log}");

    vim_save(&p, "app/www/index.html", "<p>saved from vim</p>\n");
    let second = up.wait("iteration", 60);
    assert_ne!(second["tag"], first["tag"]);
    assert!(second["build_ms"].as_u64().unwrap() > 0 && second["registry_hit"] == false, "{second}");
    // Where the time went: BuildKit's export+push within the build; the new pod seen, running, then Ready,
    // all within the rollout.
    let ms = |k: &str| second[k].as_u64().unwrap_or_else(|| panic!("no {k} in {second}"));
    assert!(ms("export_ms") <= ms("build_ms"), "{second}");
    assert!(ms("pod_created_ms") <= ms("pod_running_ms") && ms("pod_running_ms") <= ms("pod_ready_ms"), "{second}");
    assert!(ms("pod_ready_ms") <= ms("rollout_ms") && ms("rollout_ms") <= ms("total_ms"), "{second}");
    assert_eq!(eventually("forward follows the rollout", 30, || get(&url).and_then(|b| if b.contains("vim") { Ok(b) } else { Err(b) })), "<p>saved from vim</p>\n");
    let builds = up.seen.iter().filter(|e| e["event"] == "building").count();
    assert_eq!(builds, 2, "one save must be one build: {:#?}", up.seen);

    // Only editor temp files change: nothing happens at all.
    std::fs::write(p.path("app/www/.index.html.swp"), "more swap").unwrap();
    std::fs::write(p.path("app/www/index.html~"), "backup").unwrap();
    let noise = up.quiet_for(Duration::from_millis(1500));
    assert!(noise.iter().all(|e| e["event"] != "building" && e["event"] != "unchanged"), "{noise:#?}");

    // Editing .dockerignore changes what is watched too (one filter): drafts/ is then ignored.
    let ignore = std::fs::read_to_string(p.path("app/.dockerignore")).unwrap();
    std::fs::write(p.path("app/.dockerignore"), format!("{ignore}drafts/\n")).unwrap();
    up.wait("iteration", 60);
    std::fs::create_dir(p.path("app/drafts")).unwrap();
    std::fs::write(p.path("app/drafts/idea.md"), "not for the image").unwrap();
    let noise = up.quiet_for(Duration::from_millis(1500));
    assert!(noise.iter().all(|e| e["event"] != "building" && e["event"] != "unchanged"), "{noise:#?}");

    // A broken Dockerfile fails the build; the running pod keeps serving; fixing it rolls again.
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    std::fs::write(p.path("app/Dockerfile"), format!("{dockerfile}RUN exit 7\n")).unwrap();
    let failed = up.wait("failed", 60);
    assert!(failed["error"].as_str().unwrap().contains("exit code: 7"), "{failed}");
    assert!(get(&url).unwrap().contains("vim"), "the running pod stopped serving after a failed build");
    std::fs::write(p.path("app/Dockerfile"), &dockerfile).unwrap();
    vim_save(&p, "app/www/index.html", "<p>fixed</p>\n");
    up.wait("iteration", 60);
    assert_eq!(eventually("fixed page", 30, || get(&url).and_then(|b| if b.contains("fixed") { Ok(b) } else { Err(b) })), "<p>fixed</p>\n");

    let took = up.interrupt();
    assert!(took < Duration::from_secs(2), "Ctrl-C took {took:?}");
}

/// Whether a process whose command line contains `marker` is running (a build step inside BuildKit).
fn step_running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|e| {
        std::fs::read(e.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(marker)).unwrap_or(false)
    })
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn superseded_and_interrupted_builds_are_cancelled_in_buildkit() {
    let ns = Namespace::new("up-cancel");
    let p = up_project(&ns);
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    let slow = |marker: &str| format!("{dockerfile}RUN sleep 60 && echo {marker}\n");
    let first = format!("devloop-cancel-{}", nonce());
    std::fs::write(p.path("app/Dockerfile"), slow(&first)).unwrap();
    let mut up = Up::start(&p);
    up.wait("building", 30);
    eventually("the slow step starts", 30, || if step_running(&first) { Ok(()) } else { Err("not yet".into()) });

    // New content while it builds: the running solve is cancelled while devloop keeps running.
    let second = format!("devloop-cancel-{}", nonce());
    std::fs::write(p.path("app/Dockerfile"), slow(&second)).unwrap();
    up.wait("superseded", 30);
    eventually("BuildKit stops the superseded step", 15, || if step_running(&first) { Err("still running".into()) } else { Ok(()) });
    eventually("the newer build runs", 30, || if step_running(&second) { Ok(()) } else { Err("not yet".into()) });

    // Ctrl-C: devloop exits within 2 s and the solve is cancelled, not left running.
    let took = up.interrupt();
    assert!(took < Duration::from_secs(2), "Ctrl-C took {took:?}");
    eventually("BuildKit stops the interrupted step", 15, || if step_running(&second) { Err("still running".into()) } else { Ok(()) });
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn check_deploys_into_a_throwaway_namespace_runs_the_commands_and_cleans_up() {
    let ns = Namespace::new("check-base");
    let p = up_project(&ns);
    // The check command looks for CHECK-ME: absent, the check fails (exit 1); present, it passes.
    let out = p.devloop(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("check: FAILED"), "{stdout}");
    p.write("app/www/index.html", "<p>CHECK-ME</p>\n");
    let (stdout, _) = p.ok(&["check"]);
    let check_ns = stdout.split("check: namespace ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(check_ns.starts_with("devloop-check-"), "{stdout}");
    assert!(stdout.contains(&format!("deployment {check_ns}/hello applied")), "{stdout}");
    assert!(stdout.contains("check: passed") && stdout.contains("check: PASSED"), "{stdout}");
    eventually("the check namespace is deleted", 60, || match try_kubectl(&["get", "namespace", &check_ns]) {
        Err(e) if e.contains("NotFound") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert!(try_kubectl(&["-n", &ns.0, "get", "deployment", "hello"]).is_err(), "check deployed into the configured namespace");

    let (stdout, _) = p.ok(&["check", "--keep"]);
    let kept = stdout.split("check: namespace ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(kubectl(&["get", "namespace", &kept]).contains(&kept));
    kubectl(&["delete", "namespace", &kept, "--wait=false"]);
}

/// A rollout that succeeded and whose server exits 15 s later (after the settle window): `up` says so with
/// the exit code and the last lines, and — with rollback-on-failure, within a minute of the rollout — puts
/// the last good image back.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_crash_after_a_successful_iteration_is_reported_and_rolled_back() {
    let ns = Namespace::new("up-crash");
    let p = running_patch_project(&ns, "60s", "rollback-on-failure = true\n");
    let good = template_image(&ns.0, &p.name);
    let mut up = Up::start(&p);
    let first = up.wait("iteration", 90);
    p.write("app/serve.sh", "#!/bin/sh\nhttpd -p 8080 -h /www\nsleep 15\necho late-crash-marker: lost the database >&2\nexit 4\n");
    let second = up.wait("iteration", 90);
    assert_ne!(second["tag"], first["tag"]);
    assert_ne!(template_image(&ns.0, &p.name), good, "the iteration rolled out");
    let crash = up.wait_for("the crash", 60, |v| v["event"] == "crashed" || v["event"] == "failed");
    assert_eq!(crash["event"], "crashed", "{crash}");
    eprintln!("the crash, as --json tells it: {crash}");
    assert_eq!((&crash["tag"], &crash["rollback"], &crash["late"]), (&second["tag"], &first["tag"], &serde_json::json!(false)), "{crash}");
    let error = crash["error"].as_str().unwrap();
    assert!(error.contains("exited with code 4") && error.contains("late-crash-marker: lost the database"), "{crash}");
    let back = up.wait_for("the rollback", 90, |v| v["event"] == "rolled-back" || v["event"] == "rollout-failed");
    assert_eq!((&back["event"], &back["tag"]), (&serde_json::json!("rolled-back"), &first["tag"]), "{back}");
    assert_eq!(template_image(&ns.0, &p.name), good, "the last good image is back");
    // The crashing content is still on disk: saving it again deploys it again rather than calling it unchanged.
    let serve = std::fs::read_to_string(p.path("app/serve.sh")).unwrap();
    p.write("app/serve.sh", &serve);
    let third = up.wait_for("the next save", 90, |v| v["event"] == "iteration" || v["event"] == "unchanged");
    assert_eq!((&third["event"], &third["tag"]), (&serde_json::json!("iteration"), &second["tag"]), "{third}");
}

/// Logs follow the workload's pods as they come: a pod added by a scale-up after the rollout has its lines
/// streamed too (the follower reads the namespace's pod watch; it used to list the pods once, at the end of
/// the rollout, and never saw this one).
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn logs_follow_a_pod_that_comes_after_the_rollout() {
    let ns = Namespace::new("uplogs");
    let p = up_project(&ns);
    let mut up = Up::start(&p);
    up.wait("iteration", 90);
    let first = eventually("the rollout's pod alone", 30, || match live_pods(&ns.0, "hello").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    // Its log line may come before the iteration's own line (the follower starts with the rollout's end).
    let of_first = |v: &serde_json::Value| v["event"] == "log" && v["message"].as_str().unwrap_or("").contains(&format!("[{first}]"));
    up.seen_or_wait_for("the first pod's log line", 30, of_first);
    kubectl(&["-n", &ns.0, "scale", "deployment", "hello", "--replicas=2"]);
    let second = eventually("a second pod", 30, || {
        live_pods(&ns.0, "hello").into_iter().find(|p| *p != first).ok_or_else(|| "only the first".to_string())
    });
    let log = up.wait_for("the new pod's log line", 60, |v| v["event"] == "log" && v["message"].as_str().unwrap_or("").contains(&format!("[{second}]")));
    assert!(log["message"].as_str().unwrap().contains("hello: serving /www on :8080"), "{log}");
}
