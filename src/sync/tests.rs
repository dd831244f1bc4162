use super::*;
use crate::filter::Filter;

fn rules(extra: &str) -> Vec<SyncRule> {
    let text = format!("[registry]\nhost = \"r\"\n[[image]]\nname = \"app\"\ncontext = \".\"\n{extra}");
    crate::config::parse(Path::new("/p/devloop.toml"), &text).unwrap().images.remove(0).sync
}

/// The built-in filter alone.
fn none() -> Filter {
    Filter::new::<&str>(&[]).unwrap()
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
    let p = prepare(&rules, dir.path(), &none(), &paths).unwrap();
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
    let p = prepare(&rules, dir.path(), &none(), &set(&["app.js"])).unwrap();
    assert_eq!((p.run.len(), p.restart), (0, true));
    let p = prepare(&rules, dir.path(), &none(), &set(&["package.json"])).unwrap();
    assert_eq!((p.run.clone(), p.restart), (vec!["npm ci".to_string(), "echo done".to_string()], false));
    let script = command(&p);
    assert_eq!(&script[..2], ["sh", "-c"]);
    assert!(script[2].contains("tar -xmf - -C /") && script[2].contains("npm ci") && !script[2].contains("rm -rf"), "{}", script[2]);
    assert_eq!(script.len(), 3, "sh -c <script>: the paths to delete are quoted inside it");
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
    let p = prepare(&rules, &ctx, &none(), &paths).unwrap();
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

fn names(p: &Prepared) -> Vec<String> {
    entries(&p.tar).into_iter().map(|(n, ..)| n).collect()
}

/// A new or renamed directory (one event for the whole tree) goes with everything below it that the image's
/// filter lets into a build: not an editor's backup, not what `.dockerignore` excludes.
#[test]
fn a_directory_goes_whole_with_what_the_filter_lets_through() {
    let dir = tempfile::tempdir().unwrap();
    for (f, body) in [("www/sub/a.html", "A"), ("www/sub/deep/b.html", "B"), ("www/sub/a.html~", "backup"), ("www/sub/key.env", "secret")] {
        std::fs::create_dir_all(dir.path().join(f).parent().unwrap()).unwrap();
        std::fs::write(dir.path().join(f), body).unwrap();
    }
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n");
    let filter = Filter::new(&["**/*.env"]).unwrap();
    let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let p = prepare(&rules, dir.path(), &filter, &set(&["www/sub"])).unwrap();
    assert_eq!(names(&p), ["www/sub", "www/sub/a.html", "www/sub/deep", "www/sub/deep/b.html"]);
    assert_eq!((p.files, p.deletes.len()), (4, 0));
    // The directory and a file below it, both changed: each entry once.
    let p = prepare(&rules, dir.path(), &filter, &set(&["www/sub", "www/sub/a.html"])).unwrap();
    assert_eq!(p.files, 4);
    // Excluded paths are neither sent nor deleted, whether they exist or not.
    let p = prepare(&rules, dir.path(), &filter, &set(&["www/sub/key.env", "www/gone.env", "www/sub/a.html~"])).unwrap();
    assert_eq!((p.files, p.deletes.len()), (0, 0), "{:?}", p.deletes);
    // A renamed directory: the old path is a delete, the new one arrives whole.
    std::fs::rename(dir.path().join("www/sub"), dir.path().join("www/sub2")).unwrap();
    let p = prepare(&rules, dir.path(), &filter, &set(&["www/sub", "www/sub2"])).unwrap();
    assert_eq!(names(&p), ["www/sub2", "www/sub2/a.html", "www/sub2/deep", "www/sub2/deep/b.html"]);
    assert_eq!(p.deletes, ["/www/sub"]);
}

/// Nothing outside the context is read: a path below a symlinked directory is skipped, and a symlink goes as
/// a link.
#[test]
fn nothing_is_read_through_a_symlinked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, outside) = (dir.path().join("ctx"), dir.path().join("outside"));
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, ctx.join("www/link")).unwrap();
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n");
    let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let p = prepare(&rules, &ctx, &none(), &set(&["www/link/passwd"])).unwrap();
    assert_eq!((p.files, p.deletes.len()), (0, 0));
    let p = prepare(&rules, &ctx, &none(), &set(&["www/link"])).unwrap();
    let mut a = tar::Archive::new(p.tar.as_slice());
    let kinds: Vec<_> = a.entries().unwrap().map(|e| e.unwrap().header().entry_type()).collect();
    assert_eq!(kinds, [tar::EntryType::Symlink]);
}

