//! Hashing at scale: a generated tree (default 100,000 files, mixed sizes, about 1.5 GB), hashed by devloop
//! cold (every file read), warm (the digest cache vouches for unchanged files) and after one edit, against
//! `sha256sum` over the same files. `cargo bench --bench hash` prints the figures.
//! DEVLOOP_BENCH_FILES sets the file count; DEVLOOP_BENCH_TREE=dir keeps the tree there (for the idle bench).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use devloop::config::Image;
use devloop::filter::Filter;
use devloop::hash::merkle::Tree;
use devloop::hash::{snapshot, DigestCache};

/// Deterministic sizes: mostly small sources, some medium assets, a few large blobs.
fn size_of(i: usize) -> usize {
    let r = (i.wrapping_mul(2654435761)) % 1000;
    match r {
        0..=899 => 1024 + (i * 37) % 7000,        // 90%: 1–8 KB
        900..=998 => 40_000 + (i * 131) % 80_000, // ~10%: 40–120 KB
        _ => 2_000_000 + (i * 977) % 4_000_000,   // 0.1%: 2–6 MB
    }
}

fn generate(root: &Path, files: usize) -> u64 {
    let mut bytes = 0u64;
    let pattern: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
    for i in 0..files {
        let p = root.join(format!("src/d{:03}/e{:02}/f{i}.dat", i % 500, (i / 500) % 20));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let n = size_of(i);
        let mut body = Vec::with_capacity(n);
        body.extend_from_slice(format!("{i}\n").as_bytes());
        while body.len() < n {
            let take = (n - body.len()).min(pattern.len());
            body.extend_from_slice(&pattern[..take]);
        }
        bytes += n as u64;
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
    bytes
}

fn main() {
    let files: usize = std::env::var("DEVLOOP_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = std::env::var_os("DEVLOOP_BENCH_TREE").map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_path_buf());
    let t = Instant::now();
    let bytes = if root.join("Dockerfile").exists() {
        // A kept tree: count it instead.
        (0..files).map(|i| size_of(i) as u64).sum()
    } else {
        std::fs::create_dir_all(&root).unwrap();
        generate(&root, files)
    };
    eprintln!("tree ready in {:.1}s", t.elapsed().as_secs_f64());
    let image = Image::new("bench", &root);
    let filter = Filter::new::<&str>(&[]).unwrap();
    // The cache trusts only entries hashed 2 s after a file's last change (racy-clean rule): let the tree age.
    std::thread::sleep(Duration::from_millis(2100));

    // Warm the page cache once, so both tools read from memory.
    let _ = snapshot(&image, &filter, &mut DigestCache::in_memory()).unwrap();
    let t = Instant::now();
    let sums = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | xargs -0 sha256sum > /dev/null")
        .current_dir(&root)
        .status()
        .expect("sha256sum");
    let sha256sum = t.elapsed();
    assert!(sums.success());

    // What `devloop hash` does: load the persistent digest cache, walk and hash, save the cache.
    let store = tempfile::tempdir().unwrap();
    let hash_cli = || {
        let mut cache = DigestCache::persistent(store.path(), &root);
        let s = snapshot(&image, &filter, &mut cache).unwrap();
        cache.save();
        s
    };
    let t = Instant::now();
    let cold = hash_cli();
    let cold_t = t.elapsed();
    let t = Instant::now();
    let warm = hash_cli();
    let warm_t = t.elapsed();
    assert_eq!(cold.tag, warm.tag, "the cache changed the result");
    std::fs::write(root.join("src/d000/e00/f0.dat"), "edited\n").unwrap();
    let t = Instant::now();
    let edited = hash_cli();
    let edit_t = t.elapsed();
    let mut cache = DigestCache::in_memory();
    let uncached = snapshot(&image, &filter, &mut DigestCache::in_memory()).unwrap();
    assert_eq!(edited.tag, uncached.tag, "cached and uncached results differ");
    // Inside `devloop up`: the tree is kept, and a save re-reads only the changed path (no walk).
    let (mut tree, _) = Tree::scan(&root, &filter, &mut cache).unwrap();
    let mut incr = Vec::new();
    let mut incremental_tag = String::new();
    for i in 0..20 {
        let rel = "src/d000/e00/f0.dat".to_string();
        std::fs::write(root.join(&rel), format!("edited again {i}\n")).unwrap();
        let changed = std::collections::BTreeSet::from([rel]);
        let t = Instant::now();
        tree.update(&root, &filter, &changed).unwrap();
        incremental_tag = tree.tag(&image).unwrap();
        incr.push(t.elapsed());
    }
    incr.sort();
    let full_again = snapshot(&image, &filter, &mut DigestCache::in_memory()).unwrap();
    assert_eq!(incremental_tag, full_again.tag, "incremental and full results differ");
    assert_ne!(edited.tag, warm.tag);
    let _ = &edited;

    let gb = bytes as f64 / 1e9;
    let cores = rayon::current_num_threads();
    // The floor: SHA-256 at ~1.75 GB/s per core (SHA extensions), all cores, plus nothing for the walk.
    let floor = gb / (1.75 * cores as f64);
    println!("hash bench: {} entries, {files} files, {gb:.2} GB, {cores} threads, page cache warm", cold.entries);
    println!("  sha256sum (find | xargs)   : {:>8.0} ms  ({:.2} GB/s)", ms(sha256sum), gb / sha256sum.as_secs_f64());
    println!("  devloop cold (no cache)    : {:>8.0} ms  ({:.2} GB/s; {:.2}x sha256sum; SHA floor {:.0} ms)", ms(cold_t), gb / cold_t.as_secs_f64(), cold_t.as_secs_f64() / sha256sum.as_secs_f64(), floor * 1000.0);
    println!("  devloop hash, warm cache   : {:>8.0} ms  ({} files read; cache loaded, walk, cache saved)", ms(warm_t), warm.files_read);
    println!("  devloop hash, one edit     : {:>8.0} ms  ({} file read; full walk)", ms(edit_t), edited.files_read);
    println!("  devloop up, one edit       : {:>8.2} ms p50, {:.2} ms max of 20  (changed path re-read, only its directories re-hashed; tree of {} entries)", ms(incr[incr.len() / 2]), ms(incr[incr.len() - 1]), tree.len());
    if std::env::var_os("DEVLOOP_BENCH_TREE").is_some() {
        std::fs::write(root.join("src/d000/e00/f0.dat"), b"0\n").unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
