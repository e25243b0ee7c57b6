//! Which boot of the machine this is: what tells the SQLite store whether a power cut (or any
//! crash of the operating system) may have come between two runs. A process that merely crashed
//! loses nothing SQLite wrote — the operating system still holds every write, synced or not — so
//! its store may go on counting where it stopped; only after a reboot can commits that were never
//! synced be gone.

use std::sync::atomic::{AtomicU64, Ordering};

/// Reboots simulated in this process (see [`simulate_reboot`]).
static SIMULATED: AtomicU64 = AtomicU64::new(0);

/// An identity of the current boot of the machine, if the system offers one (Linux and
/// Android: `/proc/sys/kernel/random/boot_id`). `None` means unknown: treat every start as one
/// after a reboot.
pub(crate) fn boot_id() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    // FNV-1a of the id's text, mixed with the simulated reboots.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.trim().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= SIMULATED.load(Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Some((h >> 1) as i64)
}

/// Makes stores opened from now on in this process behave as after a reboot of the machine.
/// For simulations that cut the power of a store held in memory (the deterministic simulator's
/// power-loss file system); a real power cut changes the boot by itself.
#[doc(hidden)]
pub fn simulate_reboot() {
    SIMULATED.fetch_add(1, Ordering::Relaxed);
}
