use std::time::Duration;

use super::*;
use crate::engine::out::{ImageView, Phase, Snapshot};
use crate::test_util::SharedBuf;
use crate::ui::board::KEYS_LINE;

#[test]
fn bytes_decode_to_keys_also_when_an_escape_sequence_is_split_over_reads() {
    let mut d = Decoder::default();
    assert_eq!(d.feed(b"kjrpt?\n\r"), [Key::Up, Key::Down, Key::Rebuild, Key::Pause, Key::Trigger, Key::Help, Key::TriggerHeld, Key::TriggerHeld]);
    assert_eq!(d.feed(b"\x1b[A\x1b[B\x1bOA\x1bOB"), [Key::Up, Key::Down, Key::Up, Key::Down]);
    // Split anywhere: the sequence completes on a later read, and its `A` is not read as a key of its own.
    assert_eq!(d.feed(b"\x1b"), []);
    assert_eq!(d.feed(b"["), []);
    assert_eq!(d.feed(b"Bp"), [Key::Down, Key::Pause]);
    assert_eq!(d.feed(b"r\x1bO"), [Key::Rebuild]);
    assert_eq!(d.feed(b"A"), [Key::Up]);
    // Other sequences (→, Ctrl-↑, Delete) and other bytes do nothing, and what follows them counts.
    assert_eq!(d.feed(b"\x1b[C\x1b[1;5A\x1b[3~xq r"), [Key::Rebuild]);
    // A lone Escape, then a key: the key.
    assert_eq!(d.feed(b"\x1bp"), [Key::Pause]);
}

fn view(phase: Phase, paused: bool) -> ImageView {
    ImageView {
        phase,
        since: std::time::Instant::now(),
        deployed: None,
        reference: None,
        synced: 0,
        deployments: vec![],
        forwards: vec![],
        runs: vec![],
        content: None,
        paused,
        failure: None,
    }
}

#[test]
fn keys_ask_the_core_for_the_selected_image_and_move_the_marker() {
    let buf = SharedBuf::default();
    let ui = Ui::with_board(Box::new(buf.clone()), 100);
    ui.out.block.lock().unwrap().board.as_mut().unwrap().show_keys();
    let serving = Phase::Serving { tag: "a1b2c3d4".into(), synced: 0 };
    let paused = Phase::Paused { held: true, changes: 1 };
    let images = [("api".to_string(), view(serving, false)), ("web".to_string(), view(paused, true))];
    ui.state(&Arc::new(Snapshot { images: images.into_iter().collect() }));
    let triggers = Triggers::new();
    let mut asked = triggers.take_for_test();
    let mut next = || asked.try_recv().ok();

    // The first row is selected until another is.
    handle(&ui, &triggers, Key::Rebuild);
    assert_eq!(next(), Some(Request::Rebuild("api".into())));
    handle(&ui, &triggers, Key::Pause);
    assert_eq!(next(), Some(Request::Pause("api".into(), true)), "serving: p pauses it");
    handle(&ui, &triggers, Key::Down);
    assert_eq!(next(), None, "moving asks nothing");
    handle(&ui, &triggers, Key::Pause);
    assert_eq!(next(), Some(Request::Pause("web".into(), false)), "paused: p resumes it");
    handle(&ui, &triggers, Key::Trigger);
    assert_eq!(next(), Some(Request::Trigger(vec!["web".into()])));
    handle(&ui, &triggers, Key::TriggerHeld);
    assert_eq!(next(), Some(Request::Trigger(vec![])), "Enter: every image holding a change");
    handle(&ui, &triggers, Key::Help);
    assert!(ui.flush(Duration::from_secs(5)));
    let text = buf.text();
    assert!(text.contains("› ‖ web  paused: 1 changed path held until resumed\n"), "{text}");
    assert!(text.contains("  ● api  serving a1b2c3\n"), "{text}");
    for key in ["r rebuild it", "p pause it", "t trigger it", "Enter trigger every image holding a change"] {
        assert!(text.contains(key), "the help says `{key}`: {text}");
    }
    assert!(text.ends_with(&format!("{KEYS_LINE}\n")), "the keys' line is under the block: {text}");
}

#[test]
fn without_a_status_block_enter_still_triggers_and_the_other_keys_ask_nothing() {
    let buf = SharedBuf::default();
    let ui = Ui::new(false, Box::new(buf.clone()));
    let images = [("api".to_string(), view(Phase::Held { changes: 1 }, false))];
    ui.state(&Arc::new(Snapshot { images: images.into_iter().collect() }));
    let triggers = Triggers::new();
    let mut asked = triggers.take_for_test();
    for key in [Key::Rebuild, Key::Pause, Key::Trigger, Key::Down] {
        handle(&ui, &triggers, key);
        assert!(asked.try_recv().is_err(), "{key:?}: no row is selected without the block");
    }
    handle(&ui, &triggers, Key::TriggerHeld);
    assert_eq!(asked.try_recv().ok(), Some(Request::Trigger(vec![])));
    handle(&ui, &triggers, Key::Help);
    assert!(ui.flush(Duration::from_secs(5)));
    assert!(buf.text().contains("Enter triggers every image holding a change"), "{}", buf.text());
}
