use super::*;

const GOOD: &str = r#"
[buildkit]
addr = "unix:///run/buildkit/buildkitd.sock"
[registry]
host = "127.0.0.1:5000"
insecure = true
[[image]]
name = "hello"
context = "examples/hello"
build-args = { GREETING = "hi" }
ignore = ["*.log"]
[kube]
context = "devloop-local"
allow-contexts = ["lab-*"]
[[deploy]]
image = "hello"
deployment = "hello"
rollout-timeout = "90s"
[[deploy]]
image = "hello"
manifests = ["k8s/*.yaml"]
[watch]
debounce = "50ms"
[[port-forward]]
deployment = "hello"
local = 8080
remote = 8080
[check]
commands = ["curl -sf $DEVLOOP_URL_HELLO"]
"#;

fn parse_err(text: &str) -> Located {
    match parse(Path::new("/p/devloop.toml"), text) {
        Err(Error::Invalid(l)) => *l,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn good_config_resolves_paths_and_defaults() {
    let c = parse(Path::new("/p/devloop.toml"), GOOD).unwrap();
    let img = c.image("hello").unwrap();
    assert_eq!(img.context, Path::new("/p/examples/hello"));
    assert_eq!(img.dockerfile, Path::new("/p/examples/hello/Dockerfile"));
    assert_eq!(img.frontend, "dockerfile.v0");
    assert_eq!(img.build_args["GREETING"], "hi");
    assert!(c.registry.insecure);
    assert_eq!(c.registry.pull_host(), "127.0.0.1:5000");
    assert_eq!(c.registry.load, Load::Push, "pushing is the default");
    assert_eq!(c.registry.containerd_namespace, "k8s.io");
    assert_eq!(c.kube.allow_contexts, ["lab-*"]);
    assert_eq!(c.deploys[0].target, DeployTarget::Patch { deployment: "hello".into(), container: None });
    assert_eq!(c.deploys[0].rollout_timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.deploys[1].target, DeployTarget::Manifests(ManifestSource::Files(vec!["k8s/*.yaml".into()])));
    assert_eq!(c.deploys[1].rollout_timeout, std::time::Duration::from_secs(120));
    assert_eq!(c.watch.debounce, std::time::Duration::from_millis(50));
    assert_eq!(c.watch.max_wait, std::time::Duration::from_secs(1));
    assert_eq!(c.forwards, [Forward { kind: WorkloadKind::Deployment, name: "hello".into(), local: 8080, remote: 8080 }]);
    assert_eq!(c.check.commands.len(), 1);
    assert_eq!(c.check.timeout, std::time::Duration::from_secs(300), "the default [check] timeout");
    let c = parse(Path::new("/p/devloop.toml"), &format!("{GOOD}timeout = \"90s\"\n")).unwrap();
    assert_eq!(c.check.timeout, std::time::Duration::from_secs(90));
}

/// (config text, expected line, expected key, a fragment of the message)
#[test]
fn bad_configs_name_line_key_and_cause() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontxt = \"x\"\n", 5, "image[0].contxt", "did you mean `context`"),
        ("[registry]\nhost = \"r\"\nport = 1\n", 3, "registry.port", "unknown field `port`"),
        ("[registry]\nload = \"kind\"\n", 2, "registry.load", "expected true, false, \"docker\" or \"containerd\""),
        ("[registry]\nhost = \"r\"\ninsecure = \"yes\"\n", 3, "registry.insecure", "expected a boolean"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"Hello\"\ncontext = \".\"\n", 4, "image[0].name", "not a valid image name"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\nbuild-args = { X = 1 }\n", 6, "image[0].build-args.X", "expected a string"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\nfrontend = \"gateway.v0\"\n", 6, "image[0].frontend-source", "needs frontend-source"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n", 7, "image[1].name", "defined twice"),
        ("[registry\nhost = \"r\"\n", 1, "", "expected `]`"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"b\"\ndeployment = \"a\"\n", 7, "deploy[0].image", "no [[image]] named `b`"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"a\"\n", 6, "deploy[0].deployment", "set `deployment"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"a\"\nmanifests = [\"k/*\"]\nkustomize = \"k\"\n", 6, "deploy[0].kustomize", "not both"),
        ("[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"a\"\ndeployment = \"a\"\nrollout-timeout = \"soon\"\n", 9, "deploy[0].rollout-timeout", "not a duration"),
        ("[registry]\nhost = \"r\"\n[kube]\nallow-context = [\"x\"]\n", 4, "kube.allow-context", "did you mean `allow-contexts`"),
        ("[registry]\nhost = \"r\"\n[watch]\ndebounce = \"fast\"\n", 4, "watch.debounce", "not a duration"),
        ("[registry]\nhost = \"r\"\n[check]\ncommands = []\ntimeout = \"forever\"\n", 5, "check.timeout", "not a duration like \"5m\""),
        ("[registry]\nhost = \"r\"\n[check]\ntimeout = \"0s\"\n", 4, "check.timeout", "more than 0s"),
        ("[registry]\nhost = \"r\"\n[check]\ntimeout = 30\n", 4, "check.timeout", "expected a string"),
        ("[registry]\nhost = \"r\"\n[[port-forward]]\ndeployment = \"a\"\nremote = 70000\n", 5, "port-forward[0].remote", "invalid value"),
    ];
    for (text, line, key, fragment) in cases {
        let e = parse_err(text);
        assert_eq!(e.line_col.map(|l| l.0), Some(*line), "line for {text:?}: {e}");
        assert_eq!(e.key, *key, "key for {text:?}: {e}");
        assert!(e.message.contains(fragment), "message for {text:?}: {e}");
        assert!(e.to_string().starts_with("/p/devloop.toml:"), "{e}");
    }
}

