//! One run: a sender (outbox and its worker) and a receiver (inbox and the effect) on two nodes,
//! a network between them, and one scheduler that owns the virtual clock and decides, from the
//! seed alone, what happens next. Every step is one call into the real core, run to completion
//! before the next one starts, so a seed fixes every interleaving.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use oncely::backoff::{Backoff, Jitter, RetryPolicy};
use oncely::clock::{SharedClock, Timestamp};
use oncely::inbox::{Begin, Failure, Inbox, InboxConfig, Request, Ticket};
use oncely::outbox::{Delivery, NewMessage, Outbox, OutboxConfig};
use oncely::{Clock, ManualClock, MemoryStore, Mode, SqliteConfig, SqliteStore, Synchronous};

use crate::chaos::{Chaos, Fault, Faulty, new_chaos};
use crate::oracle::{Oracle, Violation};
use crate::rng::SimRng;
use crate::{SimMode, StoreKind};

/// Where a node's clock starts (ms since the epoch).
const EPOCH: i64 = 1_700_000_000_000;
/// Faults are injected until then (virtual ms); afterwards the run heals and drains.
const FAULTY_UNTIL: u64 = 1_500;
/// A run that has not drained by then is judged as it stands.
const GIVE_UP_AT: u64 = 30_000;
const OUTBOX_LEASE: u64 = 120;
const INBOX_LEASE: u64 = 100;
const REPLY_TIMEOUT: u64 = 80;
const POLL_EVERY: u64 = 20;
const CHAOS_EVERY: u64 = 25;

/// What one run gives back.
pub struct RunReport {
    /// Faults injected, by [`Fault`] index.
    pub injected: [u64; 13],
    /// Broken guarantees.
    pub violations: Vec<Violation>,
    /// Whether a node lost unsynced data in a power cut.
    pub lost_power: bool,
    /// Scheduler steps taken.
    pub steps: u64,
    /// The schedule, when asked for.
    pub trace: Vec<String>,
}

/// Runs one seed.
pub fn run(seed: u64, mode: SimMode, store: StoreKind, trace: bool) -> RunReport {
    match store {
        StoreKind::Memory => {
            let (sender, receiver) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
            World::new(
                seed,
                mode,
                store,
                trace,
                Box::new(move || Ok(sender.clone())),
                Box::new(move || Ok(receiver.clone())),
            )
            .run()
        }
        StoreKind::SqliteFull | StoreKind::SqliteNormal => {
            crate::vfs::register();
            let sync = if store == StoreKind::SqliteFull { Synchronous::Full } else { Synchronous::Normal };
            static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root = format!("/oncely-sim/run-{run}");
            let opener = |node: &str| -> Opener<SqliteStore> {
                let path = format!("{root}/{node}/store.db");
                Box::new(move || {
                    // The open-time page check only costs time here: every file is in memory.
                    let config =
                        SqliteConfig { synchronous: sync, verify_on_open: false, ..SqliteConfig::default() };
                    SqliteStore::open(&path, config)
                })
            };
            let world = World::new(seed, mode, store, trace, opener("sender"), opener("receiver"));
            let (sender_node, receiver_node) = (format!("{root}/sender"), format!("{root}/receiver"));
            let report = world.with_disks(sender_node.clone(), receiver_node.clone()).run();
            crate::vfs::remove(&sender_node);
            crate::vfs::remove(&receiver_node);
            report
        }
    }
}

type Opener<S> = Box<dyn Fn() -> oncely::Result<S>>;

/// A store the simulator can run the receiver's transactional inbox on (SQLite), or not.
pub trait SimStore: oncely::InboxStore + oncely::OutboxStore + Clone {
    /// Runs the transactional inbox: the ledger row, the mark and the result in one commit.
    fn process_transactional(
        inbox: &Inbox<Faulty<Self>>,
        id: &str,
        payload: &[u8],
        fail: bool,
    ) -> Result<(), String>;
    /// The ledger rows per id, read from the receiver's store.
    fn ledger(inbox: &Inbox<Faulty<Self>>) -> BTreeMap<String, u64>;
}

impl SimStore for Arc<MemoryStore> {
    fn process_transactional(_: &Inbox<Faulty<Self>>, _: &str, _: &[u8], _: bool) -> Result<(), String> {
        Err("the memory store has no transactions".into())
    }

