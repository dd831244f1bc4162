use std::time::Instant;

use super::*;

fn building(step: usize, of: usize, name: &str) -> Phase {
    Phase::Building { step, of, name: name.into() }
}

fn view(phase: Phase, urls: &[&str]) -> ImageView {
    let forwards = urls.iter().map(|u| crate::engine::decide::view::Forward { url: u.to_string(), pod: None }).collect();
    ImageView { phase, since: Instant::now(), deployed: None, reference: None, synced: 0, deployments: vec![], forwards, runs: vec![], content: None, paused: false, failure: None }
}

/// A board showing these rows.
fn board(rows: Vec<(&str, ImageView)>) -> Board {
    let mut b = Board::default();
    b.show(Arc::new(Snapshot { images: rows.into_iter().map(|(i, v)| (i.to_string(), v)).collect() }));
    b
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
        (Phase::Syncing, "… hello  syncing · 0.0s"),
        (Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }, "● hello  serving a1b2c3"),
        (Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 2 }, "● hello  serving a1b2c3 + 2 synced file(s)"),
        (Phase::Failed("Dockerfile:3: RUN false".into()), "✗ hello  failed: Dockerfile:3: RUN false"),
    ];
    for (phase, want) in cases {
        let b = board(vec![("hello", view(phase.clone(), &[]))]);
        assert_eq!(b.lines(200), vec![want.to_string()], "{phase:?}");
        assert_eq!(b.busy(), phase.busy());
    }
}

#[test]
fn rows_are_aligned_cut_to_the_width_and_show_the_forwarded_url_when_serving() {
    let b = board(vec![
        ("hello", view(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }, &["http://127.0.0.1:8080"])),
        ("api-server", view(Phase::Failed("a very long reason that goes on and on past the edge".into()), &[])),
    ]);
    assert_eq!(
        b.lines(40),
        vec!["✗ api-server  failed: a very long reaso…".to_string(), "● hello       serving a1b2c3 at http://…".to_string()]
    );
    assert!(b.lines(40).iter().all(|l| l.chars().count() == 40), "cut to the width, not wrapped");
    assert_eq!(b.lines(200)[1], "● hello       serving a1b2c3 at http://127.0.0.1:8080");
    // The URL is where it serves: not shown while at work.
    let b = board(vec![("hello", view(Phase::Hashing, &["http://127.0.0.1:8080"]))]);
    assert_eq!(b.lines(200), ["… hello  hashing · 0.0s"]);
    // A multi-line reason shows its first line only: the block must stay one line per image.
    let b = board(vec![("api-server", view(Phase::Failed("first\nsecond".into()), &[]))]);
    assert_eq!(b.lines(200)[0], "✗ api-server  failed: first…");
}

#[test]
fn writing_above_clears_the_last_block_first() {
    let mut b = board(vec![("a", view(Phase::Watching, &[])), ("b", view(Phase::Watching, &[]))]);
    let mut out = Vec::new();
    b.write_above(&mut out, Some("first line"), 80).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "\r\x1b[Jfirst line\n○ a  watching\n○ b  watching\n");
    out.clear();
    b.write_above(&mut out, None, 80).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "\r\x1b[2A\x1b[J○ a  watching\n○ b  watching\n", "up two lines, clear, redraw");
}

#[test]
fn with_more_images_than_a_third_of_the_terminal_the_quiet_ones_share_one_line() {
    let serving = || view(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }, &[]);
    let mut rows: Vec<(String, ImageView)> = (0..30).map(|i| (format!("svc{i:02}"), serving())).collect();
    rows[3].1 = view(Phase::Failed("rollout: CrashLoopBackOff".into()), &[]);
    rows[7].1 = view(Phase::Held { changes: 2 }, &[]);
    rows[9].1 = view(building(2, 5, "[2/4] RUN make"), &[]);
    rows[12].1 = view(Phase::Watching, &[]);
    let mut b = Board::default();
    b.show(Arc::new(Snapshot { images: rows.into_iter().collect() }));
    assert_eq!(b.lines(80).len(), 30, "a terminal of unknown height gets a row per image");
    b.fit(40); // 13 rows
    let lines = b.lines(200);
    assert_eq!(
        lines[..3],
        ["✗ svc03  failed: rollout: CrashLoopBackOff", "◆ svc07  2 changed paths held: trigger to build", "… svc09  building step 2 of 5: [2/4] RUN make · 0.0s"]
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with("● 26 more serving, 1 watching: svc00 svc01 svc02 svc04 svc05 svc06 svc08 svc10"), "{}", lines[3]);
    // More images at work than rows: the ones not shown are counted.
    let busy: Vec<(String, ImageView)> = (0..30).map(|i| (format!("svc{i:02}"), view(Phase::Hashing, &[]))).collect();
    b.show(Arc::new(Snapshot { images: busy.into_iter().collect() }));
    let lines = b.lines(60);
    assert_eq!(lines.len(), 13);
    assert!(lines[12].starts_with("● 0 more serving, 18 more at work: svc12"), "{}", lines[12]);
    assert!(lines.iter().all(|l| l.chars().count() <= 60));
}

