use super::*;

fn building(step: usize, of: usize, name: &str) -> Phase {
    Phase::Building { step, of, name: name.into() }
}

#[test]
fn each_phase_reads_as_one_line() {
    // (phase, what the row says after the image's name)
    let cases = vec![
        (Phase::Watching, "○ hello  watching"),
        (Phase::Hashing, "… hello  hashing · 0.0s"),
        (building(0, 0, ""), "… hello  building · 0.0s"),
        (building(3, 9, "[2/3] RUN make"), "… hello  building step 3 of 9: [2/3] RUN make · 0.0s"),
        (Phase::Pushing, "… hello  pushing · 0.0s"),
        (Phase::RollingOut("0/1 pods updated, 0 available, 1 old".into()), "… hello  rolling out: 0/1 pods updated, 0 available, 1 old · 0.0s"),
        (Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }, "● hello  serving a1b2c3"),
        (Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 2 }, "● hello  serving a1b2c3 + 2 synced file(s)"),
        (Phase::Failed("Dockerfile:3: RUN false".into()), "✗ hello  failed: Dockerfile:3: RUN false"),
    ];
    for (phase, want) in cases {
        let mut b = Board::default();
        b.set("hello", phase.clone());
        assert_eq!(b.lines(200), vec![want.to_string()], "{phase:?}");
    }
}

#[test]
fn rows_are_aligned_cut_to_the_width_and_show_the_forwarded_url_when_serving() {
    let mut b = Board::default();
    b.forward("hello", "http://127.0.0.1:8080");
    b.set("hello", Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 });
    b.deployments("hello", &["hello".into()]);
    b.set("api-server", Phase::Failed("a very long reason that goes on and on past the edge".into()));
    assert_eq!(
        b.lines(40),
        vec!["✗ api-server  failed: a very long reaso…".to_string(), "● hello       serving a1b2c3 at http://…".to_string()]
    );
    assert!(b.lines(40).iter().all(|l| l.chars().count() == 40), "cut to the width, not wrapped");
    assert_eq!(b.lines(200)[1], "● hello       serving a1b2c3 at http://127.0.0.1:8080");
    // A multi-line reason shows its first line only: the block must stay one line per image.
    b.set("api-server", Phase::Failed("first\nsecond".into()));
    assert_eq!(b.lines(200)[0], "✗ api-server  failed: first…");
}

#[test]
fn a_change_that_changes_nothing_goes_back_to_what_the_image_did() {
    let mut b = Board::default();
    b.set("hello", Phase::Serving { tag: "t1".into(), synced: 0 });
    b.hashing("hello");
    assert_eq!(b.phase("hello"), Some(&Phase::Hashing));
    assert!(b.busy());
    b.settle("hello");
    assert_eq!(b.phase("hello"), Some(&Phase::Serving { tag: "t1".into(), synced: 0 }));
    assert!(!b.busy(), "an idle block needs no redrawing");
    b.set("hello", Phase::Failed("boom".into()));
    b.hashing("hello");
    b.settle("hello");
    assert_eq!(b.phase("hello"), Some(&Phase::Failed("boom".into())), "a failure stays until something succeeds");
    // A save during a build is hashed without hiding the build, and its "unchanged" does not end the build.
    b.set("hello", building(1, 4, "x"));
    b.hashing("hello");
    b.settle("hello");
    assert_eq!(b.phase("hello"), Some(&building(1, 4, "x")));
    b.unchanged("hello", "t1");
    assert_eq!(b.phase("hello"), Some(&building(1, 4, "x")), "nor does the engine's unchanged");
    // Content that hashes to what the pods run again (the broken edit reverted) undoes the failure.
    b.set("hello", Phase::Failed("boom".into()));
    b.hashing("hello");
    b.unchanged("hello", "t1");
    assert_eq!(b.phase("hello"), Some(&Phase::Serving { tag: "t1".into(), synced: 0 }));
}

#[test]
fn writing_above_clears_the_last_block_first() {
    let mut b = Board::default();
    b.set("a", Phase::Watching);
    b.set("b", Phase::Watching);
    let mut out = Vec::new();
    b.write_above(&mut out, Some("first line"), 80).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "\r\x1b[Jfirst line\n○ a  watching\n○ b  watching\n");
    out.clear();
    b.write_above(&mut out, None, 80).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "\r\x1b[2A\x1b[J○ a  watching\n○ b  watching\n", "up two lines, clear, redraw");
}