    fn ledger(_: &Inbox<Faulty<Self>>) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

impl SimStore for SqliteStore {
    fn process_transactional(
        inbox: &Inbox<Faulty<Self>>,
        id: &str,
        payload: &[u8],
        fail: bool,
    ) -> Result<(), String> {
        let row = id.to_owned();
        let call = inbox.process_in_transaction(Request::new(id).payload(payload), move |tx| {
            if fail {
                return Err(Failure::retryable("the handler failed".to_owned()));
            }
            tx.execute("CREATE TABLE IF NOT EXISTS sim_ledger (id TEXT NOT NULL)", &[])
                .and_then(|_| {
                    tx.execute("INSERT INTO sim_ledger (id) VALUES (?1)", &[oncely::sql::SqlValue::Text(row)])
                })
                .map_err(|e| Failure::retryable(e.to_string()))?;
            Ok(b"done".to_vec())
        });
        pollster::block_on(call).map(|_| ()).map_err(|e| e.to_string())
    }

    fn ledger(inbox: &Inbox<Faulty<Self>>) -> BTreeMap<String, u64> {
        use oncely::sql::TransactionalStore;
        let read = inbox.store().inner().in_transaction(|tx| {
            tx.execute("CREATE TABLE IF NOT EXISTS sim_ledger (id TEXT NOT NULL)", &[])?;
            tx.execute("SELECT id, count(*) FROM sim_ledger GROUP BY id", &[])
        });
        let rows = pollster::block_on(read).expect("the ledger reads");
        rows.into_iter()
            .filter_map(|row| match (&row[0], &row[1]) {
                (oncely::sql::SqlValue::Text(id), oncely::sql::SqlValue::Integer(n)) => {
                    Some((id.clone(), *n as u64))
                }
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Sender,
    Receiver,
}

#[derive(Debug)]
enum Event {
    Enqueue(usize),
    Poll,
    Timeout { id: String, token: u64, life: u64 },
    Request { id: String, token: u64 },
    Reply { id: String, token: u64, ok: bool },
    Handle { ticket: u64, life: u64 },
    Finish { ticket: u64, life: u64 },
    Chaos,
    Restart(Node),
}

/// What a node keeps only in memory (gone with a crash), and what it keeps on disk.
struct Host<S> {
    open: Opener<S>,
    disk: Option<String>,
    clock: ManualClock,
    skew: i64,
    /// Bumped by each crash: events of an earlier life are void.
    life: u64,
    up: bool,
    /// Set by a crash: the node's disk is brought back (after a power cut: without its
    /// unsynced writes) when it restarts, once its dead process's handles are all gone.
    reboot: Option<bool>,
}

struct Claim<S: oncely::InboxStore> {
    ticket: Ticket<S>,
    /// The delivery's token, for the reply.
    request: u64,
}

struct World<S: SimStore> {
    mode: SimMode,
    store_kind: StoreKind,
    rng: SimRng,
    chaos: Chaos,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    steps: u64,
    ids: Vec<String>,
    sender: Host<S>,
    receiver: Host<S>,
    outbox: Option<Outbox<Faulty<S>>>,
    inbox: Option<Inbox<Faulty<S>>>,
    in_flight: BTreeMap<(String, u64), Delivery<Faulty<S>>>,
    claims: BTreeMap<u64, Claim<Faulty<S>>>,
    next_claim: u64,
    oracle: Oracle,
    drained_at: Option<u64>,
    lost_power: bool,
}

impl<S: SimStore> World<S> {
    fn new(
        seed: u64,
        mode: SimMode,
        store_kind: StoreKind,
        trace: bool,
        sender: Opener<S>,
        receiver: Opener<S>,
    ) -> Self {
        let mut rng = SimRng::new(seed, 0);
        let count = rng.range(3, 8) as usize;
        let host = |open| Host {
            open,
            disk: None,
            clock: ManualClock::new(Timestamp(EPOCH)),
            skew: 0,
            life: 0,
            up: false,
            reboot: None,
        };
        let power = store_kind != StoreKind::Memory;
        World {
            mode,
            store_kind,
            chaos: new_chaos(seed, trace, power),
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            steps: 0,
            ids: (0..count).map(|i| format!("m{i}")).collect(),
            sender: host(sender),
            receiver: host(receiver),
            outbox: None,
            inbox: None,
            in_flight: BTreeMap::new(),
            claims: BTreeMap::new(),
            next_claim: 0,
            oracle: Oracle::new(mode),
            drained_at: None,
            lost_power: false,
            rng,
        }
    }

    fn with_disks(mut self, sender: String, receiver: String) -> Self {
        self.sender.disk = Some(sender);
        self.receiver.disk = Some(receiver);
        self
    }

    fn at(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), event);
    }

    fn note(&self, line: impl FnOnce() -> String) {
        self.chaos.lock().unwrap().note(line);
    }

    fn roll(&self, fault: Fault, what: &dyn std::fmt::Debug) -> bool {
        self.chaos.lock().unwrap().roll(fault, what)
    }

    fn host(&mut self, node: Node) -> &mut Host<S> {
        match node {
            Node::Sender => &mut self.sender,
            Node::Receiver => &mut self.receiver,
        }
    }

    /// Sets the node's clock to the virtual time plus its skew (before each of its steps).
    fn tick(&mut self, node: Node) -> SharedClock {
        let now = self.now as i64;
        let host = self.host(node);
        host.clock.set(Timestamp(EPOCH + now + host.skew));
        Arc::new(host.clock.clone())
    }

    fn clock_of(&self, node: Node) -> Timestamp {
        match node {
            Node::Sender => self.sender.clock.now(),
            Node::Receiver => self.receiver.clock.now(),
        }
    }

    fn run(mut self) -> RunReport {
        self.start(Node::Sender);
        self.start(Node::Receiver);
        for i in 0..self.ids.len() {
            let at = self.rng.range(0, 300);
            self.at(at, Event::Enqueue(i));
        }
        self.at(0, Event::Poll);
        self.at(CHAOS_EVERY, Event::Chaos);
        while let Some(((time, _), event)) = self.events.pop_first() {
            self.now = time;
            if self.now > GIVE_UP_AT || self.drained_at.is_some_and(|t| self.now > t + 2_000) {
                break;
            }
            if self.now > FAULTY_UNTIL {
                self.chaos.lock().unwrap().enabled = false;
            }
            self.chaos.lock().unwrap().now = self.now;
            self.steps += 1;
            self.step(event);
        }
        self.finish()
    }

    fn start(&mut self, node: Node) {
        if let (Some(power), Some(disk)) = (self.host(node).reboot.take(), self.host(node).disk.clone()) {
            let lost = crate::vfs::restart(&disk, power);
            if power {
                // The machine rebooted: what the store tells a new boot by.
                oncely::store::simulate_reboot();
            }
            if power && lost > 0 {
                self.lost_power = true;
                self.note(|| format!("{node:?}: {lost} files lost their unsynced writes"));
            }
        }
        let clock = self.tick(node);
        let store = match (self.host(node).open)() {
            Ok(store) => Faulty::new(store, self.chaos.clone()),
            Err(e) => panic!("cannot open the {node:?}'s store: {e}"),
        };
        let mode = self.mode.mode();
        match node {
            Node::Sender => {
                let retry = RetryPolicy {
                    max_attempts: 1_000_000,
                    deadline: None,
                    backoff: Backoff::Fixed { delay: Duration::from_millis(15) },
                    jitter: Jitter::Equal,
                };
                let config = OutboxConfig::new("sim")
                    .mode(mode)
                    .retry(retry)
                    .lease(Duration::from_millis(OUTBOX_LEASE));
                self.outbox = Some(Outbox::with_clock(store, config, clock).expect("outbox opens"));
            }
            Node::Receiver => {
                let config = InboxConfig::new("sim").mode(mode).lease(Duration::from_millis(INBOX_LEASE));
                self.inbox = Some(Inbox::with_clock(store, config, clock).expect("inbox opens"));
            }
        }
        let host = self.host(node);
        host.up = true;
        host.life += 1;
    }

    /// The node's process dies at this step; with `power`, so does the machine.
    fn crash(&mut self, node: Node, power: bool) {
        if !self.host(node).up {
            return;
        }
        self.note(|| format!("{node:?} {}", if power { "LOSES POWER" } else { "CRASHES" }));
        if power {
            self.oracle.power_cut(node == Node::Sender);
        }
        let disk = self.host(node).disk.clone();
        if let Some(disk) = &disk {
            crate::vfs::crash(disk);
        }
        match node {
            Node::Sender => {
                self.in_flight.clear();
                self.outbox = None;
            }
            Node::Receiver => {
                self.claims.clear();
                self.inbox = None;
            }
        }
        let host = self.host(node);
        host.reboot = Some(power);
        host.up = false;
        host.life += 1;
        let down = self.rng.range(5, 60);
        self.at(down, Event::Restart(node));
    }

    /// "A crash at any step": after a call into the core, the node may die before it acts on
    /// the answer. Says whether it did.
    fn crashed_after(&mut self, node: Node, what: &str) -> bool {
        if self.roll(Fault::Crash, &what) {
            self.crash(node, false);
            true
        } else {
            false
        }
    }

    fn send(&mut self, event: Event, to: Node) {
        let lost = match to {
            Node::Receiver => Fault::RequestLost,
            Node::Sender => Fault::ReplyLost,
        };
        if self.roll(lost, &event) {
            return;
        }
        let copies = if self.roll(Fault::Duplicated, &event) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = self.rng.range(1, 5);
            if self.roll(Fault::Reordered, &event) {
                delay += self.rng.range(5, 60);
            }
            if self.roll(Fault::DelayPastLease, &event) {
                delay += OUTBOX_LEASE.max(INBOX_LEASE) + self.rng.range(10, 300);
            }
            self.at(delay, clone_event(&event));
        }
    }

