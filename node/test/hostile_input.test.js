'use strict'
// Hostile input and hostile handlers: lone surrogates (which napi's UTF-8 conversion would turn
// into U+FFFD, merging distinct ids), misspelt options, integers that wrap or truncate, huge
// values echoed into error messages, and Snooze/Retry hints that would silently become 0. Each
// is refused with the core's error (InvalidArgumentError, the same message as in every other
// language), quickly.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const oncely = require('..')
const { Inbox, Outbox, ManualClock, RetryPolicy, Store, Worker, Retry, Snooze, InvalidArgumentError, idempotent } = oncely

const tmpdir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-hostile-'))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Calls `f` and returns what it threw or rejected with (fails when it did neither). */
async function failure(f, label) {
  let r
  try {
    r = await f()
  } catch (e) {
    return e
  }
  assert.fail(`${label}: expected a refusal, got ${r}`)
}

function invalidArgument(e, label) {
  assert.ok(e instanceof InvalidArgumentError, `${label}: ${e?.constructor?.name}: ${e?.message}`)
  assert.equal(e.code, 'ONCELY_INVALID_ARGUMENT', label)
}

/** A store, an inbox, an outbox, a claimed ticket, a leased delivery, an open transaction. */
async function fixture() {
  const store = new Store(path.join(tmpdir(), 'h.db'))
  const inbox = new Inbox(store, 'rx')
  const outbox = new Outbox(store, 'q')
  const ticket = (await inbox.begin('claimed')).ticket
  await outbox.enqueue('p', { id: 'leased' })
  const [delivery] = await outbox.lease()
  return { store, inbox, outbox, ticket, delivery }
}

// ---------------------------------------------------------------------------------------------
// 1. Lone surrogates

test('a lone surrogate in an id is refused, so two distinct ids are never merged', async () => {
  const inbox = new Inbox('memory', 's')
  const calls = []
  const high = await failure(() => inbox.process('\ud800', null, () => { calls.push('high'); return 'first' }), 'high')
  invalidArgument(high, 'high')
  assert.equal(high.message, 'invalid argument `id`: holds a lone surrogate U+D800 at character 0; text must be valid Unicode')
  const low = await failure(() => inbox.process('\udfff', null, () => { calls.push('low'); return 'second' }), 'low')
  invalidArgument(low, 'low')
  assert.match(low.message, /U\+DFFF at character 0/)
  assert.deepEqual(calls, [])
  // A well-formed pair is one character, kept as is.
  assert.equal((await inbox.process('\ud83d\ude00', null, () => 'smile')).result.toString(), 'smile')
  assert.equal((await inbox.get('\ud83d\ude00')).state, 'succeeded')
})

test('a store location with a lone surrogate is refused (no file named U+FFFD)', () => {
  const dir = tmpdir()
  const cwd = process.cwd()
  process.chdir(dir)
  try {
    assert.throws(() => new Store('\ud800'), (e) => (invalidArgument(e, 'store'), /`location`: holds a lone surrogate U\+D800/.test(e.message)))
    assert.deepEqual(fs.readdirSync(dir), [])
  } finally {
    process.chdir(cwd)
  }
})

