//! `devloop init` on temp folders: what it finds, how it pairs images with manifests, and that what it writes
//! loads with devloop's own config loader.

use std::path::Path;

use super::plan::Target;
use super::*;
use crate::config::{DeployTarget, ManifestSource};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, body) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn deployment(name: &str, image: &str, port: u16) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  \
         template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: main\n          \
         image: {image}\n          ports:\n            - containerPort: {port}\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\nspec:\n  ports:\n    - port: 80\n";

fn local_stack() -> Cluster {
    Cluster {
        context: Some(("devloop-local".into(), true)),
        registry: Registry::Found { host: "10.201.0.2:5000".into(), pull_host: None, insecure: true, from: "test".into() },
        buildkit: Buildkit::FromEnv("unix:///run/buildkit/buildkitd.sock".into()),
    }
}

/// Runs init in a fresh folder holding `files`, loads the result with devloop's loader.
fn init(files: &[(&str, &str)], cluster: &Cluster) -> (tempfile::TempDir, Written, crate::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("proj");
    std::fs::create_dir(&root).unwrap();
    write(&root, files);
    let w = generate(&root, false, cluster).unwrap();
    let cfg = crate::config::load_text(&w.path, &std::fs::read_to_string(&w.path).unwrap(), |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{}", w.text));
    (dir, w, cfg)
}

/// (image name, context relative to the project, dockerfile relative to the project) of a loaded config.
fn images(cfg: &crate::config::Config) -> Vec<(String, String, String)> {
    let rel = |p: &Path| p.strip_prefix(&cfg.root).unwrap().to_string_lossy().into_owned();
    cfg.images.iter().map(|i| (i.name.clone(), rel(&i.context), rel(&i.dockerfile))).collect()
}

fn deploys(cfg: &crate::config::Config) -> Vec<(String, String)> {
    cfg.deploys
        .iter()
        .map(|d| {
            let t = match &d.target {
                DeployTarget::Manifests(ManifestSource::Files(f)) => format!("manifests {}", f.join(" ")),
                DeployTarget::Manifests(ManifestSource::Kustomize(k)) => format!("kustomize {k}"),
                DeployTarget::Helm(h) => format!("helm {} {}", h.chart, h.release),
                DeployTarget::Patch { deployment, .. } => format!("patch {deployment}"),
            };
            (d.image.clone(), t)
        })
        .collect()
}

#[test]
fn folders_become_images_and_deploys_mapped_by_name() {
    let two = [deployment("api", "api", 8080), deployment("web", "web:dev", 3000)];
    // (case, files, images (name, context, dockerfile), deploys (image, target))
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<(&'a str, &'a str, &'a str)>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "two services, manifests in one folder",
            vec![
                ("api/Dockerfile", "FROM scratch\nCOPY main.go /\n".into()),
                ("api/main.go", "package main".into()),
                ("web/Dockerfile", "FROM scratch\nCOPY . /app\n".into()),
                ("k8s/api.yaml", two[0].clone()),
                ("k8s/web.yaml", two[1].clone()),
            ],
            vec![("api", "api", "api/Dockerfile"), ("web", "web", "web/Dockerfile")],
            vec![("api", "manifests k8s/api.yaml"), ("web", "manifests k8s/web.yaml")],
        ),
        (
            "one service with its Service beside it: the whole folder as a glob",
            vec![
                ("hello/Dockerfile", "FROM scratch\n".into()),
                ("hello/k8s/deployment.yaml", deployment("hello", "hello", 8080)),
                ("hello/k8s/service.yaml", SERVICE.into()),
            ],
            vec![("hello", "hello", "hello/Dockerfile")],
            vec![("hello", "manifests hello/k8s/*.yaml")],
        ),
        (
            "a Dockerfile under docker/ copying from its parent: the parent is the context",
            vec![
                ("svc/docker/Dockerfile", "FROM scratch\nCOPY --chown=1:1 src/ /src/\nCOPY --from=build /x /y\n".into()),
                ("svc/src/main.rs", "fn main() {}".into()),
                ("deploy.yaml", format!("{}---\n{SERVICE}", deployment("svc", "registry.example.com/team/svc:1", 80))),
            ],
            vec![("svc", "svc", "svc/docker/Dockerfile")],
            vec![("svc", "manifests deploy.yaml")],
        ),
        (
            "one Dockerfile and one unmatched image name: paired, the image takes the manifest's name",
            vec![("Dockerfile", "FROM scratch\n".into()), ("k8s/app.yaml", deployment("app", "hello", 8080))],
            vec![("hello", "", "Dockerfile")],
            vec![("hello", "manifests k8s/*.yaml")],
        ),
        (
            "a Helm chart and no manifests",
            vec![
                ("Dockerfile", "FROM scratch\n".into()),
                ("chart/Chart.yaml", "apiVersion: v2\nname: shop\nversion: 0.1.0\n".into()),
                ("chart/values.yaml", "shop:\n  image:\n    repository: x\n    tag: y\n".into()),
                (
                    "chart/templates/d.yaml",
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: \"{{ .Values.shop.image.repository }}:{{ .Values.shop.image.tag }}\"\n".into(),
                ),
            ],
            vec![("proj", "", "Dockerfile")],
            vec![("proj", "helm chart shop")],
        ),
        (
            "a kustomization with a dev overlay",
            vec![
                ("app/Dockerfile", "FROM scratch\n".into()),
                ("deploy/base/kustomization.yaml", "resources:\n  - app.yaml\n".into()),
                ("deploy/base/app.yaml", deployment("app", "app", 8080)),
                ("deploy/overlays/dev/kustomization.yaml", "resources:\n  - ../../base\n".into()),
                ("deploy/overlays/prod/kustomization.yaml", "resources:\n  - ../../base\n".into()),
            ],
            vec![("app", "app", "app/Dockerfile")],
            vec![("app", "kustomize deploy/overlays/dev")],
        ),
        (
            "a Dockerfile nothing runs: built, not deployed",
            vec![("tools/Containerfile", "FROM scratch\n".into()), ("k8s/db.yaml", deployment("db", "postgres:16", 5432))],
            vec![("tools", "tools", "tools/Containerfile")],
            vec![],
        ),
    ];
    for (case, files, want_images, want_deploys) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (*p, b.as_str())).collect();
        let (_dir, w, cfg) = init(&files, &local_stack());
        let want: Vec<(String, String, String)> =
            want_images.iter().map(|(n, c, d)| (n.to_string(), c.to_string(), d.to_string())).collect();
        assert_eq!(images(&cfg), want, "{case}:\n{}", w.text);
        let want: Vec<(String, String)> = want_deploys.iter().map(|(i, t)| (i.to_string(), t.to_string())).collect();
        assert_eq!(deploys(&cfg), want, "{case}:\n{}", w.text);
    }
}