    fn step(&mut self, event: Event) {
        self.note(|| format!("{event:?}"));
        match event {
            Event::Enqueue(i) => self.enqueue(i),
            Event::Poll => self.poll(),
            Event::Timeout { id, token, life } => {
                if life == self.sender.life {
                    self.settle(id, token, false, "no reply in time");
                }
            }
            Event::Request { id, token } => self.receive(id, token),
            Event::Reply { id, token, ok } => {
                if self.sender.up {
                    self.settle(id, token, ok, "the receiver failed");
                }
            }
            Event::Handle { ticket, life } => {
                if life == self.receiver.life {
                    self.handle(ticket);
                }
            }
            Event::Finish { ticket, life } => {
                if life == self.receiver.life {
                    self.complete(ticket);
                }
            }
            Event::Chaos => self.chaos_tick(),
            Event::Restart(node) => {
                self.start(node);
                if node == Node::Sender {
                    self.at(0, Event::Poll);
                }
            }
        }
    }

    fn chaos_tick(&mut self) {
        if self.now > FAULTY_UNTIL {
            return;
        }
        for node in [Node::Sender, Node::Receiver] {
            if self.roll(Fault::Crash, &node) {
                self.crash(node, false);
            }
            // (Not while the power is off: the machine's memory is already gone.)
            let powered = self.host(node).reboot != Some(true);
            let disk = self.host(node).disk.clone().filter(|_| powered);
            if let Some(disk) = disk.filter(|_| self.rng.chance(0.2)) {
                crate::vfs::write_back(&disk);
                self.note(|| format!("{node:?}: the OS writes its dirty pages back"));
            }
            if self.store_kind != StoreKind::Memory && self.roll(Fault::PowerCut, &node) {
                self.crash(node, true);
            }
            if self.roll(Fault::ClockForward, &node) {
                let by = self.rng.range(50, 1_000) as i64;
                self.host(node).skew += by;
            }
            if self.roll(Fault::ClockBackward, &node) {
                let by = self.rng.range(50, 1_000) as i64;
                self.host(node).skew -= by;
            }
        }
        self.at(CHAOS_EVERY, Event::Chaos);
    }

