'use strict'
// The Worker binding: handler outcomes (ack, throw/reject -> retry, Permanent -> dead letter,
// Retry(after), Snooze), the concurrency bound, stop/start/run with an AbortSignal.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const oncely = require('..')
const { Outbox, Worker, Permanent, Retry, Snooze, InvalidArgumentError, Inbox } = oncely

const FAST = { max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 1 }, jitter: 'none' }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function tmpdb(name) {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-node-')), name)
}

async function enqueue(outbox, n, prefix = 'm') {
  const ms = []
  for (let i = 0; i < n; i++) ms.push({ payload: String(i), id: `${prefix}${i}`, headers: { n: String(i) } })
  await outbox.enqueueMany(ms)
}

async function pending(outbox) {
  const s = await outbox.stats()
  return s.ready + s.scheduled + s.leased
}

/** drain() until nothing is ready, scheduled or leased; the summed RunSummary. */
async function drain(worker, outbox, rounds = 400) {
  const total = { attempts: 0, succeeded: 0, failed: 0, released: 0 }
  for (let i = 0; i < rounds; i++) {
    const s = await worker.drain()
    for (const k of Object.keys(total)) total[k] += s[k]
    if ((await pending(outbox)) === 0) return total
    await sleep(2)
  }
  throw new Error('the outbox was not drained')
}

for (const store of ['memory', 'sqlite']) {
  test(`${store}: every message delivered; a throwing or rejecting handler is retried`, async () => {
    const outbox = new Outbox(store === 'memory' ? 'memory' : tmpdb('w.db'), 'q', { retry: FAST })
    await enqueue(outbox, 60)
    const seen = new Map()
    const worker = new Worker(outbox, async (m) => {
      assert.equal(m.payload.toString(), m.id.slice(1))
      assert.deepEqual(m.headers, { n: m.id.slice(1) })
      assert.equal(m.idempotencyKey, m.id)
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1)
      const n = Number(m.id.slice(1))
      if (m.attempt === 1 && n % 3 === 0) throw new Error('flaky') // thrown in an async fn: a rejection
      if (m.attempt === 1 && n % 3 === 1) return Promise.reject(new TypeError('rejected'))
      return m.attempt % 2 ? undefined : true
    }, { concurrency: 4, pollInterval: 0.005 })
    const total = await drain(worker, outbox)
    assert.equal(seen.size, 60)
    assert.equal([...seen.values()].reduce((a, b) => a + b), 60 + 40)
    assert.deepEqual(total, { attempts: 100, succeeded: 60, failed: 40, released: 0 })
    const s = await outbox.stats()
    assert.equal(s.delivered, 60)
    assert.equal(s.dead, 0)
  })
}

test('a synchronous handler that throws is retried, then dead-lettered with its error', async () => {
  const outbox = new Outbox('memory', 'q', { retry: FAST })
  await enqueue(outbox, 3)
  const attempts = new Map()
  const worker = new Worker(outbox, (m) => {
    attempts.set(m.id, (attempts.get(m.id) ?? 0) + 1)
    throw new Error(`boom ${m.attempt}`)
  }, { pollInterval: 0.005 })
  const total = await drain(worker, outbox)
  assert.deepEqual(Object.fromEntries(attempts), { m0: 3, m1: 3, m2: 3 })
  assert.equal(total.failed, 9)
  assert.equal(total.succeeded, 0)
  const dead = await outbox.deadLetters()
  assert.deepEqual(dead.map((r) => r.id).sort(), ['m0', 'm1', 'm2'])
  for (const r of dead) assert.equal(r.lastError, 'boom 3')
})

