//! The first five minutes: `scripts/try` (the README's first command) serves the example and follows an edit;
//! `devloop init` writes a config that devloop loads, hashes and deploys with. The tests marked ignored need
//! the local stack: run them through scripts/test.

mod common;
use common::*;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

fn get(url: &str) -> Result<String, String> {
    let out = Command::new("curl").args(["-sf", "-m", "5", url]).output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(format!("curl {url}: {}", out.status)) }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `devloop init ARGS` in `dir` with the environment changed by `env` (None: removed).
fn init(dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devloop"));
    cmd.arg("init").args(args).current_dir(dir);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

const NO_CLUSTER: &[(&str, Option<&str>)] =
    &[("KUBECONFIG", Some("/nonexistent/kubeconfig")), ("DEVLOOP_REGISTRY", None), ("BUILDKIT_HOST", None)];

#[test]
fn init_refuses_to_overwrite_without_force_and_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.path().join("devloop.toml"), "# mine\n").unwrap();
    let out = init(dir.path(), &[], NO_CLUSTER);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("devloop.toml exists: pass --force to overwrite it"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("devloop.toml")).unwrap(), "# mine\n");
    let out = init(dir.path(), &["--force"], NO_CLUSTER);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(dir.path().join("devloop.toml")).unwrap().contains("[[image]]"));
}