    fn enqueue(&mut self, i: usize) {
        if !self.sender.up {
            return self.at(10, Event::Enqueue(i));
        }
        self.tick(Node::Sender);
        let id = self.ids[i].clone();
        let outbox = self.outbox.clone().expect("sender up");
        let result = pollster::block_on(outbox.enqueue(NewMessage::new(format!("pay {i}")).id(id.clone())));
        if self.crashed_after(Node::Sender, "after enqueue") {
            return;
        }
        match result {
            Ok(_) => self.oracle.enqueued(&id),
            Err(e) => self.note(|| format!("enqueue {id} failed: {e}")),
        }
    }

    fn poll(&mut self) {
        if !self.sender.up {
            return;
        }
        self.tick(Node::Sender);
        let outbox = self.outbox.clone().expect("sender up");
        let max = self.rng.range(1, 3) as usize;
        let leased = pollster::block_on(outbox.lease(max));
        // The oracle sees what the store granted even if the worker dies before acting on it.
        let now = self.clock_of(Node::Sender);
        for d in leased.iter().flatten() {
            let (id, token) = (d.id().to_owned(), d.token());
            self.note(|| format!("leased {id} token {token}"));
            self.oracle.leased(&id, token, now, now.after(Duration::from_millis(OUTBOX_LEASE)));
        }
        if self.crashed_after(Node::Sender, "after lease") {
            return;
        }
        match leased {
            Ok(deliveries) => {
                if deliveries.is_empty()
                    && self.now > FAULTY_UNTIL
                    && self.in_flight.is_empty()
                    && self.drained_at.is_none()
                {
                    let stats = pollster::block_on(outbox.stats()).expect("stats read");
                    if stats.queue.depth() == 0 {
                        self.drained_at = Some(self.now);
                        self.note(|| "the outbox is drained".into());
                    }
                }
                for d in deliveries {
                    let (id, token) = (d.id().to_owned(), d.token());
                    self.send(Event::Request { id: id.clone(), token }, Node::Receiver);
                    let life = self.sender.life;
                    self.at(REPLY_TIMEOUT, Event::Timeout { id: id.clone(), token, life });
                    self.in_flight.insert((id, token), d);
                }
            }
            Err(e) => self.note(|| format!("lease failed: {e}")),
        }
        if self.drained_at.is_none() {
            let next = POLL_EVERY + self.rng.range(0, 10);
            self.at(next, Event::Poll);
        }
    }