#[test]
fn what_init_cannot_decide_is_said_in_the_file() {
    let files = [
        ("tools/Dockerfile", "FROM scratch\n".to_string()),
        ("svc/Dockerfile", "FROM scratch\n".to_string()),
        ("k8s/svc.yaml", deployment("svc", "ghcr.io/acme/svc:1.2", 8080)),
        ("k8s/extra/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n".to_string()),
        ("k8s/broken.yaml", "apiVersion: v1\nkind: [oops\n".to_string()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (*p, b.as_str())).collect();
    let (_dir, w, cfg) = init(&files, &local_stack());
    assert_eq!(deploys(&cfg), [("svc".to_string(), "manifests k8s/svc.yaml".to_string())], "{}", w.text);
    for says in [
        "`image: ghcr.io/acme/svc:1.2` is not replaced by devloop",
        "image `tools`: no manifest, kustomization or chart runs it",
        "k8s/extra/cm.yaml: 1 object(s) that no [[deploy]] applies",
        "k8s/broken.yaml looks like Kubernetes YAML but does not parse",
    ] {
        assert!(w.text.replace("\n#     ", " ").replace("\n#   ", " ").contains(says), "missing {says:?} in:\n{}", w.text);
    }
    assert_eq!(w.plan.undecided.len(), 3, "{:?}", w.plan.undecided);
}

#[test]
fn the_port_forwards_follow_the_container_ports() {
    let files = [
        ("a/Dockerfile", "FROM scratch\n".to_string()),
        ("b/Dockerfile", "FROM scratch\n".to_string()),
        ("c/Dockerfile", "FROM scratch\n".to_string()),
        ("k8s/a.yaml", deployment("a", "a", 8080)),
        ("k8s/b.yaml", deployment("b", "b", 8080)),
        ("k8s/c.yaml", deployment("c", "c", 80)),
        ("d/Dockerfile", "FROM scratch\n".to_string()),
        ("k8s/d.yaml", deployment("d", "d", 5432).replace("kind: Deployment", "kind: StatefulSet")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (*p, b.as_str())).collect();
    let (_dir, _w, cfg) = init(&files, &local_stack());
    let fwd: Vec<(&str, &str, u16, u16)> = cfg.forwards.iter().map(|f| (f.kind.noun(), f.name.as_str(), f.local, f.remote)).collect();
    // The first gets its own port; a taken or privileged one becomes 0 (any free port). A StatefulSet's
    // forward names its kind.
    assert_eq!(fwd, [("deployment", "a", 8080, 8080), ("deployment", "b", 0, 8080), ("deployment", "c", 0, 80), ("statefulset", "d", 5432, 5432)]);
}

#[test]
fn the_cluster_decides_kube_registry_and_buildkit() {
    let files = [("Dockerfile", "FROM scratch\n")];
    // (cluster, lines the file must have, lines it must not have)
    let cases: Vec<(Cluster, Vec<&str>, Vec<&str>)> = vec![
        (local_stack(), vec!["context = \"devloop-local\"", "host = \"10.201.0.2:5000\"", "insecure = true"], vec![]),
        (
            Cluster {
                context: Some(("prod-eu".into(), false)),
                registry: Registry::None("context prod-eu is not allow-listed, so it was not asked".into()),
                buildkit: Buildkit::Unset,
            },
            vec!["# context = \"prod-eu\"", "# allow-contexts = [\"prod-eu\"]", "# host = \"registry.example.com\""],
            vec!["context = \"prod-eu\"\n", "addr = "],
        ),
        (
            Cluster {
                context: Some(("kind-dev".into(), true)),
                registry: Registry::Found {
                    host: "localhost:5001".into(),
                    pull_host: Some("kind-registry:5000".into()),
                    insecure: true,
                    from: "Advertised".into(),
                },
                buildkit: Buildkit::FromEnv("tcp://10.0.0.1:1234".into()),
            },
            vec!["pull-host = \"kind-registry:5000\"", "# addr = \"tcp://10.0.0.1:1234\""],
            vec![],
        ),
        (
            Cluster { context: Some(("docker-desktop".into(), true)), registry: Registry::EngineStore("docker-desktop".into()), buildkit: Buildkit::Unset },
            vec!["shares Docker Engine's image store"],
            vec!["host ="],
        ),
    ];
    for (cluster, has, lacks) in cases {
        let (_dir, w, cfg) = init(&files, &cluster);
        for line in has {
            assert!(w.text.lines().any(|l| l.starts_with(line)) || w.text.contains(line), "{line:?} missing:\n{}", w.text);
        }
        for line in lacks {
            assert!(!w.text.lines().any(|l| l.starts_with(line)) && !w.text.contains(&format!("\n{line}")), "{line:?} present:\n{}", w.text);
        }
        if let Registry::Found { host, .. } = &cluster.registry {
            assert_eq!(&cfg.registry.host, host);
        }
    }
}

#[test]
fn an_existing_file_is_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("Dockerfile", "FROM scratch\n"), ("devloop.toml", "# mine\n")]);
    let e = generate(dir.path(), false, &local_stack()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains(&format!("{} exists: pass --force", dir.path().join("devloop.toml").display())), "{e}");
    assert_eq!(std::fs::read_to_string(dir.path().join("devloop.toml")).unwrap(), "# mine\n");
    generate(dir.path(), true, &local_stack()).unwrap();
    assert!(std::fs::read_to_string(dir.path().join("devloop.toml")).unwrap().contains("[[image]]"));
}

