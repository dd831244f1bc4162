//! `devloop up`'s output never holds the loop back: with stdout a pipe nobody reads (an editor plugin that
//! stopped reading `--json`, a paused pager), a save is still built and rolled out, and the output resumes,
//! in order, once the reader reads again. Run through scripts/test.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A pipe whose buffer is one page, the least Linux allows: a handful of JSON lines fill it.
fn small_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: a plain fcntl on a descriptor we own.
    assert!(unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096, "F_SETPIPE_SZ");
    (read, write)
}

/// Bytes waiting in the pipe, unread.
fn unread(read: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    assert_eq!(unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) }, 0, "FIONREAD");
    n as usize
}

fn save_and_see_it_deployed(p: &Project, ns: &str, n: usize, secs: u64) -> String {
    let before = template_image(ns, "hello");
    p.write("app/www/index.html", &format!("<p>save {n}</p>\n"));
    eventually(&format!("save {n} deployed while stdout is not read"), secs, || {
        let now = template_image(ns, "hello");
        if now != before { Ok(now) } else { Err(format!("the Deployment still runs {now}")) }
    })
}

#[test]
#[ignore = "needs the local stack: run scripts/test"]
fn a_stdout_nobody_reads_does_not_stop_the_loop_and_the_output_resumes_in_order() {
    let ns = Namespace::new("stall");
    let p = manifest_project(&ns.0, "");
    let (read, write) = small_pipe();
    let mut child = Child(Command::new(env!("CARGO_BIN_EXE_devloop"))
        .args(["up", "--json"])
        .current_dir(p.dir.path())
        .env_remove("DEVLOOP_REGISTRY")
        .env_remove("BUILDKIT_HOST")
        .stdout(Stdio::from(write))
        .spawn()
        .unwrap());
    eventually("the first rollout", 120, || {
        let image = try_kubectl(&["-n", &ns.0, "get", "deployment", "hello", "-o", "jsonpath={.spec.template.spec.containers[0].image}"])?;
        if image.contains(&p.name) { Ok(image) } else { Err(image) }
    });
    // Nobody reads: saves until one is deployed and nothing more comes into the pipe — its writer waits.
    let mut n = 0;
    loop {
        let before = unread(&read);
        n += 1;
        assert!(n <= 12, "after {n} saves devloop still writes ({before} bytes unread)");
        save_and_see_it_deployed(&p, &ns.0, n, 90);
        std::thread::sleep(Duration::from_secs(1)); // the iteration's own lines, if they could be written
        if before > 0 && unread(&read) == before {
            break;
        }
    }
    // The proof: with stdout stuck, one more save is built and rolled out.
    let last = save_and_see_it_deployed(&p, &ns.0, n + 1, 90);
    assert!(child.0.try_wait().unwrap().is_none(), "devloop up exited");

    // The reader comes back: everything still queued comes out in order, up to the last save's iteration.
    // `<registry>/<name>:<tag>@<digest>`
    let tag = last.rsplit('/').next().and_then(|t| t.split('@').next()).and_then(|t| t.split(':').nth(1)).unwrap().to_string();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(std::fs::File::from(read)).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = lines.lock().unwrap().clone();
        if seen.iter().any(|v| v["event"] == "iteration" && v["tag"] == tag.as_str()) {
            // In order: the iterations that made it out came in the order they happened.
            let tags: Vec<&str> = seen.iter().filter(|v| v["event"] == "iteration").filter_map(|v| v["tag"].as_str()).collect();
            assert_eq!(tags.last(), Some(&tag.as_str()), "{tags:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the output did not resume with the last iteration ({tag}): {seen:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `devloop up` this test started, stopped however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
