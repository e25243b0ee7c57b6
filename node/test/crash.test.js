'use strict'
// SIGKILL a Node worker process at random moments on an SQLite file, restart it, drain; then
// count the effects. at_least_once: no message lost (duplicates allowed). at_most_once: no
// effect repeated (losses allowed). exactly_once (outbox + the receiver's transactional inbox):
// every message's effect exactly once — none lost, none repeated.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { Outbox, Store } = require('..')

const SCRIPT = path.join(__dirname, '..', 'fixtures', 'crash_worker.js')
const N = 6000
const KILLS = Number(process.env.ONCELY_CRASH_KILLS ?? 15)
const BUDGET_MS = 30_000

function run(args) {
  const child = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })))
  return { child, exited }
}

// A seeded generator, so a failing run can be repeated (ONCELY_CRASH_SEED).
function rng(seed) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

for (const mode of ['at_least_once', 'at_most_once', 'exactly_once']) {
  test(`kill -9 of a worker process: ${mode}`, { timeout: 120_000 }, async (t) => {
    const seed = Number(process.env.ONCELY_CRASH_SEED ?? 1 + ['at_least_once', 'at_most_once', 'exactly_once'].indexOf(mode))
    const random = rng(seed)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-crash-'))
    const box = path.join(dir, 'outbox.db')
    const ledger = path.join(dir, 'ledger.txt')
    const inbox = mode === 'exactly_once' ? [path.join(dir, 'inbox.db')] : []
    const outboxMode = mode === 'exactly_once' ? 'at_least_once' : mode
    fs.writeFileSync(ledger, '')
    const enq = await run(['enqueue', box, outboxMode, String(N)]).exited
    assert.equal(enq.code, 0, enq.stderr)

    let kills = 0
    const t0 = Date.now()
    while (kills < KILLS && Date.now() - t0 < BUDGET_MS) {
      const { child, exited } = run(['work', box, outboxMode, ledger, ...inbox])
      const wait = 150 + random() * 350
      const finished = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), wait))])
      if (finished) { // ran to the end on its own: everything delivered
        assert.equal(finished.code, 0, finished.stderr)
        break
      }
      child.kill('SIGKILL')
      const r = await exited
      assert.equal(r.signal, 'SIGKILL')
      kills++
    }
    const last = await run(['work', box, outboxMode, ledger, ...inbox]).exited
    assert.equal(last.code, 0, last.stderr)

    const counts = new Map()
    const ids = inbox.length
      ? (await new Store(inbox[0]).transaction((tx) => tx.execute('SELECT id FROM effects'))).map((r) => r[0])
      : fs.readFileSync(ledger, 'utf8').split('\n').filter(Boolean)
    for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
    const all = Array.from({ length: N }, (_, i) => `m${String(i).padStart(5, '0')}`)
    const lost = all.filter((id) => !counts.has(id))
    const duplicated = [...counts.values()].reduce((n, c) => n + c - 1, 0)
    t.diagnostic(`${mode}: ${N} messages, ${kills} kills in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${lost.length} lost, ${duplicated} duplicated effects`)

    const s = await new Outbox(box, 'crash').stats()
    assert.equal(s.ready + s.scheduled + s.leased + s.dead, 0)
    assert.ok(kills >= KILLS, `only ${kills} kills: the worker finished too soon`)
    assert.ok([...counts.keys()].every((id) => all.includes(id)))
    if (mode === 'at_least_once') {
      assert.deepEqual(lost, [])
    } else if (mode === 'at_most_once') {
      assert.equal(duplicated, 0)
    } else {
      assert.deepEqual(lost, [])
      assert.equal(duplicated, 0)
    }
  })
}
