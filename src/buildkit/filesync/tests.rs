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
    let e = Entry { path: "a/l".into(), kind: Kind::Symlink, perm: 0o777, size: 0, mtime_ns: 42, ctime_ns: 7, ino: 9, link: Some("../x".into()) };
    let s = stat_of(&e);
    assert_eq!((s.uid, s.gid, s.mod_time, s.linkname.as_str(), s.path.as_str()), (0, 0, 42, "../x", "a/l"));
}

#[test]
fn selection_applies_our_filter_then_the_daemons_patterns_in_walk_order() {
    let d = dir_with(&["Dockerfile", "src/a.rs", "src/b.rs", "src-extra/c", ".env", "docs/x.md", "src/.a.rs.swp"]);
    let dir = SyncedDir { root: d.path().into(), filter: Filter::new(&[".env"]).unwrap() };
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
