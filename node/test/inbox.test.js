'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const oncely = require('..')
const { Inbox, ManualClock, Store } = oncely

test('begin / finish / duplicate (pull style)', async () => {
  const inbox = new Inbox('memory', 'orders')
  const r = await inbox.begin('order-2', '{}')
  assert.equal(r.outcome, 'claimed')
  assert.ok(r.ticket.token > 0)
  assert.equal(r.ticket.id, 'order-2')
  await r.ticket.finish(Buffer.from('done'))
  const again = await inbox.begin('order-2', '{}')
  assert.equal(again.outcome, 'duplicate')
  assert.equal(again.replay.status, 'succeeded')
  assert.equal(again.replay.result.toString(), 'done')
  assert.equal(again.ticket, null)
})

test('begin: conflict on a different payload, in_progress while claimed', async () => {
  const inbox = new Inbox('memory', 'orders')
  const r = await inbox.begin('x', 'a')
  assert.equal((await inbox.begin('x', 'b')).outcome, 'conflict')
  const busy = await inbox.begin('x', 'a')
  assert.equal(busy.outcome, 'in_progress')
  assert.equal(typeof busy.leaseUntilMs, 'number')
  await r.ticket.release()
  assert.equal((await inbox.begin('x', 'a')).outcome, 'claimed')
})

test('ticket.fail with success_and_failure stores the failure', async () => {
  const inbox = new Inbox('memory', 's', { cachePolicy: 'success_and_failure' })
  const r = await inbox.begin('id')
  await r.ticket.fail('nope')
  const d = await inbox.begin('id')
  assert.equal(d.outcome, 'duplicate')
  assert.equal(d.replay.status, 'failed')
  assert.equal(d.replay.result.toString(), 'nope')
})

test('process: sync, async and string-returning handlers', async () => {
  const inbox = new Inbox('memory', 's')
  assert.equal((await inbox.process('a', null, () => Buffer.from('A'))).result.toString(), 'A')
  assert.equal((await inbox.process('b', null, async () => 'B')).result.toString(), 'B')
  const c = await inbox.process('c', null, () => new Promise((res) => setTimeout(() => res(new Uint8Array([67])), 5)))
  assert.equal(c.result.toString(), 'C')
  const again = await inbox.process('b', null, async () => assert.fail('must not run'))
  assert.deepEqual([again.result.toString(), again.replayed], ['B', true])
})

test('process: a thrown error is retryable and re-thrown as is', async () => {
  const inbox = new Inbox('memory', 's')
  const boom = new RangeError('boom')
  await assert.rejects(inbox.process('a', null, () => { throw boom }), (e) => e === boom)
  await assert.rejects(inbox.process('a', null, async () => { throw boom }), (e) => e === boom)
  // given back: the next call runs the handler
  const p = await inbox.process('a', null, () => 'ok')
  assert.deepEqual([p.result.toString(), p.replayed], ['ok', false])
})

test('process: Permanent with success_and_failure -> ReplayedFailureError later', async () => {
  const inbox = new Inbox('memory', 's', { cachePolicy: 'success_and_failure' })
  await assert.rejects(inbox.process('a', null, () => { throw new oncely.Permanent('bad request') }), oncely.Permanent)
  await assert.rejects(inbox.process('a', null, () => 'never'), (e) => {
    assert.ok(e instanceof oncely.ReplayedFailureError)
    assert.equal(e.code, 'ONCELY_REPLAYED_FAILURE')
    assert.equal(e.reason.toString(), 'bad request')
    return true
  })
})

test('process: a handler returning a non-buffer fails (retryable) with InvalidArgumentError', async () => {
  const inbox = new Inbox('memory', 's')
  await assert.rejects(inbox.process('a', null, () => 42), oncely.InvalidArgumentError)
  assert.equal((await inbox.process('a', null, () => 'ok')).replayed, false)
})

test('process does not block the event loop while the handler awaits', async () => {
  const inbox = new Inbox('memory', 's')
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  await inbox.process('a', null, () => new Promise((res) => setTimeout(() => res('x'), 30)))
  clearInterval(timer)
  assert.ok(ticks > 3, `event loop ran ${ticks} ticks`)
})

test('concurrent process on one id: one handler run, the other InProgressError or waits', async () => {
  const inbox = new Inbox('memory', 's')
  let runs = 0
  const slow = () => new Promise((res) => { runs++; setTimeout(() => res('v'), 20) })
  const [a, b] = await Promise.allSettled([inbox.process('k', null, slow), inbox.process('k', null, slow)])
  assert.equal(runs, 1)
  const codes = [a, b].map((r) => (r.status === 'fulfilled' ? 'ok' : r.reason.code)).sort()
  assert.deepEqual(codes, ['ONCELY_IN_PROGRESS', 'ok'])
  // Both wait: which call reaches the store first is not fixed (each runs on napi's runtime),
  // and a call without `wait` that came second would get InProgressError.
  const waited = await Promise.all([inbox.process('w', null, slow, { wait: 5 }), inbox.process('w', null, slow, { wait: 5 })])
  assert.equal(runs, 2)
  assert.deepEqual(waited.map((p) => p.replayed).sort(), [false, true])
})

test('ManualClock: leases expire with the clock; get / purgeExpired', async () => {
  const clock = new ManualClock()
  const inbox = new Inbox('memory', 's', { clock, lease: 10, retention: 60 })
  await inbox.begin('x')
  assert.equal((await inbox.begin('x')).outcome, 'in_progress')
  clock.advance(11)
  const r = await inbox.begin('x')
  assert.equal(r.outcome, 'claimed')
  await r.ticket.finish('v')
  const rec = await inbox.get('x')
  assert.equal(rec.state, 'succeeded')
  assert.equal(rec.result.toString(), 'v')
  assert.equal(await inbox.get('nope'), null)
  clock.advance(61)
  assert.equal(await inbox.purgeExpired(), 1)
})

test('beginMany / finishMany', async () => {
  const inbox = new Inbox('memory', 's')
  const rs = await inbox.beginMany([{ id: 'a' }, { id: 'b', payload: 'p' }])
  assert.deepEqual(rs.map((r) => r.outcome), ['claimed', 'claimed'])
  const out = await inbox.finishMany(rs.map((r, i) => [r.ticket, `r${i}`]))
  assert.deepEqual(out, [{ ok: true }, { ok: true }])
  assert.equal((await inbox.begin('b', 'p')).replay.result.toString(), 'r1')
})

test('a shared Store and an SQLite file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-node-'))
  try {
    const store = new Store(path.join(dir, 'x.db'))
    assert.equal(store.location, path.join(dir, 'x.db'))
    const a = new Inbox(store, 's')
    const b = new Inbox(store, 's')
    await a.process('id', null, () => 'once')
    const p = await b.process('id', null, () => 'twice')
    assert.deepEqual([p.result.toString(), p.replayed], ['once', true])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
