'use strict'
// Bad input from JS (undefined, wrong types, huge ids, NaN, ...) is refused with a typed error
// (InvalidArgumentError, code ONCELY_INVALID_ARGUMENT) — never a crash, never a silent default.
const test = require('node:test')
const assert = require('node:assert/strict')
const oncely = require('..')
const { Inbox, Outbox, ManualClock, RetryPolicy, Store, InvalidArgumentError } = oncely

const invalid = (e) => {
  assert.ok(e instanceof InvalidArgumentError, `${e?.constructor?.name}: ${e?.message}`)
  assert.equal(e.code, 'ONCELY_INVALID_ARGUMENT')
  return true
}

test('constructors', () => {
  const cases = [
    () => new Inbox(),
    () => new Inbox(42, 's'),
    () => new Inbox({}, 's'),
    () => new Inbox('memory', undefined),
    () => new Inbox('memory', 's', { clock: {} }),
    () => new Inbox('memory', 's', { clock: new Store('memory') }),
    () => new Inbox('memory', 's', { lease: NaN }),
    () => new Inbox('memory', 's', { lease: '5' }),
    () => new Inbox('memory', 's', { lease: -1 }),
    () => new Inbox('memory', 's', { retention: Infinity }),
    () => new Inbox('memory', 's', { mode: 'twice' }),
    () => new Inbox('memory', 's', 5),
    () => new Outbox('memory', 'q', 'fast'),
    () => new Inbox('memory', 's', { cachePolicy: 'always' }),
    () => new Inbox('memory', 's', { recentCapacity: -3 }),
    () => new Outbox('memory', 'q', { retry: { max_attempts: 0 } }),
    () => new Outbox('memory', 'q', { retry: 5 }),
    () => { const c = {}; c.c = c; return new Outbox('memory', 'q', { retry: c }) },
    () => new Outbox('memory', 'q', { seed: -1 }),
    () => new Outbox('memory', 'q', { ordering: 'random' }),
    () => new Outbox('memory', 'q', { ordering: 'fifo_per_key', poison: 'park' }),
    () => new Outbox('memory', 'q', { maxPayloadBytes: NaN }),
    () => new ManualClock(NaN),
    () => new ManualClock().advance(NaN),
    () => new ManualClock().advance(-1),
    () => new ManualClock().advanceMs(-1),
    () => new ManualClock().setMs(1.5),
    () => new RetryPolicy(),
    () => new RetryPolicy(5),
    () => new RetryPolicy({ max_attempts: 1, backoff: { kind: 'warp' } }),
    () => new Store(''),
    () => new Store(),
    () => new Store(7),
  ]
  for (const [i, f] of cases.entries()) assert.throws(f, invalid, `case ${i}: ${f}`)
})

test('inbox calls', async () => {
  const inbox = new Inbox('memory', 's')
  const cases = [
    () => inbox.begin(),
    () => inbox.begin(1),
    () => inbox.begin(''),
    () => inbox.begin('x'.repeat(1_000_000)),
    () => inbox.begin('a', 5),
    () => inbox.begin('a', {}),
    () => inbox.begin('a', null, { lease: -1 }),
    () => inbox.begin('a', null, { lease: Infinity }),
    () => inbox.begin('a', null, { mode: 3 }),
    () => inbox.process('a', null),
    () => inbox.process('a', null, 'not a function'),
    () => inbox.process('a', null, () => 'x', { wait: NaN }),
    () => inbox.process('b', null, () => undefined),
    () => inbox.process('c', null, async () => ({ not: 'bytes' })),
    () => inbox.beginMany([{}]),
    () => inbox.beginMany(5),
    () => inbox.finishMany([[1, 2]]),
    () => inbox.finishMany(5),
    () => inbox.get(undefined),
  ]
  for (const [i, f] of cases.entries()) await assert.rejects(f, invalid, `case ${i}: ${f}`)
  // still usable afterwards
  assert.equal((await inbox.process('a', null, () => 'ok')).result.toString(), 'ok')
})

