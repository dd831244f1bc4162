//! Workers' progress on its way to the core, coalesced. A build reports every BuildKit step and a rollout
//! every change of what it waits for; sent one event each through the loop's queue they could fill it and
//! make the loop step (and redraw) for news that is already old. Instead each piece of news takes a slot
//! (per image and kind, [`Progress::slot`]) that the next one of its kind overwrites, and the loop takes
//! whatever is in the slots in one go. Telling never waits: a std mutex held for a map insert.
//!
//! Order: a worker tells its progress before it sends its result, and the loop takes the slots before every
//! event it handles, so the core sees a rollout's `Rolled` before its `RolledOut`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::decide::{Event, Progress};

/// The latest news per image and kind, waiting for the loop.
#[derive(Default)]
pub struct Latest {
    slots: Mutex<BTreeMap<(String, u8), Event>>,
    wake: Notify,
}

impl Latest {
    /// `image`'s work on `tag` got this far (replaces the news of the same kind not taken yet).
    pub fn tell(&self, image: &str, tag: &str, progress: Progress) {
        let key = (image.to_string(), progress.slot());
        let ev = Event::Progress { image: image.to_string(), tag: tag.to_string(), progress };
        self.slots.lock().expect("not poisoned").insert(key, ev);
        self.wake.notify_one();
    }

    /// Everything told since the last take, as events for the core.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.slots.lock().expect("not poisoned")).into_values().collect()
    }

    /// Returns once something was told (at once if it was since the last wait).
    pub async fn told(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize) -> Progress {
        Progress::Step { step: n, of: 50, name: format!("[{n}/50] RUN x") }
    }

    #[tokio::test]
    async fn a_burst_of_steps_reaches_the_core_as_the_last_one_and_other_news_is_kept() {
        let latest = Latest::default();
        for n in 1..=50 {
            latest.tell("app", "t1", step(n));
        }
        latest.tell("app", "t0", Progress::Rolled(vec!["web".into()]));
        latest.tell("api", "t9", step(1));
        tokio::time::timeout(std::time::Duration::from_secs(1), latest.told()).await.expect("woken");
        let got = latest.take();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&Event::Progress { image: "app".into(), tag: "t1".into(), progress: step(50) }), "{got:?}");
        assert!(got.contains(&Event::Progress { image: "app".into(), tag: "t0".into(), progress: Progress::Rolled(vec!["web".into()]) }));
        assert!(latest.take().is_empty(), "taken once");
    }
}