#[test]
fn the_repositorys_example_gets_the_config_the_repository_uses() {
    // A copy of examples/hello: its manifests directory as a glob, the Service included, the chart offered.
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for rel in ["Dockerfile", "serve.sh", ".dockerignore", "www/index.html", "k8s/deployment.yaml", "k8s/service.yaml", "chart/Chart.yaml", "chart/values.yaml", "chart/templates/deployment.yaml"] {
        std::fs::create_dir_all(hello.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), hello.join(rel)).unwrap();
    }
    let w = generate(&hello, false, &local_stack()).unwrap();
    let cfg = crate::config::load_text(&w.path, &w.text, |_| None).unwrap();
    assert_eq!(images(&cfg), [("hello".to_string(), String::new(), "Dockerfile".to_string())]);
    assert_eq!(deploys(&cfg), [("hello".to_string(), "manifests k8s/*.yaml".to_string())]);
    assert!(w.text.contains("helm = { chart = \"chart\", release = \"hello\" }"), "{}", w.text);
    assert_eq!(cfg.forwards.len(), 1);
    assert!(matches!(&w.plan.deploys[0].target, Target::Manifests(_)));
}

#[test]
fn a_chart_whose_image_init_cannot_map_gets_a_commented_deploy_with_a_todo() {
    let files = [
        ("Dockerfile", "FROM scratch\n"),
        ("chart/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n"),
        ("chart/values.yaml", "replicas: 1\nname: web\n"),
        ("chart/templates/d.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n        - {name: c, image: \"nginx:1.25\"}\n"),
    ];
    let (_dir, w, cfg) = init(&files, &local_stack());
    // Nothing deploys the chart's own nginx in place of the build.
    assert!(cfg.deploys.is_empty(), "{}", w.text);
    assert!(w.text.contains("# [[deploy]]\n# image = \"proj\"\n# TODO: devloop init could not tell where this chart takes the image"), "{}", w.text);
    assert!(w.text.contains("# helm = { chart = \"chart\", release = \"web\" }"), "{}", w.text);
    assert!(w.plan.undecided.iter().any(|u| u.contains("could not tell where chart chart takes the image")), "{:?}", w.plan.undecided);
}

