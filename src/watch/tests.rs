use super::*;

fn img(name: &str, root: &str) -> Watched {
    Watched {
        image: name.into(),
        root: root.into(),
        filter: Filter::new::<&str>(&[]).unwrap(),
        dockerfile: format!("{root}/Dockerfile").into(),
        ignore_files: vec![format!("{root}/Dockerfile.dockerignore").into(), format!("{root}/.dockerignore").into()],
    }
}

fn change(image: &str, path: &str) -> Change {
    Change::Image { image: image.into(), touch: Touch::Path(path.into()) }
}

#[test]
fn one_filter_decides_what_is_relevant() {
    let mut a = img("a", "/p/a");
    a.filter = Filter::new(&[".env", "tmp"]).unwrap();
    let w = vec![a, img("b", "/p/b")];
    let rel = |p: &str| relevant(&w, Path::new("/p/devloop.toml"), Path::new(p));
    assert_eq!(rel("/p/a/src/main.rs"), [change("a", "src/main.rs")]);
    for ignored in ["/p/a/.env", "/p/a/tmp/x", "/p/a/src/.main.rs.swp", "/p/a/4913", "/p/a/.git/index", "/p/a/x~", "/p/c/y", "/p/a"] {
        assert!(rel(ignored).is_empty(), "{ignored}");
    }
    assert_eq!(rel("/p/b/.env").len(), 1);
}

#[test]
fn every_input_of_the_tag_is_relevant_whatever_the_filter_says() {
    // The common pattern: .dockerignore excludes the Dockerfile and itself (not needed in the image).
    let mut a = img("a", "/p/a");
    a.filter = Filter::new(&["Dockerfile", ".dockerignore", "Dockerfile.dockerignore"]).unwrap();
    // A Dockerfile outside the context, with its own ignore file beside it.
    let mut b = img("b", "/p/b");
    b.dockerfile = "/p/docker/b.Dockerfile".into();
    b.ignore_files = vec!["/p/docker/b.Dockerfile.dockerignore".into(), "/p/b/.dockerignore".into()];
    let w = vec![a, b];
    let config = Path::new("/p/devloop.toml");
    let rel = |p: &str| relevant(&w, config, Path::new(p));
    let touch = |image: &str, touch: Touch| Change::Image { image: image.into(), touch };
    // (path, changes)
    let cases: Vec<(&str, Vec<Change>)> = vec![
        ("/p/a/Dockerfile", vec![touch("a", Touch::Inputs)]),
        ("/p/a/.dockerignore", vec![touch("a", Touch::Filter)]),
        ("/p/a/Dockerfile.dockerignore", vec![touch("a", Touch::Filter)]),
        ("/p/docker/b.Dockerfile", vec![touch("b", Touch::Inputs)]),
        ("/p/docker/b.Dockerfile.dockerignore", vec![touch("b", Touch::Filter)]),
        ("/p/b/.dockerignore", vec![touch("b", Touch::Filter)]),
        ("/p/devloop.toml", vec![Change::Config]),
        ("/p/docker/other.txt", vec![]),
        ("/p/docker/.b.Dockerfile.swp", vec![]),
    ];
    for (path, want) in cases {
        assert_eq!(rel(path), want, "{path}");
    }
    // A Dockerfile the filter lets into the context is also a path of the tree.
    let c = vec![img("c", "/p/c")];
    assert_eq!(
        relevant(&c, config, Path::new("/p/c/Dockerfile")),
        [touch("c", Touch::Path("Dockerfile".into())), touch("c", Touch::Inputs)]
    );
    // Outside every context, the Dockerfile's and the config's directories are watched on their own.
    let dirs = watch_list(&w, config);
    assert_eq!(
        dirs.iter().map(|(d, m)| (d.to_str().unwrap(), *m == RecursiveMode::Recursive)).collect::<Vec<_>>(),
        // /p/docker does not exist here, so it is skipped; /p neither (not a directory on this machine).
        [("/p/a", true), ("/p/b", true)]
    );
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("ctx")).unwrap();
    std::fs::create_dir_all(d.path().join("docker")).unwrap();
    let mut c = img("c", d.path().join("ctx").to_str().unwrap());
    c.dockerfile = d.path().join("docker/Dockerfile");
    let dirs = watch_list(&[c], &d.path().join("devloop.toml"));
    assert_eq!(
        dirs,
        [
            (d.path().join("ctx"), RecursiveMode::Recursive),
            (d.path().join("docker"), RecursiveMode::NonRecursive),
            (d.path().to_path_buf(), RecursiveMode::NonRecursive)
        ]
    );
}

