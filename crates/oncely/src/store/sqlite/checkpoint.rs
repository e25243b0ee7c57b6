//! WAL checkpoints off the writer's path: the writer only notes how long the log has grown, and
//! a checkpointer thread with its own connection copies the log back into the database, so a
//! commit never waits for a checkpoint (unless the log grows past a hard bound).

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags};

use crate::error::Result;

/// The log length (in pages) that wakes the checkpointer.
const WAKE_AT_PAGES: i32 = 1_000;
/// The log length at which the writer checkpoints itself, so the log stays bounded even when
/// the checkpointer cannot keep up.
const HARD_BOUND_PAGES: i32 = 50_000;

/// Installs the WAL hook on the writer's connection and starts the checkpointer thread, which
/// ends when the writer's connection is closed.
pub(crate) fn start(writer: &mut Connection, path: &Path, busy_timeout: std::time::Duration) -> Result<()> {
    let checkpointer = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    checkpointer.busy_timeout(busy_timeout)?;
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        if pages >= HARD_BOUND_PAGES {
            let _ = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE);
        } else if pages >= WAKE_AT_PAGES {
            let _ = wake.try_send(());
        }
        Ok(())
    }))?;
    std::thread::Builder::new()
        .name("oncely-sqlite-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "oncely: WAL checkpoint skipped");
                }
            }
        })
        .map_err(|e| crate::Error::Storage(format!("cannot start the SQLite checkpointer: {e}")))?;
    Ok(())
}