    /// The worker settles a delivery: ack on a good reply, retry otherwise.
    fn settle(&mut self, id: String, token: u64, ok: bool, why: &str) {
        let Some(delivery) = self.in_flight.remove(&(id.clone(), token)) else { return };
        self.tick(Node::Sender);
        let result = if ok {
            pollster::block_on(delivery.ack()).map(|_| "acked".to_owned())
        } else {
            pollster::block_on(delivery.retry(None, why)).map(|s| format!("{s:?}"))
        };
        let now = self.clock_of(Node::Sender);
        self.note(|| format!("settle {id} token {token}: {result:?}"));
        self.oracle.settled(&id, token, ok, result.is_ok(), now);
        self.crashed_after(Node::Sender, "after settle");
    }

    fn reply(&mut self, id: String, token: u64, ok: bool) {
        self.send(Event::Reply { id, token, ok }, Node::Sender);
    }

    /// A request reaches the receiver.
    fn receive(&mut self, id: String, token: u64) {
        if !self.receiver.up {
            return;
        }
        self.tick(Node::Receiver);
        let inbox = self.inbox.clone().expect("receiver up");
        let payload = format!("pay {}", &id[1..]).into_bytes();
        if self.mode == SimMode::Transactional {
            let fail = self.roll(Fault::HandlerError, &id);
            let result = S::process_transactional(&inbox, &id, &payload, fail);
            if self.crashed_after(Node::Receiver, "after the transactional handler") {
                return;
            }
            self.note(|| format!("transactional {id}: {result:?}"));
            return self.reply(id, token, result.is_ok());
        }
        let begun = pollster::block_on(inbox.begin(Request::new(&id).payload(&payload)));
        let now = self.clock_of(Node::Receiver);
        if let Ok(Begin::Claimed(ticket)) = &begun {
            self.note(|| format!("claimed {id} token {}", ticket.token()));
            self.oracle.claimed(&id, ticket.token(), now, now.after(Duration::from_millis(INBOX_LEASE)));
        }
        if self.crashed_after(Node::Receiver, "after begin") {
            return;
        }
        match begun {
            Ok(Begin::Claimed(ticket)) => {
                self.next_claim += 1;
                let key = self.next_claim;
                self.claims.insert(key, Claim { ticket, request: token });
                let mut takes = self.rng.range(1, 5);
                if self.roll(Fault::HandlerStall, &id) {
                    takes += INBOX_LEASE + self.rng.range(10, 300);
                }
                let life = self.receiver.life;
                self.at(takes, Event::Handle { ticket: key, life });
            }
            Ok(Begin::Duplicate(_)) => self.reply(id, token, true),
            Ok(other) => {
                self.note(|| format!("begin {id}: {other:?}"));
                self.reply(id, token, false)
            }
            Err(e) => {
                self.note(|| format!("begin {id} failed: {e}"));
                self.reply(id, token, false)
            }
        }
    }