test('every string parameter refuses a lone surrogate with the core error', async () => {
  const { store, inbox, outbox, ticket, delivery } = await fixture()
  const policy = { max_attempts: 2, backoff: { kind: 'none' }, jitter: 'none' }
  const cases = {
    'Store location': (s) => new Store(s),
    'Inbox store location': (s) => new Inbox(s, 'x'),
    'Inbox scope': (s) => new Inbox('memory', s),
    'Inbox mode': (s) => new Inbox('memory', 'x', { mode: s }),
    'Inbox cachePolicy': (s) => new Inbox('memory', 'x', { cachePolicy: s }),
    'Outbox store location': (s) => new Outbox(s, 'q'),
    'Outbox queue': (s) => new Outbox('memory', s),
    'Outbox mode': (s) => new Outbox('memory', 'q', { mode: s }),
    'Outbox ordering': (s) => new Outbox('memory', 'q', { ordering: s }),
    'Outbox poison': (s) => new Outbox('memory', 'q', { ordering: 'fifo_per_key', poison: s }),
    'Outbox retry (JSON text)': (s) => new Outbox('memory', 'q', { retry: s }),
    'RetryPolicy (JSON text)': (s) => new RetryPolicy(s),
    'postgresSchemaUrl url': (s) => Store.postgresSchemaUrl(s, 'x'),
    'postgresSchemaUrl schema': (s) => Store.postgresSchemaUrl('postgres://u@127.0.0.1:1/db', s),
    'begin id': (s) => inbox.begin(s),
    'begin payload': (s) => inbox.begin('a', s),
    'begin mode': (s) => inbox.begin('a', null, { mode: s }),
    'beginMany id': (s) => inbox.beginMany([{ id: s }]),
    'beginMany payload': (s) => inbox.beginMany([{ id: 'a', payload: s }]),
    'beginMany mode': (s) => inbox.beginMany([{ id: 'a', mode: s }]),
    'process id': (s) => inbox.process(s, null, () => 'x'),
    'process payload': (s) => inbox.process('a', s, () => 'x'),
    'process mode': (s) => inbox.process('a', null, () => 'x', { mode: s }),
    'process handler result': (s) => inbox.process('result', null, () => s),
    'inbox get id': (s) => inbox.get(s),
    'ticket finish result': (s) => ticket.finish(s),
    'ticket fail reason': (s) => ticket.fail(s),
    'finishMany result': (s) => inbox.finishMany([[ticket, s]]),
    'processTransactional id': (s) => inbox.processTransactional(s, null, () => 'x'),
    'processTransactional payload': (s) => inbox.processTransactional('a', s, () => 'x'),
    'processTransactional result': (s) => inbox.processTransactional('tx-result', null, () => s),
    'idempotent key': (s) => idempotent(() => 'x', { inbox, key: () => s })(),
    'enqueue payload': (s) => outbox.enqueue(s),
    'enqueue id': (s) => outbox.enqueue('p', { id: s }),
    'enqueue key': (s) => outbox.enqueue('p', { key: s }),
    'enqueue header name': (s) => outbox.enqueue('p', { headers: { [s]: 'v' } }),
    'enqueue header value': (s) => outbox.enqueue('p', { headers: { h: s } }),
    'enqueueMany payload': (s) => outbox.enqueueMany([{ payload: s }]),
    'enqueueMany id': (s) => outbox.enqueueMany([{ payload: 'p', id: s }]),
    'enqueueMany header value': (s) => outbox.enqueueMany([{ payload: 'p', headers: { h: s } }]),
    'settle id': (s) => outbox.settle(s, 1, 'ack'),
    'settle action': (s) => outbox.settle('leased', 1, s),
    'settle error': (s) => outbox.settle('leased', 1, 'retry', { error: s }),
    'settle reason': (s) => outbox.settle('leased', 1, 'fail', { reason: s }),
    'cancel id': (s) => outbox.cancel(s),
    'outbox get id': (s) => outbox.get(s),
    'replay id': (s) => outbox.replay(s),
    'purgeDead ids': (s) => outbox.purgeDead([s]),
    'delivery retry error': (s) => delivery.retry(s),
    'delivery fail reason': (s) => delivery.fail(s),
    'transaction SQL': (s) => store.transaction((tx) => tx.execute(s)),
    'transaction SQL parameter': (s) => store.transaction((tx) => tx.execute('SELECT ?', [s])),
    'transaction enqueue payload': (s) => store.transaction((tx) => tx.enqueue(outbox, s)),
    'transaction enqueue id': (s) => store.transaction((tx) => tx.enqueue(outbox, 'p', { id: s })),
    'transaction enqueue header': (s) => store.transaction((tx) => tx.enqueue(outbox, 'p', { headers: { h: s } })),
  }
  for (const [label, call] of Object.entries(cases)) {
    for (const [s, unit, at] of [['\ud800', 'D800', 0], ['a\udfff', 'DFFF', 1]]) {
      const e = await failure(() => call(s), `${label} ${JSON.stringify(s)}`)
      invalidArgument(e, label)
      assert.ok(
        e.message.includes(`holds a lone surrogate U+${unit} at character ${at}; text must be valid Unicode`),
        `${label}: ${e.message}`,
      )
    }
  }
  void policy
  // nothing was written under a replaced id
  assert.equal(await inbox.get('\ufffd'), null)
  assert.equal(await outbox.get('\ufffd'), null)
  assert.equal((await outbox.stats()).leased, 1)
  await delivery.ack()
})

// ---------------------------------------------------------------------------------------------
// 2. Unknown options

