//! `devloop check --report FILE` as CI runs it (`CI=true`), against the real stack: the JUnit file, read back
//! by a real XML parser, has each build, rollout and command as a test case — a passing check, a failing
//! command (its exit code and output), a crash-looping rollout (its reason and log lines, the commands
//! skipped) and a failing build (the rest skipped) — and nothing devloop prints holds a control sequence.
//! Run through scripts/test.

mod common;
use common::*;

use std::path::Path;

/// Runs `devloop -v check --report <dir>/junit.xml` with CI=true; returns (exit code, stdout, stderr, report).
fn ci_check(p: &Project) -> (Option<i32>, String, String, junit::Report) {
    let report = p.path("reports/junit.xml");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    let out = p.devloop_at(p.dir.path(), &["-v", "check", "--report", report.to_str().unwrap()], &[("CI", Path::new("true"))]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(e.contains(&format!("devloop: JUnit report written to {}", report.display())), "{o}\n{e}");
    (out.status.code(), o, e, junit::read(&report))
}

/// A project whose check forwards to `hello` and runs `commands` (TOML strings).
fn project(ns: &Namespace, commands: &[&str]) -> Project {
    let commands: Vec<String> = commands.iter().map(|c| format!("{c:?}")).collect();
    manifest_project(&ns.0, &format!("[[port-forward]]\ndeployment = \"hello\"\nremote = 8080\n[check]\ncommands = [{}]\n", commands.join(", ")))
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_passing_check_reports_each_build_rollout_and_command_and_prints_no_control_sequences() {
    let ns = Namespace::new("report-pass");
    let p = project(&ns, &["curl -sf $DEVLOOP_URL_HELLO | grep Hello", "echo second-command-marker"]);
    let (code, stdout, stderr, r) = ci_check(&p);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // -v: tracing's info lines are on stderr too; under CI none is coloured.
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "a control sequence under CI:\n{stdout:?}\n{stderr:?}");
    assert!(!stdout.contains('\r') && !stderr.contains('\r'), "a carriage return under CI:\n{stdout:?}\n{stderr:?}");
    assert_eq!(r.counts, (4, 0, 0, 0), "{r:?}");
    let build = &r.suite("build")[0];
    assert_eq!((build.name.as_str(), build.verdict.as_str()), (p.name.as_str(), "passed"));
    assert!(build.out.contains(&format!("/{}:", p.name)) && build.out.contains("steps cached"), "{build:?}");
    let rollout = &r.suite("rollout")[0];
    assert_eq!(rollout.name, format!("{}: deployment/hello", p.name));
    assert!(rollout.time > 0.0, "{rollout:?}");
    let commands = r.suite("command");
    assert_eq!(commands.len(), 2);
    assert!(commands[0].out.contains("Hello from devloop"), "{commands:?}");
    assert_eq!(commands[1].out, "second-command-marker\n");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_failing_command_is_a_failure_with_its_exit_code_and_output() {
    let ns = Namespace::new("report-cmd");
    // Colours and a CDATA end in the output must not break the file.
    let failing = r"echo fail-marker; printf 'bad \033[31mred\033[0m ]]> <x> &\n'; exit 3";
    let p = project(&ns, &[failing, "true"]);
    let (code, stdout, stderr, r) = ci_check(&p);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(r.counts, (4, 1, 0, 0), "{r:?}");
    let commands = r.suite("command");
    let failed = commands.iter().find(|c| c.name == failing).unwrap();
    assert_eq!((failed.verdict.as_str(), failed.kind.as_str()), ("failure", "exit code 3"), "{failed:?}");
    assert!(failed.message.contains("exit code 3"), "{failed:?}");
    assert!(failed.text.contains("fail-marker") && failed.text.contains("bad \\x1b[31mred\\x1b[0m ]]> <x> &"), "{failed:?}");
    assert!(failed.out.starts_with("fail-marker\n"), "{failed:?}");
    // The next command still ran, as the check runs every command.
    assert_eq!(commands.iter().find(|c| c.name == "true").unwrap().verdict, "passed");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_crash_looping_rollout_is_a_failure_with_its_reason_and_log_lines_and_the_commands_are_skipped() {
    let ns = Namespace::new("report-crash");
    let p = project(&ns, &["true", "echo never"]);
    p.write("app/serve.sh", "#!/bin/sh\necho crash-marker: config file missing >&2\nexit 1\n");
    let (code, stdout, stderr, r) = ci_check(&p);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(r.counts, (4, 1, 0, 2), "{r:?}");
    let rollout = &r.suite("rollout")[0];
    assert_eq!((rollout.name.clone(), rollout.verdict.as_str()), (format!("{}: deployment/hello", p.name), "failure"), "{rollout:?}");
    // Judged at its first exit (`Exited`), or at the kubelet's back-off when the watch saw that first.
    assert!(["Exited", "CrashLoopBackOff"].contains(&rollout.kind.as_str()), "{rollout:?}");
    assert!(rollout.message.starts_with(&rollout.kind) && rollout.message.contains("(pod hello-"), "{rollout:?}");
    assert!(rollout.text.contains("crash-marker: config file missing") && rollout.out.contains("crash-marker"), "{rollout:?}");
    for c in r.suite("command") {
        assert_eq!((c.verdict.as_str(), c.message.as_str()), ("skipped", "not run: an earlier stage failed"), "{c:?}");
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_failing_build_is_a_failure_and_every_later_stage_is_a_skipped_case() {
    let ns = Namespace::new("report-build");
    let p = project(&ns, &["true"]);
    let dockerfile = std::fs::read_to_string(p.path("app/Dockerfile")).unwrap();
    p.write("app/Dockerfile", &format!("{dockerfile}RUN echo build-marker-{} && exit 7\n", p.name));
    let (code, stdout, stderr, r) = ci_check(&p);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(r.counts, (3, 1, 0, 2), "{r:?}");
    let build = &r.suite("build")[0];
    assert_eq!((build.verdict.as_str(), build.kind.as_str()), ("failure", "build failed"), "{build:?}");
    assert!(build.text.contains(&format!("build-marker-{}", p.name)), "{build:?}");
    assert_eq!(r.suite("rollout")[0].verdict, "skipped");
    assert_eq!(r.suite("command")[0].verdict, "skipped");
    assert!(!stdout.contains("check: namespace"), "nothing is created after a failed build:\n{stdout}");
}
