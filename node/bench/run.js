'use strict'
// The Node peer benchmark (docs/benchmarks.md, "Node"). Run it through run.sh, which builds the
// release module, installs the peers and starts redis-server. Prints one table:
//
// (a) queue throughput: JOBS no-op jobs through oncely's Outbox + Worker on an SQLite file
//     (FULL + WAL, the default) and through BullMQ on the local redis-server, same handler
//     (`async () => {}`), same concurrency; the timed part is processing (workers started until
//     the last job completed); enqueueing is timed too and shown, without a target.
// (b) claim + complete of fresh ids (exactly-once, 64-byte payload fingerprinted), oncely's
//     SQLite inbox (begin + ticket.finish) against a pure-JS implementation of the same two
//     transactions on better-sqlite3 12 (FULL + WAL), SECONDS per cell; oncely also with 64
//     calls in flight (better-sqlite3 is synchronous: one call at a time per thread).
//
//   node run.js --redis-port PORT [--jobs 50000] [--concurrency 16,64] [--seconds 2] [--repeat 3]
//
// (a) runs once per concurrency in the list (both sides at the same one). Every cell runs
// `repeat` times, the sides interleaved (oncely, peer, oncely, peer, ...), and the table shows
// each cell's median, with the spread (min-max) beside it: this VM is shared and one cell can
// be slowed by another process's I/O.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')

const args = process.argv.slice(2)
function arg(name, fallback) {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : fallback
}
const REDIS_PORT = Number(arg('redis-port', 6399))
const REDIS_AOF_PORT = Number(arg('redis-aof-port', REDIS_PORT + 1))
const JOBS = Number(arg('jobs', 50_000))
const CONCURRENCIES = String(arg('concurrency', '16,64')).split(',').map(Number)
const SECONDS = Number(arg('seconds', 2))
const REPEAT = Number(arg('repeat', 3))
const IN_FLIGHT = 64

const oncely = require('..')
const { Outbox, Worker, Inbox, Store } = oncely
const { Queue, Worker: BullWorker } = require('bullmq')
const Database = require('better-sqlite3')

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-node-bench-'))
const payload64 = Buffer.alloc(64, 'p')

async function oncelyQueue(concurrency) {
  const outbox = new Outbox(path.join(tmp(), 'queue.db'), 'bench')
  let t0 = performance.now()
  for (let i = 0; i < JOBS; i += 1000) {
    const batch = []
    for (let j = i; j < Math.min(JOBS, i + 1000); j++) batch.push({ payload: 'x', id: `job-${j}` })
    await outbox.enqueueMany(batch)
  }
  const enqueueMs = performance.now() - t0
  let handled = 0
  const worker = new Worker(outbox, async () => { handled++ }, { concurrency, pollInterval: 0.005 })
  t0 = performance.now()
  const summary = await worker.drain()
  const processMs = performance.now() - t0
  const s = await outbox.stats()
  if (summary.succeeded !== JOBS || handled !== JOBS || s.delivered !== JOBS || s.ready + s.leased + s.scheduled !== 0) {
    throw new Error(`oncely processed ${summary.succeeded}/${JOBS}`)
  }
  return { enqueueMs, processMs }
}

async function bullmqQueue(concurrency, port = REDIS_PORT) {
  const connection = { host: '127.0.0.1', port }
  const name = `bench-${process.pid}-${Date.now()}`
  const queue = new Queue(name, { connection })
  await queue.obliterate({ force: true }).catch(() => {})
  let t0 = performance.now()
  for (let i = 0; i < JOBS; i += 1000) {
    const batch = []
    for (let j = i; j < Math.min(JOBS, i + 1000); j++) {
      batch.push({ name: 'job', data: 'x', opts: { jobId: `job-${j}`, removeOnComplete: true, removeOnFail: true } })
    }
    await queue.addBulk(batch)
  }
  const enqueueMs = performance.now() - t0
  let completed = 0
  let resolveDone
  const done = new Promise((r) => { resolveDone = r })
  t0 = performance.now()
  const worker = new BullWorker(name, async () => {}, { connection, concurrency })
  worker.on('completed', () => {
    if (++completed === JOBS) resolveDone()
  })
  worker.on('failed', (_, e) => { throw e })
  await done
  const processMs = performance.now() - t0
  await worker.close()
  const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'failed')
  await queue.obliterate({ force: true }).catch(() => {})
  await queue.close()
  if (Object.values(counts).some((n) => n !== 0)) throw new Error(`BullMQ left jobs: ${JSON.stringify(counts)}`)
  return { enqueueMs, processMs }
}

/** Runs `step(i)` (one claim + complete) for SECONDS with `inFlight` calls at once. */
async function timed(step, inFlight = 1) {
  let n = 0
  const end = performance.now() + SECONDS * 1000
  const t0 = performance.now()
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < end) await step(n++)
  }))
  const ms = performance.now() - t0
  return { calls: n, ms }
}

async function oncelyInbox(inFlight) {
  const inbox = new Inbox(path.join(tmp(), 'inbox.db'), 'bench', { mode: 'exactly_once', recentCapacity: 0 })
  const tag = crypto.randomUUID()
  return timed(async (i) => {
    const r = await inbox.begin(`${tag}-${i}`, payload64)
    if (r.outcome !== 'claimed') throw new Error(`unexpected ${r.outcome}`)
    await r.ticket.finish('done')
  }, inFlight)
}