/// A file below a synced directory that no rule covers: the image must be built to hold it.
#[test]
fn a_file_below_a_synced_directory_that_no_rule_covers_fails_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www/sub")).unwrap();
    std::fs::write(dir.path().join("www/sub/a.html"), "A").unwrap();
    let rules = rules("[[image.sync]]\nsrc = \"www/*\"\ndest = \"/www\"\n");
    let paths = ["www/sub".to_string()].into();
    let e = prepare(&rules, dir.path(), &none(), &paths).unwrap_err();
    assert!(matches!(&e, Error::Uncovered { path } if path == "www/sub/a.html"), "{e}");
    assert!(e.skipped());
}

/// Past the caps a sync stops reading and says so: the image is built instead.
#[test]
fn a_sync_over_the_caps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www/many")).unwrap();
    std::fs::write(dir.path().join("www/big.bin"), vec![7u8; MAX_BYTES as usize + 1]).unwrap();
    std::fs::write(dir.path().join("www/small.bin"), vec![7u8; MAX_BYTES as usize - 1]).unwrap();
    for i in 0..MAX_ENTRIES {
        std::fs::write(dir.path().join(format!("www/many/{i}")), "x").unwrap();
    }
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n");
    let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let e = prepare(&rules, dir.path(), &none(), &set(&["www/big.bin"])).unwrap_err();
    assert!(matches!(e, Error::TooLarge { entries: 1, .. }) && e.skipped(), "{e}");
    assert!(e.to_string().contains("8 MiB"), "{e}");
    assert_eq!(prepare(&rules, dir.path(), &none(), &set(&["www/small.bin"])).unwrap().files, 1, "just under");
    let e = prepare(&rules, dir.path(), &none(), &set(&["www/many"])).unwrap_err();
    assert!(matches!(e, Error::TooLarge { entries, .. } if entries == MAX_ENTRIES + 1), "the directory and its {MAX_ENTRIES} files: {e}");
}

/// The content tag a tree would have if its files held what `tar` carries: the tar unpacked into a scratch
/// context (the tar's paths are the container's; here `/www` ↔ `www`) and scanned.
fn tag_of_tar(context: &Path, tar: &[u8], filter: &Filter) -> [u8; 32] {
    let copy = tempfile::tempdir().unwrap();
    for e in crate::tree::walk(context, filter).unwrap() {
        let (from, to) = (context.join(&e.path), copy.path().join(&e.path));
        match e.kind {
            crate::tree::Kind::Dir => std::fs::create_dir_all(&to).unwrap(),
            _ => drop(std::fs::copy(&from, &to).unwrap()),
        }
    }
    tar::Archive::new(tar).unpack(copy.path()).unwrap();
    let (mut t, _) = crate::hash::merkle::Tree::scan(copy.path(), filter, &mut crate::hash::DigestCache::in_memory()).unwrap();
    t.root_digest()
}

/// A file rewritten between the sync's read and the content tag's: the tag must still describe the bytes
/// the tar carried to the pods, not the later ones.
#[test]
fn the_content_tag_describes_the_bytes_the_tar_carried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "v1").unwrap();
    std::fs::write(dir.path().join("www/other.html"), "o").unwrap();
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n");
    let (mut tree, _) = crate::hash::merkle::Tree::scan(dir.path(), &none(), &mut crate::hash::DigestCache::in_memory()).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "v2, the save").unwrap();
    let paths: BTreeSet<String> = ["www/index.html".to_string()].into();
    let p = prepare(&rules, dir.path(), &none(), &paths).unwrap();
    // The next save lands before the tree is updated: the tree takes what the sync read, not the disk.
    std::fs::write(dir.path().join("www/index.html"), "v3, the next save").unwrap();
    tree.apply(dir.path(), &none(), &p.judged, &p.read).unwrap();
    let sent = tag_of_tar(dir.path(), &p.tar, &none());
    assert_eq!(hex::encode(tree.root_digest()), hex::encode(sent), "the tree's digest is not that of what the tar carried");
}