test('every options object refuses a key it does not know', async () => {
  const { store, inbox, outbox, delivery } = await fixture()
  const policy = new RetryPolicy({ max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 10 }, jitter: 'none' })
  const worker = new Worker(outbox, () => {})
  const cases = [
    ['inbox options', 'leese', () => new Inbox('memory', 's', { leese: 5 })],
    ['outbox options', 'leese', () => new Outbox('memory', 'q', { leese: 5 })],
    ['outbox options', 'retryJson', () => new Outbox('memory', 'q', { retryJson: '{}' })],
    ['retry budget options', 'brust', () => new Outbox('memory', 'q', { retryBudget: { ratio: 0.1, brust: 3 } })],
    ['begin options', 'wiat', () => inbox.begin('a', null, { wiat: 1 })],
    ['begin options', 'leese', () => inbox.beginMany([{ id: 'a', leese: 1 }])],
    ['process options', 'wiat', () => inbox.process('a', null, () => 'x', { wiat: 1 })],
    ['enqueue options', 'dealy', () => outbox.enqueue('p', { dealy: 1 })],
    ['enqueue options', 'dealy', () => outbox.enqueueMany([{ payload: 'p', dealy: 1 }])],
    ['enqueue options', 'dealy', () => store.transaction((tx) => tx.enqueue(outbox, 'p', { dealy: 1 }))],
    ['settle options', 'aftr', () => outbox.settle('leased', delivery.token, 'retry', { aftr: 1 })],
    ['worker options', 'concurency', () => new Worker(outbox, () => {}, { concurency: 4 })],
    ['run options', 'signall', () => worker.run({ signall: null })],
    ['run options', 'signall', () => worker.start({ signall: null })],
    ['idempotent options', 'paylod', () => idempotent(() => 'x', { inbox, key: 'k', paylod: () => 'p' })],
    ['decideMs arguments', 'lastDelay', () => policy.decideMs({ seed: 1, attempts: 1, firstAttemptAtMs: 0, nowMs: 0, lastDelay: 5 })],
    ['Retry options', 'aftr', () => new Retry('busy', { aftr: 5 })],
  ]
  for (const [what, key, call] of cases) {
    const e = await failure(call, `${what} ${key}`)
    invalidArgument(e, `${what} ${key}`)
    assert.match(e.message, new RegExp(`^invalid argument \`${what}\`: has no option \`${key}\` \\(known: `), e.message)
  }
  // The retry policy (the core's JSON form) refuses unknown fields too.
  for (const retry of [{ max_atempts: 3 }, { max_attempts: 3, backoff: { kind: 'fixed', delay: 5 } }]) {
    assert.throws(() => new Outbox('memory', 'q', { retry }), (e) => (invalidArgument(e, 'retry'), /unknown field/.test(e.message)))
    assert.throws(() => new RetryPolicy(retry), (e) => (invalidArgument(e, 'policy'), /unknown field/.test(e.message)))
  }
  await delivery.ack()
})

// ---------------------------------------------------------------------------------------------
// 3. Integer parameters

test('every integer parameter refuses -1, 1.5, NaN, ±Infinity and 2**70', async () => {
  const { outbox, delivery } = await fixture()
  const clock = new ManualClock()
  const policy = new RetryPolicy({ max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 10 }, jitter: 'none' })
  const decide = { seed: 1, attempts: 1, firstAttemptAtMs: 0, nowMs: 0 }
  const cases = {
    startMs: (v) => new ManualClock(v),
    ms: (v) => clock.advanceMs(v),
    'ms ': (v) => clock.setMs(v),
    seed: (v) => new Outbox('memory', 'q', { seed: v }),
    maxPayloadBytes: (v) => new Outbox('memory', 'q', { maxPayloadBytes: v }),
    recentCapacity: (v) => new Inbox('memory', 's', { recentCapacity: v }),
    maxResultBytes: (v) => new Inbox('memory', 's', { maxResultBytes: v }),
    max: (v) => outbox.lease(v),
    token: (v) => outbox.settle('leased', v, 'ack'),
    afterSeq: (v) => outbox.deadLetters(v),
    limit: (v) => outbox.deadLetters(undefined, v),
    concurrency: (v) => new Worker(outbox, () => {}, { concurrency: v }),
    'seed ': (v) => policy.decideMs({ ...decide, seed: v }),
    attempts: (v) => policy.decideMs({ ...decide, attempts: v }),
    firstAttemptAtMs: (v) => policy.decideMs({ ...decide, firstAttemptAtMs: v }),
    nowMs: (v) => policy.decideMs({ ...decide, nowMs: v }),
    lastDelayMs: (v) => policy.decideMs({ ...decide, lastDelayMs: v }),
    retryAfterMs: (v) => policy.decideMs({ ...decide, retryAfterMs: v }),
    '  seed': (v) => policy.scheduleMs(v, 1),
    n: (v) => policy.scheduleMs(1, v), // -1 once wrapped to 2^32 - 1 (9 GB in 30 s)
  }
  for (const [name, call] of Object.entries(cases)) {
    for (const v of [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 70]) {
      const e = await failure(() => call(v), `${name.trim()}(${v})`)
      invalidArgument(e, `${name.trim()}(${v})`)
      assert.match(e.message, new RegExp(`^invalid argument \`${name.trim()}\`: must be a whole number from 0 to \\d+, got `), e.message)
    }
  }
  const e = await failure(() => outbox.lease(-1), 'lease(-1)')
  assert.equal(e.message, 'invalid argument `max`: must be a whole number from 0 to 9007199254740991, got -1')
  // in range: accepted
  assert.deepEqual(policy.scheduleMs(1, 2), [10, 10])
  assert.deepEqual(policy.scheduleMs(1, 0), [])
  await delivery.ack()
})

