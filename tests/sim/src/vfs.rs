//! A power-loss VFS for SQLite: every file lives in this process's memory, and each keeps what
//! was last synced (`xSync`) apart from what was written since. A simulated power cut throws the
//! unsynced part away, so `synchronous = FULL` and `NORMAL` are held to what they promise; a
//! crash of the process keeps it (the operating system's cache survives a `kill -9`).
//!
//! Registered as SQLite's default VFS, so the core's unchanged `SqliteStore::open` uses it. Files
//! are grouped by a *node* prefix (`/oncely-sim/<run>/<node>/`): [`crash`] and [`power_cut`] act
//! on one node. A connection opened before a crash belongs to a dead process: every call of it
//! fails, so dropping its store afterwards writes nothing.
//!
//! The only `unsafe` code of the project outside the bindings: SQLite's C interface.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use libsqlite3_sys as ffi;

/// Bytes of one wal-index region SQLite asks for (always 32 KiB).
type Region = Box<[u8]>;

#[derive(Default)]
struct File {
    /// What a reader sees now (the operating system's view).
    data: Vec<u8>,
    /// What survives a power cut: the data as of the last sync.
    durable: Vec<u8>,
    /// Whether `data` differs from `durable`.
    dirty: bool,
    /// How many times SQLite synced this file (`xSync`), counted for tests of how many fsyncs
    /// an operation costs.
    syncs: u64,
    /// Which handle holds RESERVED, PENDING, EXCLUSIVE; how many hold SHARED.
    shared: u32,
    reserved: Option<u64>,
    pending: Option<u64>,
    exclusive: Option<u64>,
    /// The wal-index (`-shm`) regions of a database, and their locks.
    shm: Vec<Region>,
    shm_shared: [u32; 8],
    shm_exclusive: [Option<u64>; 8],
}

#[derive(Default)]
struct Disk {
    files: HashMap<String, File>,
    /// Each node's generation: bumped by a crash, so handles of the dead process fail.
    generation: HashMap<String, u64>,
    /// Open handles per node.
    open: HashMap<String, u64>,
}

static DISK: Mutex<Option<Disk>> = Mutex::new(None);
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

fn disk() -> MutexGuard<'static, Option<Disk>> {
    DISK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node a file belongs to: its path up to the last `/`.
fn node_of(name: &str) -> String {
    name.rsplit_once('/').map(|(dir, _)| dir.to_owned()).unwrap_or_default()
}

#[repr(C)]
struct Handle {
    base: ffi::sqlite3_file,
    name: *mut String,
    node: *mut String,
    id: u64,
    generation: u64,
    lock: c_int,
    shm_shared: u8,
    shm_exclusive: u8,
    delete_on_close: bool,
    /// A database opened without `SQLITE_OPEN_CREATE`: the store's WAL checkpointer thread
    /// (`Synchronous::Normal`). It may read, never lock or write: a checkpoint on a thread of
    /// its own would run at a moment no seed decides.
    passive: bool,
}

impl Handle {
    fn name(&self) -> &str {
        // SAFETY: set from Box::into_raw in x_open, freed only in x_close.
        unsafe { &*self.name }
    }

    fn node(&self) -> &str {
        // SAFETY: as for `name`.
        unsafe { &*self.node }
    }
}

/// Runs `f` on the handle's file to change it (or lock it), as [`with_file`] does; a passive
/// handle is refused with SQLITE_IOERR.
unsafe fn change_file(
    file: *mut ffi::sqlite3_file,
    f: impl FnOnce(&mut Handle, &mut File) -> c_int,
) -> c_int {
    // SAFETY: SQLite passes back the handle x_open initialised.
    if unsafe { (*(file as *mut Handle)).passive } {
        return ffi::SQLITE_IOERR;
    }
    unsafe { with_file(file, f) }
}

