//! `devloop build` and `devloop hash` against the real stack: BuildKit over gRPC, the real registry.
//! Run through scripts/test (it starts the stack and exports BUILDKIT_HOST and DEVLOOP_REGISTRY).

mod common;
use common::{env, registry_digest, Project};


/// `<ref>@<digest>` from the "pushed" line.
fn pushed(stdout: &str) -> (String, String) {
    let line = stdout.lines().find(|l| l.contains(": pushed ")).unwrap_or_else(|| panic!("no pushed line in {stdout}"));
    let r = line.split(": pushed ").nth(1).unwrap().split_whitespace().next().unwrap();
    let (reference, digest) = r.split_once('@').unwrap();
    (reference.to_string(), digest.to_string())
}

/// Paths sent under `context/` in a `-v` build, minus the `.dockerignore` probe BuildKit makes every time.
fn context_sent(stderr: &str) -> Vec<String> {
    let mut v: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.split(": sent context/").nth(1))
        .filter(|p| *p != ".dockerignore")
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn build_pushes_the_digest_the_registry_serves_and_a_rerun_skips() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let tag = p.tag();
    let (out, _) = p.ok(&["build"]);
    let (reference, digest) = pushed(&out);
    assert_eq!(reference, format!("{}/{}:{tag}", p.registry, p.name));
    assert_eq!(registry_digest(&p.registry, &p.name, &tag).as_deref(), Some(digest.as_str()));

    let started = std::time::Instant::now();
    let (out, _) = p.ok(&["build"]);
    eprintln!("registry-hit rerun took {:?}", started.elapsed());
    assert!(out.contains("already in the registry ") && out.contains(&digest), "{out}");
    assert!(!out.contains(": pushed "), "nothing was built or pushed: {out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn after_a_one_file_change_the_context_transfer_carries_only_that_file() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (_, err) = p.ok(&["build", "-v"]);
    let first = context_sent(&err);
    assert!(first.contains(&"www/index.html".to_string()) && first.contains(&"serve.sh".to_string()), "{first:?}");

    p.write("app/www/index.html", "<p>changed</p>\n");
    let (out, err) = p.ok(&["build", "-v"]);
    pushed(&out);
    assert_eq!(context_sent(&err), ["www/index.html"]);
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn dockerignored_files_are_never_sent_and_only_visible_changes_change_the_tag() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("app/.env", "API_KEY=do-not-ship\n");
    // If .env reached BuildKit, `COPY . /all` would copy it and the RUN would fail the build.
    p.write(
        "app/Dockerfile",
        "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nCOPY . /all\nRUN test ! -e /all/.env && test -e /all/www/index.html\n",
    );
    let (out, err) = p.ok(&["build", "-v"]);
    pushed(&out);
    assert!(err.contains("sent context/www/index.html"), "{err}");
    assert!(!err.contains("sent context/.env"), "a dockerignored file was sent:\n{err}");

    let base = p.tag();
    p.write("app/.env", "API_KEY=rotated\n");
    assert_eq!(p.tag(), base, "changing a dockerignored file changed the tag");
    let f = std::fs::File::options().write(true).open(p.path("app/serve.sh")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(p.tag(), base, "touch changed the tag");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path("app/www/index.html"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let chmod = p.tag();
    assert_ne!(chmod, base, "chmod +x did not change the tag");
    p.write_config_with_args("EXTRA = \"1\"", "");
    let arg = p.tag();
    assert_ne!(arg, chmod, "a build arg did not change the tag");
    p.write("app/Dockerfile", "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nCOPY . /srv\n");
    assert_ne!(p.tag(), arg, "a Dockerfile change did not change the tag");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_failing_dockerfile_shows_its_line_and_logs_and_pushes_nothing() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write(
        "app/Dockerfile",
        "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nRUN echo preparing the build && echo 'boom: missing file' >&2 && exit 3\n",
    );
    let tag = p.tag();
    let out = p.devloop(&["build"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:3: RUN echo preparing"), "no Dockerfile line in:\n{err}");
    assert!(err.contains("boom: missing file"), "no log line in:\n{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert_eq!(registry_digest(&p.registry, &p.name, &tag), None, "a failed build pushed an image");

    p.write("app/Dockerfile", "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nFROBNICATE now\n");
    let out = p.devloop(&["build"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Dockerfile:3: FROBNICATE now"), "no Dockerfile line in:\n{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn builds_over_tcp_with_mutual_tls_and_refuses_without_a_client_cert() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (addr, pki) = (env("DEVLOOP_STACK_BUILDKIT_TCP"), env("DEVLOOP_STACK_PKI"));
    p.write_config_full(
        &format!(
            "addr = \"{addr}\"\ntls-ca = \"{pki}/ca.crt\"\ntls-cert = \"{pki}/buildkit-client.crt\"\n\
             tls-key = \"{pki}/buildkit-client.key\""
        ),
        "",
        "",
    );
    let (out, _) = p.ok(&["build"]);
    let (_, digest) = pushed(&out);
    assert_eq!(registry_digest(&p.registry, &p.name, &p.tag()).as_deref(), Some(digest.as_str()));

    // The daemon demands a client certificate: without one the build is refused, with the address named.
    p.write("app/www/index.html", "<p>other</p>\n");
    p.write_config_full(&format!("addr = \"{addr}\"\ntls-ca = \"{pki}/ca.crt\""), "", "");
    let out = p.devloop(&["build"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "{err}");
}

/// A unique marker written only outside the context; the Dockerfile greps for it split in two, so the
/// Dockerfile itself (copied with the context) never matches.
fn outside_secret() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let rest = common::nonce();
    std::fs::write(dir.path().join("outside.txt"), format!("OUTSIDE-SECRET-{rest}\n")).unwrap();
    let probe = format!("if grep -rqF \"OUTSIDE-\"\"SECRET-{rest}\" /all; then echo LEAK\"\"ED; exit 7; fi");
    (dir, rest, probe)
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn symlinks_to_outside_the_context_are_sent_as_links_never_followed() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (outside, _, probe) = outside_secret();
    std::os::unix::fs::symlink(outside.path().join("outside.txt"), p.path("app/secret")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("app/outdir")).unwrap();
    p.write(
        "app/Dockerfile",
        &format!("ARG REGISTRY\nFROM ${{REGISTRY}}/busybox:latest\nCOPY . /all\nRUN test -L /all/secret && test -L /all/outdir && {probe}\n"),
    );
    let (out, err) = p.ok(&["build", "-v"]);
    pushed(&out);
    assert!(!err.contains("LEAKED"), "{err}");
    assert!(err.contains("sent context/www/index.html"), "{err}");
    assert!(!err.contains("sent context/secret") && !err.contains("sent context/outdir"), "{err}");
}

/// A log line without its terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_file_swapped_for_a_symlink_after_listing_is_refused_not_followed() {
    use std::io::BufRead;
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let (outside, _, probe) = outside_secret();
    // Many files before the target in DiffCopy order: BuildKit asks for `zzz.txt` only after its STAT, and
    // devloop answers REQs in order, so the request comes seconds after devloop logs the finished listing.
    for i in 0..1_500 {
        p.write(&format!("app/bulk/{:02}/{i}", i % 50), "x");
    }
    p.write("app/zzz.txt", "inside\n");
    p.write("app/Dockerfile", &format!("ARG REGISTRY\nFROM ${{REGISTRY}}/busybox:latest\nCOPY . /all\nRUN {probe}\n"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_devloop"))
        .args(["build", "-v"])
        .current_dir(p.dir.path())
        .env_remove("DEVLOOP_REGISTRY")
        .env_remove("BUILDKIT_HOST")
        .env("RUST_LOG", "devloop=debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    let mut swapped = false;
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = strip_ansi(&line.unwrap());
        let entries = line.split("entries=").nth(1).and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok());
        if !swapped && line.contains("dir_name: \"context\"") && entries >= Some(1_500) {
            let tmp = p.path("app/.swap");
            std::os::unix::fs::symlink(outside.path().join("outside.txt"), &tmp).unwrap();
            std::fs::rename(&tmp, p.path("app/zzz.txt")).unwrap();
            swapped = true;
        }
        err.push_str(&line);
        err.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(swapped, "never saw the context listing:\n{err}");
    assert!(!err.contains("LEAKED"), "the outside file reached the build:\n{err}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to send context/zzz.txt"), "{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn only_the_dockerfile_and_its_ignore_files_leave_the_dockerfiles_directory() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("docker/Dockerfile", "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nCOPY --from=dfdir . /dfdir\nCOPY . /all\n\
        RUN ls -la /dfdir && test -e /dfdir/Dockerfile && test ! -e /dfdir/secret.env && test ! -e /dfdir/sub\n");
    p.write("docker/Dockerfile.dockerignore", "k8s\n");
    p.write("docker/secret.env", "TOKEN=do-not-ship\n");
    p.write("docker/sub/notes.txt", "private\n");
    // A named context on the Dockerfile's directory: BuildKit asks for all of it, not just the Dockerfile.
    p.write_config("dockerfile = \"../docker/Dockerfile\"\nfrontend-opts = { \"context:dfdir\" = \"local:dockerfile\" }");
    let (out, err) = p.ok(&["build", "-v"]);
    pushed(&out);
    let sent: Vec<&str> = err.lines().filter_map(|l| l.split(": sent dockerfile/").nth(1)).collect();
    assert!(sent.contains(&"Dockerfile"), "{err}");
    for s in &sent {
        assert!(["Dockerfile", "Dockerfile.dockerignore", ".dockerignore"].contains(s), "sent dockerfile/{s}:\n{err}");
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_dockerignore_listing_the_dockerfile_and_itself_still_builds() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write("app/.dockerignore", "Dockerfile\n.dockerignore\nk8s\n");
    p.write("app/Dockerfile", "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nCOPY . /all\n\
        RUN test ! -e /all/Dockerfile && test ! -e /all/.dockerignore && test -e /all/www/index.html\n");
    let (out, err) = p.ok(&["build", "-v"]);
    pushed(&out);
    assert!(err.contains("sent dockerfile/Dockerfile"), "{err}");
    assert!(!err.contains("sent context/Dockerfile"), "{err}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_first_build_of_thousands_of_files_transfers_them_all() {
    // BuildKit sends one small REQ per file; left unread while files are sent, they once made h2 close the
    // session's connection (GOAWAY ENHANCE_YOUR_CALM) and the build failed with "context canceled".
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    for i in 0..6_000 {
        p.write(&format!("app/bulk/{:02}/{i}", i % 50), "x");
    }
    p.write("app/Dockerfile", "ARG REGISTRY\nFROM ${REGISTRY}/busybox:latest\nCOPY . /all\nRUN test -e /all/bulk/49/5999\n");
    let (out, _) = p.ok(&["build"]);
    pushed(&out);
    let files: u64 = out.split("sent ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(files >= 6_000, "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_plain_http_registry_without_insecure_is_said_to_answer_in_plain_http() {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    std::fs::write(p.path("devloop.toml"), cfg.replace("insecure = true\n", "")).unwrap();
    // devloop's own check speaks https to it (BuildKit's push follows buildkitd's config, which knows).
    let out = p.devloop(&["build"]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    assert!(e.contains(&format!("registry {} answers in plain HTTP", p.registry)) && e.contains("insecure = true"), "{o}\n{e}");
    assert!(!e.contains("unreachable") && !e.contains("InvalidContentType"), "{o}\n{e}");
}
