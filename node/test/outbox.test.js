'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const oncely = require('..')
const { Outbox, ManualClock, RetryPolicy } = oncely

const FIXED = { max_attempts: 2, backoff: { kind: 'fixed', delay_ms: 100 }, jitter: 'none' }

test('enqueue, lease, ack, stats', async () => {
  const outbox = new Outbox('memory', 'emails', {
    retry: { max_attempts: 5, jitter: 'full', backoff: { kind: 'exponential', initial_ms: 100, factor: 2.0, max_ms: 10000 } },
  })
  assert.equal(await outbox.enqueue(Buffer.from('welcome mail'), { id: 'mail-1', key: 'k', headers: { h: 'v' } }), 'queued')
  assert.equal(await outbox.enqueue('welcome mail', { id: 'mail-1' }), 'already_queued')
  const [d] = await outbox.lease(10)
  assert.equal(d.id, 'mail-1')
  assert.equal(d.payload.toString(), 'welcome mail')
  assert.equal(d.key, 'k')
  assert.deepEqual(d.headers, { h: 'v' })
  assert.equal(d.attempt, 1)
  assert.equal(typeof d.idempotencyKey, 'string')
  await d.ack()
  const s = await outbox.stats()
  assert.equal(s.delivered, 1)
  assert.equal(s.ready + s.scheduled + s.leased + s.dead, 0)
})

test('retry -> dead letter -> replay -> purgeDead', async () => {
  const clock = new ManualClock()
  const outbox = new Outbox('memory', 'q', { retry: FIXED, clock })
  await outbox.enqueue('x', { id: 'm' })
  let [d] = await outbox.lease()
  const r = await d.retry('down')
  assert.equal(r.kind, 'retrying')
  assert.equal(r.atMs, clock.nowMs() + 100)
  assert.deepEqual(await outbox.lease(), [])
  clock.advanceMs(100)
  ;[d] = await outbox.lease()
  assert.equal(d.attempt, 2)
  assert.equal(d.lastError, 'down')
  assert.equal((await d.retry('down again')).kind, 'gave_up')
  const dead = await outbox.deadLetters()
  assert.deepEqual(dead.map((m) => [m.id, m.state]), [['m', 'dead']])
  assert.equal(await outbox.replay('m'), true)
  ;[d] = await outbox.lease()
  assert.equal((await d.fail('permanent')).kind, 'gave_up')
  assert.match((await outbox.get('m')).reason, /permanent/)
  assert.equal(await outbox.purgeDead(), 1)
  assert.equal(await outbox.get('m'), null)
})

test('snooze / extend / release and settle by token', async () => {
  const clock = new ManualClock()
  const outbox = new Outbox('memory', 'q', { clock, lease: 30 })
  await outbox.enqueue('x', { id: 'm' })
  let [d] = await outbox.lease()
  assert.deepEqual(await d.extend(60), { kind: 'extended', atMs: clock.nowMs() + 60000 })
  assert.equal((await d.snooze(5)).kind, 'returned')
  clock.advance(5)
  ;[d] = await outbox.lease()
  assert.equal(d.attempt, 1) // a snooze uses up no attempt
  assert.equal((await d.release()).kind, 'returned')
  ;[d] = await outbox.lease()
  await assert.rejects(outbox.settle('m', d.token + 1, 'ack'), oncely.LeaseLostError)
  assert.equal((await outbox.settle('m', d.token, 'ack')).kind, 'acked')
})

test('enqueueMany, cancel, events', async () => {
  const outbox = new Outbox('memory', 'q')
  outbox.recordEvents()
  assert.deepEqual(await outbox.enqueueMany([{ payload: 'a', id: 'a' }, { payload: Buffer.from('b'), id: 'b' }]), ['queued', 'queued'])
  assert.equal(await outbox.cancel('a'), 'cancelled')
  assert.equal(await outbox.cancel('zz'), 'not_found')
  assert.deepEqual(outbox.takeEvents().map((e) => [e.kind, e.id]), [['enqueued', 'a'], ['enqueued', 'b'], ['cancelled', 'a']])
  assert.deepEqual(outbox.takeEvents(), [])
})

test('RetryPolicy: schedule and decide', () => {
  const p = new RetryPolicy({ max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 100 }, jitter: 'none' })
  assert.deepEqual(p.scheduleMs(0, 3), [100, 100, 100])
  assert.deepEqual(p.decideMs({ seed: 0, attempts: 1, firstAttemptAtMs: 0, nowMs: 0 }), { retryInMs: 100 })
  assert.equal(p.decideMs({ seed: 0, attempts: 3, firstAttemptAtMs: 0, nowMs: 0 }).giveUp, 'max_attempts')
})