#[test]
fn scopes_merge_paths_and_a_rescan_absorbs_them() {
    let mut s = Scope::of(Touch::Path("a".into()));
    s.merge(Scope::of(Touch::Inputs));
    s.merge(Scope::of(Touch::Path("b".into())));
    assert_eq!(s, Scope::Paths(BTreeSet::from(["a".to_string(), "b".to_string()])));
    s.merge(Scope::of(Touch::Filter));
    assert_eq!(s, Scope::Rescan);
    s.merge(Scope::of(Touch::Path("c".into())));
    assert_eq!(s, Scope::Rescan);
}

#[tokio::test(start_paused = true)]
async fn a_burst_is_one_batch_and_a_steady_stream_is_capped() {
    let d = Debounce { quiet: Duration::from_millis(100), max: Duration::from_secs(1), quick: QUICK };
    let flag = AtomicBool::new(false);
    let (tx, mut rx) = mpsc::channel(64);
    // An editor's save: a few events within a few ms.
    for i in ["a", "a", "b"] {
        tx.send(change(i, "x")).await.unwrap();
    }
    tx.send(Change::Config).await.unwrap();
    let t0 = Instant::now();
    let batch = next_batch(&mut rx, &flag, d, |_| false).await.unwrap();
    assert_eq!(batch.images.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(batch.images["a"], Scope::Paths(BTreeSet::from(["x".to_string()])));
    assert!(batch.config && !batch.everything);
    assert_eq!(t0.elapsed(), Duration::from_millis(100));

    // A write every 50 ms forever: the batch still closes at the cap.
    let writer = tokio::spawn(async move {
        loop {
            if tx.send(change("a", "x")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let t0 = Instant::now();
    next_batch(&mut rx, &flag, d, |_| false).await.unwrap();
    assert!(t0.elapsed() <= Duration::from_millis(1050), "{:?}", t0.elapsed());
    writer.abort();
}

#[tokio::test(start_paused = true)]
async fn an_overflow_turns_the_batch_into_a_rescan_of_everything() {
    let d = Debounce { quiet: Duration::from_millis(100), max: Duration::from_secs(1), quick: QUICK };
    let flag = AtomicBool::new(true);
    let (tx, mut rx) = mpsc::channel(4);
    tx.send(change("a", "x")).await.unwrap();
    let batch = next_batch(&mut rx, &flag, d, |_| false).await.unwrap();
    assert!(batch.everything, "{batch:?}");
    assert!(!flag.load(Ordering::Relaxed));
}

/// The real watcher on a real directory: a Dockerfile excluded by .dockerignore, a .dockerignore that
/// ignores itself, a Dockerfile outside the context and the config all produce changes.
#[tokio::test]
async fn the_real_watcher_sees_inputs_the_filter_excludes() {
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::create_dir_all(d.path().join("docker")).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "Dockerfile\n.dockerignore\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(d.path().join("docker/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(d.path().join("devloop.toml"), "").unwrap();
    let mut a = crate::config::Image::new("a", &ctx);
    let b = {
        let mut b = crate::config::Image::new("b", &ctx);
        b.dockerfile = d.path().join("docker/Dockerfile");
        b
    };
    a.gitignore = true;
    let watched = [&a, &b].iter().map(|i| Watched::of(i, i.filter().unwrap())).collect();
    let (tx, mut rx) = mpsc::channel(64);
    let _h = start(watched, &d.path().join("devloop.toml"), tx, Default::default()).unwrap();
    let d2 = d.path().to_path_buf();
    async fn expect(rx: &mut mpsc::Receiver<Change>, want: Change) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(c)) if c == want => return,
                Ok(Some(_)) => {}
                _ => panic!("no {want:?} within 5s"),
            }
        }
    }
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nENV A=1\n").unwrap();
    expect(&mut rx, Change::Image { image: "a".into(), touch: Touch::Inputs }).await;
    std::fs::write(ctx.join(".dockerignore"), "Dockerfile\n.dockerignore\n*.md\n").unwrap();
    expect(&mut rx, Change::Image { image: "a".into(), touch: Touch::Filter }).await;
    std::fs::write(ctx.join(".gitignore"), "*.o\n").unwrap();
    expect(&mut rx, Change::Image { image: "a".into(), touch: Touch::Filter }).await;
    // An editor's save outside the context: write a temp file, rename it over the Dockerfile.
    std::fs::write(d2.join("docker/.Dockerfile.tmp"), "FROM scratch\nENV B=1\n").unwrap();
    std::fs::rename(d2.join("docker/.Dockerfile.tmp"), d2.join("docker/Dockerfile")).unwrap();
    expect(&mut rx, Change::Image { image: "b".into(), touch: Touch::Inputs }).await;
    std::fs::write(d2.join("devloop.toml"), "# edited\n").unwrap();
    expect(&mut rx, Change::Config).await;
    std::fs::write(ctx.join("src/main.c"), "int main;\n").unwrap();
    expect(&mut rx, Change::Image { image: "a".into(), touch: Touch::Path("src/main.c".into()) }).await;
}

#[tokio::test(start_paused = true)]
async fn a_dockerfile_change_is_remembered_even_when_paths_of_the_tree_came_with_it() {
    let d = Debounce { quiet: Duration::from_millis(50), max: Duration::from_secs(1), quick: QUICK };
    let flag = AtomicBool::new(false);
    let (tx, mut rx) = mpsc::channel(64);
    tx.send(change("a", "www/x")).await.unwrap();
    tx.send(Change::Image { image: "a".into(), touch: Touch::Inputs }).await.unwrap();
    tx.send(change("b", "y")).await.unwrap();
    let batch = next_batch(&mut rx, &flag, d, |_| false).await.unwrap();
    assert_eq!(batch.images["a"], Scope::Paths(BTreeSet::from(["www/x".to_string()])), "the tree's paths");
    assert_eq!(batch.outside, BTreeSet::from(["a".to_string()]), "…and that the Dockerfile changed: a sync cannot carry it");
}

/// A batch the caller approves closes after the quick quiet; one it turns down (asked once per lull) waits
/// out the full quiet, and a change after the ask asks again.
#[tokio::test(start_paused = true)]
async fn a_batch_the_caller_approves_closes_after_the_quick_quiet() {
    let d = Debounce { quiet: Duration::from_millis(50), max: Duration::from_secs(1), quick: Duration::from_millis(10) };
    let flag = AtomicBool::new(false);
    let (tx, mut rx) = mpsc::channel(64);
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let only_www = |b: &Batch| {
        asked.fetch_add(1, Ordering::Relaxed);
        b.images.values().all(|s| matches!(s, Scope::Paths(p) if p.iter().all(|p| p.starts_with("www/"))))
    };
    tx.send(change("a", "www/x")).await.unwrap();
    let t0 = Instant::now();
    next_batch(&mut rx, &flag, d, only_www).await.unwrap();
    assert_eq!((t0.elapsed(), asked.swap(0, Ordering::Relaxed)), (Duration::from_millis(10), 1));

    tx.send(change("a", "www/x")).await.unwrap();
    tx.send(change("a", "serve.sh")).await.unwrap();
    let t0 = Instant::now();
    next_batch(&mut rx, &flag, d, only_www).await.unwrap();
    assert_eq!((t0.elapsed(), asked.swap(0, Ordering::Relaxed)), (Duration::from_millis(50), 1), "turned down: the full quiet");

    // A change 30 ms in (after a refused ask): asked again 10 ms after it.
    tx.send(change("a", "www/x")).await.unwrap();
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx2.send(change("a", "www/y")).await.unwrap();
    });
    let refuse_first = |b: &Batch| asked.fetch_add(1, Ordering::Relaxed) > 0 && only_www(b);
    let t0 = Instant::now();
    let batch = next_batch(&mut rx, &flag, d, refuse_first).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(40));
    assert_eq!(batch.images["a"], Scope::Paths(BTreeSet::from(["www/x".to_string(), "www/y".to_string()])));

    // Never early when changes were dropped: the batch is a rescan.
    flag.store(true, Ordering::Relaxed);
    tx.send(change("a", "www/x")).await.unwrap();
    let t0 = Instant::now();
    assert!(next_batch(&mut rx, &flag, d, |_| true).await.unwrap().everything);
    assert_eq!(t0.elapsed(), Duration::from_millis(50));
}