test('Permanent dead-letters at once; Snooze uses no attempt; Retry(after) waits; bad returns retry', async () => {
  const outbox = new Outbox('memory', 'q', { retry: { ...FAST, backoff: { kind: 'fixed', delay_ms: 60000 } } })
  for (const id of ['perm', 'snooze', 'retry-after', 'bad', 'non-error', 'bad-after']) await outbox.enqueue('', { id })
  const calls = new Map()
  const times = []
  const worker = new Worker(outbox, async (m) => {
    calls.set(m.id, (calls.get(m.id) ?? 0) + 1)
    const n = calls.get(m.id)
    switch (m.id) {
      case 'perm': throw new Permanent('no such user')
      case 'snooze': if (n < 5) throw new Snooze(0.001); return
      case 'retry-after':
        times.push(Date.now())
        if (n === 1) throw new Retry('busy', { after: 0.05 }) // not the policy's 60 s
        return
      case 'bad': return 'nope'
      case 'non-error': if (n === 1) throw 'a string' // eslint-disable-line no-throw-literal
        return
      case 'bad-after': if (n === 1) throw new Retry('x', { after: -1 }) // a bad hint: retry by the policy
        return
    }
  }, { pollInterval: 0.005 })
  for (let i = 0; i < 100 && calls.get('retry-after') !== 2; i++) {
    await worker.drain()
    await sleep(10)
  }
  assert.equal(calls.get('perm'), 1)
  const perm = await outbox.get('perm')
  assert.equal(perm.state, 'dead')
  assert.match(perm.reason, /no such user/)
  assert.equal(calls.get('snooze'), 5) // 5 calls > max_attempts 3: snoozes used no attempt
  assert.equal(await outbox.get('snooze'), null) // delivered
  assert.equal(calls.get('retry-after'), 2)
  assert.ok(times[1] - times[0] >= 45, `Retry.after waited ${times[1] - times[0]} ms`)
  // `bad` returned a value that is not undefined/true: a retryable failure, by the policy (60 s).
  const bad = await outbox.get('bad')
  assert.equal(bad.attempts, 1)
  assert.match(bad.lastError, /the handler returned "nope"/)
  assert.equal((await outbox.get('non-error')).lastError, 'a string')
  const badAfter = await outbox.get('bad-after')
  assert.match(badAfter.lastError, /bad Retry\.after/)
  assert.ok(badAfter.availableAtMs - Date.now() > 30000, 'a bad Retry.after falls back to the policy')
})

test('concurrency bounds the handlers running at once, and is reached', async () => {
  const outbox = new Outbox(tmpdb('c.db'), 'q')
  await enqueue(outbox, 60)
  let running = 0
  let peak = 0
  const worker = new Worker(outbox, async () => {
    running++
    peak = Math.max(peak, running)
    await sleep(5)
    running--
  }, { concurrency: 5, pollInterval: 0.005 })
  const total = await drain(worker, outbox)
  assert.equal(total.succeeded, 60)
  assert.equal(peak, 5)
})

test('run() until stop(); a stopped worker stays stopped; start() + stop() hand over the summary', async () => {
  const outbox = new Outbox('memory', 'q', { retry: FAST })
  await enqueue(outbox, 20)
  const done = []
  const worker = new Worker(outbox, (m) => {
    done.push(m.id)
    if (done.length === 20) worker.stop()
  }, { pollInterval: 0.005 })
  const s = await worker.run()
  assert.equal(s.succeeded, 20)
  assert.equal(worker.stopped, true)
  assert.equal((await worker.run()).attempts, 0)

  await enqueue(outbox, 10, 'n')
  const w2 = new Worker(outbox, async () => {}, { pollInterval: 0.005 })
  assert.equal(w2.start(), w2)
  assert.equal(w2.running, true)
  for (let i = 0; i < 200 && (await pending(outbox)) > 0; i++) await sleep(5)
  const s2 = await w2.stop()
  assert.equal(s2.succeeded, 10)
  assert.equal(w2.running, false)
})

test('stop() gives up a handler that outlives shutdownTimeout: released, attempt counted', async () => {
  const outbox = new Outbox('memory', 'q', { retry: FAST })
  await outbox.enqueue('', { id: 'slow' })
  let started
  const begun = new Promise((r) => { started = r })
  const worker = new Worker(outbox, () => {
    started()
    return new Promise(() => {}) // never settles
  }, { pollInterval: 0.005, shutdownTimeout: 0.05 })
  worker.start()
  await begun
  const t0 = Date.now()
  const s = await worker.stop()
  assert.ok(Date.now() - t0 < 1500)
  assert.equal(s.released, 1)
  const r = await outbox.get('slow')
  assert.equal(r.state, 'ready')
  assert.equal(r.attempts, 1)
})

