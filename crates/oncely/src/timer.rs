//! Real-time sleeps that need no particular executor: one timer thread for the whole process
//! wakes every sleeping task, so waiting works the same under tokio, napi, pyo3 or a plain
//! `block_on`. A sleep that is dropped before its deadline (a handler that finished before its
//! next keep-alive) is removed at once, so many short-lived sleeps cost no threads and no memory.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// What a timer entry does when its deadline comes.
enum Due {
    /// Wake a sleeping task.
    Wake(Waker),
    /// Run a callback on the timer thread (it must return quickly: hand work to a thread).
    Run(Box<dyn FnOnce() + Send>),
}

impl Due {
    fn fire(self) {
        match self {
            Due::Wake(w) => w.wake(),
            Due::Run(f) => f(),
        }
    }
}

/// The entries waiting, by deadline (and a sequence number that keeps equal deadlines apart).
struct Timers {
    waiting: Mutex<BTreeMap<(Instant, u64), Due>>,
    changed: Condvar,
    next: AtomicU64,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers {
            waiting: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            next: AtomicU64::new(0),
        }));
        std::thread::Builder::new()
            .name("oncely-timer".into())
            .spawn(move || timers.run())
            .expect("oncely: cannot start the timer thread");
        timers
    })
}

impl Timers {
    /// Wakes each sleep whose deadline has come; waits for the next one or for a new sleep.
    fn run(&self) {
        let mut waiting = self.waiting.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                // Fired without the lock held: a callback may register or cancel entries.
                drop(waiting);
                due.into_iter().for_each(Due::fire);
                waiting = self.waiting.lock();
                continue;
            }
            match waiting.keys().next() {
                Some(&(deadline, _)) => {
                    self.changed.wait_until(&mut waiting, deadline);
                }
                None => self.changed.wait(&mut waiting),
            }
        }
    }
}

/// A future that completes once `d` has passed (in real time).
pub(crate) fn sleep(d: Duration) -> Sleep {
    Sleep { deadline: Instant::now() + d, key: None }
}

/// See [`sleep`].
pub(crate) struct Sleep {
    deadline: Instant,
    /// Where this sleep waits in the timer, once it has been polled.
    key: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                timers().waiting.lock().remove(&key);
            }
            return Poll::Ready(());
        }
        let timers = timers();
        let mut waiting = timers.waiting.lock();
        let key = match self.key {
            Some(key) => key,
            None => (self.deadline, timers.next.fetch_add(1, Ordering::Relaxed)),
        };
        let earliest = waiting.keys().next().is_none_or(|first| key < *first);
        waiting.insert(key, Due::Wake(cx.waker().clone()));
        drop(waiting);
        self.key = Some(key);
        if earliest {
            timers.changed.notify_one();
        }
        Poll::Pending
    }
}

/// Runs `f` on the timer thread once `d` has passed, unless the returned handle is dropped
/// first. `f` must return quickly (start a thread for real work).
pub(crate) fn after(d: Duration, f: impl FnOnce() + Send + 'static) -> After {
    let timers = timers();
    let key = (Instant::now() + d, timers.next.fetch_add(1, Ordering::Relaxed));
    let mut waiting = timers.waiting.lock();
    let earliest = waiting.keys().next().is_none_or(|first| key < *first);
    waiting.insert(key, Due::Run(Box::new(f)));
    drop(waiting);
    if earliest {
        timers.changed.notify_one();
    }
    After { key }
}

/// See [`after`]: dropping it cancels the callback if it has not run yet.
pub(crate) struct After {
    key: (Instant, u64),
}

impl Drop for After {
    fn drop(&mut self) {
        timers().waiting.lock().remove(&self.key);
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            timers().waiting.lock().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_end_in_deadline_order_and_dropped_ones_leave_nothing() {
        let started = Instant::now();
        pollster::block_on(sleep(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
        // A sleep dropped after one poll is removed from the timer.
        let mut dropped = Box::pin(sleep(Duration::from_secs(3600)));
        let waker = Waker::noop();
        assert!(dropped.as_mut().poll(&mut Context::from_waker(waker)).is_pending());
        let key = dropped.key.expect("registered when polled");
        assert!(timers().waiting.lock().contains_key(&key));
        drop(dropped);
        assert!(!timers().waiting.lock().contains_key(&key));
        // Two sleeps, the later one polled first: the earlier still ends first.
        let order = std::sync::Mutex::new(Vec::new());
        pollster::block_on(async {
            tokio::join!(
                async {
                    sleep(Duration::from_millis(40)).await;
                    order.lock().unwrap().push(40);
                },
                async {
                    sleep(Duration::from_millis(10)).await;
                    order.lock().unwrap().push(10);
                }
            )
        });
        assert_eq!(*order.lock().unwrap(), vec![10, 40]);
    }
}

#[cfg(test)]
mod after_tests {
    use super::*;

    #[test]
    fn callbacks_run_once_due_and_not_when_cancelled() {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        let _kept = after(Duration::from_millis(10), move || tx.send(1).unwrap());
        let cancelled = after(Duration::from_millis(10), move || tx2.send(2).unwrap());
        drop(cancelled);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "a cancelled callback ran");
    }
}