#[test]
fn init_on_two_services_writes_a_config_devloop_loads_and_says_what_it_could_not_decide() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("shop");
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  \
             template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - {{name: c, image: {name}, ports: [{{containerPort: 8080}}]}}\n"
        )
    };
    for (rel, body) in [
        ("api/Dockerfile", "FROM scratch\nCOPY . /\n".to_string()),
        ("web/Dockerfile", "FROM scratch\nCOPY . /\n".to_string()),
        ("deploy/api.yaml", deployment("api")),
        ("deploy/web.yaml", format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n", deployment("web"))),
    ] {
        std::fs::create_dir_all(proj.join(rel).parent().unwrap()).unwrap();
        std::fs::write(proj.join(rel), body).unwrap();
    }
    let out = init(dir.path(), &["shop"], NO_CLUSTER);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    assert!(o.contains("2 image(s), 2 deploy(s)"), "{o}");
    // No cluster: the registry is left for the user, on stderr and in the file.
    assert!(e.contains("no registry"), "{e}");
    let text = std::fs::read_to_string(proj.join("devloop.toml")).unwrap();
    assert!(text.contains("# host = \"registry.example.com\""), "{text}");
    // devloop itself reads it: `hash` names both images (under the registry DEVLOOP_REGISTRY gives).
    let hash = Command::new(env!("CARGO_BIN_EXE_devloop"))
        .arg("hash")
        .current_dir(&proj)
        .env("DEVLOOP_REGISTRY", "r.example:5000")
        .env_remove("BUILDKIT_HOST")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&hash.stdout);
    assert!(hash.status.success(), "{listed}{}", String::from_utf8_lossy(&hash.stderr));
    let names: Vec<&str> = listed.lines().map(|l| l.rsplit_once(':').unwrap().0).collect();
    assert_eq!(names, ["api r.example:5000/api", "web r.example:5000/web"], "{listed}");
    assert!(text.contains("image = \"api\"\n# Server-side applied, with `image: api` replaced by the built <registry>/api:<tag>@<digest>.\nmanifests = [\"deploy/api.yaml\"]"), "{text}");
    assert!(text.contains("image = \"web\"\n# Server-side applied, with `image: web` replaced by the built <registry>/web:<tag>@<digest>.\nmanifests = [\"deploy/web.yaml\"]"), "{text}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn init_on_a_copy_of_the_example_writes_a_config_that_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello");
    copy_dir(&repo().join("examples/hello"), &hello);
    let nonce = nonce();
    std::fs::write(hello.join("www/nonce.txt"), &nonce).unwrap();
    // The stack's environment: its context is current, DEVLOOP_REGISTRY and BUILDKIT_HOST are set.
    let out = init(&hello, &[], &[]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    let text = std::fs::read_to_string(hello.join("devloop.toml")).unwrap();
    assert!(text.contains("context = \"devloop-local\""), "{text}");
    assert!(text.contains(&format!("host = \"{}\"", env("DEVLOOP_REGISTRY"))), "{text}");
    assert!(text.contains("manifests = [\"k8s/*.yaml\"]"), "{text}");

    let devloop = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_devloop")).args(args).current_dir(&hello).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "devloop {args:?}: {text}");
        text
    };
    let hash = devloop(&["hash"]);
    assert!(hash.starts_with(&format!("hello {}/hello:", env("DEVLOOP_REGISTRY"))), "{hash}");
    let ns = Namespace(format!("init-{nonce}"));
    let deployed = devloop(&["deploy", "--namespace", &ns.0]);
    assert!(deployed.contains(&format!("rollout of deployment {}/hello done", ns.0)), "{deployed}");
    let pod = live_pods(&ns.0, "hello").pop().expect("a pod");
    assert!(page(&ns.0, &pod).unwrap().contains("Hello from devloop"));
    assert_eq!(eventually("the nonce served", 10, || page_at(&ns.0, &pod, "nonce.txt")), nonce);
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn init_on_the_example_without_manifests_deploys_its_helm_chart() {
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello");
    copy_dir(&repo().join("examples/hello"), &hello);
    std::fs::remove_dir_all(hello.join("k8s")).unwrap();
    let out = init(&hello, &[], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(hello.join("devloop.toml")).unwrap();
    assert!(text.contains("helm = { chart = \"chart\", release = \"hello\" }"), "{text}");
    let ns = Namespace(format!("init-helm-{}", nonce()));
    let out = Command::new(env!("CARGO_BIN_EXE_devloop")).args(["deploy", "--namespace", &ns.0]).current_dir(&hello).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    // The chart's Deployment runs the image devloop built (image.repository and image.tag set by devloop).
    assert!(template_image(&ns.0, "hello").starts_with(&format!("{}/hello:", env("DEVLOOP_REGISTRY"))), "{said}");
}

/// A project of two images (api/ and web/, each a copy of examples/hello) and one chart that runs both,
/// each image from values of its own: init pairs each image with the chart (one release, each its own
/// `image-values`), and `deploy` runs both builds, each where the chart takes it.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn init_on_a_chart_of_two_images_writes_two_deploys_of_one_release_and_both_builds_run() {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop");
    for part in ["api", "web"] {
        copy_dir(&repo().join("examples/hello"), &shop.join(part));
        for gone in ["k8s", "chart", "devloop.toml"] {
            let p = shop.join(part).join(gone);
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
    std::fs::create_dir_all(shop.join("chart/templates")).unwrap();
    std::fs::write(shop.join("chart/Chart.yaml"), "apiVersion: v2\nname: shop\nversion: 0.1.0\n").unwrap();
    std::fs::write(shop.join("chart/values.yaml"), "api:\n  image: {repository: api, tag: \"1.0\"}\nweb:\n  image: {repository: web, tag: \"1.0\"}\n").unwrap();
    for part in ["api", "web"] {
        let t = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: shop-{part}}}\nspec:\n  selector: {{matchLabels: {{app: shop-{part}}}}}\n  \
             template:\n    metadata: {{labels: {{app: shop-{part}}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n        \
             - name: {part}\n          image: \"{{{{ .Values.{part}.image.repository }}}}:{{{{ .Values.{part}.image.tag }}}}\"\n          \
             ports: [{{containerPort: 8080}}]\n          readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}\n"
        );
        std::fs::write(shop.join(format!("chart/templates/{part}.yaml")), t).unwrap();
    }
    let out = init(&shop, &[], &[]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    let text = std::fs::read_to_string(shop.join("devloop.toml")).unwrap();
    for part in ["api", "web"] {
        let line = format!("helm = {{ chart = \"chart\", release = \"shop\", image-values = {{ repository = \"{part}.image.repository\", tag = \"{part}.image.tag\" }} }}");
        assert!(text.lines().any(|l| l.starts_with(&line)), "{line:?} missing:\n{text}");
    }
    assert!(!text.contains("# [[deploy]]"), "no deploy left commented out:\n{text}");
    assert!(text.contains("release shop is shared with image web: each upgrade keeps the other images' values"), "{text}");

    let ns = Namespace(format!("init-shop-{}", nonce()));
    let out = Command::new(env!("CARGO_BIN_EXE_devloop")).args(["deploy", "--namespace", &ns.0]).current_dir(&shop).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    for part in ["api", "web"] {
        let runs = template_image(&ns.0, &format!("shop-{part}"));
        assert!(runs.starts_with(&format!("{}/{part}:", env("DEVLOOP_REGISTRY"))), "shop-{part} runs {runs}\n{said}");
    }
}

/// Issue 22: `init` on a folder holding the book's bulletin-board chart (its image spread over three values
/// with a fixed suffix, tests/charts/bulletin-board, unchanged) and examples/hello's app renders the chart
/// with markers and writes the `set` and `tag` templates that make the build land there: `deploy` then runs
/// devloop's image, forwarded on the chart's Service port.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn init_maps_a_chart_that_takes_its_image_its_own_way_and_the_config_deploys_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("board");
    copy_dir(&repo().join("examples/hello"), &app);
    std::fs::remove_dir_all(app.join("k8s")).unwrap();
    std::fs::remove_dir_all(app.join("chart")).unwrap();
    copy_dir(&repo().join("tests/charts/bulletin-board"), &app.join("helm/bulletin-board"));
    let out = init(&app, &[], &[]);
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{o}\n{e}");
    assert!(!e.contains("not decided"), "{e}");
    let text = std::fs::read_to_string(app.join("devloop.toml")).unwrap();
    for line in [
        "name = \"kiamol/bulletin-board\"",
        "tag = \"{hash}-kiamol\"",
        "helm = { chart = \"helm/bulletin-board\", release = \"bulletin-board\", set = { registryServer = \"{registry}\", registryUser = \"kiamol\", imageBuildNumber = \"{hash}\" } }",
        "deployment = \"bulletin-board\"",
        "local = 8012",
        "remote = 8080",
        "# src = \"www/**\"",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{line:?} missing:\n{text}");
    }
    let said = text.replace("\n# ", " ");
    assert!(said.contains("`registryUser` is part of the image's name (`kiamol/bulletin-board`): it is pinned to its default `kiamol`"), "{text}");

    let devloop = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_devloop")).args(args).current_dir(&app).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "devloop {args:?}: {text}");
        text
    };
    let hash = devloop(&["hash"]);
    let reference = hash.split_whitespace().nth(1).unwrap_or_else(|| panic!("{hash}")).to_string();
    assert!(reference.starts_with(&format!("{}/kiamol/bulletin-board:", env("DEVLOOP_REGISTRY"))) && reference.ends_with("-kiamol"), "{hash}");
    let ns = Namespace(format!("init-chart-{}", nonce()));
    let deployed = devloop(&["deploy", "--namespace", &ns.0]);
    assert!(deployed.contains(&format!("rollout of deployment {}/bulletin-board done", ns.0)), "{deployed}");
    // The chart's own image line, filled by the templates init wrote: the build, under its content tag.
    assert_eq!(template_image(&ns.0, "bulletin-board"), reference);
    let pod = eventually("one pod", 60, || {
        let out = kubectl(&[
            "-n", &ns.0, "get", "pods", "-l", "app.kubernetes.io/instance=bulletin-board",
            "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        match out.lines().filter(|l| l.split_whitespace().count() == 1).collect::<Vec<_>>().as_slice() {
            [one] => Ok(one.trim().to_string()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(eventually("the app's page", 30, || page(&ns.0, &pod)).contains("Hello from devloop"), "the build serves, not the book's image");
}

fn page_at(ns: &str, pod: &str, path: &str) -> Result<String, String> {
    try_kubectl(&["get", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/{path}")])
}

/// Kills the script's process (devloop, which it execs) with SIGINT when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_first_command_serves_the_example_and_an_edit_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ns = Namespace(format!("init-try-{}", nonce()));
    // On a copy (`--in`), on a free port, in a namespace of its own; with the devloop cargo test built (a
    // nested cargo build would wait for the lock cargo test holds).
    let mut child = Command::new(repo().join("scripts/try"))
        .args(["--in", dir.path().to_str().unwrap(), "--port", &port.to_string(), "--", "--namespace", &ns.0])
        .env("DEVLOOP_BIN", env!("CARGO_BIN_EXE_devloop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The first line says where to look, the next ones what to edit.
    let first = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("scripts/try printed nothing");
    let url = first.strip_prefix("open ").unwrap_or_else(|| panic!("first line: {first}")).to_string();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let edit = dir.path().join("examples/hello/www/index.html");
    let mut said = String::new();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
        said.push_str(&l);
        said.push('\n');
        if l.starts_with("stop") {
            break;
        }
    }
    assert!(said.contains(&format!("edit {}", edit.display())), "{said}");
    assert!(eventually("the first page", 120, || get(&url)).contains("Hello from devloop"));
    // devloop's own lines follow: one gives the status page's URL (try runs `up --ui`).
    let page = loop {
        let l = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("devloop printed no status page URL");
        if let Some(u) = l.strip_prefix("devloop: status page at ") {
            break u.to_string();
        }
    };
    assert!(page.starts_with("http://127.0.0.1:"), "{page}");
    assert!(get(&page).unwrap().contains("<title>devloop</title>"), "the status page answers");

    let marker = format!("edited {}", nonce());
    std::fs::write(&edit, format!("<p>{marker}</p>\n")).unwrap();
    eventually("the edit served at the same URL", 90, || get(&url).and_then(|b| if b.contains(&marker) { Ok(b) } else { Err(b) }));
    // The repository's example is untouched.
    assert!(std::fs::read_to_string(repo().join("examples/hello/www/index.html")).unwrap().contains("Hello from devloop"));
    drop(running);
}

#[test]
fn the_first_command_fails_clearly_when_its_port_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(repo().join("scripts/try"))
        .args(["--in", dir.path().to_str().unwrap(), "--port", &port])
        .env("DEVLOOP_BIN", "/nonexistent/devloop")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port} is already in use: pass --port N")), "{err}");
    // --port went into a copy of the config beside the original, which is unchanged.
    let copy = std::fs::read_to_string(dir.path().join(".devloop-try.toml")).unwrap();
    assert!(copy.contains(&format!("local = {port}")), "{copy}");
    assert!(std::fs::read_to_string(dir.path().join("devloop.toml")).unwrap().contains("local = 8080"));
}
