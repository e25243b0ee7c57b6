'use strict'
// Hostile input, one case per child process: fast-check generates calls of every public call and
// option (fixtures/hostile_cases.js) with wrong types, out-of-range, huge, NaN and ±Infinity
// numbers, BigInts, lone surrogates, huge strings and Buffers, sparse arrays, unknown and
// misspelt options, Proxies and getters that throw, and hostile handlers (throwing anything,
// returning anything, never settling, calling process.exit, re-entering the same id). Each case
// runs in its own process (fixtures/hostile_child.js), so that a crash (a signal, an exit code
// nobody asked for) or a hang is caught and counted instead of taking the test run down.
//
// The test fails on any crash, hang, untyped error or changed store, and prints one line of
// counts. ONCELY_HOSTILE_CASES=N runs N cases (default 400), ONCELY_HOSTILE_SEED=S another seed,
// ONCELY_HOSTILE_CALL=REGEX only the calls whose name matches, ONCELY_HOSTILE_POOL=K children at once
// (default 3).
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const fc = require('fast-check')
const { hostileCase } = require('../fixtures/hostile_cases.js')

const CHILD = path.join(__dirname, '..', 'fixtures', 'hostile_child.js')
const CASES = Number(process.env.ONCELY_HOSTILE_CASES ?? 400)
/** Only the calls whose name matches (e.g. `inbox\.process`), to reproduce or dig into one. */
const ONLY = process.env.ONCELY_HOSTILE_CALL ? new RegExp(process.env.ONCELY_HOSTILE_CALL) : null
const SEED = Number(process.env.ONCELY_HOSTILE_SEED ?? 20261201)
const POOL = Number(process.env.ONCELY_HOSTILE_POOL ?? 3)
/** A child that has not exited by then hangs (the child's own call timeout is 5 s). */
const KILL_MS = 20_000
const CLASSES = ['typed', 'typeerror', 'own', 'result', 'pending', 'exit', 'crash', 'hang', 'untyped', 'changed']
const BAD = new Set(['crash', 'hang', 'untyped', 'changed'])

/** The exit codes a case's handlers ask for with process.exit. */
function exitCodes(node, codes = new Set()) {
  if (node !== null && typeof node === 'object') {
    if (node.h === 'exit') codes.add(node.code)
    for (const v of Object.values(node)) exitCodes(v, codes)
  }
  return codes
}

function spawnChild(args, input, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b) => { stdout += b })
    child.stderr.on('data', (b) => { stderr = (stderr + b).slice(-2000) })
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_MS)
    let killedByUs = false
    const kill = child.kill.bind(child)
    child.kill = (s) => { killedByUs = true; return kill(s) }
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, killedByUs })
    })
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}

async function runCase(c) {
  const r = await spawnChild([], JSON.stringify(c))
  const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => {
    try {
      return JSON.parse(l)
    } catch {
      return {}
    }
  })
  const where = lines.find((l) => l.dir)
  try {
    return await outcome(c, r, lines.filter((l) => l.c).pop(), where)
  } finally {
    if (where) fs.rmSync(where.dir, { recursive: true, force: true })
  }
}

async function outcome(c, r, line, where) {
  if (r.killedByUs) return { c: 'hang', d: `killed after ${KILL_MS} ms` }
  if (r.signal) return { c: 'crash', d: `signal ${r.signal}: ${r.stderr.slice(-600)}` }
  if (r.code === 0 && line) return line
  if (!line && exitCodes(c.args).has(r.code)) {
    // The handler's process.exit: the store it left must still open and answer.
    if (c.store !== 'sqlite' || !where) return { c: 'exit', d: `exit ${r.code}` }
    const v = await spawnChild([where.file], '', { ONCELY_HOSTILE_CHILD: 'verify' })
    if (v.code === 0 && v.stdout.includes('verified')) return { c: 'exit', d: `exit ${r.code}` }
    return { c: 'changed', d: `after the handler's process.exit(${r.code}) the store did not open: ${v.stderr.slice(-600)}` }
  }
  return { c: 'crash', d: `exit code ${r.code}: ${r.stderr.slice(-600)}` }
}

test(`hostile calls, one child process each (${CASES} cases)`, { timeout: 3_600_000 }, async () => {
  const cases = fc.sample(ONLY ? hostileCase.filter((c) => ONLY.test(c.call)) : hostileCase, { seed: SEED, numRuns: CASES })
  const counts = Object.fromEntries(CLASSES.map((k) => [k, 0]))
  const bad = []
  const started = Date.now()
  let next = 0
  async function worker() {
    while (next < cases.length) {
      const i = next++
      const c = cases[i]
      const r = await runCase(c)
      counts[r.c] = (counts[r.c] ?? 0) + 1
      if (BAD.has(r.c)) bad.push({ i, class: r.c, detail: r.d, case: c })
    }
  }
  await Promise.all(Array.from({ length: POOL }, worker))
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`hostile (seed ${SEED}): ${CASES} cases in ${secs} s | ${CLASSES.map((k) => `${k} ${counts[k]}`).join(' | ')}`)
  for (const b of bad.slice(0, 10)) {
    console.log(`  case ${b.i} ${b.class}: ${b.detail}\n    ${JSON.stringify(b.case).slice(0, 800)}`)
  }
  assert.equal(bad.length, 0, `${bad.length} of ${CASES} hostile cases crashed, hung, threw an untyped error or changed the store (listed above)`)
})

// Cases the generator found (each failed before its fix), kept so they run every time.
const FOUND = [
  // A sparse array of 2^32 - 1 holes: the process aborted (a Vec of that capacity).
  ['crash: a sparse array', 'typed', { call: 'inbox.beginMany', store: 'sqlite', args: [{ $: 'sparse', n: 2 ** 32 - 1 }] }],
  // A rejection with a Proxy whose getPrototypeOf throws: `instanceof Permanent` threw in the
  // rejection callback, so the process call never settled.
  ['hang: a Proxy rejection', 'own', { call: 'inbox.process', store: 'memory', args: ['fresh', 'p', { h: 'throw', x: { e: 'value', v: { $: 'proxy' } }, a: 1 }, { $: 'u' }] }],
  // Inbox(...) without new wrapped `this` (the module's exports) as an Inbox.
  ['a class without new', 'typeerror', { call: 'call a class without new', store: 'memory', args: ['Inbox', 'memory', 's'] }],
  ['a handed-out class', 'typeerror', { call: 'construct handed-out class', store: 'memory', args: ['Ticket', 'x'] }],
  ['a key template argument without toString', 'typed', { call: 'inbox.idempotent', store: 'sqlite', args: [{ h: 'ret', v: 'r', a: 0 }, { $: 'obj', e: [['key', 'order-{0}']] }, [{ $: 'nullproto', e: [] }]] }],
  ['Snooze of an object without toString', 'result', { call: 'new Snooze', store: 'memory', args: [{ $: 'nullproto', e: [] }] }],
  // An event name that is a sparse array of 2^32 - 1 holes: the emitter made it a property key,
  // a string too long for the engine (an untyped RangeError; seed 3469694394, case 90).
  ['an event name that is not a string', 'typed', { call: 'outbox.events', store: 'sqlite', args: [{ $: 'sparse', n: 2 ** 32 - 1 }, { h: 'ret', v: { $: 'u' }, a: 2 }] }],
]

for (const [name, expected, c] of FOUND) {
  test(`hostile case found before: ${name}`, async () => {
    const r = await runCase(c)
    assert.equal(r.c, expected, r.d)
  })
}