// The pure-JS peer: the same two transactions (a fenced claim, then the fenced completion with
// the result), with the payload's SHA-256 fingerprint checked on a duplicate.
function jsInbox() {
  const db = new Database(path.join(tmp(), 'peer.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec(`CREATE TABLE inbox (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, token INTEGER NOT NULL, lease_until INTEGER,
    fingerprint BLOB, result BLOB, expires_at INTEGER NOT NULL)`)
  const get = db.prepare('SELECT state, token, lease_until, fingerprint FROM inbox WHERE id = ?')
  const insert = db.prepare(`INSERT INTO inbox (id, state, token, lease_until, fingerprint, expires_at)
    VALUES (?, 'in_progress', 1, ?, ?, ?)`)
  const complete = db.prepare(`UPDATE inbox SET state = 'succeeded', result = ?, lease_until = NULL
    WHERE id = ? AND token = ? AND state = 'in_progress'`)
  const claim = db.transaction((id, fingerprint, now) => {
    const row = get.get(id)
    if (row) {
      if (Buffer.compare(row.fingerprint, fingerprint) !== 0) return { outcome: 'conflict' }
      return { outcome: row.state === 'in_progress' ? 'in_progress' : 'duplicate' }
    }
    insert.run(id, now + 30_000, fingerprint, now + 86_400_000)
    return { outcome: 'claimed', token: 1 }
  })
  const finish = db.transaction((id, token, result) => {
    if (complete.run(result, id, token).changes !== 1) throw new Error('lease lost')
  })
  const tag = crypto.randomUUID()
  return timed(async (i) => {
    const id = `${tag}-${i}`
    const fp = crypto.createHash('sha256').update(payload64).digest()
    const r = claim(id, fp, Date.now())
    if (r.outcome !== 'claimed') throw new Error(`unexpected ${r.outcome}`)
    finish(id, r.token, Buffer.from('done'))
  })
}

function fmt(n, digits = 0) {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function main() {
  const lib = process.env.NAPI_RS_NATIVE_LIBRARY_PATH ?? '(the package default)'
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ')
  console.log(`oncely Node peer benchmark: ${os.cpus().length} CPUs, load ${load}, Node ${process.version}, native module ${path.basename(lib)}`)
  console.log(`(a) ${fmt(JOBS)} no-op jobs per cell, concurrency ${CONCURRENCIES.join(' and ')}; (b) ${SECONDS} s per cell, fresh ids, 64-byte payload`)
  console.log(`each cell ${REPEAT} times, interleaved; the median shown, min-max beside it`)
  const rows = []
  const ratios = []
  const perSec = (c) => c.calls / (c.ms / 1000)
  for (const c of CONCURRENCIES) {
    const a = []
    const b = []
    const f = []
    const ea = []
    const eb = []
    for (let r = 0; r < REPEAT; r++) {
      const qa = await oncelyQueue(c)
      const qb = await bullmqQueue(c)
      const qf = await bullmqQueue(c, REDIS_AOF_PORT)
      a.push(JOBS / (qa.processMs / 1000))
      b.push(JOBS / (qb.processMs / 1000))
      f.push(JOBS / (qf.processMs / 1000))
      ea.push(JOBS / (qa.enqueueMs / 1000))
      eb.push(JOBS / (qb.enqueueMs / 1000))
    }
    rows.push([`(a) oncely Outbox + Worker, SQLite FULL, concurrency ${c}`, a, 'jobs/s'])
    rows.push([`(a) BullMQ 6 + redis-server (no persistence), concurrency ${c}`, b, 'jobs/s'])
    rows.push([`(a) BullMQ 6 + redis-server (AOF, fsync every second), concurrency ${c}`, f, 'jobs/s'])
    ratios.push([`(a) oncely Outbox + Worker vs BullMQ, concurrency ${c}`, median(a) / median(b), 3])
    ratios.push([`(a) oncely Outbox + Worker vs BullMQ with AOF, concurrency ${c}`, median(a) / median(f), 3])
    if (c === CONCURRENCIES[0]) {
      rows.push(['(a) oncely enqueueMany x1000, SQLite FULL', ea, 'jobs/s'])
      rows.push(['(a) BullMQ addBulk x1000', eb, 'jobs/s'])
    }
  }
  const i1 = []
  const i64 = []
  const js = []
  for (let r = 0; r < REPEAT; r++) {
    i1.push(perSec(await oncelyInbox(1)))
    i64.push(perSec(await oncelyInbox(IN_FLIGHT)))
    js.push(perSec(await jsInbox()))
  }
  rows.push(['(b) oncely inbox SQLite FULL, begin + finish, 1 in flight', i1, 'calls/s'])
  rows.push([`(b) oncely inbox SQLite FULL, begin + finish, ${IN_FLIGHT} in flight`, i64, 'calls/s'])
  rows.push(['(b) pure JS on better-sqlite3 12 FULL, 2 txns (sync)', js, 'calls/s'])
  ratios.push(['(b) oncely inbox, 1 in flight vs better-sqlite3', median(i1) / median(js), 1.5])
  ratios.push([`(b) oncely inbox, ${IN_FLIGHT} in flight vs better-sqlite3`, median(i64) / median(js), null])

  console.log()
  console.log(`${'case'.padEnd(66)}${'median'.padStart(10)}  unit     µs/op   min-max`)
  for (const [name, xs, unit] of rows) {
    const m = median(xs)
    const spread = `${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))}`
    console.log(`${name.padEnd(66)}${fmt(m).padStart(10)}  ${unit.padEnd(8)}${fmt(1e6 / m, 1).padStart(6)}   ${spread}`)
  }
  console.log()
  console.log('ratios of the medians (throughput, measured in this run; target in brackets)')
  for (const [name, r, target] of ratios) {
    const goal = target === null ? '' : `  [>= ${target}x: ${r >= target ? 'met' : 'missed'}]`
    console.log(`  ${name.padEnd(70)}${(r.toFixed(2) + 'x').padStart(8)}${goal}`)
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