test('outbox and delivery calls', async () => {
  const outbox = new Outbox('memory', 'q')
  await outbox.enqueue('p', { id: 'z' })
  const [d] = await outbox.lease()
  const cases = [
    () => outbox.enqueue(),
    () => outbox.enqueue(12),
    () => outbox.enqueue('x', { id: 'x'.repeat(100_000) }),
    () => outbox.enqueue('x', { id: '' }),
    () => outbox.enqueue('x', { delay: NaN }),
    () => outbox.enqueueMany([{ id: 'a' }]),
    () => outbox.enqueue('x', { headers: 'h' }),
    () => outbox.enqueue('x', { headers: ['h'] }),
    () => outbox.enqueue('x', { headers: { a: 5 } }),
    () => outbox.enqueueMany([{ payload: 'x', headers: 'h' }]),
    () => outbox.enqueue('x', 5),
    () => outbox.enqueue('x', 'id-1'),
    () => outbox.enqueue('x', true),
    () => outbox.enqueueMany(['x']),
    () => outbox.lease(NaN),
    () => outbox.lease(-1),
    () => outbox.lease(1e300),
    () => outbox.lease('3'),
    () => outbox.settle('z', NaN, 'ack'),
    () => outbox.settle('z', d.token, 'explode'),
    () => outbox.settle('z', d.token, 'snooze'),
    () => outbox.deadLetters(-1),
    () => outbox.deadLetters(undefined, NaN),
    () => outbox.purgeDead('all'),
    () => d.snooze(NaN),
    () => d.snooze(),
    () => d.extend(-1),
    () => d.retry('e', 'soon'),
    () => d.fail(5),
  ]
  for (const [i, f] of cases.entries()) await assert.rejects(f, invalid, `case ${i}: ${f}`)
  await d.ack()
  assert.equal((await outbox.stats()).delivered, 1)
})

test('huge and odd but valid values are accepted', async () => {
  const inbox = new Inbox('memory', 's', { lease: 1e9 })
  const id = 'é'.repeat(256) // 512 bytes: the limit
  assert.equal((await inbox.process(id, Buffer.alloc(1 << 20), () => Buffer.alloc(0))).result.length, 0)
  const outbox = new Outbox('memory', 'q')
  assert.equal(await outbox.enqueue(Buffer.alloc(0), { id: 'x'.repeat(512), delay: 0 }), 'queued')
  assert.deepEqual(await outbox.lease(0), [])
})

test('worker, idempotent, events and transactional calls', async () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const path = require('node:path')
  const { Worker, Store, idempotent } = require('..')
  const store = new Store(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-bad-')), 'b.db'))
  const inbox = new Inbox(store, 'rx')
  const outbox = new Outbox(store, 'q')
  const sync = [
    () => new Worker(outbox, () => {}, { concurrency: 2 ** 60 }),
    () => new Worker(outbox, () => {}, { shutdownTimeout: Infinity }),
    () => new Worker(null, () => {}),
    () => idempotent(() => 'x', { inbox, key: 'k', payload: 5 }),
    () => new Worker(outbox, () => {}).start({ signal: {} }),
  ]
  for (const [i, f] of sync.entries()) assert.throws(f, invalid, `sync case ${i}: ${f}`)
  const cases = [
    () => idempotent(() => 'x', { inbox, key: '{3}' })('only one argument'),
    () => store.transaction((tx) => tx.execute()),
    () => store.transaction((tx) => tx.execute('SELECT ?', [NaN, {}])),
    () => store.transaction((tx) => tx.execute('SELECT ?', [[1]])),
    () => store.transaction((tx) => tx.enqueue(outbox)),
    () => store.transaction((tx) => tx.enqueue(outbox, 'p', 7)),
    () => store.transaction((tx) => tx.enqueue(outbox, 'p', { delay: -1 })),
    () => store.transaction((tx) => tx.enqueue('not an outbox', 'p')),
    () => inbox.processTransactional('id', null, () => 42),
    () => inbox.processTransactional('id', null, () => Promise.resolve('x')),
    () => inbox.processTransactional('id', 5, () => 'x'),
    () => inbox.processTransactional(undefined, null, () => 'x'),
    () => new Inbox('memory', 'm').processTransactional('id', null, () => 'x'),
    () => Store.postgresSchemaUrl('postgres://u@127.0.0.1:1/db', 'bad name'),
    () => Store.postgresSchemaUrl(5, 'x'),
  ]
  for (const [i, f] of cases.entries()) await assert.rejects(f, invalid, `case ${i}: ${f}`)
  // still usable afterwards
  assert.equal((await inbox.processTransactional('ok', null, () => 'fine')).result.toString(), 'fine')
})
