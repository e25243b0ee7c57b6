//! Durability per operation on SQLite at `synchronous = FULL`, proven on the power-loss VFS:
//! what a power cut may take back (a claim, a lease — as if it ran out), what it never takes back
//! (a completion, an enqueued message, an at-most-once mark), what each message costs in fsyncs,
//! and that a fencing token is never handed out twice, even after a cut took back the commits
//! that handed it out. See docs/semantics.md, "Durability per operation".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use oncely::{
    Begin, Inbox, InboxConfig, Mode, NewMessage, Outbox, OutboxConfig, Request, SqliteConfig, SqliteStore,
    Synchronous,
};
use oncely_sim::vfs;

/// A fresh node (a directory of the in-memory disk) for each test, and the lock that runs the
/// tests one at a time: a simulated reboot is seen by every store of the process.
fn node() -> (String, MutexGuard<'static, ()>) {
    static N: AtomicU64 = AtomicU64::new(0);
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    vfs::register();
    (format!("/oncely-power/{}", N.fetch_add(1, Ordering::Relaxed)), guard)
}

fn open(node: &str) -> SqliteStore {
    let config =
        SqliteConfig { synchronous: Synchronous::Full, verify_on_open: false, ..SqliteConfig::default() };
    SqliteStore::open(format!("{node}/store.db"), config).unwrap()
}

/// The machine loses power: the process dies with every handle, the disk keeps only what was
/// synced, and the machine boots again.
fn power_cut(node: &str, handles: impl FnOnce()) {
    vfs::crash(node);
    handles(); // the dead process's store handles close
    assert!(vfs::restart(node, true) > 0, "the cut took nothing back: nothing was written unsynced");
    oncely::store::simulate_reboot();
}

/// The process dies, the machine does not.
fn process_crash(node: &str, handles: impl FnOnce()) {
    vfs::crash(node);
    handles();
    vfs::restart(node, false);
}

fn inbox(store: &SqliteStore, mode: Mode) -> Inbox<SqliteStore> {
    Inbox::open(store.clone(), InboxConfig::new("power").mode(mode).recent_capacity(0)).unwrap()
}

fn claim(inbox: &Inbox<SqliteStore>, id: &str) -> oncely::Ticket<SqliteStore> {
    match pollster::block_on(inbox.begin(Request::new(id))).unwrap() {
        Begin::Claimed(t) => t,
        other => panic!("{id}: expected a claim, got {other:?}"),
    }
}

fn is_duplicate(inbox: &Inbox<SqliteStore>, id: &str) -> bool {
    matches!(pollster::block_on(inbox.begin(Request::new(id))).unwrap(), Begin::Duplicate(_))
}

#[test]
fn an_exactly_once_message_costs_one_fsync() {
    for mode in [Mode::ExactlyOnce, Mode::AtLeastOnce] {
        let (node, _one) = node();
        let store = open(&node);
        let inbox = inbox(&store, mode);
        pollster::block_on(claim(&inbox, "warm-up").finish(b"ok".to_vec())).unwrap(); // reserves tokens
        let before = vfs::syncs(&node);
        let n = 50;
        for i in 0..n {
            let ticket = claim(&inbox, &format!("m{i}"));
            pollster::block_on(ticket.finish(b"ok".to_vec())).unwrap();
        }
        let syncs = vfs::syncs(&node) - before;
        assert_eq!(syncs, n, "{mode:?}: {n} claims and completions took {syncs} fsyncs (one per completion)");
    }
}

#[test]
fn an_at_most_once_mark_costs_its_fsync_and_survives_a_cut() {
    let (node, _one) = node();
    let store = open(&node);
    let inbox = inbox(&store, Mode::AtMostOnce);
    pollster::block_on(claim(&inbox, "warm-up").finish(Vec::new())).unwrap();
    let before = vfs::syncs(&node);
    let _held = claim(&inbox, "charge"); // the mark; the effect would run now
    assert_eq!(vfs::syncs(&node) - before, 1, "an at-most-once mark is synced before its effect runs");
    // Something unsynced for the cut to take back (an exactly-once claim of another inbox).
    let other = self::inbox(&store, Mode::ExactlyOnce);
    let _other = claim(&other, "other");
    power_cut(&node, || drop((inbox, other, _held, _other, store)));
    let store = open(&node);
    let inbox = self::inbox(&store, Mode::AtMostOnce);
    assert!(is_duplicate(&inbox, "charge"), "the at-most-once mark was lost: the effect could run twice");
}