#[test]
fn bad_registry_host_and_bad_addr_are_named() {
    let e = parse_err("[registry]\nhost = \"http://r\"\n");
    assert_eq!(e.key, "registry.host");
    let e = parse_err("[buildkit]\naddr = \"localhost:1234\"\n[registry]\nhost = \"r\"\n");
    assert_eq!(e.key, "buildkit.addr");
}

#[test]
fn kube_addresses_are_accepted_and_bad_ones_name_the_key() {
    for good in ["kube-deployment://buildkitd?namespace=build", "kube-pod://bk-0?namespace=ci&port=2345", "kube-deployment://bk"] {
        let c = load_env(&format!("addr = \"{good}\""), &[]).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(c.buildkit.addr, good);
    }
    // (address, fragment of the message), from the file and from BUILDKIT_HOST.
    let bad = [("kube-deployment://bk?port=0", "not a TCP port"), ("kube-pod://?namespace=x", "no pod name"), ("kube-pod://bk?ns=x", "unknown parameter `ns`")];
    for (addr, frag) in bad {
        let e = parse_err(&format!("[buildkit]\naddr = \"{addr}\"\n[registry]\nhost = \"r\"\n"));
        assert_eq!(e.key, "buildkit.addr", "{addr}");
        assert!(e.message.contains(frag), "{addr}: {}", e.message);
        let Err(Error::Invalid(l)) = load_env("", &[("BUILDKIT_HOST", addr)]) else { panic!("{addr} from BUILDKIT_HOST was accepted") };
        assert!(l.key == "buildkit.addr" && l.message.contains(frag) && l.message.contains("BUILDKIT_HOST"), "{}", l.message);
    }
}

#[test]
fn discover_walks_up_to_the_nearest_parent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), GOOD).unwrap();
    let deep = dir.path().join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    assert_eq!(discover(&deep).unwrap(), dir.path().join(FILE_NAME));
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(discover(other.path()), Err(Error::NotFound(_))));
}

