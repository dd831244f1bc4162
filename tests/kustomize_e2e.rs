//! `[[deploy]] kustomize = "dir"`: the kustomization is rendered (kustomize, else `kubectl kustomize`) and
//! applied like manifests, devloop's images substituted after rendering. Run through scripts/test.

mod common;
use common::*;

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_kustomize_overlay_is_rendered_substituted_and_rolled() {
    let ns = Namespace::new("kustomize");
    let p = manifest_project(&ns.0, "");
    // A base next to the example's manifests, and an overlay that renames and relabels them.
    p.write("app/k8s/kustomization.yaml", "resources:\n  - deployment.yaml\n  - service.yaml\n");
    p.write(
        "overlays/dev/kustomization.yaml",
        "resources:\n  - ../../app/k8s\nnamePrefix: dev-\ncommonAnnotations:\n  team: devloop-e2e\n",
    );
    let cfg = std::fs::read_to_string(p.path("devloop.toml")).unwrap();
    std::fs::write(p.path("devloop.toml"), cfg.replace("manifests = [\"app/k8s/*.yaml\"]", "kustomize = \"overlays/dev\"")).unwrap();

    let (out, err) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("deployment {}/dev-hello applied", ns.0)), "{out}\n{err}");
    assert!(out.contains(&format!("rollout of deployment {}/dev-hello done", ns.0)), "{out}\n{err}");
    let image = template_image(&ns.0, "dev-hello");
    assert!(image.starts_with(&format!("{}/{}:{}@sha256:", p.registry, p.name, p.tag())), "{image}");
    let team = kubectl(&["-n", &ns.0, "get", "service", "dev-hello", "-o", "jsonpath={.metadata.annotations.team}"]);
    assert_eq!(team, "devloop-e2e", "the overlay's transformation reached the cluster");

    // A change rolls again; an unchanged overlay applies nothing new.
    p.write("app/www/index.html", "<p>through kustomize</p>\n");
    let (out, _) = p.ok(&["deploy"]);
    assert!(out.contains(&format!("rollout of deployment {}/dev-hello done", ns.0)), "{out}");
    let pod = eventually("one new pod", 60, || match live_pods(&ns.0, "hello").as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(eventually("the new page", 30, || page(&ns.0, &pod)), "<p>through kustomize</p>\n");

    // A broken kustomization is an error that says what kustomize said; nothing is applied.
    p.write("overlays/dev/kustomization.yaml", "resources:\n  - ../../missing\n");
    let run = p.devloop(&["deploy"]);
    let e = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{e}");
    assert!(e.contains("kustomize") && e.contains("missing"), "{e}");
}