    /// The handler runs: the effect happens (or the handler fails and the claim is released).
    fn handle(&mut self, key: u64) {
        let Some(claim) = self.claims.get(&key) else { return };
        let (id, token, request) = (claim.ticket.id().to_owned(), claim.ticket.token(), claim.request);
        if self.roll(Fault::HandlerError, &id) {
            self.tick(Node::Receiver);
            let claim = self.claims.remove(&key).expect("present");
            let released = pollster::block_on(claim.ticket.release());
            let now = self.clock_of(Node::Receiver);
            self.oracle.inbox_settled(&id, token, released.is_ok(), false, now);
            if !self.crashed_after(Node::Receiver, "after release") {
                self.reply(id, request, false);
            }
            return;
        }
        self.oracle.effect(&id, token);
        self.note(|| format!("EFFECT {id} (claim token {token})"));
        if self.crashed_after(Node::Receiver, "after the effect") {
            return;
        }
        let life = self.receiver.life;
        let after = self.rng.range(0, 2);
        self.at(after, Event::Finish { ticket: key, life });
    }

    fn complete(&mut self, key: u64) {
        let Some(claim) = self.claims.remove(&key) else { return };
        let (id, token, request) = (claim.ticket.id().to_owned(), claim.ticket.token(), claim.request);
        self.tick(Node::Receiver);
        let finished = pollster::block_on(claim.ticket.finish(b"done".to_vec()));
        let now = self.clock_of(Node::Receiver);
        self.note(|| format!("finish {id} token {token}: {finished:?}"));
        self.oracle.inbox_settled(&id, token, finished.is_ok(), true, now);
        if !self.crashed_after(Node::Receiver, "after finish") {
            self.reply(id, request, finished.is_ok());
        }
    }

    /// Heals every node and judges the run.
    fn finish(mut self) -> RunReport {
        self.chaos.lock().unwrap().enabled = false;
        for node in [Node::Sender, Node::Receiver] {
            if !self.host(node).up {
                self.start(node);
            }
        }
        let drained = self.drained_at.is_some();
        let ledger = match self.mode {
            SimMode::Transactional => Some(S::ledger(self.inbox.as_ref().expect("receiver up"))),
            _ => None,
        };
        let outbox = self.outbox.clone().expect("sender up");
        let mut remaining = BTreeSet::new();
        for id in &self.ids {
            if let Ok(Some(_)) = pollster::block_on(outbox.get(id)) {
                remaining.insert(id.clone());
            }
        }
        let dead = pollster::block_on(outbox.dead_letters(None, 1_000)).map(|d| d.len()).unwrap_or(0);
        self.oracle.judge(drained, ledger, &remaining, dead);
        // Close the stores before their files are forgotten.
        self.in_flight.clear();
        self.claims.clear();
        self.outbox = None;
        self.inbox = None;
        let chaos = self.chaos.lock().unwrap();
        RunReport {
            injected: chaos.injected,
            violations: self.oracle.violations,
            lost_power: self.lost_power,
            steps: self.steps,
            trace: chaos.trace.clone().unwrap_or_default(),
        }
    }
}

fn clone_event(event: &Event) -> Event {
    match event {
        Event::Request { id, token } => Event::Request { id: id.clone(), token: *token },
        Event::Reply { id, token, ok } => Event::Reply { id: id.clone(), token: *token, ok: *ok },
        other => unreachable!("only packets are sent: {other:?}"),
    }
}

impl SimMode {
    /// The mode the outbox and the inbox are opened with.
    pub fn mode(self) -> Mode {
        match self {
            SimMode::AtMostOnce => Mode::AtMostOnce,
            SimMode::AtLeastOnce => Mode::AtLeastOnce,
            SimMode::ExactlyOnce | SimMode::Transactional => Mode::ExactlyOnce,
        }
    }
}
