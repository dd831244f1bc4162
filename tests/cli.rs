//! The command line without servers: config errors exit 2 naming file, line and key; an unreachable
//! BuildKit is named with its address.

mod common;
use common::Project;
use std::path::Path;

#[test]
fn a_bad_config_exits_2_naming_file_line_and_key() {
    let p = Project::hello("127.0.0.1:1");
    std::fs::write(p.path("devloop.toml"), "[registry]\nhost = \"r:5000\"\n[[image]]\nname = \"a\"\ncontxt = \"app\"\n").unwrap();
    let out = p.devloop(&["hash"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("devloop.toml:5:1: key `image[0].contxt`"), "{err}");
    assert!(err.contains("did you mean `context`"), "{err}");
}

/// `[[image]] tag = "{hash}-kiamol"` is the tag `hash` prints (and every command pushes and deploys); a
/// template that cannot make a tag, or a `set` placeholder devloop does not know, exits 2 at its place.
#[test]
fn a_tag_template_makes_the_tag_and_template_mistakes_exit_2_at_their_line_and_key() {
    let p = Project::hello("127.0.0.1:1");
    let plain = p.tag();
    p.write_config("tag = \"{hash}-kiamol\"");
    assert_eq!(p.tag(), format!("{plain}-kiamol"), "the same content hash, in the template");
    let deploy = format!("[[deploy]]\nimage = \"{}\"\nhelm = {{ chart = \"app/chart\", release = \"r\", set = {{ n = \"{{tag}}\", server = \"{{registy}}\" }} }}", p.name);
    let cases = [
        ("tag = \"{hash}:1\"".to_string(), "devloop.toml:10:7: key `image[0].tag`", "does not make a valid tag"),
        ("tag = \"build-1\"".to_string(), "devloop.toml:10:7: key `image[0].tag`", "has no {hash}"),
        (format!("tag = \"{{hash}}-kiamol\"\n{deploy}"), "devloop.toml:13:", "key `deploy[0].helm.set.server`: `{registy}`: unknown placeholder `{registy}`"),
    ];
    for (extra, place, says) in cases {
        p.write_config(&extra);
        let out = p.devloop(&["hash"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(place) && err.contains(says), "{extra}: {err}");
    }
}

#[test]
fn a_context_directory_that_does_not_exist_exits_2_naming_it_with_line_and_key() {
    let p = Project::hello("127.0.0.1:1");
    let text = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let (line, _) = text.lines().enumerate().find(|(_, l)| l.starts_with("context = ")).expect("the project sets context");
    std::fs::write(p.path("devloop.toml"), text.replacen("context = \"app\"", "context = \"nowhere\"", 1)).unwrap();
    for cmd in ["hash", "build"] {
        let out = p.devloop(&[cmd]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains(&format!("devloop.toml:{}:11: key `image[0].context`", line + 1)), "{cmd}: {err}");
        assert!(err.contains("nowhere") && err.contains("does not exist") && !err.contains("Dockerfile"), "{cmd}: {err}");
    }
}

#[test]
fn no_config_anywhere_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_devloop")).arg("hash").current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no devloop.toml"));
}

#[test]
fn an_unknown_image_name_exits_2_listing_the_known_ones() {
    let p = Project::hello("127.0.0.1:1");
    let out = p.devloop(&["hash", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("configured: {}", p.name)));
}

#[test]
fn hash_is_the_same_from_a_subdirectory_and_another_copy() {
    let a = Project::hello("127.0.0.1:1");
    let b = Project::hello("127.0.0.1:1");
    std::fs::write(b.path("app/www/nonce.txt"), std::fs::read(a.path("app/www/nonce.txt")).unwrap()).unwrap();
    std::fs::write(b.path("devloop.toml"), std::fs::read(a.path("devloop.toml")).unwrap()).unwrap();
    let from_sub = a.devloop_at(&a.path("app/www"), &["hash"], &[]);
    let sub_tag = String::from_utf8_lossy(&from_sub.stdout).split(':').next_back().unwrap().trim().to_string();
    assert_eq!(sub_tag, a.tag());
    assert_eq!(a.tag(), b.tag());
}