#[test]
fn a_cut_takes_back_claims_never_completions() {
    let (node, _one) = node();
    let store = open(&node);
    let inbox = inbox(&store, Mode::ExactlyOnce);
    pollster::block_on(claim(&inbox, "done").finish(b"42".to_vec())).unwrap();
    let _running = claim(&inbox, "running");
    power_cut(&node, || drop((inbox, _running, store)));
    let store = open(&node);
    let inbox = self::inbox(&store, Mode::ExactlyOnce);
    assert!(is_duplicate(&inbox, "done"), "a completion was lost in the cut");
    // The claim went with the machine that held it: as if its lease had run out.
    let again = claim(&inbox, "running");
    pollster::block_on(again.finish(b"ok".to_vec())).unwrap();
}

#[test]
fn tokens_never_repeat_across_a_cut() {
    let (node, _one) = node();
    let store = open(&node);
    let inbox = inbox(&store, Mode::ExactlyOnce);
    // Tokens are reserved on disk in blocks of 4,096: the first claim reserves 1..=4,097, the
    // 4,098th moves the reservation — and the cut comes right after it, before any checkpoint
    // could have synced that move by chance.
    let before: Vec<u64> = (0..4_098).map(|i| claim(&inbox, &format!("a{i}")).token()).collect();
    let highest = *before.iter().max().unwrap();
    power_cut(&node, || drop((inbox, store)));
    let store = open(&node);
    let inbox = self::inbox(&store, Mode::ExactlyOnce);
    for i in 0..100 {
        let t = claim(&inbox, &format!("b{i}")).token();
        assert!(t > highest, "token {t} handed out after the cut, {highest} before it");
    }
}

#[test]
fn tokens_go_on_consecutively_after_a_process_crash() {
    let (node, _one) = node();
    let store = open(&node);
    let inbox = inbox(&store, Mode::ExactlyOnce);
    let last = (0..10).map(|i| claim(&inbox, &format!("a{i}")).token()).max().unwrap();
    process_crash(&node, || drop((inbox, store)));
    let store = open(&node);
    let inbox = self::inbox(&store, Mode::ExactlyOnce);
    assert_eq!(claim(&inbox, "b").token(), last + 1, "within one boot nothing is lost: no numbers skipped");
}

#[test]
fn outbox_leases_end_with_the_machine_messages_do_not() {
    for mode in [Mode::AtLeastOnce, Mode::ExactlyOnce, Mode::AtMostOnce] {
        let (node, _one) = node();
        let store = open(&node);
        let outbox = Outbox::open(store.clone(), OutboxConfig::new("q").mode(mode)).unwrap();
        // The store's first token reserves a block of them, with an fsync of its own.
        pollster::block_on(outbox.enqueue(NewMessage::new(b"p".to_vec()).id("warm-up"))).unwrap();
        for d in pollster::block_on(outbox.lease(1)).unwrap() {
            pollster::block_on(d.ack()).unwrap();
        }
        for id in ["leased", "waiting"] {
            pollster::block_on(outbox.enqueue(NewMessage::new(b"p".to_vec()).id(id))).unwrap();
        }
        let before = vfs::syncs(&node);
        let leased = pollster::block_on(outbox.lease(1)).unwrap();
        assert_eq!(leased.len(), 1);
        let lease_syncs = vfs::syncs(&node) - before;
        let want = if mode == Mode::AtMostOnce { 1 } else { 0 };
        assert_eq!(lease_syncs, want, "{mode:?}: a lease took {lease_syncs} fsyncs");
        power_cut(&node, || drop((outbox, leased, store)));
        let store = open(&node);
        let outbox = Outbox::open(store.clone(), OutboxConfig::new("q").mode(mode)).unwrap();
        let mut ids: Vec<String> =
            pollster::block_on(outbox.lease(10)).unwrap().iter().map(|d| d.id().to_owned()).collect();
        ids.sort();
        if mode == Mode::AtMostOnce {
            // Its mark survived: never delivered again.
            assert_eq!(ids, ["waiting"], "{mode:?}");
        } else {
            // Both enqueues survived; the lease went with the machine.
            assert_eq!(ids, ["leased", "waiting"], "{mode:?}");
        }
    }
}