/// The editor saves the end-to-end tests replay, through the real watcher with [`QUICK`] and the check
/// `up` makes (every path there): each save is one batch, closed early, and the file then holds the final
/// bytes.
#[tokio::test]
async fn each_editor_save_is_one_batch_with_the_final_bytes_at_the_quick_quiet() {
    let d = tempfile::tempdir().unwrap();
    let ctx = std::fs::canonicalize(d.path()).unwrap().join("ctx");
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::write(ctx.join("www/index.html"), "v0").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let img = crate::config::Image::new("a", &ctx);
    let (tx, mut rx) = mpsc::channel(1024);
    let _h = start(vec![Watched::of(&img, img.filter().unwrap())], &d.path().join("devloop.toml"), tx, Default::default()).unwrap();
    let flag = AtomicBool::new(false);
    let debounce = Debounce { quiet: Duration::from_millis(50), max: Duration::from_secs(1), quick: QUICK };
    // Whether the last ask approved: the batch then closed early (timed by its path, not by the clock, which
    // a loaded machine stretches).
    let approved = std::sync::atomic::AtomicBool::new(false);
    let present = |b: &Batch| {
        let ok = b.images.values().all(|s| matches!(s, Scope::Paths(p) if p.iter().all(|p| ctx.join(p).symlink_metadata().is_ok())));
        approved.store(ok, Ordering::Relaxed);
        ok
    };
    let www = ctx.join("www");
    let file = www.join("index.html");
    type Save<'a> = Box<dyn Fn(&str) + 'a>;
    let saves: Vec<(&str, Save)> = vec![
        ("vim", Box::new(|body: &str| {
            std::fs::write(www.join("4913"), "").unwrap();
            std::fs::remove_file(www.join("4913")).unwrap();
            std::fs::write(www.join(".index.html.swp"), "swap").unwrap();
            std::fs::rename(&file, www.join("index.html~")).unwrap();
            std::fs::write(&file, body).unwrap();
            std::fs::remove_file(www.join("index.html~")).unwrap();
            std::fs::write(www.join(".index.html.swp"), "swap2").unwrap();
        })),
        ("JetBrains safe write", Box::new(|body: &str| {
            std::fs::write(www.join("index.html___jb_tmp___"), body).unwrap();
            std::fs::rename(&file, www.join("index.html___jb_old___")).unwrap();
            std::fs::rename(www.join("index.html___jb_tmp___"), &file).unwrap();
            std::fs::remove_file(www.join("index.html___jb_old___")).unwrap();
        })),
        ("VS Code in place", Box::new(|body: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&file).unwrap();
            f.write_all(body.as_bytes()).unwrap();
        })),
        ("VS Code atomic", Box::new(|body: &str| {
            std::fs::write(www.join(".index.html.tmp~"), body).unwrap();
            std::fs::rename(www.join(".index.html.tmp~"), &file).unwrap();
        })),
    ];
    for (i, (editor, save)) in saves.iter().enumerate() {
        let body = format!("saved by {editor} ({i})");
        save(&body);
        approved.store(false, Ordering::Relaxed);
        let batch = tokio::time::timeout(Duration::from_secs(5), next_batch(&mut rx, &flag, debounce, present)).await.unwrap().unwrap();
        assert_eq!(batch.images["a"], Scope::Paths(BTreeSet::from(["www/index.html".to_string()])), "{editor}");
        assert!(approved.load(Ordering::Relaxed), "{editor}: closed early, not after the full quiet ({:?})", batch.waited);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), body, "{editor}");
        // Nothing more came of it.
        let more = tokio::time::timeout(Duration::from_millis(150), next_batch(&mut rx, &flag, debounce, present)).await;
        assert!(more.is_err(), "{editor}: a second batch {more:?}");
    }
}