#[test]
fn an_unreachable_buildkit_is_named_with_its_address() {
    let p = Project::hello("127.0.0.1:9");
    // BUILDKIT_HOST overrides [buildkit] addr.
    let out = p.devloop_at(p.dir.path(), &["build", "--force"], &[("BUILDKIT_HOST", Path::new("unix:///nonexistent/buildkitd.sock"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("BuildKit is unreachable at unix:///nonexistent/buildkitd.sock"), "{err}");
    assert!(err.contains("scripts/stack up"), "{err}");
}

#[test]
fn a_context_not_allow_listed_is_refused_before_any_connection() {
    // A listener standing in for the refused cluster's API server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = Project::hello("127.0.0.1:9");
    let kubeconfig = remote_kubeconfig(&p, port);
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    std::fs::write(p.path("devloop.toml"), format!("{cfg}[[deploy]]\nimage = \"{}\"\ndeployment = \"x\"\n", p.name)).unwrap();
    let out = p.devloop_at(p.dir.path(), &["deploy"], &[("KUBECONFIG", &kubeconfig)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refusing to deploy to kube context `prod-eu`"), "{err}");
    assert!(err.contains("allow-contexts = [\"prod-eu\"]"), "{err}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the refused context's server was contacted: {other:?}"),
    }
    // --allow-context lets it past the check: it then asks that cluster for the Deployment to patch (before
    // any build), and finds nothing listening (exit 1).
    drop(listener);
    let out = p.devloop_at(p.dir.path(), &["deploy", "--allow-context", "prod-eu"], &[("KUBECONFIG", &kubeconfig)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("reading deployment default/x"), "{err}");
}

/// A port on 127.0.0.1 with nothing listening.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn plain_tcp_to_buildkit_exits_2_unless_opted_in_and_then_warns_once() {
    let addr = format!("tcp://127.0.0.1:{}", closed_port());
    let p = Project::hello("127.0.0.1:9");
    p.write_config_full(&format!("addr = \"{addr}\""), "", "");
    let out = p.devloop(&["build", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("key `buildkit.addr`") && err.contains(&addr), "{err}");
    assert!(err.contains("in the clear") && err.contains("insecure = true"), "{err}");

    // The same address from BUILDKIT_HOST, over a file that names a socket.
    p.write_config_full("addr = \"unix:///nonexistent/buildkitd.sock\"", "", "");
    let out = p.devloop_at(p.dir.path(), &["build", "--force"], &[("BUILDKIT_HOST", Path::new(&addr))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("key `buildkit.addr`") && err.contains("from BUILDKIT_HOST"), "{err}");

    // Opted in: it connects (and fails: nothing listens), after one warning line.
    p.write_config_full(&format!("addr = \"{addr}\"\ninsecure = true"), "", "");
    let out = p.devloop(&["build", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("warning: BuildKit at").count(), 1, "{err}");
    assert!(err.contains(&format!("warning: BuildKit at {addr} is plain TCP without TLS")), "{err}");
    assert!(err.contains(&format!("BuildKit is unreachable at {addr}")), "{err}");
}

#[test]
fn no_registry_and_no_cluster_to_ask_exits_2_with_the_ways_out() {
    let p = Project::hello("127.0.0.1:1");
    std::fs::write(p.path("devloop.toml"), "[[image]]\nname = \"a\"\ncontext = \"app\"\n").unwrap();
    let out = p.devloop_at(&p.path(""), &["build"], &[("KUBECONFIG", Path::new("/nonexistent/kubeconfig"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no registry: [registry] host is not set and the cluster could not be asked"), "{err}");
    assert!(err.contains("1. set `host") && err.contains("2. load images") && err.contains("3. give the cluster"), "{err}");
    // `hash` needs no registry: it names the image without one.
    let out = p.devloop(&["hash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("a a:"), "{out:?}");
}

#[test]
fn buildkit_install_refuses_bad_flags_before_asking_the_cluster_and_bad_kube_addresses_exit_2() {
    // No devloop.toml and no kubeconfig: the flags are judged first (exit 2 naming the flag).
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_devloop"))
            .args(args)
            .current_dir(dir.path())
            .env("KUBECONFIG", dir.path().join("none"))
            .env_remove("BUILDKIT_HOST")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let cases: &[(&[&str], &str)] = &[
        (&["buildkit", "install", "--name", "Bad"], "--name: `Bad` is not a valid name"),
        (&["buildkit", "install", "--registry-ca", "reg:5443"], "--registry-ca: `reg:5443`: expected HOST=FILE"),
        (&["buildkit", "install", "--registry-ca", "reg:5443=/nonexistent.pem"], "--registry-ca: cannot read /nonexistent.pem"),
    ];
    for (args, want) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Good flags get as far as the kubeconfig, which is missing here.
    let (code, err) = run(&["buildkit", "install"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("kubeconfig"), "{err}");
    // A malformed kube address in BUILDKIT_HOST is a config error naming the key.
    let p = Project::hello("127.0.0.1:1");
    let out = p.devloop_at(p.dir.path(), &["build"], &[("BUILDKIT_HOST", Path::new("kube-deployment://bk?port=0"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("key `buildkit.addr`") && err.contains("not a TCP port") && err.contains("BUILDKIT_HOST"), "{err}");
}

/// A cache spec the config or `build --cache-to/--cache-from` cannot use exits 2 before any connection, naming
/// its place (file, line, key) or the flag; the cache settings leave the content tag as it was.
#[test]
fn cache_specs_do_not_change_the_tag_and_bad_ones_exit_2_naming_key_or_flag() {
    let p = Project::hello("127.0.0.1:1");
    let plain = p.tag();
    p.write_config("cache-from = \"type=registry,ref={registry}/cache/{name}\"\ncache-to = [\"type=inline\"]");
    assert_eq!(p.tag(), plain, "same bytes, same tag");
    p.write_config("cache-to = \"type=registry,mode=max\"");
    let out = p.devloop(&["hash"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("devloop.toml:10:12: key `image[0].cache-to`") && err.contains("needs ref="), "{err}");
    p.write_config("");
    for (flag, spec, says) in [("--cache-to", "type=s4,ref=x", "unknown cache type `s4`"), ("--cache-from", "type=inline", "type=inline is a cache-to")] {
        let out = p.devloop(&["build", flag, spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(&format!("{flag} {spec}: {says}")) && !err.contains("unreachable"), "{flag}: {err}");
    }
}

/// A kubeconfig whose one context, `prod-eu`, is not a local cluster; its server is `127.0.0.1:port`.
fn remote_kubeconfig(p: &Project, port: u16) -> std::path::PathBuf {
    let kubeconfig = p.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {{server: \"https://127.0.0.1:{port}\"}}\n\
             users:\n- name: prod\n  user: {{token: abc}}\ncontexts:\n- name: prod-eu\n  context: {{cluster: prod, user: prod}}\n\
             current-context: prod-eu\n"
        ),
    )
    .unwrap();
    kubeconfig
}

/// The exit code table of the README, for the codes that need no cluster: 2 for usage (a bad flag, a report
/// that cannot be written, a config without what the command needs, a context not allow-listed), 1 when the
/// cluster `--allow-context` let through does not answer; `check --report` writes its file in both cases.
#[test]
fn check_exit_codes_and_its_report_without_a_cluster() {
    let p = Project::hello("127.0.0.1:9");
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    let code = |args: &[&str], envs: &[(&str, &Path)]| {
        let out = p.devloop_at(p.dir.path(), args, envs);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A flag clap does not know, and a report whose directory does not exist: 2, before anything runs.
    assert_eq!(code(&["check", "--no-such-flag"], &[]).0, Some(2));
    let (c, err) = code(&["check", "--report", "no/such/dir/junit.xml"], &[]);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("--report no/such/dir/junit.xml: no/such/dir is not a directory"), "{err}");
    // `deploy` of a config without [[deploy]]: a usage error.
    let (c, err) = code(&["deploy"], &[]);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("has no [[deploy]] table"), "{err}");

    std::fs::write(p.path("devloop.toml"), format!("{cfg}[[deploy]]\nimage = \"{}\"\ndeployment = \"x\"\n[check]\ncommands = [\"true\"]\n", p.name)).unwrap();
    let kubeconfig = remote_kubeconfig(&p, closed_port());
    let report = p.path("junit.xml");
    let args = ["check", "--report", report.to_str().unwrap()];
    let (c, err) = code(&args, &[("KUBECONFIG", &kubeconfig), ("CI", Path::new("true"))]);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("refusing to deploy to kube context `prod-eu`"), "{err}");
    let r = common::junit::read(&report);
    assert_eq!(r.counts, (4, 0, 1, 3), "{r:?}");
    assert!(r.suite("setup")[0].message.contains("refusing to deploy to kube context `prod-eu`"), "{r:?}");
    // --allow-context lets `check` past the allow-list: it then asks that cluster for the Deployment to copy.
    let (c, err) = code(&[&args[..], &["--allow-context", "prod-eu"]].concat(), &[("KUBECONFIG", &kubeconfig)]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("reading deployment default/x"), "{err}");
    let r = common::junit::read(&report);
    assert!(r.suite("setup")[0].message.contains("reading deployment default/x"), "{r:?}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// Without a person to answer (CI, or no terminal on stdin), a kubeconfig's exec credential plugin is told
/// it may not prompt (`interactive: false` in KUBERNETES_EXEC_INFO), as kubectl tells it; kube-rs alone would
/// hand it the terminal.
#[test]
fn an_exec_credential_plugin_is_told_not_to_prompt_under_ci() {
    let p = Project::hello("127.0.0.1:9");
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    std::fs::write(p.path("devloop.toml"), format!("{cfg}[[deploy]]\nimage = \"{}\"\ndeployment = \"x\"\n", p.name)).unwrap();
    let info = p.path("exec-info.json");
    let plugin = p.path("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > {}\n\
             echo '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"t\"}}}}'\n",
            info.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let kubeconfig = p.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {{server: \"https://127.0.0.1:{}\"}}\n\
             users:\n- name: prod\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n\
             contexts:\n- name: prod-eu\n  context: {{cluster: prod, user: prod}}\ncurrent-context: prod-eu\n",
            closed_port(),
            plugin.display()
        ),
    )
    .unwrap();
    let out = p.devloop_at(p.dir.path(), &["check", "--allow-context", "prod-eu"], &[("KUBECONFIG", &kubeconfig), ("CI", Path::new("true"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let said = std::fs::read_to_string(&info).unwrap_or_else(|e| panic!("the plugin did not run ({e}):\n{err}"));
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(said["spec"]["interactive"], serde_json::json!(false), "{said}");
}
