//! The injected clock. Nothing below the CLI reads the system time directly:
//! the store stamps events with `Clock::now`, the scheduler and the status
//! cache ask it, and tests drive a `ManualClock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug)]
pub struct ManualClock {
    // An atomic rather than a lock: readers on many threads, one writer (the test).
    millis: AtomicI64,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(at.as_millis()),
        })
    }

    pub fn set(&self, at: Timestamp) {
        self.millis.store(at.as_millis(), Ordering::SeqCst);
    }

    pub fn advance_millis(&self, ms: i64) {
        self.millis.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}