/// When nothing changes between the reads, applying what a sync read gives the tree a fresh scan gives: new
/// and renamed directories, deletes, symlinks, excluded paths, a mode change.
#[test]
fn applying_what_a_sync_read_matches_a_fresh_scan() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path();
    for (f, body) in [("www/a.html", "A"), ("www/old/b.html", "B"), ("www/keep.env", "k"), ("app.js", "x")] {
        std::fs::create_dir_all(ctx.join(f).parent().unwrap()).unwrap();
        std::fs::write(ctx.join(f), body).unwrap();
    }
    let filter = Filter::new(&["**/*.env"]).unwrap();
    let rules = rules("[[image.sync]]\nsrc = \"www/**\"\ndest = \"/www\"\n");
    let (mut tree, _) = crate::hash::merkle::Tree::scan(ctx, &filter, &mut crate::hash::DigestCache::in_memory()).unwrap();
    std::fs::write(ctx.join("www/a.html"), "A2").unwrap();
    std::fs::set_permissions(ctx.join("www/a.html"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(ctx.join("www/old"), ctx.join("www/new")).unwrap();
    std::fs::create_dir_all(ctx.join("www/sub/deep")).unwrap();
    std::fs::write(ctx.join("www/sub/deep/c.html"), "C").unwrap();
    std::fs::write(ctx.join("www/sub/x.env"), "excluded").unwrap();
    std::os::unix::fs::symlink("a.html", ctx.join("www/link")).unwrap();
    let paths: BTreeSet<String> = ["www/a.html", "www/old", "www/new", "www/sub", "www/link", "www/sub/x.env", "app.js"].iter().map(|s| s.to_string()).collect();
    let p = prepare(&rules, ctx, &filter, &paths).unwrap();
    assert!(!p.judged.contains("app.js"), "no rule covers it: not the sync's to judge");
    tree.apply(ctx, &filter, &p.judged, &p.read).unwrap();
    let (mut fresh, _) = crate::hash::merkle::Tree::scan(ctx, &filter, &mut crate::hash::DigestCache::in_memory()).unwrap();
    assert_eq!(tree.paths(), fresh.paths());
    assert_eq!(hex::encode(tree.root_digest()), hex::encode(fresh.root_digest()));
}

/// Names a shell could take for something else: spaces, quotes, `$`, backquotes, a glob, a newline, a
/// leading `-`, a backslash, a `;`.
const HOSTILE: [&str; 11] = ["a b.html", "it's.html", "$HOME.html", "`id`.html", "new\nline.html", "-rf.html", "--", "\"q\".html", "*.html", "back\\slash", "semi;colon"];

/// The one quoting function: the shell gives back every hostile name as it was.
#[test]
fn quote_gives_the_shell_each_name_as_it_is() {
    for name in HOSTILE {
        let out = std::process::Command::new("sh").args(["-c", &format!("printf %s {}", quote(name))]).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), name, "{}", quote(name));
    }
}

/// Both ways the script travels (one exec, the tar on stdin; a session, the tar in a here-document), run by
/// a real `sh` against a scratch root: files with hostile names are deleted and unpacked as named, and
/// nothing else is touched (not by the glob, not by a name that looks like an option).
#[test]
fn hostile_names_are_deleted_and_unpacked_as_named_either_way() {
    for carry in [Carry::Stdin, Carry::HereDoc] {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, root) = (dir.path().join("ctx"), dir.path().join("root"));
        std::fs::create_dir_all(ctx.join("www")).unwrap();
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("www/keep.html"), "keep").unwrap();
        let mut paths = BTreeSet::new();
        for name in HOSTILE {
            std::fs::write(root.join("www").join(name), "old").unwrap();
            paths.insert(format!("www/{name}")); // gone from the context: a delete
            std::fs::write(ctx.join("www").join(format!("new {name}")), name).unwrap();
            paths.insert(format!("www/new {name}"));
        }
        let rules = rules(&format!("[[image.sync]]\nsrc = \"www/**\"\ndest = \"{}/www\"\n", root.display()));
        let p = prepare(&rules, &ctx, &none(), &paths).unwrap();
        assert_eq!((p.files, p.deletes.len()), (HOSTILE.len(), HOSTILE.len()));
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script(&p, carry)])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if carry == Carry::Stdin {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &p.tar).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{carry:?}: {}", String::from_utf8_lossy(&out.stderr));
        let mut left: Vec<String> = std::fs::read_dir(root.join("www")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut want: Vec<String> = HOSTILE.iter().map(|n| format!("new {n}")).chain(["keep.html".to_string()]).collect();
        want.sort();
        assert_eq!(left, want, "{carry:?}");
        for name in HOSTILE {
            assert_eq!(std::fs::read_to_string(root.join("www").join(format!("new {name}"))).unwrap(), name, "{carry:?}");
        }
    }
}
