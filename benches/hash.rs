//! Hashing at scale: a generated tree of many small files and a few large ones, hashed cold (every file
//! read) and warm (the digest cache vouches for unchanged files), then after one edit.
//! `cargo bench --bench hash` prints the figures; DEVLOOP_BENCH_FILES sets the tree size.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use devloop::config::Image;
use devloop::filter::Filter;
use devloop::hash::{snapshot, DigestCache};

fn main() {
    let files: usize = std::env::var("DEVLOOP_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut bytes = 0u64;
    for i in 0..files {
        let p = root.join(format!("src/m{:03}/f{i}.txt", i % 200));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body = format!("{i}\n").repeat(200 + i % 1000);
        bytes += body.len() as u64;
        std::fs::write(p, body).unwrap();
    }
    for i in 0..8 {
        let body = vec![b'x' ^ i as u8; 8 << 20];
        bytes += body.len() as u64;
        std::fs::write(root.join(format!("blob{i}.bin")), body).unwrap();
    }
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    let image = Image {
        name: "bench".into(),
        context: root.to_path_buf(),
        dockerfile: root.join("Dockerfile"),
        target: String::new(),
        platform: String::new(),
        build_args: BTreeMap::new(),
        ignore: vec![],
        gitignore: false,
        frontend: "dockerfile.v0".into(),
        frontend_source: String::new(),
        frontend_opts: BTreeMap::new(),
    };
    let filter = Filter::new::<&str>(&[]).unwrap();
    // The cache trusts only entries hashed 2 s after a file's last change (racy-clean rule): let the tree age.
    std::thread::sleep(Duration::from_millis(2100));

    let mut cache = DigestCache::in_memory();
    let t = Instant::now();
    let cold = snapshot(&image, &filter, &mut cache).unwrap();
    let cold_t = t.elapsed();
    let t = Instant::now();
    let warm = snapshot(&image, &filter, &mut cache).unwrap();
    let warm_t = t.elapsed();
    assert_eq!(cold.tag, warm.tag);
    std::fs::write(root.join("src/m000/f0.txt"), "edited\n").unwrap();
    let t = Instant::now();
    let edited = snapshot(&image, &filter, &mut cache).unwrap();
    let edit_t = t.elapsed();
    assert_ne!(edited.tag, warm.tag);

    let mib = bytes as f64 / (1 << 20) as f64;
    println!("hash bench: {} entries, {files} small files + 8 x 8 MiB, {mib:.1} MiB, {} threads", cold.entries.len(), rayon::current_num_threads());
    println!("  cold (every file read) : {:>8.1} ms  ({:.0} MiB/s, {} files read)", ms(cold_t), mib / cold_t.as_secs_f64(), cold.files_read);
    println!("  warm (cache, no change): {:>8.1} ms  ({} files read)", ms(warm_t), warm.files_read);
    println!("  after one edit         : {:>8.1} ms  ({} files read)", ms(edit_t), edited.files_read);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
