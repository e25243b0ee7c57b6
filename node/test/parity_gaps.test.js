'use strict'
// The calls added to close the API parity table's Node gaps (tests/parity/README.md): each one
// only calls the core, so it behaves as the other languages' call of the same name.
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Store, Inbox, Outbox, ManualClock, InvalidArgumentError, fingerprint } = require('..')

test('Delivery.availableAtMs: when the message became deliverable', async () => {
  const clock = new ManualClock(1_000_000)
  const outbox = new Outbox('memory', 'q', { clock })
  await outbox.enqueue('p', { id: 'm1', delay: 2 })
  clock.advance(3)
  const [d] = await outbox.lease()
  assert.equal(d.availableAtMs, 1_002_000)
  assert.equal(d.createdAtMs, 1_000_000)
})

test('Inbox.mode: the default mode', () => {
  assert.equal(new Inbox('memory', 's').mode, 'exactly_once')
  assert.equal(new Inbox('memory', 's', { mode: 'at_least_once' }).mode, 'at_least_once')
})

test('Ticket.settle settles as process does', async () => {
  const inbox = new Inbox('memory', 's', { cachePolicy: 'success_and_failure' })
  const a = await inbox.begin('a')
  await a.ticket.settle('done')
  assert.equal((await inbox.get('a')).state, 'succeeded')
  assert.equal((await inbox.get('a')).result.toString(), 'done')
  const b = await inbox.begin('b')
  await b.ticket.settle(null, { error: 'flaky' })
  assert.equal(await inbox.get('b'), null, 'a retryable failure gives the id back')
  assert.equal((await inbox.begin('b')).outcome, 'claimed')
  const c = await inbox.begin('c')
  await c.ticket.settle(undefined, { error: 'bad card', permanent: true })
  assert.equal((await inbox.get('c')).state, 'failed')
  const d = await inbox.begin('d')
  await assert.rejects(d.ticket.settle(null, { permanent: 'yes' }), InvalidArgumentError)
  await assert.rejects(d.ticket.settle(null, { nope: 1 }), InvalidArgumentError)
})

test('fingerprint is the inbox fingerprint', async () => {
  const inbox = new Inbox('memory', 'fp')
  await inbox.process('x', 'payload', () => 'r')
  assert.equal(fingerprint('payload'), (await inbox.get('x')).fingerprint)
  assert.equal(fingerprint(Buffer.from('payload')), crypto.createHash('sha256').update('payload').digest('hex').slice(0, 32))
})

test('Transaction.enqueueMany enqueues all or none', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-parity-'))
  const store = new Store(path.join(dir, 'tx.db'))
  const outbox = new Outbox(store, 'q')
  const r = await store.transaction((tx) => tx.enqueueMany(outbox, [{ payload: 'a', id: 'a' }, { payload: 'b', id: 'b' }]))
  assert.deepEqual(r, ['queued', 'queued'])
  assert.ok(await outbox.get('b'))
  await assert.rejects(
    store.transaction((tx) => {
      tx.enqueueMany(outbox, [{ payload: 'c', id: 'c' }])
      throw new Error('boom')
    }),
    /boom/,
  )
  assert.equal(await outbox.get('c'), null)
  await assert.rejects(store.transaction((tx) => tx.enqueueMany({}, [])), InvalidArgumentError)
})
