use super::*;

fn rules(extra: &str) -> Vec<SyncRule> {
    let text = format!("[registry]\nhost = \"r\"\n[[image]]\nname = \"app\"\ncontext = \".\"\n{extra}");
    crate::config::parse(Path::new("/p/devloop.toml"), &text).unwrap().images.remove(0).sync
}

fn entries(tar: &[u8]) -> Vec<(String, u32, u64, String)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut e, &mut body).unwrap();
            (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap(), body)
        })
        .collect()
}

#[test]
fn changed_files_go_into_one_tar_at_their_container_paths_and_gone_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www/sub")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "<p>new</p>").unwrap();
    std::fs::write(dir.path().join("www/sub/run.sh"), "#!/bin/sh").unwrap();
    std::fs::set_permissions(dir.path().join("www/sub/run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/srv/www\"\n");
    let paths = ["www/index.html", "www/sub", "www/sub/run.sh", "www/gone.css", "Dockerfile"].iter().map(|s| s.to_string()).collect();
    let p = prepare(&rules, dir.path(), &paths).unwrap();
    let e = entries(&p.tar);
    let got: Vec<(&str, u32, u64, &str)> = e.iter().map(|(n, m, u, b)| (n.as_str(), *m, *u, b.as_str())).collect();
    assert_eq!(
        got,
        [("srv/www/index.html", 0o644, 0, "<p>new</p>"), ("srv/www/sub", 0o755, 0, ""), ("srv/www/sub/run.sh", 0o755, 0, "#!/bin/sh")],
        "owner root, modes as COPY gives them"
    );
    assert_eq!((p.files, p.deletes.as_slice()), (3, ["/srv/www/gone.css".to_string()].as_slice()));
    assert!(p.run.is_empty() && !p.restart);
}

#[test]
fn run_commands_of_the_touched_rules_follow_their_triggers_and_restart_follows_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    std::fs::write(dir.path().join("app.js"), "x").unwrap();
    let rules = rules(
        "[[image.sync]]\nsrc = \"*.js\"\ndest = \"/app/\"\nrestart = true\n\
         [[image.sync]]\nsrc = \"package.json\"\ndest = \"/app/package.json\"\nrun = [{ cmd = \"npm ci\", trigger = \"package.json\" }, \"echo done\"]\n\
         [[image.sync]]\nsrc = \"static/**\"\ndest = \"/static\"\nrun = [\"never\"]\n",
    );
    let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let p = prepare(&rules, dir.path(), &set(&["app.js"])).unwrap();
    assert_eq!((p.run.len(), p.restart), (0, true));
    let p = prepare(&rules, dir.path(), &set(&["package.json"])).unwrap();
    assert_eq!((p.run.clone(), p.restart), (vec!["npm ci".to_string(), "echo done".to_string()], false));
    let script = command(&p);
    assert_eq!(&script[..2], ["sh", "-c"]);
    assert!(script[2].contains("tar -xmf - -C /") && script[2].contains("npm ci") && !script[2].contains("rm -rf"), "{}", script[2]);
    assert_eq!(script.len(), 4, "no paths to delete");
}

/// The script, run by a real `sh` against a scratch root instead of `/`: deletes, unpacks, runs, and says
/// when tar is missing.
#[test]
fn the_script_deletes_unpacks_and_runs_in_a_real_shell() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    let root = dir.path().join("root");
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::write(ctx.join("www/a.html"), "A2").unwrap();
    std::fs::write(root.join("www/a.html"), "A1").unwrap();
    std::fs::write(root.join("www/b.html"), "B1").unwrap();
    let rules = rules(&format!("[[image.sync]]\nsrc = \"www/**\"\ndest = \"{}/www\"\nrun = [\"touch {}/ran\"]\n", root.display(), root.display()));
    let paths = ["www/a.html", "www/b.html"].iter().map(|s| s.to_string()).collect();
    let p = prepare(&rules, &ctx, &paths).unwrap();
    let argv = command(&p);
    let run = |path: &str| {
        let mut child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &p.tar).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let out = run(&std::env::var("PATH").unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(root.join("www/a.html")).unwrap(), "A2");
    assert!(!root.join("www/b.html").exists(), "deleted");
    assert!(root.join("ran").exists(), "the run command ran");
    // No tar on PATH (sh itself called by its full path).
    let mut argv = argv.clone();
    argv[0] = String::from_utf8(std::process::Command::new("sh").args(["-c", "command -v sh"]).output().unwrap().stdout).unwrap().trim().to_string();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).env("PATH", &empty).stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(NO_TAR));
}