#[test]
fn files_the_final_stage_copies_after_its_last_run_become_sync_proposals() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("www/index.html", "x"), ("static/a.css", "x"), ("app.py", "x")]);
    // (Dockerfile, (src, dest) proposed)
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "FROM busybox\nRUN mkdir -p /www\nCOPY serve.sh /serve.sh\nCOPY www/ /www/\nCMD [\"/serve.sh\"]\n",
            &[("serve.sh", "/serve.sh"), ("www/**", "/www")],
        ),
        // Copied before the RUN (which may use it): not proposed.
        ("FROM node:20\nWORKDIR /app\nCOPY package.json .\nRUN npm ci\nCOPY . .\nCMD [\"node\", \"server.js\"]\n", &[("**", "/app")]),
        ("FROM golang AS build\nCOPY . .\nRUN go build -o /x\nFROM scratch\nCOPY --from=build /x /x\n", &[]),
        ("FROM nginx\nCOPY www /usr/share/nginx/html\nCOPY *.conf /etc/nginx/conf.d/\n", &[("www/**", "/usr/share/nginx/html"), ("*.conf", "/etc/nginx/conf.d/")]),
        ("FROM python:3\nWORKDIR /srv\nRUN pip install flask\nCOPY app.py ./\nCOPY static static\nCOPY [\"app.py\", \"/opt/app.py\"]\n", &[("app.py", "/srv/"), ("static/**", "/srv/static"), ("app.py", "/opt/app.py")]),
        ("FROM python:3\nCOPY app.py /\nRUN python -m compileall /app.py\n", &[]),
    ];
    for (dockerfile, want) in cases {
        let (_, got) = scan::sync_proposals(dockerfile, dir.path());
        let got: Vec<(&str, &str)> = got.iter().map(|p| (p.src.as_str(), p.dest.as_str())).collect();
        assert_eq!(got, *want, "{dockerfile}");
    }
    assert_eq!(scan::sync_proposals(cases[2].0, dir.path()).0, "scratch");
}

