//! Keys in `up`'s terminal, while the status block is shown: `↑`/`↓` (or `k`/`j`) select an image's row,
//! `r` rebuilds it, `p` pauses or resumes it, `t` triggers it, Enter triggers every image holding a change,
//! `?` says all this. The selection is the board's ([`super::board::Board::select`]); what a key asks goes
//! to the core as a [`Request`], the way the page's buttons and `devloop trigger` do.
//!
//! The terminal is put out of line mode (no ICANON, no ECHO; ISIG kept, so Ctrl-C still stops `up`) by a
//! [`Raw`] guard that puts it back when `up` ends, returns an error or panics.

use std::io::Read;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Ui;
use crate::engine::control::{Request, Triggers};

/// What a key press means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `↑` or `k`.
    Up,
    /// `↓` or `j`.
    Down,
    /// `r`.
    Rebuild,
    /// `p`.
    Pause,
    /// `t`.
    Trigger,
    /// Enter.
    TriggerHeld,
    /// `?`.
    Help,
}

/// Bytes from the terminal to keys; an escape sequence may arrive split over reads.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The bytes of an escape sequence read so far (empty: none begun).
    pending: Vec<u8>,
}

impl Decoder {
    /// The keys `bytes` complete (bytes that are no key are skipped).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Key> {
        let mut keys = Vec::new();
        for &b in bytes {
            if !self.pending.is_empty() {
                self.pending.push(b);
                match self.pending.as_slice() {
                    [0x1b, b'[' | b'O'] => {}
                    [0x1b, b'[' | b'O', final_byte] if (0x40..=0x7e).contains(final_byte) => {
                        keys.extend(match final_byte {
                            b'A' => Some(Key::Up),
                            b'B' => Some(Key::Down),
                            _ => None,
                        });
                        self.pending.clear();
                    }
                    // Parameters of a longer sequence (`ESC [ 1 ; 5 A`): skipped up to its final byte.
                    [0x1b, b'[', .., last] if !(0x40..=0x7e).contains(last) && self.pending.len() < 16 => {}
                    [0x1b, b'[', ..] if (0x40..=0x7e).contains(&b) => self.pending.clear(),
                    [0x1b, 0x1b] => self.pending.truncate(1),
                    // A lone Escape, then a key: the key counts.
                    [0x1b, _] => {
                        self.pending.clear();
                        keys.extend(plain(b));
                    }
                    _ => self.pending.clear(),
                }
            } else if b == 0x1b {
                self.pending.push(b);
            } else {
                keys.extend(plain(b));
            }
        }
        keys
    }
}

/// The key of one byte outside an escape sequence.
fn plain(b: u8) -> Option<Key> {
    match b {
        b'k' => Some(Key::Up),
        b'j' => Some(Key::Down),
        b'r' => Some(Key::Rebuild),
        b'p' => Some(Key::Pause),
        b't' => Some(Key::Trigger),
        b'\r' | b'\n' => Some(Key::TriggerHeld),
        b'?' => Some(Key::Help),
        _ => None,
    }
}

/// What `?` prints above the block.
pub const HELP: &str = "devloop: keys: ↑/↓ (or k/j) select an image; › marks its row\n\
devloop: keys: r rebuild it (hash again, build even if its tag is deployed or in the registry, roll out)\n\
devloop: keys: p pause it (its changes are held until p again) or resume it\n\
devloop: keys: t trigger it (build what it holds) · Enter trigger every image holding a change\n\
devloop: keys: Ctrl-C stop; `devloop trigger [IMAGE…]` from another shell, the page's buttons with --ui";

/// What `?` prints when there is no status block (`-v`): only Enter acts, there being no row to select.
pub const HELP_WITHOUT_BLOCK: &str = "devloop: keys: Enter triggers every image holding a change; the other keys act on \
the status block's rows, which are not shown here (-v, or not a terminal)";

/// Acts on `key`: moves the board's selection, prints the help, or asks the core through `triggers`. Without
/// a status block only Enter and `?` act.
pub fn handle(ui: &Ui, triggers: &Triggers, key: Key) {
    let (chosen, board) = {
        let mut block = ui.out.block.lock().expect("not poisoned");
        match block.board.as_mut() {
            Some(board) => {
                match key {
                    Key::Up | Key::Down => board.select(if key == Key::Up { -1 } else { 1 }),
                    _ => {}
                }
                (board.selected().map(|(image, v)| (image.clone(), v.paused)), true)
            }
            None => (None, false),
        }
    };
    let request = match (key, chosen) {
        (Key::Help, _) if !board => return ui.out.line(HELP_WITHOUT_BLOCK.to_string(), false),
        (Key::Up | Key::Down, _) => return ui.out.redraw(),
        (Key::Help, _) => return ui.out.line(HELP.to_string(), false),
        (Key::TriggerHeld, _) => Request::Trigger(vec![]),
        (_, None) => return,
        (Key::Rebuild, Some((image, _))) => Request::Rebuild(image),
        (Key::Pause, Some((image, paused))) => Request::Pause(image, !paused),
        (Key::Trigger, Some((image, _))) => Request::Trigger(vec![image]),
    };
    if !triggers.ask(request) {
        ui.out.line("devloop: not taking keys now (stopping, or too many at once)".into(), false);
    }
}

/// The terminal's modes before `up` changed them, for the guard and the panic hook.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts stdin's terminal back as it was when dropped.
#[derive(Debug)]
pub struct Raw(());

impl Drop for Raw {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = saved {
        // SAFETY: tcsetattr reads the termios it is given; fd 0 is only configured.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
    }
}

/// Takes stdin's terminal out of line mode (no ICANON, no ECHO; ISIG kept): none when it is not a terminal
/// or cannot be.
fn raw() -> Option<Raw> {
    // SAFETY: tcgetattr fills the termios it is given; tcsetattr reads it; fd 0 is only configured.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return None;
    }
    *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    let mut keys = t;
    keys.c_lflag &= !(libc::ICANON | libc::ECHO);
    keys.c_cc[libc::VMIN] = 1;
    keys.c_cc[libc::VTIME] = 0;
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &keys) } != 0 {
        SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
        return None;
    }
    // A panic anywhere puts the terminal back before the process dies, then says what it says.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    Some(Raw(()))
}

/// Starts the keys when stdin is a terminal and the output is text (not `--json`, whose lines are all JSON):
/// the terminal out of line mode (until the returned guard goes), the keys' line under the block when there
/// is one, and a thread reading keys until `stop`.
pub fn start(ui: &Ui, triggers: Arc<Triggers>, stop: CancellationToken) -> Option<Raw> {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    if !tty || ui.out.json() {
        return None;
    }
    let guard = raw()?;
    if let Some(b) = ui.out.block.lock().expect("not poisoned").board.as_mut() {
        b.show_keys();
    }
    ui.out.redraw();
    let ui = ui.clone();
    // A thread of its own, not tokio's stdin: a read of a terminal cannot be cancelled, and tokio's runtime
    // waits for its blocking reads when it shuts down, so Ctrl-C would wait for a key. This thread is left
    // blocked when `up` ends; the process exits anyway.
    let spawned = std::thread::Builder::new().name("devloop-keys".into()).spawn(move || {
        let (mut stdin, mut decoder, mut buf) = (std::io::stdin().lock(), Decoder::default(), [0u8; 64]);
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if stop.is_cancelled() {
                return;
            }
            for key in decoder.feed(&buf[..n]) {
                handle(&ui, &triggers, key);
            }
        }
    });
    spawned.ok().map(|_| guard)
}

#[cfg(test)]
mod tests;