/// Runs `f` on the handle's file, or fails with SQLITE_IOERR when the handle's process is dead
/// (crashed) or the file is gone.
unsafe fn with_file(file: *mut ffi::sqlite3_file, f: impl FnOnce(&mut Handle, &mut File) -> c_int) -> c_int {
    // SAFETY: SQLite passes back the handle x_open initialised.
    let handle = unsafe { &mut *(file as *mut Handle) };
    let mut guard = disk();
    let disk = guard.as_mut().expect("VFS registered");
    if disk.generation.get(handle.node()).copied().unwrap_or(0) != handle.generation {
        return ffi::SQLITE_IOERR;
    }
    match disk.files.get_mut(handle.name()) {
        Some(data) => f(handle, data),
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each handle it opened once.
    let handle = unsafe { &mut *(file as *mut Handle) };
    let _ = unsafe { with_file(file, |h, f| release_locks(h, f, 0) | release_shm(h, f)) };
    let mut guard = disk();
    if let Some(disk) = guard.as_mut() {
        if let Some(open) = disk.open.get_mut(handle.node()) {
            *open = open.saturating_sub(1);
        }
        if handle.delete_on_close {
            disk.files.remove(handle.name());
        }
    }
    // SAFETY: allocated in x_open with Box::into_raw.
    unsafe {
        drop(Box::from_raw(handle.name));
        drop(Box::from_raw(handle.node));
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        with_file(file, |_, f| {
            let out = std::slice::from_raw_parts_mut(buf as *mut u8, amt as usize);
            let start = (offset as usize).min(f.data.len());
            let end = (offset as usize + amt as usize).min(f.data.len());
            let n = end - start;
            out[..n].copy_from_slice(&f.data[start..end]);
            if n < out.len() {
                out[n..].fill(0);
                return ffi::SQLITE_IOERR_SHORT_READ;
            }
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        change_file(file, |_, f| {
            let src = std::slice::from_raw_parts(buf as *const u8, amt as usize);
            let end = offset as usize + src.len();
            if f.data.len() < end {
                f.data.resize(end, 0);
            }
            f.data[offset as usize..end].copy_from_slice(src);
            f.dirty = true;
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe {
        change_file(file, |_, f| {
            f.data.truncate(size as usize);
            f.dirty = true;
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    unsafe {
        change_file(file, |_, f| {
            f.syncs += 1;
            if f.dirty {
                f.durable.clone_from(&f.data);
                f.dirty = false;
            }
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe {
        with_file(file, |_, f| {
            *size = f.data.len() as i64;
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe {
        change_file(file, |h, f| {
            if h.lock >= level {
                return ffi::SQLITE_OK;
            }
            let other = |holder: Option<u64>| holder.is_some_and(|x| x != h.id);
            match level {
                ffi::SQLITE_LOCK_SHARED => {
                    if other(f.pending) || other(f.exclusive) {
                        return ffi::SQLITE_BUSY;
                    }
                    f.shared += 1;
                }
                ffi::SQLITE_LOCK_RESERVED => {
                    if f.reserved.is_some() {
                        return ffi::SQLITE_BUSY;
                    }
                    f.reserved = Some(h.id);
                }
                _ => {
                    if other(f.pending) || other(f.exclusive) {
                        return ffi::SQLITE_BUSY;
                    }
                    f.pending = Some(h.id);
                    if f.shared > 1 {
                        h.lock = ffi::SQLITE_LOCK_PENDING;
                        return ffi::SQLITE_BUSY;
                    }
                    f.exclusive = Some(h.id);
                }
            }
            h.lock = level;
            ffi::SQLITE_OK
        })
    }
}

fn release_locks(h: &mut Handle, f: &mut File, level: c_int) -> c_int {
    let mine = |holder: &mut Option<u64>| {
        if *holder == Some(h.id) {
            *holder = None;
        }
    };
    if level < ffi::SQLITE_LOCK_RESERVED {
        mine(&mut f.reserved);
        mine(&mut f.pending);
        mine(&mut f.exclusive);
    }
    if level == ffi::SQLITE_LOCK_NONE && h.lock >= ffi::SQLITE_LOCK_SHARED {
        f.shared -= 1;
    }
    h.lock = h.lock.min(level);
    ffi::SQLITE_OK
}

fn release_shm(h: &mut Handle, f: &mut File) -> c_int {
    for s in 0..8 {
        if h.shm_shared & (1 << s) != 0 {
            f.shm_shared[s] -= 1;
        }
        if h.shm_exclusive & (1 << s) != 0 {
            f.shm_exclusive[s] = None;
        }
    }
    h.shm_shared = 0;
    h.shm_exclusive = 0;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { with_file(file, |h, f| release_locks(h, f, level)) }
}

unsafe extern "C" fn x_check_reserved(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe {
        with_file(file, |_, f| {
            *out = f.reserved.is_some() as c_int;
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_file_control(_file: *mut ffi::sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    unsafe {
        *out = std::ptr::null_mut();
        change_file(file, |_, f| {
            let region = region as usize;
            if f.shm.len() <= region {
                if extend == 0 {
                    return ffi::SQLITE_OK;
                }
                f.shm.resize_with(region + 1, || vec![0u8; size as usize].into_boxed_slice());
            }
            *out = f.shm[region].as_mut_ptr() as *mut c_void;
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        change_file(file, |h, f| {
            let slots = offset as usize..(offset + n) as usize;
            let bit = |s: usize| 1u8 << s;
            if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
                for s in slots {
                    if h.shm_shared & bit(s) != 0 {
                        f.shm_shared[s] -= 1;
                        h.shm_shared &= !bit(s);
                    }
                    if h.shm_exclusive & bit(s) != 0 {
                        f.shm_exclusive[s] = None;
                        h.shm_exclusive &= !bit(s);
                    }
                }
                return ffi::SQLITE_OK;
            }
            let exclusive = flags & ffi::SQLITE_SHM_EXCLUSIVE != 0;
            for s in slots.clone() {
                let others_shared = f.shm_shared[s] - u32::from(h.shm_shared & bit(s) != 0);
                let other_exclusive = f.shm_exclusive[s].is_some_and(|x| x != h.id);
                if other_exclusive || (exclusive && others_shared > 0) {
                    return ffi::SQLITE_BUSY;
                }
            }
            for s in slots {
                if exclusive {
                    f.shm_exclusive[s] = Some(h.id);
                    h.shm_exclusive |= bit(s);
                } else if h.shm_shared & bit(s) == 0 {
                    f.shm_shared[s] += 1;
                    h.shm_shared |= bit(s);
                }
            }
            ffi::SQLITE_OK
        })
    }
}

unsafe extern "C" fn x_shm_barrier(_file: *mut ffi::sqlite3_file) {
    std::sync::atomic::fence(Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, _delete: c_int) -> c_int {
    // The regions stay until the node restarts (or the run ends): another connection may still
    // point into them.
    unsafe { with_file(file, release_shm) }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `file` points at szOsFile (= size_of::<Handle>()) bytes.
    unsafe { (*file).pMethods = std::ptr::null() };
    let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    let name = if name.is_null() {
        format!("/oncely-sim/temp/{id}")
    } else {
        // SAFETY: SQLite passes a NUL-terminated name.
        unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
    };
    let node = node_of(&name);
    let mut guard = disk();
    let disk = guard.as_mut().expect("VFS registered");
    if !disk.files.contains_key(&name) {
        if flags & ffi::SQLITE_OPEN_CREATE == 0 {
            return ffi::SQLITE_CANTOPEN;
        }
        disk.files.insert(name.clone(), File::default());
    }
    let generation = disk.generation.get(&node).copied().unwrap_or(0);
    *disk.open.entry(node.clone()).or_default() += 1;
    let handle = Handle {
        base: ffi::sqlite3_file { pMethods: &METHODS },
        name: Box::into_raw(Box::new(name)),
        node: Box::into_raw(Box::new(node)),
        id,
        generation,
        lock: ffi::SQLITE_LOCK_NONE,
        shm_shared: 0,
        shm_exclusive: 0,
        delete_on_close: flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0,
        passive: flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && flags & ffi::SQLITE_OPEN_CREATE == 0,
    };
    // SAFETY: as above.
    unsafe {
        std::ptr::write(file as *mut Handle, handle);
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char, _sync_dir: c_int) -> c_int {
    // SAFETY: a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
    if let Some(disk) = disk().as_mut() {
        disk.files.remove(&name);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: a NUL-terminated name; `out` is writable.
    unsafe {
        let name = CStr::from_ptr(name).to_string_lossy();
        let guard = disk();
        let file = guard.as_ref().and_then(|d| d.files.get(name.as_ref()));
        *out = match flags {
            ffi::SQLITE_ACCESS_EXISTS => file.is_some_and(|f| !f.data.is_empty()),
            _ => file.is_some(),
        } as c_int;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `out` holds n_out bytes; the name is NUL-terminated.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > n_out as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, out, bytes.len());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(_vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    // SAFETY: `out` holds n bytes. Fixed bytes: SQLite's own generator is seeded from these, so
    // WAL salts and temporary names do not depend on the machine.
    unsafe { std::ptr::write_bytes(out, 7, n as usize) };
    n
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    std::thread::sleep(Duration::from_micros(micros as u64));
    micros
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    // SAFETY: `out` is writable.
    unsafe { *out = 2_440_587.5 + ms as f64 / 86_400_000.0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_last_error(_vfs: *mut ffi::sqlite3_vfs, _n: c_int, _out: *mut c_char) -> c_int {
    0
}

/// Makes this VFS SQLite's default, once per process.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        *disk() = Some(Disk::default());
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 1,
            szOsFile: std::mem::size_of::<Handle>() as c_int,
            mxPathname: 512,
            pNext: std::ptr::null_mut(),
            zName: c"oncely-sim".as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_last_error),
            xCurrentTimeInt64: None,
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        // SAFETY: the VFS lives for the rest of the process.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 1) };
        assert_eq!(rc, ffi::SQLITE_OK, "cannot register the simulator's VFS");
    });
}

/// Kills the node's process: its open handles fail from now on (the caller then drops them).
pub fn crash(node: &str) {
    if let Some(disk) = disk().as_mut() {
        *disk.generation.entry(node.to_owned()).or_default() += 1;
    }
}

/// Waits (real time, briefly) until every handle of the node's dead process is closed, then
/// brings the node back as after a reboot: the wal-index is gone, and with `power_lost`, so is
/// every byte written since its file's last sync. Says how many files lost data.
pub fn restart(node: &str, power_lost: bool) -> usize {
    for waited in 0.. {
        let open = disk().as_ref().and_then(|d| d.open.get(node).copied()).unwrap_or(0);
        if open == 0 {
            break;
        }
        assert!(waited < 10_000, "{node}: {open} SQLite handles of a dead process stayed open");
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut guard = disk();
    let disk = guard.as_mut().expect("VFS registered");
    let prefix = format!("{node}/");
    let mut lost = 0;
    for (_, f) in disk.files.iter_mut().filter(|(name, _)| name.starts_with(&prefix)) {
        f.shm.clear();
        f.shm_shared = [0; 8];
        f.shm_exclusive = [None; 8];
        (f.shared, f.reserved, f.pending, f.exclusive) = (0, None, None, None);
        if power_lost && f.dirty {
            f.data.clone_from(&f.durable);
            f.dirty = false;
            lost += 1;
        }
    }
    lost
}

/// The operating system writes the node's dirty pages back on its own (as Linux does within
/// about 30 s): what was written so far survives a later power cut, synced or not.
pub fn write_back(node: &str) {
    if let Some(disk) = disk().as_mut() {
        let prefix = format!("{node}/");
        for (_, f) in disk.files.iter_mut().filter(|(name, f)| f.dirty && name.starts_with(&prefix)) {
            f.durable.clone_from(&f.data);
            f.dirty = false;
        }
    }
}

/// How many syncs SQLite asked for on the node's files so far.
pub fn syncs(node: &str) -> u64 {
    let prefix = format!("{node}/");
    disk().as_ref().map_or(0, |d| {
        d.files.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(_, f)| f.syncs).sum()
    })
}

/// Forgets every file of the node (at the end of a run, once its handles are closed).
pub fn remove(node: &str) {
    restart(node, false);
    if let Some(disk) = disk().as_mut() {
        let prefix = format!("{node}/");
        disk.files.retain(|name, _| !name.starts_with(&prefix));
        disk.generation.remove(node);
        disk.open.remove(node);
    }
}
