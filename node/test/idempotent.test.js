'use strict'
// idempotent(fn, { key, payload, inbox }): fn through inbox.process, once per id.
const test = require('node:test')
const assert = require('node:assert/strict')
const { Inbox, idempotent, ConflictError, InvalidArgumentError, Permanent, ReplayedFailureError } = require('..')

test('runs once per key; duplicates get the stored result without calling fn', async () => {
  const inbox = new Inbox('memory', 'payments', { mode: 'exactly_once' })
  let runs = 0
  const charge = idempotent(async (order, amount) => {
    runs++
    return `charged ${amount} for ${order.id}`
  }, { inbox, key: (order) => `order-${order.id}`, payload: (order, amount) => JSON.stringify([order.id, amount]) })
  assert.equal(charge.name, '')
  const first = await charge({ id: 7 }, 10)
  const again = await charge({ id: 7 }, 10)
  assert.ok(Buffer.isBuffer(first))
  assert.equal(first.toString(), 'charged 10 for 7')
  assert.equal(again.toString(), 'charged 10 for 7')
  assert.equal(runs, 1)
  await assert.rejects(charge({ id: 7 }, 99), ConflictError) // same id, other payload
  assert.equal(runs, 1)
  assert.equal((await charge({ id: 8 }, 10)).toString(), 'charged 10 for 8')
  assert.equal(runs, 2)
})

test('key templates, this, sync fns, and the Inbox.idempotent method', async () => {
  const inbox = new Inbox('memory', 'rx')
  const calls = []
  const obj = {
    prefix: 'p',
    send: inbox.idempotent(function named(msg) {
      calls.push(msg.id)
      return this.prefix + msg.id
    }, { key: 'msg-{0.id}' }),
  }
  assert.equal(obj.send.name, 'named')
  assert.equal((await obj.send({ id: 'a' })).toString(), 'pa')
  assert.equal((await obj.send({ id: 'a' })).toString(), 'pa')
  assert.deepEqual(calls, ['a'])
  assert.equal((await inbox.get('msg-a')).state, 'succeeded')
  await assert.rejects(obj.send({}), InvalidArgumentError) // {0.id} is undefined
})

test('a thrown error is re-thrown and the id retried; Permanent is stored by the cache policy', async () => {
  const inbox = new Inbox('memory', 'rx', { cachePolicy: 'success_and_failure' })
  let n = 0
  class Flaky extends Error {}
  const f = idempotent(async () => {
    n++
    if (n === 1) throw new Flaky('try again')
    if (n === 2) throw new Permanent('never')
    return 'unreachable'
  }, { inbox, key: () => 'k' })
  await assert.rejects(f(), Flaky)
  await assert.rejects(f(), Permanent)
  await assert.rejects(f(), (e) => e instanceof ReplayedFailureError && e.reason.toString() === 'never')
  assert.equal(n, 2)
})

test('bad arguments are InvalidArgumentError', () => {
  const inbox = new Inbox('memory', 'rx')
  assert.throws(() => idempotent('fn', { inbox, key: 'k' }), InvalidArgumentError)
  assert.throws(() => idempotent(() => 'x'), InvalidArgumentError)
  assert.throws(() => idempotent(() => 'x', { key: 'k' }), InvalidArgumentError)
  assert.throws(() => idempotent(() => 'x', { inbox: {}, key: 'k' }), InvalidArgumentError)
  assert.throws(() => idempotent(() => 'x', { inbox, key: 5 }), InvalidArgumentError)
  assert.throws(() => idempotent(() => 'x', { inbox, key: 'k', payload: 'p' }), InvalidArgumentError)
})
