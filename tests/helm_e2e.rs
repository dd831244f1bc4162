//! `[[deploy]] helm = { … }`: examples/hello/chart installed and upgraded as a Helm release with the built
//! image; a crash-looping upgrade is reported and the release rolled back with `helm rollback`; the book's
//! bulletin-board chart (tests/charts/) deployed unchanged through `set` templates and a `tag` template.
//! Needs helm on PATH (`scripts/stack env` puts the stack's pinned one there). Run through scripts/test.

mod common;
use common::*;

/// (revision, status) of the release as `helm list` shows it.
fn listed(ns: &str, release: &str) -> (u64, String) {
    let out = std::process::Command::new("helm")
        .args(["list", "-n", ns, "--kube-context", "devloop-local", "-o", "json"])
        .output()
        .expect("helm on PATH");
    assert!(out.status.success(), "helm list: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = v.as_array().unwrap().iter().find(|r| r["name"] == release).unwrap_or_else(|| panic!("{release} not in helm list: {v}"));
    (r["revision"].as_str().unwrap().parse().unwrap(), r["status"].as_str().unwrap().to_string())
}

fn one_pod(ns: &str, app: &str) -> String {
    eventually("one live pod", 60, || match live_pods(ns, app).as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    })
}

/// A project deploying examples/hello/chart as release `p.name`; `extra` goes after the [[deploy]] table.
fn helm_project(ns: &str, extra: &str) -> Project {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    p.write_config(&format!(
        "[kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n[[deploy]]\nimage = \"{name}\"\nrollout-timeout = \"60s\"\n\
         helm = {{ chart = \"app/chart\", release = \"{name}\", set = {{ replicas = 1 }}, \
         image-values = {{ repository = \"image.repository\", tag = \"image.tag\" }} }}\n{extra}",
        name = p.name
    ));
    p
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn check_installs_the_chart_in_its_throwaway_namespace() {
    let ns = Namespace::new("helm-check");
    let p = helm_project(&ns.0, "");
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    // The command sees the release deployed (revision 1) in the check's namespace, and its pod serving.
    let probe = format!(
        "[check]\ncommands = [\"helm list -n $DEVLOOP_NAMESPACE --kube-context devloop-local -q | grep -qx {name} && \
         kubectl -n $DEVLOOP_NAMESPACE get --raw /api/v1/namespaces/$DEVLOOP_NAMESPACE/services/{name}:80/proxy/ | grep -q Hello\"]\n",
        name = p.name
    );
    std::fs::write(p.path("devloop.toml"), format!("{cfg}{probe}")).unwrap();
    let (out, err) = p.ok(&["check"]);
    assert!(out.contains("upgraded to revision 1") && out.contains("devloop-check-"), "{out}\n{err}");
    let listed = std::process::Command::new("helm").args(["list", "-n", &ns.0, "-q"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "check installed into the configured namespace");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_chart_is_installed_upgraded_and_a_crashing_upgrade_rolled_back() {
    let ns = Namespace::new("helm");
    let p = helm_project(&ns.0, "");

    // Install: revision 1, pods on the built image.
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("helm release {}/{} upgraded to revision 1", ns.0, p.name)), "{out}\n{err}");
    assert!(out.contains(&format!("rollout of deployment {}/{} done", ns.0, p.name)), "{out}\n{err}");
    assert_eq!(listed(&ns.0, &p.name), (1, "deployed".to_string()));
    let image = template_image(&ns.0, &p.name);
    assert!(image.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "{image}");
    let pod = one_pod(&ns.0, &p.name);
    assert!(eventually("the first page", 30, || page(&ns.0, &pod)).contains("Hello"), "the example's page");

    // Edit: revision 2 rolls a new pod with the new page.
    p.write("app/www/index.html", "<p>through helm</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains("upgraded to revision 2"), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/{} done", ns.0, p.name)), "{out}");
    assert_eq!(listed(&ns.0, &p.name), (2, "deployed".to_string()));
    let good = template_image(&ns.0, &p.name);
    assert_ne!(good, image);
    let pod = eventually("the new pod", 60, || match live_pods(&ns.0, &p.name).as_slice() {
        [one] if *one != pod => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(eventually("the new page", 30, || page(&ns.0, &pod)), "<p>through helm</p>\n");

    // Crash: revision 3 fails with its reason, helm rolls back (revision 4 = revision 2), the old pod serves.
    p.write("app/serve.sh", "#!/bin/sh\necho crash-marker: helm chart broke >&2\nexit 1\n");
    let run = p.devloop(&["deploy"]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{}: {out}\n{}", run.status, String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("upgraded to revision 3"), "{out}");
    assert!(out.contains("FAILED after") && (out.contains(": Exited (pod ") || out.contains(": CrashLoopBackOff (pod ")), "{out}");
    assert!(out.contains("exited with code 1"), "{out}");
    assert!(out.contains("crash-marker: helm chart broke"), "no log line in:\n{out}");
    assert!(out.contains("(helm rollback)") && out.contains("rolled back"), "{out}");
    assert_eq!(listed(&ns.0, &p.name), (4, "deployed".to_string()));
    let history = std::process::Command::new("helm")
        .args(["history", &p.name, "-n", &ns.0, "--kube-context", "devloop-local", "-o", "json"])
        .output()
        .unwrap();
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let last = h.as_array().unwrap().last().unwrap();
    assert!(last["description"].as_str().unwrap().contains("Rollback to 2"), "{h}");
    assert_eq!(template_image(&ns.0, &p.name), good, "the rollback restored revision 2's image");
    assert_eq!(one_pod(&ns.0, &p.name), pod, "the old pod kept running");
    assert_eq!(page(&ns.0, &pod).unwrap(), "<p>through helm</p>\n");

    // `down` uninstalls the release (the namespace is the test's own: kept); a second `down` finds none.
    let (out, _) = p.ok(&["down"]);
    assert!(out.contains(&format!("down: helm release {}/{} uninstalled", ns.0, p.name)), "{out}");
    eventually("the release's Deployment is gone", 60, || {
        match try_kubectl(&["-n", &ns.0, "get", "deployment", &p.name]) {
            Err(e) if e.contains("NotFound") || e.contains("not found") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (out, _) = p.ok(&["down"]);
    assert!(out.contains(&format!("down: helm release {}/{} is not installed", ns.0, p.name)), "{out}");
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn up_with_cleanup_uninstalls_the_release_on_ctrl_c() {
    let ns = Namespace::new("helm-cleanup");
    let p = helm_project(&ns.0, "");
    let mut up = Up::start_with(&p, &["--cleanup"]);
    up.wait("iteration", 120);
    assert_eq!(listed(&ns.0, &p.name).0, 1);
    one_pod(&ns.0, &p.name);
    up.interrupt();
    up.quiet_for(std::time::Duration::from_millis(200));
    let cleanup = up.seen.iter().find(|v| v["event"] == "cleanup").unwrap_or_else(|| panic!("no cleanup: {:#?}", up.seen)).clone();
    assert_eq!(cleanup["message"].as_str().unwrap(), format!("helm release {}/{} uninstalled", ns.0, p.name), "{cleanup}");
    let out = std::process::Command::new("helm").args(["list", "-n", &ns.0, "--kube-context", "devloop-local", "-q"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "the release is still listed");
    eventually("the release's pods gone", 60, || match live_pods(&ns.0, &p.name).as_slice() {
        [] => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// (revision, status) of the release's last revision as `helm status` shows it (pending ones included).
fn status(ns: &str, release: &str) -> (u64, String) {
    let out = std::process::Command::new("helm")
        .args(["status", release, "-n", ns, "--kube-context", "devloop-local", "-o", "json"])
        .output()
        .expect("helm on PATH");
    assert!(out.status.success(), "helm status: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["version"].as_u64().unwrap(), v["info"]["status"].as_str().unwrap().to_string())
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn stopping_up_during_a_helm_upgrade_leaves_the_release_deployed_and_the_next_deploy_works() {
    let ns = Namespace::new("helm-stop");
    let p = helm_project(&ns.0, "");
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains("upgraded to revision 1"), "{out}\n{err}");
    let first = template_image(&ns.0, &p.name);

    // A pre-upgrade hook that sleeps: helm waits for it with the release pending-upgrade.
    let hook = p.path("app/chart/templates/slow-hook.yaml");
    std::fs::write(
        &hook,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{{{ .Release.Name }}}}-slow-hook\n  annotations:\n    \
             helm.sh/hook: pre-upgrade\n    helm.sh/hook-delete-policy: before-hook-creation\nspec:\n  restartPolicy: Never\n  \
             terminationGracePeriodSeconds: 0\n  containers:\n  - name: sleep\n    image: {}/busybox:latest\n    command: [sleep, \"600\"]\n",
            p.registry
        ),
    )
    .unwrap();
    p.write("app/www/index.html", "<p>never rolled out</p>\n");
    let mut up = Up::start(&p);
    eventually("the upgrade waiting on its hook", 180, || match status(&ns.0, &p.name) {
        (2, s) if s == "pending-upgrade" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    std::process::Command::new("kill").args(["-INT", &up.child.id().to_string()]).status().unwrap();
    eventually("up to exit after SIGINT", 60, || if up.alive() { Err("still running".to_string()) } else { Ok(()) });
    up.quiet_for(std::time::Duration::from_millis(200));

    let (revision, state) = status(&ns.0, &p.name);
    assert_eq!(state, "deployed", "revision {revision}; up said: {:#?}", up.seen);
    let said = up.seen.iter().find(|v| v["event"] == "helm").unwrap_or_else(|| panic!("nothing said about helm: {:#?}", up.seen));
    assert!(said["message"].as_str().unwrap().contains("rolled back to revision 1"), "{said}");
    eprintln!("up said: {}", said["message"]);
    assert_eq!(template_image(&ns.0, &p.name), first, "the release runs the first image again");

    // The next deploy upgrades (no "another operation is in progress").
    std::fs::remove_file(&hook).unwrap();
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of deployment {}/{} done", ns.0, p.name)), "{out}\n{err}");
    assert_eq!(status(&ns.0, &p.name).1, "deployed");
}

/// A project with examples/hello's app as image `<name>/bulletin-board`, deployed with the book's
/// bulletin-board chart (tests/charts/bulletin-board: its image is
/// `{registryServer}/{registryUser}/bulletin-board:{imageBuildNumber}-kiamol`, `imagePullPolicy: Always`, a
/// pull secret `registry-creds` that does not exist here: the kubelet pulls anonymously).
fn book_project() -> (Project, String) {
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    let image = format!("{}/bulletin-board", p.name);
    (p, image)
}

/// Writes the book project's devloop.toml: release `release` into `ns`, `set = { <set> }`, and `tag` (a
/// line in the [[image]] table, or empty).
fn write_book_config(p: &Project, ns: &str, release: &str, set: &str, tag: &str) {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts/bulletin-board");
    let cfg = format!(
        "[buildkit]\naddr = \"{bk}\"\n[registry]\nhost = \"{reg}\"\ninsecure = true\n\
         [[image]]\nname = \"{name}/bulletin-board\"\ncontext = \"app\"\nbuild-args = {{ REGISTRY = \"{reg}\" }}\n{tag}\n\
         [kube]\ncontext = \"devloop-local\"\nnamespace = \"{ns}\"\n\
         [[deploy]]\nimage = \"{name}/bulletin-board\"\nrollout-timeout = \"90s\"\n\
         helm = {{ chart = \"{chart}\", release = \"{release}\", set = {{ {set} }} }}\n",
        bk = env("BUILDKIT_HOST"),
        reg = p.registry,
        name = p.name,
        chart = chart.display(),
    );
    std::fs::write(p.path("devloop.toml"), cfg).unwrap();
}

/// The live (not deleting) pods of a bulletin-board release.
fn board_pods(ns: &str, release: &str) -> Vec<String> {
    let out = kubectl(&[
        "-n", ns, "get", "pods", "-l", &format!("app.kubernetes.io/instance={release}"),
        "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines().filter(|l| l.split_whitespace().count() == 1).map(|l| l.trim().to_string()).collect()
}

/// Issue 22: a chart as it is. The book's chart takes its image as three values and a fixed suffix; with
/// `set` templates and `tag = "{hash}-kiamol"` it deploys unchanged, runs devloop's build (pushed under
/// that tag), and `up` serves an edit from a new Helm revision, following the new pod's log.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_book_s_chart_deploys_unchanged_with_set_templates_and_up_serves_an_edit_from_a_new_revision() {
    let ns = Namespace::new("helm-book");
    let (p, image) = book_project();
    let set = format!("registryServer = \"{{registry}}\", registryUser = \"{}\", imageBuildNumber = \"{{hash}}\"", p.name);
    write_book_config(&p, &ns.0, "bb", &set, "tag = \"{hash}-kiamol\"");
    let tag = p.tag();
    assert!(tag.ends_with("-kiamol") && tag.len() == 32 + "-kiamol".len(), "{tag}");

    let (out, err) = p.ok(&["deploy"]);
    let rendered = format!("{}/{image}:{tag}", p.registry);
    assert!(out.contains(&format!("helm release {}/bb upgraded to revision 1", ns.0)), "{out}\n{err}");
    assert!(out.contains(&format!("rendered as {rendered})")), "{out}");
    assert!(out.contains(&format!("rollout of deployment {}/bb done", ns.0)), "{out}\n{err}");
    // The chart's own image line, filled by the templates: devloop's build under the templated tag.
    assert_eq!(template_image(&ns.0, "bb"), rendered);
    assert!(registry_digest(&p.registry, &image, &tag).is_some(), "the registry has {image}:{tag}");
    let policy = kubectl(&["-n", &ns.0, "get", "deployment", "bb", "-o", "jsonpath={.spec.template.spec.containers[0].imagePullPolicy}"]);
    assert_eq!(policy, "Always", "the chart's own pull policy");
    let pod = eventually("one pod", 60, || match board_pods(&ns.0, "bb").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    assert!(eventually("the first page", 30, || page(&ns.0, &pod)).contains("Hello"), "the example's page");

    // `up`: the edit is built under a new `-kiamol` tag and served from a new revision.
    let mut up = Up::start(&p);
    up.wait("iteration", 180);
    let before = listed(&ns.0, "bb").0;
    p.write("app/www/index.html", "<p>the book's chart, unchanged</p>\n");
    let done = up.wait("iteration", 180);
    let new_tag = done["tag"].as_str().unwrap().to_string();
    assert!(new_tag.ends_with("-kiamol") && new_tag != tag, "{done}");
    assert_eq!(listed(&ns.0, "bb"), (before + 1, "deployed".to_string()), "a new Helm revision");
    assert_eq!(template_image(&ns.0, "bb"), format!("{}/{image}:{new_tag}", p.registry));
    let new = eventually("the new pod", 90, || match board_pods(&ns.0, "bb").as_slice() {
        [one] if *one != pod => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(eventually("the new page", 30, || page(&ns.0, &new)), "<p>the book's chart, unchanged</p>\n");
    // The new pod is known by the reference the chart rendered: its log is followed.
    up.seen_or_wait_for("the new pod's log line", 60, |v| {
        v["event"] == "log" && v["message"].as_str().is_some_and(|m| m.contains(&format!("[{new}]")) && m.contains("serving /www"))
    });
}

/// The same chart without templates does not get devloop's image, and a template that misses the chart's
/// suffix renders another tag: each is an error saying what the chart runs, with no rollout watched.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn the_book_s_chart_without_the_right_templates_is_a_clear_error() {
    let ns = Namespace::new("helm-book-bad");
    let (p, image) = book_project();
    write_book_config(&p, &ns.0, "plain", "", "");
    let run = p.devloop(&["deploy"]);
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert_eq!(run.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains(&format!("helm release {}/plain (revision 1): the chart did not take image {image} (devloop set `image.repository` and `image.tag`): its containers run docker.io/kiamol/bulletin-board:dev-kiamol", ns.0)),
        "{out}\n{err}"
    );
    assert!(err.contains("placeholders in `set`") && !out.contains("rollout of"), "{out}\n{err}");

    // `{tag}` where the chart wants the build number: the chart adds `-kiamol` again.
    let set = format!("registryServer = \"{{registry}}\", registryUser = \"{}\", imageBuildNumber = \"{{tag}}\"", p.name);
    write_book_config(&p, &ns.0, "plain", &set, "tag = \"{hash}-kiamol\"");
    let tag = p.tag();
    let run = p.devloop(&["deploy"]);
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert_eq!(run.status.code(), Some(1), "{out}\n{err}");
    let twice = format!("{}/{image}:{tag}-kiamol", p.registry);
    assert!(err.contains(&format!("(revision 2): the chart runs {twice}, not the build deployed")), "{out}\n{err}");
    assert!(err.contains("tag = \"{hash}-suffix\"") && !out.contains("rollout of"), "{out}\n{err}");
}

/// One chart, two images (an api and a web, each its own value): two `[[deploy]]` tables share the release.
/// Each upgrade keeps the other image's value (not the chart's default); a crashing api is rolled back to
/// its own previous revision, and the web keeps running its build.
#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn two_images_of_one_chart_share_its_release_and_each_upgrade_keeps_the_others_image() {
    let ns = Namespace::new("helm-pair");
    let p = Project::hello(&env("DEVLOOP_REGISTRY"));
    copy_dir(&p.path("app"), &p.path("web"));
    p.write("web/www/nonce.txt", &format!("{}-web", p.name));
    let (api, web) = (p.name.clone(), format!("{}-web", p.name));
    p.write("pair/Chart.yaml", "apiVersion: v2\nname: pair\nversion: 0.1.0\n");
    p.write("pair/values.yaml", "api: {image: none}\nweb: {image: none}\n");
    for part in ["api", "web"] {
        p.write(
            &format!("pair/templates/{part}.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: pair-{part}}}\nspec:\n  selector: {{matchLabels: {{app: pair-{part}}}}}\n  \
                 template:\n    metadata: {{labels: {{app: pair-{part}}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n        \
                 - name: web\n          image: \"{{{{ .Values.{part}.image }}}}\"\n          readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}\n"
            ),
        );
    }
    let deploy = |image: &str, part: &str| {
        format!("[[deploy]]\nimage = \"{image}\"\nrollout-timeout = \"60s\"\nhelm = {{ chart = \"pair\", release = \"pair\", image-values = {{ image = \"{part}.image\" }} }}\n")
    };
    p.write_config(&format!(
        "[[image]]\nname = \"{web}\"\ncontext = \"web\"\nbuild-args = {{ REGISTRY = \"{}\" }}\n[kube]\ncontext = \"devloop-local\"\nnamespace = \"{}\"\n{}{}",
        p.registry,
        ns.0,
        deploy(&api, "api"),
        deploy(&web, "web")
    ));
    let runs = |part: &str| template_image(&ns.0, &format!("pair-{part}"));
    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("helm release {}/pair upgraded to revision 2", ns.0)), "{out}\n{err}");
    let first_api = runs("api");
    assert!(first_api.contains(&format!("/{api}:")), "the api's upgrade kept by the web's: {first_api}\n{out}");
    let first_web = runs("web");
    assert!(first_web.contains(&format!("/{web}:")), "{first_web}");

    // A save to the api alone: the api runs its new build, the web its own still.
    p.write("app/www/index.html", "<p>api v2</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    let second_api = runs("api");
    assert!(second_api.contains(&format!("/{api}:")) && second_api != first_api, "{second_api}\n{out}");
    assert_eq!(runs("web"), first_web, "the api's upgrade left the web's image alone\n{out}");

    // A crashing api: its upgrade fails and is undone; the web is not touched.
    p.write("app/serve.sh", "#!/bin/sh\necho pair-marker: api broke >&2\nexit 1\n");
    let run = p.devloop(&["deploy"]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{out}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("(helm rollback)") && out.contains("rolled back"), "{out}");
    assert_eq!(runs("api"), second_api, "the api is back on its last good build\n{out}");
    assert_eq!(runs("web"), first_web, "{out}");
}