#[test]
fn service_ports_give_the_local_port_when_one_reaches_the_container() {
    let svc = |name: &str, port: u16, target: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n    - port: {port}\n      targetPort: {target}\n")
    };
    let named = deployment("a", "a", 8080).replace("- containerPort: 8080", "- containerPort: 8080\n              name: http");
    let files = [
        ("a/Dockerfile", "FROM scratch\n".to_string()),
        ("b/Dockerfile", "FROM scratch\n".to_string()),
        ("c/Dockerfile", "FROM scratch\n".to_string()),
        ("k8s/a.yaml", format!("{named}---\n{}", svc("a", 8012, "http"))),
        ("k8s/b.yaml", format!("{}---\n{}", deployment("b", "b", 3000), svc("b", 80, "3000"))),
        ("k8s/c.yaml", format!("{}---\n{}", deployment("c", "c", 9000), svc("other", 9900, "9000"))),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, b)| (*p, b.as_str())).collect();
    let (_dir, w, cfg) = init(&files, &local_stack());
    let fwd: Vec<(&str, u16, u16)> = cfg.forwards.iter().map(|f| (f.name.as_str(), f.local, f.remote)).collect();
    // a: its Service's port 8012 reaches port `http`; b: the Service's port 80 is privileged, the container's
    // 3000 then; c: the Service selects other pods.
    assert_eq!(fwd, [("a", 8012, 8080), ("b", 3000, 3000), ("c", 9000, 9000)], "{}", w.text);
    assert!(w.text.contains("# The local port is Service a's port, which reaches this container port."), "{}", w.text);
}

#[test]
fn the_example_s_sync_proposals_load_once_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    for rel in ["Dockerfile", "serve.sh", ".dockerignore", "www/index.html", "k8s/deployment.yaml", "k8s/service.yaml"] {
        std::fs::create_dir_all(hello.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(src.join(rel), hello.join(rel)).unwrap();
    }
    let w = generate(&hello, false, &local_stack()).unwrap();
    let said = w.text.replace("\n# ", " ");
    assert!(said.contains("copies serve.sh, www/** after its last RUN"), "{}", w.text);
    assert!(said.contains("does the server read these files on each request"), "{}", w.text);
    assert!(said.contains("or load them when it starts (then `restart = true`"), "{}", w.text);
    let loaded = crate::config::load_text(&w.path, &w.text, |_| None).unwrap();
    assert!(loaded.images[0].sync.is_empty(), "proposed, not enabled");
    // Uncommented as written (the restart left a comment), the rules load and map as the COPYs do.
    let on: String = w
        .text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(r) if r.starts_with("[[image.sync]]") || r.starts_with("src = ") || r.starts_with("dest = ") => r,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = crate::config::load_text(&w.path, &on, |_| None).unwrap_or_else(|e| panic!("{e}\n{on}"));
    let rules = &cfg.images[0].sync;
    assert_eq!(rules.len(), 2, "{on}");
    assert_eq!(crate::config::sync_route(rules, "www/a/b.html").map(|(_, d)| d), Some("/www/a/b.html".to_string()));
    assert_eq!(crate::config::sync_route(rules, "serve.sh").map(|(_, d)| d), Some("/serve.sh".to_string()));
    assert_eq!(crate::config::sync_route(rules, "Dockerfile"), None);
}
