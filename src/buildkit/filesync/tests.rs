use super::*;

fn dir_with(files: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in files {
        let p = d.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, f).unwrap();
    }
    d
}

fn paths(v: &[Entry]) -> Vec<&str> {
    v.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn go_file_mode_bits_are_not_st_mode() {
    // (kind, perm, Go os.FileMode)
    let cases = [
        (Kind::Dir, 0o755, 0x8000_01ED),
        (Kind::File, 0o644, 0o644),
        (Kind::Symlink, 0o777, 0x0800_01FF),
        (Kind::File, 0o4755, 0x0080_01ED),  // setuid
        (Kind::File, 0o2755, 0x0040_01ED),  // setgid
        (Kind::Dir, 0o1777, 0x8010_01FF),   // sticky
    ];
    for (kind, perm, want) in cases {
        assert_eq!(go_file_mode(kind, perm), want, "{kind:?} {perm:o}");
    }
}

#[test]
fn stats_zero_owner_and_carry_size_time_and_link() {
    let e = Entry { path: "a/l".into(), kind: Kind::Symlink, perm: 0o777, size: 0, mtime_ns: 42, ctime_ns: 7, ino: 9, dev: 1, link: Some("../x".into()) };
    let s = stat_of(&e);
    assert_eq!((s.uid, s.gid, s.mod_time, s.linkname.as_str(), s.path.as_str()), (0, 0, 42, "../x", "a/l"));
}

#[test]
fn selection_applies_our_filter_then_the_daemons_patterns_in_walk_order() {
    let d = dir_with(&["Dockerfile", "src/a.rs", "src/b.rs", "src-extra/c", ".env", "docs/x.md", "src/.a.rs.swp"]);
    let dir = SyncedDir::context(d.path(), Filter::new(&[".env"]).unwrap());
    // Context: everything our filter allows, minus the daemon's excludes.
    let all = select(&dir, &Opts { excludes: vec!["docs".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&all), ["Dockerfile", "src", "src/a.rs", "src/b.rs", "src-extra", "src-extra/c"]);
    // Literal includes (the Dockerfile frontend asking for the Dockerfile): only those, stat'ed directly.
    let df = select(&dir, &Opts { includes: vec!["Dockerfile".into(), "Dockerfile.dockerignore".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&df), ["Dockerfile"]);
    // A nested include brings its parent directory first.
    let nested = select(&dir, &Opts { includes: vec!["src/b.rs".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&nested), ["src", "src/b.rs"]);
    // Glob includes walk and keep ancestors.
    let globbed = select(&dir, &Opts { includes: vec!["src/*.rs".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&globbed), ["src", "src/a.rs", "src/b.rs"]);
    // Our filter wins over an include: an excluded secret is never sent, even when asked for by name.
    let secret = select(&dir, &Opts { includes: vec![".env".into()], ..Default::default() }).unwrap();
    assert!(paths(&secret).is_empty());
}

#[test]
fn options_come_from_metadata_and_may_be_url_encoded() {
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert("dir-name", "context".parse().unwrap());
    md.append("exclude-patterns", "a%2Fb+c".parse().unwrap());
    md.append("exclude-patterns", "%2A.log".parse().unwrap());
    md.insert("exclude-patterns-encoded", "1".parse().unwrap());
    md.append("include-patterns", "x%2Fy".parse().unwrap());
    let o = Opts::from_metadata(&md);
    assert_eq!(o.dir_name, "context");
    assert_eq!(o.excludes, ["a/b c", "*.log"]);
    assert_eq!(o.includes, ["x%2Fy"], "not marked encoded: taken as is");
}

/// The daemon's side of one DiffCopy after the STATs: REQs for `ids`, then FIN. Returns what we answered.
async fn request(root: &Path, entries: &[Entry], ids: &[u32]) -> (Vec<Result<Packet, Status>>, TransferStats) {
    let inbound: Vec<Result<Packet, Status>> = ids
        .iter()
        .map(|&id| Ok(packet(PacketType::PacketReq, id)))
        .chain([Ok(packet(PacketType::PacketFin, 0))])
        .collect();
    let (tx, mut rx) = mpsc::channel(1024);
    let stats = TransferStats::default();
    serve_requests("context", root, entries, futures::stream::iter(inbound), &tx, &stats).await;
    drop(tx);
    let mut out = Vec::new();
    while let Some(p) = rx.recv().await {
        out.push(p);
    }
    (out, stats)
}

/// The bytes of every DATA packet, and the ERR packets' text.
fn data_and_errors(out: &[Result<Packet, Status>]) -> (Vec<u8>, String) {
    let (mut data, mut errs) = (Vec::new(), String::new());
    for p in out {
        match p {
            Ok(p) if p.r#type == PacketType::PacketData as i32 => data.extend(&p.data),
            Ok(p) if p.r#type == PacketType::PacketErr as i32 => errs.push_str(&String::from_utf8_lossy(&p.data)),
            Ok(_) => {}
            Err(s) => errs.push_str(s.message()),
        }
    }
    (data, errs)
}

fn outside_dir() -> tempfile::TempDir {
    let o = tempfile::tempdir().unwrap();
    std::fs::write(o.path().join("a.txt"), "OUTSIDE-SECRET").unwrap();
    std::fs::write(o.path().join("b.txt"), "OUTSIDE-SECRET").unwrap();
    o
}

fn position(entries: &[Entry], path: &str) -> u32 {
    entries.iter().position(|e| e.path == path).unwrap_or_else(|| panic!("{path} not listed")) as u32
}

#[tokio::test]
async fn a_listed_file_is_sent_and_counted() {
    let d = dir_with(&["a.txt", "sub/b.txt"]);
    let dir = SyncedDir::context(d.path(), Filter::new::<&str>(&[]).unwrap());
    let entries = select(&dir, &Opts::default()).unwrap();
    let (out, stats) = request(d.path(), &entries, &[position(&entries, "sub/b.txt")]).await;
    let (data, errs) = data_and_errors(&out);
    assert_eq!((data.as_slice(), errs.as_str()), (&b"sub/b.txt"[..], ""));
    assert_eq!(*stats.paths.lock().unwrap(), ["context/sub/b.txt"]);
}

#[tokio::test]
async fn a_file_or_directory_swapped_for_a_symlink_after_listing_is_refused_not_followed() {
    let outside = outside_dir();
    let d = dir_with(&["a.txt", "sub/b.txt", "c.txt", "d.txt", "e.txt"]);
    let dir = SyncedDir::context(d.path(), Filter::new::<&str>(&[]).unwrap());
    let entries = select(&dir, &Opts::default()).unwrap();
    // Listed as regular files; swapped before the daemon asks for them.
    std::fs::remove_file(d.path().join("a.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("a.txt"), d.path().join("a.txt")).unwrap();
    std::fs::rename(d.path().join("sub"), d.path().join("old-sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path().join("sub")).unwrap();
    // Replaced by another regular file (not a link): not the file listed either.
    std::fs::write(d.path().join("c.new"), "other").unwrap();
    std::fs::rename(d.path().join("c.new"), d.path().join("c.txt")).unwrap();
    // A fifo: refused without hanging on the open.
    std::fs::remove_file(d.path().join("d.txt")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(d.path().join("d.txt")).status().unwrap().success());
    std::fs::remove_file(d.path().join("e.txt")).unwrap();
    let cases = [
        ("a.txt", "replaced after it was listed (now a symlink)"),
        ("sub/b.txt", "sub is no longer a directory"),
        ("c.txt", "replaced after it was listed (now another file)"),
        ("d.txt", "replaced after it was listed (now a special file)"),
        ("e.txt", "gone since it was listed"),
    ];
    for (path, why) in cases {
        let (out, stats) = request(d.path(), &entries, &[position(&entries, path)]).await;
        let (data, errs) = data_and_errors(&out);
        assert!(data.is_empty(), "{path}: sent {:?}", String::from_utf8_lossy(&data));
        assert!(errs.contains(&format!("refusing to send context/{path}: ")) && errs.contains(why), "{path}: {errs}");
        assert!(stats.paths.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_request_for_a_directory_or_symlink_opens_nothing() {
    let outside = outside_dir();
    let d = dir_with(&["sub/b.txt"]);
    std::os::unix::fs::symlink(outside.path().join("a.txt"), d.path().join("link")).unwrap();
    let dir = SyncedDir::context(d.path(), Filter::new::<&str>(&[]).unwrap());
    let entries = select(&dir, &Opts::default()).unwrap();
    for (path, kind) in [("link", "symlink"), ("sub", "directory")] {
        let (out, _) = request(d.path(), &entries, &[position(&entries, path)]).await;
        let (data, errs) = data_and_errors(&out);
        assert!(data.is_empty(), "{path}: sent {:?}", String::from_utf8_lossy(&data));
        assert!(errs.contains(&format!("refusing to send context/{path}: it was listed as a {kind}")), "{errs}");
    }
}

#[test]
fn names_from_the_daemon_never_lead_outside_the_directory() {
    let outside = outside_dir();
    let d = dir_with(&["ctx/in.txt"]);
    let root = d.path().join("ctx");
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink("../../x", root.join("up")).unwrap();
    let dir = SyncedDir::context(&root, Filter::new::<&str>(&[]).unwrap());
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    for inc in ["../ctx/../in.txt", &format!("../../{outside_name}/a.txt"), "out/a.txt", "/out/b.txt", "./out/../../secret"] {
        let got = select(&dir, &Opts { includes: vec![inc.to_string()], ..Default::default() }).unwrap();
        assert!(paths(&got).is_empty(), "{inc}: listed {:?}", paths(&got));
    }
    // A followed link is listed as the link; its target only when it stays inside.
    let got = select(&dir, &Opts { follow: vec!["up".into(), "out".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&got), ["out", "up"]);
}

#[test]
fn the_dockerfiles_directory_gives_out_only_the_dockerfile_and_its_ignore_files() {
    let d = dir_with(&["Dockerfile", "Dockerfile.dockerignore", ".dockerignore", "secret.env", "sub/x", "Makefile"]);
    let dir = SyncedDir::dockerfile(&d.path().join("Dockerfile")).unwrap();
    let all = select(&dir, &Opts::default()).unwrap();
    assert_eq!(paths(&all), [".dockerignore", "Dockerfile", "Dockerfile.dockerignore"]);
    let asked = select(&dir, &Opts { includes: vec!["secret.env".into(), "sub".into(), "*".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&asked), [".dockerignore", "Dockerfile", "Dockerfile.dockerignore"], "a glob matches only allowed names");
    let named = select(&dir, &Opts { includes: vec!["secret.env".into(), "sub/x".into()], follow: vec!["Makefile".into()], ..Default::default() }).unwrap();
    assert!(paths(&named).is_empty(), "{:?}", paths(&named));
    let df = select(&dir, &Opts { includes: vec!["Dockerfile".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&df), ["Dockerfile"]);

    // A Dockerfile that is a symlink to a file beside it: the link and its target, nothing else.
    let d = dir_with(&["build/Dockerfile.dev", "build/other"]);
    std::os::unix::fs::symlink("Dockerfile.dev", d.path().join("build/Dockerfile")).unwrap();
    let dir = SyncedDir::dockerfile(&d.path().join("build/Dockerfile")).unwrap();
    let got = select(&dir, &Opts { follow: vec!["Dockerfile".into()], ..Default::default() }).unwrap();
    assert_eq!(paths(&got), ["Dockerfile", "Dockerfile.dev"]);
}
