//! The database server's clock, as the deadlines of a PostgreSQL store are judged by it: every
//! process of a fleet — whatever its host's clock says — sees one time, the server's.
//!
//! The rules that read the time (`decide`, the outbox rules) are Rust functions that take `now`,
//! so the server's time is brought to them rather than the rules to SQL: the store measures the
//! server's `clock_timestamp()` against the host's clock (the midpoint of the round trip) when it
//! opens and then at most once every [`REFRESH`] on a connection it is using anyway, and "now" is
//! the host's time plus that offset. A host clock that is ten minutes off is therefore corrected
//! to within the round trip; a jump of the host's clock is corrected at the next measurement.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::Client;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::Result;
use crate::store::postgres::pool::pg_error;

/// How often the offset between the host's clock and the server's is measured again.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// The server's time: the host's clock plus the last measured offset.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    offset_ms: AtomicI64,
    measured: Mutex<Option<Instant>>,
}

impl ServerClock {
    /// Whether a new measurement is due.
    pub(crate) fn due(&self) -> bool {
        self.measured.lock().is_none_or(|at| at.elapsed() >= REFRESH)
    }

    /// Measures the offset on `client` (inside or outside a transaction: `clock_timestamp()` is
    /// the server's wall time at the moment, not the transaction's start).
    pub(crate) fn measure(&self, client: &mut Client) -> Result<()> {
        let before = SystemClock.now().0;
        let row = client
            .query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8", &[])
            .map_err(pg_error)?;
        let after = SystemClock.now().0;
        let server: i64 = row.get(0);
        self.offset_ms.store(server - (before / 2 + after / 2), Ordering::SeqCst);
        *self.measured.lock() = Some(Instant::now());
        Ok(())
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0.saturating_add(self.offset_ms.load(Ordering::SeqCst)))
    }
}
