//! The one writer of `up`'s output: a thread of its own behind a bounded queue, so that a terminal that stops
//! draining (a paused `less`, an editor that does not read `--json`, a pipe nobody reads) stalls only this
//! thread — never hashing, builds, rollouts or port-forwards.
//!
//! When the queue is full, what does not fit is dropped, never waited for: lines keep their order, and once
//! the reader drains again one line says how many were dropped (`{"event":"dropped","lines":N}` in JSON).
//! Pod log lines give way first: they may fill only three quarters of the queue, so the loop's own events
//! still fit while a chatty pod floods it. The status block is state, not lines: its redraws are coalesced
//! into one, and it always shows the latest state when drawn.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::board::Board;

/// How many lines may wait for the writer.
pub const QUEUE: usize = 1024;

/// What the status block is drawn from, shared by the senders (who change it) and the writer (who draws it).
pub(super) struct Block {
    pub(super) board: Option<Board>,
    /// The block's width and the terminal's height (columns, rows), asked at each drawing (it may be resized).
    pub(super) width: Box<dyn Fn() -> (usize, usize) + Send>,
}

enum Item {
    /// A line to write (text, or one JSON object).
    Line(String),
    /// The status block changed.
    Redraw,
    /// Tell the sender once everything before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The sending side; cheap to share.
pub(super) struct Writer {
    tx: SyncSender<Item>,
    pub(super) block: Arc<Mutex<Block>>,
    json: bool,
    /// Lines in the queue now.
    queued: Arc<AtomicUsize>,
    /// Lines dropped since the last notice.
    dropped: Arc<AtomicU64>,
    /// A redraw is queued already: the next one would show nothing new.
    redraw_queued: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer thread on `out`.
    pub(super) fn start(out: Box<dyn Write + Send>, block: Block, json: bool) -> Writer {
        let (tx, rx) = sync_channel(QUEUE);
        let w = Writer {
            tx,
            block: Arc::new(Mutex::new(block)),
            json,
            queued: Default::default(),
            dropped: Default::default(),
            redraw_queued: Default::default(),
        };
        let (block, queued, dropped, redraw) = (w.block.clone(), w.queued.clone(), w.dropped.clone(), w.redraw_queued.clone());
        std::thread::Builder::new()
            .name("devloop-output".into())
            .spawn(move || run(rx, out, block, json, queued, dropped, redraw))
            .expect("a thread for the output");
        w
    }

    /// Queues a line; `log`: a pod's log line, the first to give way.
    pub(super) fn line(&self, text: String, log: bool) {
        if log && self.queued.load(Ordering::Relaxed) >= QUEUE * 3 / 4 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(Item::Line(text)) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if matches!(e, TrySendError::Full(_)) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks for the status block to be drawn again (once, however often asked before it is).
    pub(super) fn redraw(&self) {
        if self.redraw_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.tx.try_send(Item::Redraw).is_err() {
            // A full queue: the lines in it redraw the block anyway.
            self.redraw_queued.store(false, Ordering::Release);
        }
    }

    /// Waits until everything queued so far is written, for at most `within`; false if it was not.
    pub(super) fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (ack, done) = std::sync::mpsc::channel();
        let mut item = Item::Flush(ack);
        loop {
            match self.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    /// Whether output is JSON lines.
    pub(super) fn json(&self) -> bool {
        self.json
    }
}

/// The writer thread: draws each line (above the status block, when there is one) and writes it, with the
/// block's lock held only while drawing into memory.
fn run(
    rx: Receiver<Item>,
    mut out: Box<dyn Write + Send>,
    block: Arc<Mutex<Block>>,
    json: bool,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    redraw: Arc<AtomicBool>,
) {
    let draw = |text: Option<&str>| -> Vec<u8> {
        let mut buf = Vec::new();
        let mut b = block.lock().expect("not poisoned");
        let (width, rows) = (b.width)();
        match b.board.as_mut() {
            Some(board) => {
                board.fit(rows);
                let _ = board.write_above(&mut buf, text, width);
            }
            None => {
                if let Some(t) = text {
                    buf.extend_from_slice(t.as_bytes());
                    buf.push(b'\n');
                }
            }
        }
        buf
    };
    while let Ok(item) = rx.recv() {
        let bytes = match item {
            Item::Line(text) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                let mut bytes = draw(Some(&text));
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    let notice = if json {
                        serde_json::json!({"event": "dropped", "lines": lost}).to_string()
                    } else {
                        format!("devloop: {lost} line(s) dropped: the output was not read in time")
                    };
                    bytes.extend(draw(Some(&notice)));
                }
                bytes
            }
            Item::Redraw => {
                redraw.store(false, Ordering::Release);
                draw(None)
            }
            Item::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.send(());
                continue;
            }
        };
        if !bytes.is_empty() {
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks until let go, as a pipe nobody reads does.
    #[derive(Clone, Default)]
    struct Stalled {
        go: Arc<(Mutex<bool>, std::sync::Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.go;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_sender_and_is_told_what_it_missed() {
        let out = Stalled::default();
        let w = Writer::start(Box::new(out.clone()), Block { board: None, width: Box::new(|| (80, 24)) }, true);
        let t0 = Instant::now();
        // Three queues' worth while nothing is read: every call returns at once.
        for i in 0..QUEUE * 3 {
            w.line(format!("{{\"event\":\"log\",\"n\":{i}}}"), true);
            w.line(format!("{{\"event\":\"iteration\",\"n\":{i}}}"), false);
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the sends waited for the reader");
        *out.go.0.lock().unwrap() = true;
        out.go.1.notify_all();
        assert!(w.flush(Duration::from_secs(10)));
        let text = String::from_utf8(out.got.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // What was written kept its order, per kind.
        for kind in ["log", "iteration"] {
            let ns: Vec<u64> = lines.iter().filter(|v| v["event"] == kind).map(|v| v["n"].as_u64().unwrap()).collect();
            assert!(ns.windows(2).all(|p| p[0] < p[1]), "{kind} out of order");
        }
        // The loop's events had room that the pod's log lines did not take.
        let events = lines.iter().filter(|v| v["event"] == "iteration").count();
        let logs = lines.iter().filter(|v| v["event"] == "log").count();
        assert!(events > logs, "{events} events, {logs} log lines");
        // And what was dropped is said, in total.
        let dropped: u64 = lines.iter().filter(|v| v["event"] == "dropped").map(|v| v["lines"].as_u64().unwrap()).sum();
        assert_eq!(dropped as usize + events + logs, QUEUE * 6, "every line is written or counted as dropped");
        // Once it reads again, nothing more is lost.
        w.line("{\"event\":\"after\"}".into(), false);
        assert!(w.flush(Duration::from_secs(5)));
        assert!(String::from_utf8(out.got.lock().unwrap().clone()).unwrap().ends_with("{\"event\":\"after\"}\n"));
    }
}