fn load_env(buildkit: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
    let text = format!("[buildkit]\n{buildkit}\n[registry]\nhost = \"r:5000\"\n");
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load_text(Path::new("/p/devloop.toml"), &text, |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

#[test]
fn plain_tcp_to_buildkit_needs_an_explicit_opt_in() {
    // (the [buildkit] table, the environment, accepted?)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case] = &[
        ("addr = \"tcp://10.0.0.5:1234\"", &[], false),
        ("addr = \"tcp://127.0.0.1:1234\"", &[], false),
        ("addr = \"tcp://10.0.0.5:1234\"\ninsecure = true", &[], true),
        ("addr = \"tcp://10.0.0.5:1234\"\ntls-ca = \"ca.pem\"", &[], true),
        ("addr = \"tcp://10.0.0.5:1234\"\ntls-cert = \"c.pem\"\ntls-key = \"k.pem\"", &[], true),
        ("addr = \"unix:///run/buildkit/buildkitd.sock\"", &[], true),
        // BUILDKIT_HOST is held to the same rule, after it overrides the file…
        ("addr = \"unix:///run/b.sock\"", &[("BUILDKIT_HOST", "tcp://10.0.0.5:1234")], false),
        ("addr = \"unix:///run/b.sock\"\ninsecure = true", &[("BUILDKIT_HOST", "tcp://10.0.0.5:1234")], true),
        // …and may also replace a refused address with an acceptable one.
        ("addr = \"tcp://10.0.0.5:1234\"", &[("BUILDKIT_HOST", "unix:///run/b.sock")], true),
    ];
    for (buildkit, env, ok) in cases {
        match load_env(buildkit, env) {
            Ok(c) => assert!(ok, "{buildkit} {env:?} was accepted (addr {})", c.buildkit.addr),
            Err(Error::Invalid(l)) => {
                assert!(!ok, "{buildkit} {env:?}: {l}");
                assert_eq!(l.key, "buildkit.addr");
                let m = l.to_string();
                assert!(m.starts_with("/p/devloop.toml: key `buildkit.addr`: `tcp://"), "{m}");
                assert!(m.contains("in the clear") && m.contains("insecure = true") && m.contains("tls-ca"), "{m}");
                assert_eq!(m.contains("from BUILDKIT_HOST"), !env.is_empty(), "{m}");
            }
            Err(e) => panic!("{buildkit}: {e}"),
        }
    }
}

#[test]
fn registry_auth_hosts_are_read() {
    let c = parse(Path::new("/p/devloop.toml"), "[registry]\nhost = \"r:5000\"\nauth-hosts = [\"auth.example.com\"]\n").unwrap();
    assert_eq!(c.registry.auth_hosts, ["auth.example.com"]);
    assert!(parse(Path::new("/p/devloop.toml"), GOOD).unwrap().registry.auth_hosts.is_empty());
}

#[test]
fn registry_is_optional_and_load_takes_a_bool_or_a_store_name() {
    let base = "[[image]]\nname = \"a\"\ncontext = \".\"\n";
    let c = parse(Path::new("/p/devloop.toml"), base).unwrap();
    assert_eq!(c.registry.host, "", "no [registry]: the host is discovered at run time");
    for (value, want) in [("false", Load::Push), ("true", Load::Docker), ("\"docker\"", Load::Docker), ("\"containerd\"", Load::Containerd)] {
        let text = format!("{base}[registry]\nload = {value}\n");
        assert_eq!(parse(Path::new("/p/devloop.toml"), &text).unwrap().registry.load, want, "load = {value}");
    }
}

#[test]
fn buildkit_addr_set_or_not_and_docker_engine_addresses() {
    // (the [buildkit] table, the environment, the address used, set by the user?)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, bool);
    let none = parse(Path::new("/p/devloop.toml"), "[registry]\nhost = \"r:5000\"\n").unwrap();
    assert_eq!((none.buildkit.addr.as_str(), none.buildkit.addr_set), ("unix:///run/buildkit/buildkitd.sock", false));
    let cases: &[Case] = &[
        ("", &[], "unix:///run/buildkit/buildkitd.sock", false),
        ("addr = \"unix:///run/b.sock\"", &[], "unix:///run/b.sock", true),
        ("", &[("BUILDKIT_HOST", "unix:///run/b.sock")], "unix:///run/b.sock", true),
        ("addr = \"docker://\"", &[], "docker://", true),
        ("addr = \"docker-unix:///srv/docker.sock\"", &[], "docker-unix:///srv/docker.sock", true),
        ("", &[("BUILDKIT_HOST", "docker-unix:///srv/docker.sock")], "docker-unix:///srv/docker.sock", true),
    ];
    for (buildkit, env, addr, set) in cases {
        let c = load_env(buildkit, env).unwrap_or_else(|e| panic!("{buildkit} {env:?}: {e}"));
        assert_eq!((c.buildkit.addr.as_str(), c.buildkit.addr_set), (*addr, *set), "{buildkit} {env:?}");
    }
    for (buildkit, env, says) in [
        ("addr = \"docker-unix://docker.sock\"", &[][..], "absolute"),
        ("addr = \"docker:///var/run/docker.sock\"", &[][..], "docker-unix:///"),
        ("", &[("BUILDKIT_HOST", "docker-unix://rel")][..], "from BUILDKIT_HOST"),
    ] {
        let Err(Error::Invalid(l)) = load_env(buildkit, env) else { panic!("{buildkit} {env:?} was accepted") };
        assert_eq!(l.key, "buildkit.addr");
        assert!(l.to_string().contains(says), "{l}");
    }
}

#[test]
fn a_kustomization_is_a_manifest_source() {
    let text = "[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"a\"\nkustomize = \"k8s/overlays/dev\"\n";
    let c = parse(Path::new("/p/devloop.toml"), text).unwrap();
    assert_eq!(c.deploys[0].target, DeployTarget::Manifests(ManifestSource::Kustomize("k8s/overlays/dev".into())));
    assert_eq!(ManifestSource::Kustomize("k8s/overlays/dev".into()).to_string(), "kustomization k8s/overlays/dev");
}

#[test]
fn a_helm_release_with_defaults_and_with_its_errors_named() {
    let head = "[[image]]\nname = \"a\"\ncontext = \".\"\n[[deploy]]\nimage = \"a\"\n";
    let c = parse(
        Path::new("/p/devloop.toml"),
        &format!("{head}helm = {{ chart = \"chart\", release = \"web\", values = [\"dev.yaml\"], set = {{ n = 2, s = \"x\" }} }}\n"),
    )
    .unwrap();
    let DeployTarget::Helm(h) = &c.deploys[0].target else { panic!("{:?}", c.deploys[0].target) };
    assert_eq!((h.chart.as_str(), h.release.as_str(), h.values.clone()), ("chart", "web", vec!["dev.yaml".to_string()]));
    assert_eq!(h.image_values, crate::config::ImageValues::default());
    assert_eq!(h.set["n"], crate::config::SetValue::Literal("2".into()));
    assert_eq!(h.set["s"], crate::config::SetValue::String("x".into()));
    let full = parse(Path::new("/p/devloop.toml"), &format!("{head}helm = {{ chart = \"c\", release = \"r\", image-values = {{ image = \"img.ref\" }} }}\n")).unwrap();
    let DeployTarget::Helm(h) = &full.deploys[0].target else { panic!() };
    assert_eq!(h.image_values, crate::config::ImageValues::Full("img.ref".into()));
    // Two images of one chart share its release (each upgrade keeps the other's values); one release is one chart.
    let two = "[[image]]\nname = \"a\"\ncontext = \".\"\n[[image]]\nname = \"b\"\ncontext = \".\"\n";
    let pair = |chart_b: &str| format!("{two}[[deploy]]\nimage = \"a\"\nhelm = {{ chart = \"c\", release = \"r\" }}\n[[deploy]]\nimage = \"b\"\nhelm = {{ chart = \"{chart_b}\", release = \"r\" }}\n");
    let shared = parse(Path::new("/p/devloop.toml"), &pair("c")).unwrap();
    assert!(shared.deploys.iter().all(|d| matches!(&d.target, DeployTarget::Helm(h) if h.shared)), "{:?}", shared.deploys);
    assert!(!matches!(&c.deploys[0].target, DeployTarget::Helm(h) if h.shared), "a release of one image alone");
    let l = parse_err(&pair("other"));
    assert_eq!(l.key, "deploy[1].helm.release", "{l}");
    assert!(l.to_string().contains("release `r` is also deploy[0]'s, with chart `c`"), "{l}");
    // A chart's custom resources are judged as a manifest's are.
    let crs = parse(Path::new("/p/devloop.toml"), &format!("{head}helm = {{ chart = \"c\", release = \"r\" }}\nimage-paths = {{ \"argoproj.io/Rollout\" = \"spec.template.spec.containers[*].image\" }}\nready-when = {{ \"argoproj.io/Rollout\" = \"Healthy\" }}\n")).unwrap();
    assert_eq!(crs.deploys[0].custom["argoproj.io/Rollout"].ready_when.as_deref(), Some("Healthy"));
    for (helm, key, says) in [
        ("helm = { release = \"r\" }", "deploy[0].helm.chart", "missing"),
        ("helm = { chart = \"c\" }", "deploy[0].helm.release", "missing"),
        ("helm = { chart = \"c\", release = \"Web_1\" }", "deploy[0].helm.release", "not a release name"),
        ("helm = { chart = \"c\", release = \"r\", set = { a = [1] } }", "deploy[0].helm.set.a", "strings, numbers and booleans"),
        ("helm = { chart = \"c\", release = \"r\", image-values = { image = \"x\", tag = \"y\" } }", "deploy[0].helm.image-values", "not both"),
        ("helm = { chart = \"c\", release = \"r\", chrat = \"x\" }", "deploy[0].helm.chrat", "unknown field"),
        ("deployment = \"d\"\nhelm = { chart = \"c\", release = \"r\" }", "deploy[0].helm", "alone"),
        ("deployment = \"d\"\nready-when = { \"x.io/W\" = \"Ready\" }", "deploy[0].ready-when", "manifests or a chart"),
        ("helm = { chart = \"c\", release = \"r\" }\nready-when = { \"W\" = \"Ready\" }", "deploy[0].ready-when.\"W\"", "<group>/<Kind>"),
    ] {
        let l = parse_err(&format!("{head}{helm}\n"));
        assert_eq!(l.key, key, "{helm}: {l}");
        assert!(l.to_string().contains(says), "{helm}: {l}");
    }
}

#[test]
fn sync_rules_are_read_and_bad_ones_named_by_key_path() {
    let base = "[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n";
    let c = parse(Path::new("/p/devloop.toml"), &format!("{base}[[image.sync]]\nsrc = \"app/*.py\"\ndest = \"/app\"\nrun = [\"true\"]\nrestart = true\n")).unwrap();
    let rules = &c.images[0].sync;
    assert_eq!(rules.iter().map(|r| (r.src.as_str(), r.dest.as_str(), r.restart)).collect::<Vec<_>>(), [("www/**", "/www", false), ("app/*.py", "/app", true)]);
    assert_eq!(rules[1].run[0].cmd, "true");
    // Rules after other tables still belong to the last [[image]].
    let c = parse(Path::new("/p/devloop.toml"), &format!("{base}[[deploy]]\nimage = \"a\"\ndeployment = \"a\"\n[[image.sync]]\nsrc = \"x\"\ndest = \"/x\"\n")).unwrap();
    assert_eq!(c.images[0].sync.len(), 2);

    let cases: &[(&str, usize, &str, &str)] = &[
        ("[[image.sync]]\nsrc = \"www/**\"\ndest = \"www\"\n", 9, "image[0].sync[1].dest", "not an absolute path"),
        ("[[image.sync]]\nsrc = \"www/**\"\n", 9, "image[0].sync[1].dest", "missing"),
        ("[[image.sync]]\ndest = \"/x\"\n", 9, "image[0].sync[1].src", "missing"),
        ("[[image.sync]]\nsrc = \"/abs/**\"\ndest = \"/x\"\n", 9, "image[0].sync[1].src", "relative to the image's context"),
        ("[[image.sync]]\nsrc = \"../up/**\"\ndest = \"/x\"\n", 9, "image[0].sync[1].src", "no `..`"),
        ("[[image.sync]]\nsrc = \"www/[a\"\ndest = \"/x\"\n", 9, "image[0].sync[1].src", "not a glob"),
        ("[[image.sync]]\nsrc = \"a\"\ndest = \"/x\"\nrun = [\"\"]\n", 9, "image[0].sync[1].run[0]", "empty command"),
        ("[[image.sync]]\nsrc = \"a\"\ndest = \"/x\"\nrun = [\"ok\", { cmd = \"npm ci\", trigger = \"[\" }]\n", 9, "image[0].sync[1].run[1].trigger", "not a glob"),
        ("[[image.sync]]\nsrc = \"a\"\ndest = \"/x\"\nrestrat = true\n", 12, "image[0].sync[1].restrat", "did you mean `restart`"),
        ("[[image.sync]]\nsrc = \"a\"\ndest = \"/x\"\nrestart = \"yes\"\n", 12, "image[0].sync[1].restart", "expected a boolean"),
    ];
    for (extra, line, key, fragment) in cases {
        let text = format!("{base}{extra}");
        let e = parse_err(&text);
        assert_eq!((e.key.as_str(), e.line_col.map(|l| l.0)), (*key, Some(*line)), "{text}: {e}");
        assert!(e.message.contains(fragment), "{text}: {e}");
    }
}

#[test]
fn registry_ca_is_relative_to_the_file_and_pull_secret_takes_a_bool_or_a_name() {
    let base = "[registry]\nhost = \"r:5443\"\n";
    let c = parse(Path::new("/p/devloop.toml"), &format!("{base}ca = \"certs/ca.pem\"\npull-secret = true\n")).unwrap();
    assert_eq!(c.registry.ca.as_deref(), Some(Path::new("/p/certs/ca.pem")));
    assert_eq!(c.registry.pull_secret, PullSecret::Default);
    assert_eq!(parse(Path::new("/p/devloop.toml"), base).unwrap().registry.pull_secret, PullSecret::Off);
    let named = parse(Path::new("/p/devloop.toml"), &format!("{base}pull-secret = \"team-pull\"\n")).unwrap();
    assert_eq!(named.registry.pull_secret.name("r:5443").as_deref(), Some("team-pull"));
    let bad = parse_err(&format!("{base}pull-secret = \"Team_Pull\"\n"));
    assert_eq!(bad.key, "registry.pull-secret");
    let bad = parse_err(&format!("{base}pull-secret = 3\n"));
    assert!(bad.key == "registry.pull-secret" && bad.message.contains("true, false or a Secret name"), "{bad}");
}

/// `[[image]] tag` and `set` templates: read and checked at load, each mistake named at its line and key.
#[test]
fn tag_and_set_templates_are_checked_where_they_are_written() {
    use crate::config::{ImageValues, SetValue};
    let head = "[registry]\nhost = \"r\"\n[[image]]\nname = \"kiamol/bb\"\ncontext = \".\"\n";
    let c = parse(Path::new("/p/devloop.toml"), &format!("{head}tag = \"{{hash}}-kiamol\"\n")).unwrap();
    assert_eq!(c.images[0].tag.tag("h"), "h-kiamol");
    assert!(parse(Path::new("/p/devloop.toml"), head).unwrap().images[0].tag.is_default(), "no key: the hash is the tag");

    let helm = |set: &str, more: &str| {
        format!("{head}[[deploy]]\nimage = \"kiamol/bb\"\nhelm = {{ chart = \"c\", release = \"bb\", set = {{ {set} }}{more} }}\n")
    };
    let deployed = |text: &str| {
        let c = parse(Path::new("/p/devloop.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        let DeployTarget::Helm(h) = c.deploys[0].target.clone() else { panic!() };
        h
    };
    // The book's chart: the templates name the build, so devloop sets no image.* value of its own.
    let h = deployed(&helm("registryServer = \"{registry}\", registryUser = \"kiamol\", imageBuildNumber = \"{hash}\"", ""));
    assert_eq!(h.image_values, ImageValues::InSet);
    assert!(matches!(&h.set["registryServer"], SetValue::Template(t) if t.as_str() == "{registry}"));
    assert_eq!(h.set["registryUser"], SetValue::String("kiamol".into()));
    // A pull-secrets path alone keeps that; naming the image's values sets them too.
    let h = deployed(&helm("n = \"{tag}\"", ", image-values = { pull-secrets = \"imagePullSecrets\" }"));
    assert_eq!((h.image_values, h.pull_secrets.as_deref()), (ImageValues::InSet, Some("imagePullSecrets")));
    assert_eq!(deployed(&helm("n = \"{tag}\"", ", image-values = { image = \"img\" }")).image_values, ImageValues::Full("img".into()));
    // Placeholders that do not pin the build, and Go templates, leave the default image values.
    assert_eq!(deployed(&helm("host = \"{registry}\"", "")).image_values, ImageValues::default());
    let h = deployed(&helm("host = \"{{ .Release.Name }}.local\"", ""));
    assert_eq!((h.set["host"].clone(), h.image_values), (SetValue::String("{{ .Release.Name }}.local".into()), ImageValues::default()));

    // (text, line, column, key, a fragment of the message)
    let cases: Vec<(String, usize, usize, &str, &str)> = vec![
        (format!("{head}tag = \"latest\"\n"), 6, 7, "image[0].tag", "has no {hash}"),
        (format!("{head}tag = \"{{hash}}/x\"\n"), 6, 7, "image[0].tag", "does not make a valid tag"),
        (format!("{head}tag = \"{{hash}}-{{tag}}\"\n"), 6, 7, "image[0].tag", "{tag} is not known here (known: {hash})"),
        (format!("{head}tag = \"{{hash}}{{hash}}\"\n"), 6, 7, "image[0].tag", "more than once"),
        (helm("a = 1, registryServer = \"{registy}\"", ""), 8, 71, "deploy[0].helm.set.registryServer", "unknown placeholder `{registy}` (known: {registry},"),
    ];
    for (text, line, col, key, fragment) in &cases {
        let e = parse_err(text);
        assert_eq!((e.line_col, e.key.as_str()), (Some((*line, *col)), *key), "{text}: {e}");
        assert!(e.message.contains(fragment), "{text}: {e}");
    }
}

const SERVICES: &str = r#"
[registry]
host = "127.0.0.1:5000"
[buildkit]
parallel = 2
[[image]]
name = "db"
context = "db"
[[image]]
name = "api"
context = "api"
depends-on = ["db"]
trigger = "manual"
[[image]]
name = "web"
context = "web"
[[deploy]]
image = "db"
manifests = ["db/k8s/*.yaml"]
[[deploy]]
image = "api"
manifests = ["api/k8s/*.yaml"]
[[deploy]]
image = "web"
manifests = ["web/k8s/*.yaml"]
"#;

#[test]
fn many_services_take_a_trigger_an_order_and_a_build_limit() {
    let cfg = parse(Path::new("/p/devloop.toml"), SERVICES).unwrap();
    let api = cfg.image("api").unwrap();
    assert_eq!((api.trigger, api.depends_on.clone()), (Trigger::Manual, vec!["db".to_string()]));
    assert_eq!((cfg.image("web").unwrap().trigger, cfg.buildkit.parallel()), (Trigger::Auto, 2));
    let unset = parse(Path::new("/p/devloop.toml"), GOOD).unwrap();
    assert_eq!(unset.buildkit.parallel(), DEFAULT_PARALLEL);
    assert!(unset.buildkit.same_server(&Buildkit { parallel: Some(9), ..unset.buildkit.clone() }));
}

#[test]
fn a_bad_trigger_order_or_limit_names_its_key_and_line() {
    let e = parse_err(&SERVICES.replace("trigger = \"manual\"", "trigger = \"later\""));
    assert_eq!((e.key.as_str(), e.line_col.map(|l| l.0)), ("image[1].trigger", Some(13)));
    assert!(e.message.contains("\"manual\""), "{}", e.message);
    let e = parse_err(&SERVICES.replace("depends-on = [\"db\"]", "depends-on = [\"cache\"]"));
    assert_eq!((e.key.as_str(), e.line_col.map(|l| l.0)), ("image[1].depends-on", Some(12)));
    assert!(e.message.contains("no [[image]] named `cache` (configured: db, api, web)"), "{}", e.message);
    let e = parse_err(&SERVICES.replace("depends-on = [\"db\"]", "depends-on = [\"api\"]"));
    assert!(e.message.contains("cannot depend on itself"), "{}", e.message);
    // db -> web -> api -> db
    let cycle = SERVICES.replace("name = \"db\"\ncontext = \"db\"", "name = \"db\"\ncontext = \"db\"\ndepends-on = [\"web\"]")
        .replace("name = \"web\"\ncontext = \"web\"", "name = \"web\"\ncontext = \"web\"\ndepends-on = [\"api\"]");
    let e = parse_err(&cycle);
    assert_eq!(e.key, "image[0].depends-on");
    assert!(e.message.contains("a cycle: db -> web -> api -> db"), "{}", e.message);
    let e = parse_err(&SERVICES.replace("parallel = 2", "parallel = 0"));
    assert_eq!(e.key, "buildkit.parallel");
}

#[test]
fn a_session_of_some_images_leaves_the_others_and_their_deploys_out() {
    let cfg = parse(Path::new("/p/devloop.toml"), SERVICES).unwrap();
    let some = cfg.clone().only(&["web".into(), "db".into()]).unwrap();
    let names: Vec<&str> = some.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(some.deploys.iter().map(|d| d.image.as_str()).collect::<Vec<_>>(), ["db", "web"]);
    assert_eq!(some.left_out, ["api"]);
    assert_eq!(cfg.clone().only(&[]).unwrap(), cfg);
    let e = cfg.only(&["wbe".into()]).unwrap_err();
    assert!(e.contains("no [[image]] named `wbe`") && e.contains("configured: db, api, web"), "{e}");
}

#[test]
fn a_port_forward_names_one_workload_of_any_kind_and_else_the_key_is_named() {
    let base = "[registry]\nhost = \"r\"\n";
    for (key, kind) in [("deployment", WorkloadKind::Deployment), ("statefulset", WorkloadKind::StatefulSet), ("daemonset", WorkloadKind::DaemonSet)] {
        let c = parse(Path::new("/p/devloop.toml"), &format!("{base}[[port-forward]]\n{key} = \"db\"\nremote = 5432\n")).unwrap();
        assert_eq!(c.forwards, [Forward { kind, name: "db".into(), local: 0, remote: 5432 }], "{key}");
    }
    let cases = [
        ("[[port-forward]]\nremote = 80\n", 3, "port-forward[0].deployment", "name the workload"),
        ("[[port-forward]]\ndeployment = \"a\"\nstatefulset = \"a\"\nremote = 80\n", 3, "port-forward[0].statefulset", "not both `deployment` and `statefulset`"),
        ("[[port-forward]]\ndaemonset = \"a\"\nstatefulset = \"a\"\nremote = 80\n", 3, "port-forward[0].daemonset", "not both `statefulset` and `daemonset`"),
        ("[[port-forward]]\nreplicaset = \"a\"\nremote = 80\n", 4, "port-forward[0].replicaset", "unknown field"),
    ];
    for (text, line, key, fragment) in cases {
        let e = parse_err(&format!("{base}{text}"));
        assert_eq!(e.line_col.map(|l| l.0), Some(line), "{text:?}: {e}");
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.message.contains(fragment), "{text:?}: {e}");
    }
}

#[test]
fn cache_specs_are_one_or_a_list_and_a_bad_one_names_its_line_and_key() {
    let base = "[registry]\nhost = \"r\"\n[[image]]\nname = \"a\"\ncontext = \".\"\n";
    let c = parse(
        Path::new("/p/devloop.toml"),
        &format!("{base}cache-from = \"type=registry,ref={{registry}}/cache/{{name}}\"\ncache-to = [\"type=registry,ref={{registry}}/cache/{{name}},mode=max\", \"type=inline\"]\n"),
    )
    .unwrap();
    let img = &c.images[0];
    assert_eq!(img.cache_from.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["type=registry,ref={registry}/cache/{name}"]);
    assert_eq!(img.cache_to.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(), ["registry", "inline"]);
    assert!(parse(Path::new("/p/devloop.toml"), base).unwrap().images[0].cache_to.is_empty());
    let cases = [
        ("cache-to = \"type=registri,ref=x\"\n", "image[0].cache-to", "unknown cache type `registri`"),
        ("cache-from = [\"type=inline\", \"type=registry\"]\n", "image[0].cache-from[0]", "type=inline is a cache-to"),
        ("cache-to = [\"type=inline\", \"type=registry,mode=max\"]\n", "image[0].cache-to[1]", "needs ref="),
        ("cache-to = \"type=registry,ref={registry}/c:{tag}\"\n", "image[0].cache-to", "{tag} is not known here"),
    ];
    for (text, key, fragment) in cases {
        let e = parse_err(&format!("{base}{text}"));
        assert_eq!(e.line_col.map(|l| l.0), Some(6), "{text:?}: {e}");
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.message.contains(fragment), "{text:?}: {e}");
    }
    let e = parse_err(&format!("{base}cache-to = 3\n"));
    assert_eq!(e.key, "image[0].cache-to", "{e}");
}