test('an AbortSignal stops run()', async () => {
  const outbox = new Outbox('memory', 'q')
  await enqueue(outbox, 5)
  const ac = new AbortController()
  let n = 0
  const worker = new Worker(outbox, () => {
    if (++n === 5) ac.abort()
  }, { pollInterval: 0.005 })
  const s = await worker.run({ signal: ac.signal })
  assert.equal(s.succeeded, 5)
  assert.equal(worker.stopped, true)

  const already = AbortSignal.abort()
  const w2 = new Worker(outbox, () => {}, { pollInterval: 0.005 })
  assert.equal((await w2.run({ signal: already })).attempts, 0)
  await assert.rejects(new Worker(outbox, () => {}).run({ signal: 'soon' }), InvalidArgumentError)
})

test('a handler may call the inbox and other outboxes (it runs on the JS thread)', async () => {
  const outbox = new Outbox('memory', 'q', { retry: FAST })
  const follow = new Outbox('memory', 'follow')
  const inbox = new Inbox('memory', 'rx')
  await enqueue(outbox, 5)
  const worker = new Worker(outbox, async (m) => {
    await inbox.process(m.id, m.payload, async () => 'done')
    await follow.enqueue(m.payload, { id: `f-${m.id}` })
  })
  await drain(worker, outbox)
  assert.equal((await follow.stats()).ready, 5)
})

test('bad worker arguments are InvalidArgumentError', async () => {
  const outbox = new Outbox('memory', 'q')
  assert.throws(() => new Worker({}, () => {}), InvalidArgumentError)
  assert.throws(() => new Worker(outbox, 'not a function'), InvalidArgumentError)
  assert.throws(() => new Worker(outbox, () => {}, 5), InvalidArgumentError)
  for (const bad of [{ concurrency: 0 }, { concurrency: -1 }, { concurrency: 1.5 }, { concurrency: NaN },
    { pollInterval: 0 }, { pollInterval: -1 }, { pollInterval: NaN }, { shutdownTimeout: -1 },
    { concurrency: 'many' }]) {
    assert.throws(() => new Worker(outbox, () => {}, bad), InvalidArgumentError, JSON.stringify(bad))
  }
})

for (const mode of ['at_most_once', 'at_least_once', 'exactly_once']) {
  test(`${mode}: a failed attempt (throw, Retry, Snooze, Permanent) through the worker`, async () => {
    const outbox = new Outbox(tmpdb('m.db'), 'q', { mode, retry: FAST })
    for (const id of ['throw', 'retry', 'snooze', 'perm']) await outbox.enqueue('', { id })
    const calls = new Map()
    const dropped = []
    outbox.on('dropped', (e) => dropped.push(e.id))
    const worker = new Worker(outbox, (m) => {
      calls.set(m.id, (calls.get(m.id) ?? 0) + 1)
      if (m.attempt > 1 || calls.get(m.id) > 1) return
      if (m.id === 'throw') throw new Error('down')
      if (m.id === 'retry') throw new Retry('busy', { after: 0.001 })
      if (m.id === 'snooze') throw new Snooze(0.001)
      throw new Permanent('bad')
    }, { pollInterval: 0.005 })
    await drain(worker, outbox)
    // 'dropped' events reach this thread a little after the settle: wait for them (at most 5 s).
    for (let end = Date.now() + 5000; mode === 'at_most_once' && dropped.length < 4 && Date.now() < end;) await sleep(2)
    const s = await outbox.stats()
    if (mode === 'at_most_once') {
      // The lease is the done mark: nothing is delivered twice; failures are dropped.
      assert.deepEqual(Object.fromEntries(calls), { throw: 1, retry: 1, snooze: 1, perm: 1 })
      assert.deepEqual([s.dropped, s.dead], [4, 0])
      assert.deepEqual(dropped.sort(), ['perm', 'retry', 'snooze', 'throw'])
      assert.equal(s.delivered, 0)
    } else {
      assert.deepEqual(Object.fromEntries(calls), { throw: 2, retry: 2, snooze: 2, perm: 1 })
      assert.equal(s.delivered, 3)
      assert.equal((await outbox.get('perm')).state, 'dead')
      assert.deepEqual(dropped, [])
    }
  })
}