/// A file still being written (its writer paused mid-file, as a large copy or a slow tool does) keeps its
/// batch from closing early: the batch closes once the writer closes it, so the sync reads the whole file.
/// A paused clock cannot drive the real watcher: real time, with a full quiet far above the pause.
#[tokio::test]
async fn a_file_still_open_for_writing_keeps_its_batch_from_closing_early() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::fs::write(d.path().join("devloop.toml"), "").unwrap();
    let img = crate::config::Image::new("a", &ctx);
    let watched = vec![Watched::of(&img, img.filter().unwrap())];
    let (tx, mut rx) = mpsc::channel(64);
    let _h = start(watched, &d.path().join("devloop.toml"), tx, Default::default()).unwrap();
    let dq = Debounce { quiet: Duration::from_millis(2000), max: Duration::from_secs(5), quick: QUICK };
    let flag = AtomicBool::new(false);
    let path = ctx.join("www/big.txt");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"first half\n").unwrap();
        std::thread::sleep(Duration::from_millis(150));
        f.write_all(b"second half\n").unwrap();
        drop(f);
    });
    let t0 = std::time::Instant::now();
    let batch = next_batch(&mut rx, &flag, dq, |_| true).await.unwrap();
    let waited = t0.elapsed();
    writer.join().unwrap();
    assert_eq!(batch.images["a"], Scope::Paths(BTreeSet::from(["www/big.txt".to_string()])));
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500), "closed after {waited:?}: before the writer was done, or not early");
    assert!(batch.writing.is_empty(), "{batch:?}");
    assert_eq!(std::fs::read_to_string(ctx.join("www/big.txt")).unwrap(), "first half\nsecond half\n");
}
