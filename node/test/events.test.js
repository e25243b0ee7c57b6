'use strict'
// outbox.events: an EventEmitter over the core's event callback.
const test = require('node:test')
const assert = require('node:assert/strict')
const { EventEmitter, once } = require('node:events')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { Outbox, Worker, ManualClock } = require('..')

const FAST = { max_attempts: 2, backoff: { kind: 'fixed', delay_ms: 1 }, jitter: 'none' }
// Events reach the JS thread through a threadsafe function, a little after the call that caused
// them resolved: wait for them (up to 5 s), without ever passing a test that lacks them.
async function until(cond) {
  const end = Date.now() + 5000
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 2))
}

test('events: every state change, in order, by kind and as "event"', async () => {
  const clock = new ManualClock()
  const outbox = new Outbox('memory', 'q', { retry: FAST, clock })
  assert.ok(outbox.events instanceof EventEmitter)
  assert.equal(outbox.events, outbox.events)
  const all = []
  outbox.events.on('event', (e) => all.push([e.kind, e.id]))
  const dead = []
  outbox.on('dead_lettered', (e) => dead.push(e))
  await outbox.enqueue('x', { id: 'a' })
  let [d] = await outbox.lease()
  await d.retry('down')
  clock.advanceMs(1)
  ;[d] = await outbox.lease()
  await d.retry('down again')
  await outbox.enqueue('y', { id: 'b' })
  ;[d] = await outbox.lease()
  await d.ack()
  await until(() => all.length >= 8)
  assert.deepEqual(all, [
    ['enqueued', 'a'], ['leased', 'a'], ['retried', 'a'], ['leased', 'a'], ['dead_lettered', 'a'],
    ['enqueued', 'b'], ['leased', 'b'], ['acked', 'b'],
  ])
  assert.equal(dead.length, 1)
  assert.equal(dead[0].id, 'a')
  assert.match(dead[0].reason, /down again/)
  assert.equal(dead[0].atMs, clock.nowMs())
})

test('events from a worker, and off() stops them', async () => {
  const outbox = new Outbox('memory', 'q', { retry: FAST })
  const acked = []
  const onAcked = (e) => acked.push(e.id)
  outbox.on('acked', onAcked)
  await outbox.enqueueMany([{ payload: '1', id: 'm1' }, { payload: '2', id: 'm2' }])
  await new Worker(outbox, () => {}).drain()
  await until(() => acked.length >= 2)
  assert.deepEqual(acked.sort(), ['m1', 'm2'])
  outbox.off('acked', onAcked)
  await outbox.enqueue('3', { id: 'm3' })
  await new Worker(outbox, () => {}).drain()
  await new Promise((r) => setTimeout(r, 50)) // time for a (wrong) event to arrive
  assert.deepEqual(acked.sort(), ['m1', 'm2'])
  const next = once(outbox.events, 'enqueued')
  await outbox.enqueue('4', { id: 'm4' })
  const [e] = await next
  assert.equal(e.id, 'm4')
})

test('recordEvents/takeEvents still work next to the emitter', async () => {
  const outbox = new Outbox('memory', 'q')
  outbox.recordEvents()
  const seen = []
  outbox.on('event', (e) => seen.push(e.kind))
  await outbox.enqueue('x', { id: 'a' })
  assert.deepEqual(outbox.takeEvents().map((e) => e.kind), ['enqueued'])
  await until(() => seen.length >= 1)
  assert.deepEqual(seen, ['enqueued'])
})

test('a listener does not keep Node running', () => {
  const script = `
    const { Outbox } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const o = new Outbox('memory', 'q')
    o.on('event', () => {})
    o.enqueue('x').then(() => console.log('enqueued'))
  `
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 10000, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'enqueued')
})

test('an outbox with listeners still on can be collected once unused', async () => {
  require('node:v8').setFlagsFromString('--expose-gc')
  const gc = require('node:vm').runInNewContext('gc')
  let collected = 0
  const registry = new FinalizationRegistry(() => collected++)
  for (let i = 0; i < 50; i++) {
    const o = new Outbox('memory', 'q')
    o.on('event', () => {})
    registry.register(o, i)
    await o.enqueue('x')
  }
  for (let i = 0; i < 10 && collected < 40; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.ok(collected >= 40, `only ${collected} of 50 outboxes collected`)
})
