//! SIGINT and SIGTERM as two cancellation tokens: the first signal asks the run to stop and clean up
//! (`stop`), a second one asks it to stop cleaning up too (`abort`) and say what is left. A third exits at
//! once. The first signal decides the exit code (128 + its number: 130 for SIGINT, 143 for SIGTERM).

use std::future::Future;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// SIGINT's number.
pub const SIGINT: i32 = 2;
/// SIGTERM's number.
pub const SIGTERM: i32 = 15;

/// The signals a run has received, as tokens. Cheap to clone; clones share the state.
#[derive(Clone, Default)]
pub struct Interrupt {
    stop: CancellationToken,
    abort: CancellationToken,
    first: Arc<AtomicI32>,
    count: Arc<AtomicU32>,
}

impl Interrupt {
    /// No signal yet.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Records a signal: the first cancels `stop`, the second `abort`. Returns how many were received.
    pub fn raise(&self, signal: i32) -> u32 {
        let _ = self.first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        match n {
            1 => self.stop.cancel(),
            _ => {
                self.stop.cancel();
                self.abort.cancel();
            }
        }
        n
    }

    /// Installs handlers for SIGINT and SIGTERM that call [`Interrupt::raise`]; a third signal exits at once
    /// with the first signal's code. Needs a tokio runtime.
    pub fn listen(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                };
                if this.raise(sig) >= 3 {
                    eprintln!("devloop: third signal, exiting without cleaning up");
                    std::process::exit(this.exit_code().unwrap_or(130).into());
                }
            }
        });
        Ok(())
    }

    /// Cancelled by the first signal.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Cancelled by the second signal.
    pub fn abort(&self) -> &CancellationToken {
        &self.abort
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        Some(self.first.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// The first signal's name, e.g. `SIGINT` (`a signal` before any).
    pub fn name(&self) -> &'static str {
        match self.signal() {
            Some(SIGINT) => "SIGINT",
            Some(SIGTERM) => "SIGTERM",
            _ => "a signal",
        }
    }

    /// 128 + the first signal's number, once a signal was received.
    pub fn exit_code(&self) -> Option<u8> {
        self.signal().and_then(|s| u8::try_from(128 + s).ok())
    }
}

/// Runs `fut` unless `token` is (or gets) cancelled first: None then, and `fut` is dropped.
pub async fn until<T>(token: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = token.cancelled() => None,
        v = fut => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_stops_the_second_aborts_and_the_first_decides_the_exit_code() {
        let i = Interrupt::new();
        assert_eq!((i.signal(), i.exit_code()), (None, None));
        assert_eq!(i.raise(SIGTERM), 1);
        assert!(i.stop().is_cancelled() && !i.abort().is_cancelled());
        assert_eq!((i.name(), i.exit_code()), ("SIGTERM", Some(143)));
        let clone = i.clone();
        assert_eq!(clone.raise(SIGINT), 2);
        assert!(i.abort().is_cancelled());
        assert_eq!(i.exit_code(), Some(143), "the first signal decides");
        let int = Interrupt::new();
        int.raise(SIGINT);
        assert_eq!((int.name(), int.exit_code()), ("SIGINT", Some(130)));
    }

    #[tokio::test]
    async fn until_drops_the_work_once_the_token_is_cancelled() {
        let t = CancellationToken::new();
        assert_eq!(until(&t, async { 7 }).await, Some(7));
        let slow = tokio::time::sleep(std::time::Duration::from_secs(3600));
        let canceller = t.clone();
        tokio::spawn(async move { canceller.cancel() });
        assert_eq!(until(&t, slow).await, None);
        // Already cancelled: the work is not even started.
        assert_eq!(until(&t, async { 7 }).await, None);
    }
}
