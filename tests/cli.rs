//! The command line without servers: config errors exit 2 naming file, line and key; an unreachable
//! BuildKit is named with its address.

mod common;
use common::Project;

#[test]
fn a_bad_config_exits_2_naming_file_line_and_key() {
    let p = Project::hello("127.0.0.1:1");
    std::fs::write(p.path("devloop.toml"), "[registry]\nhost = \"r:5000\"\n[[image]]\nname = \"a\"\ncontxt = \"app\"\n").unwrap();
    let out = p.devloop(&["hash"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("devloop.toml:5:1: key `image[0].contxt`"), "{err}");
    assert!(err.contains("did you mean `context`"), "{err}");
}

#[test]
fn no_config_anywhere_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_devloop")).arg("hash").current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no devloop.toml"));
}

#[test]
fn an_unknown_image_name_exits_2_listing_the_known_ones() {
    let p = Project::hello("127.0.0.1:1");
    let out = p.devloop(&["hash", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("configured: {}", p.name)));
}

#[test]
fn hash_is_the_same_from_a_subdirectory_and_another_copy() {
    let a = Project::hello("127.0.0.1:1");
    let b = Project::hello("127.0.0.1:1");
    std::fs::write(b.path("app/www/nonce.txt"), std::fs::read(a.path("app/www/nonce.txt")).unwrap()).unwrap();
    std::fs::write(b.path("devloop.toml"), std::fs::read(a.path("devloop.toml")).unwrap()).unwrap();
    let from_sub = std::process::Command::new(env!("CARGO_BIN_EXE_devloop"))
        .arg("hash")
        .current_dir(a.path("app/www"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&from_sub.stdout).split(':').last(), Some(a.tag().as_str()).map(|t| format!("{t}\n")).as_deref());
    assert_eq!(a.tag(), b.tag());
}

#[test]
fn an_unreachable_buildkit_is_named_with_its_address() {
    let p = Project::hello("127.0.0.1:9");
    // BUILDKIT_HOST overrides [buildkit] addr.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_devloop"))
        .args(["build", "--force"])
        .current_dir(p.dir.path())
        .env("BUILDKIT_HOST", "unix:///nonexistent/buildkitd.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("BuildKit is unreachable at unix:///nonexistent/buildkitd.sock"), "{err}");
    assert!(err.contains("scripts/stack up"), "{err}");
}