// ---------------------------------------------------------------------------------------------
// 4. Huge input

test('a 20 MB Buffer as id or headers is refused quickly with a short message', async () => {
  const big = Buffer.alloc(20 << 20, 0x61)
  const inbox = new Inbox('memory', 's')
  const outbox = new Outbox('memory', 'q')
  const cases = {
    'begin id': () => inbox.begin(big),
    'process id': () => inbox.process(big, null, () => 'x'),
    'inbox get id': () => inbox.get(big),
    'enqueue id': () => outbox.enqueue('p', { id: big }),
    'enqueue headers': () => outbox.enqueue('p', { headers: big }),
    'enqueueMany headers': () => outbox.enqueueMany([{ payload: 'p', headers: big }]),
    'enqueue options': () => outbox.enqueue('p', big),
    'store location': () => new Store(big),
    'lease max': () => outbox.lease(big),
  }
  for (const [label, call] of Object.entries(cases)) {
    const t0 = Date.now()
    const e = await failure(call, label)
    const ms = Date.now() - t0
    invalidArgument(e, label)
    assert.ok(e.message.length < 200, `${label}: a message of ${e.message.length} characters`)
    assert.ok(ms < 1000, `${label}: ${ms} ms`)
  }
  // A 20 M character string id is read (decoded from UTF-16: work in proportion to its size),
  // then refused by the core's length rule with a message that does not echo it.
  const e = await failure(() => inbox.begin('x'.repeat(20 << 20)), 'a 20 M character id')
  invalidArgument(e, 'a 20 M character id')
  assert.ok(e.message.length < 200, `a message of ${e.message.length} characters`)
})

// ---------------------------------------------------------------------------------------------
// 5. Snooze / Retry hints

test('a bad Snooze or Retry hint is a retryable failure by the policy, never 0', async () => {
  const outbox = new Outbox('memory', 'q', { retry: { max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 60000 }, jitter: 'none' } })
  const hints = {
    'snooze-null': () => new Snooze(null),
    'snooze-empty': () => new Snooze(''),
    'snooze-string': () => new Snooze('5'),
    'snooze-false': () => new Snooze(false),
    'snooze-array': () => new Snooze([]),
    'snooze-nan': () => new Snooze(NaN),
    'snooze-negative': () => new Snooze(-1),
    'snooze-missing': () => new Snooze(),
    'retry-empty': () => new Retry('busy', { after: '' }),
    'retry-string': () => new Retry('busy', { after: '5' }),
    'retry-false': () => new Retry('busy', { after: false }),
    'retry-array': () => new Retry('busy', { after: [] }),
    'retry-nan': () => new Retry('busy', { after: NaN }),
    'retry-negative': () => new Retry('busy', { after: -1 }),
  }
  for (const id of Object.keys(hints)) await outbox.enqueue('', { id })
  const calls = new Map()
  const worker = new Worker(outbox, (m) => {
    calls.set(m.id, (calls.get(m.id) ?? 0) + 1)
    throw hints[m.id]()
  }, { pollInterval: 0.005 })
  worker.start()
  for (let i = 0; i < 100 && calls.size < Object.keys(hints).length; i++) await sleep(5)
  await sleep(50) // a hint taken as 0 would be called again by now
  const summary = await worker.stop()
  for (const id of Object.keys(hints)) {
    assert.equal(calls.get(id), 1, `${id}: called ${calls.get(id)} times`)
    const r = await outbox.get(id)
    assert.equal(r.attempts, 1, id)
    assert.match(r.lastError, id.startsWith('snooze') ? /bad Snooze\.seconds/ : /^busy \(bad Retry\.after/, `${id}: ${r.lastError}`)
    assert.ok(r.availableAtMs - Date.now() > 30000, `${id}: retried by the policy (60 s)`)
  }
  assert.equal(summary.failed, Object.keys(hints).length)
  // Good hints still work: `after: null` means "by the policy".
  assert.equal(new Retry('x', { after: null }).after, null)
})

test('a schedule length is bounded: one bad number asks for no unbounded work', () => {
  const policy = new RetryPolicy({ max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 10 }, jitter: 'none' })
  assert.deepEqual(policy.scheduleMs(1, 3), [10, 10, 10])
  for (const n of [100001, 2 ** 32, 2 ** 32 + 3, 2 ** 53 - 1]) {
    assert.throws(() => policy.scheduleMs(1, n), (e) => e.code === 'ONCELY_INVALID_ARGUMENT' &&
      e.message === `invalid argument \`n\`: must be a whole number from 0 to 100000, got ${n}`)
  }
})