/// Names of the images whose rows are `rows`, as a snapshot.
fn names(rows: &[&str]) -> Arc<Snapshot> {
    Arc::new(Snapshot { images: rows.iter().map(|i| (i.to_string(), view(Phase::Watching, &[]))).collect() })
}

#[test]
fn the_selection_moves_over_the_rows_wraps_at_the_ends_and_follows_a_reload() {
    let mut b = Board::default();
    assert!(b.selected().is_none(), "no image, nothing selected");
    b.select(1);
    b.show(names(&["api", "db", "web"]));
    assert_eq!(b.selected().unwrap().0, "api", "the first row until another is chosen");
    b.select(1);
    b.select(1);
    assert_eq!(b.selected().unwrap().0, "web");
    b.select(1);
    assert_eq!(b.selected().unwrap().0, "api", "down from the last row: the first");
    b.select(-1);
    assert_eq!(b.selected().unwrap().0, "web", "up from the first row: the last");
    // A reload that keeps the image keeps the selection, wherever its row goes.
    b.show(names(&["aaa", "api", "web"]));
    assert_eq!(b.selected().unwrap().0, "web");
    // One that removes it selects the row now where it was, or the last.
    b.select(-1);
    b.show(names(&["aaa", "db", "web"]));
    assert_eq!(b.selected().unwrap().0, "db");
    b.select(1);
    b.show(names(&["aaa", "db"]));
    assert_eq!(b.selected().unwrap().0, "db");
    b.show(names(&[]));
    assert!(b.selected().is_none());
    b.show(names(&["new"]));
    assert_eq!(b.selected().unwrap().0, "new");
}

#[test]
fn with_keys_the_selected_row_is_marked_and_the_keys_line_fits_under_the_rows() {
    let mut b = board(vec![("api", view(Phase::Watching, &[])), ("web", view(Phase::Paused { held: false, changes: 0 }, &[]))]);
    assert_eq!(b.lines(80), ["○ api  watching", "‖ web  paused: changes are held until resumed"], "no keys: rows as they were");
    b.show_keys();
    b.select(1);
    assert_eq!(b.lines(200), ["  ○ api  watching", "› ‖ web  paused: changes are held until resumed", KEYS_LINE]);
    let narrow = b.lines(30);
    assert_eq!(narrow[2], "↑↓ select · r rebuild · p pau…");
    assert!(narrow.iter().all(|l| l.chars().count() <= 30), "{narrow:?}");
    // The keys' line counts in the block's height: the cursor goes up over it too.
    let mut out = Vec::new();
    b.write_above(&mut out, None, 80).unwrap();
    out.clear();
    b.write_above(&mut out, None, 80).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("\r\x1b[3A\x1b[J"));
    // Many images, few rows: the selected one keeps its row even when quiet.
    let serving = || view(Phase::Serving { tag: "a1b2c3d4e5".into(), synced: 0 }, &[]);
    let rows: Vec<(String, ImageView)> = (0..30).map(|i| (format!("svc{i:02}"), serving())).collect();
    b.show(Arc::new(Snapshot { images: rows.into_iter().collect() }));
    b.fit(24);
    for _ in 0..6 {
        b.select(1);
    }
    let lines = b.lines(200);
    assert_eq!(lines[0], "› ● svc07  serving a1b2c3", "web's place (svc01), then six down");
    assert!(lines[1].starts_with("  ● 29 more serving: svc00"), "{}", lines[1]);
    assert_eq!(lines.last().unwrap(), KEYS_LINE);
}
