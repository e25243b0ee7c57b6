'use strict'
// Durable requests: sendRequest enqueues keyed requests in an outbox; a Worker delivers them
// with deliverRequests(fetch) to a real Express server (with the idempotency middleware) on
// loopback. A lost answer is retried (the same key) and replayed (the effect once), a 503 with Retry-After is
// retried no sooner than it says, a 422 is dead-lettered at once, a 201 is acked.

const test = require('node:test')
const assert = require('node:assert/strict')
const express = require('express')
const { Outbox, Worker } = require('..')
const { idempotency, sendRequest, deliverRequests } = require('../http')

test('sendRequest + Worker(deliverRequests): exactly-once effects, verdicts settle the messages', { timeout: 30_000 }, async () => {
  const effects = new Map()
  const attempts = new Map()
  const requests = new Map()
  const app = express()
  app.use((req, res, next) => {
    const key = req.get('idempotency-key')
    requests.set(key, (requests.get(key) ?? 0) + 1)
    next()
  })
  app.use(idempotency({ store: 'memory' }))
  app.use(express.json())
  app.post('/charges', (req, res) => {
    const key = req.get('idempotency-key')
    const n = (attempts.get(key) ?? []).length + 1
    attempts.set(key, [...(attempts.get(key) ?? []), Date.now()])
    const { mode } = req.body
    if (mode === 'busy' && n === 1) return res.status(503).set('retry-after', '1').send('busy')
    if (mode === 'refuse') return res.status(422).json({ error: 'no such account' })
    effects.set(key, (effects.get(key) ?? 0) + 1)
    res.status(201).json({ charged: req.body.amount, key })
  })
  const server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)) })
  const url = `http://127.0.0.1:${server.address().port}/charges`
  const outbox = new Outbox('memory', 'http-out', { retry: { max_attempts: 5, backoff: { kind: 'fixed', delay_ms: 20 }, jitter: 'none' } })
  const ids = {}
  for (const mode of ['ok', 'flaky', 'busy', 'refuse']) {
    ids[mode] = await sendRequest(outbox, { method: 'POST', url, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode, amount: 5 }) })
  }
  const mine = await sendRequest(outbox, { url, headers: { 'Idempotency-Key': 'my-key', 'content-type': 'application/json' }, body: '{"mode":"ok","amount":1}' })
  assert.equal(mine, 'my-key', 'a key the request has is its message id')
  // The first answer to the 'flaky' charge is lost on its way back (after the server stored it).
  let lost = false
  const lossyFetch = async (u, init) => {
    const r = await fetch(u, init)
    if (!lost && new Headers(init.headers).get('idempotency-key') === ids.flaky) {
      lost = true
      await r.arrayBuffer()
      throw new TypeError('fetch failed: the connection was reset')
    }
    return r
  }
  const worker = new Worker(outbox, deliverRequests(lossyFetch, { timeout: 5 }), { concurrency: 2 }).start()
  try {
    const settled = async () => {
      for (;;) {
        const records = await Promise.all([...Object.values(ids), mine].map((id) => outbox.get(id)))
        if (records.every((r) => r === null || r.state === 'dead' || r.state === 'delivered')) return records
        await new Promise((r) => setTimeout(r, 50))
      }
    }
    await settled()
  } finally {
    await worker.stop()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
  assert.equal(effects.get(ids.ok), 1)
  assert.equal(effects.get(ids.flaky), 1, 'the lost answer was retried with the same key and replayed')
  assert.equal(requests.get(ids.flaky), 2, 'sent twice, with one key')
  assert.equal(attempts.get(ids.flaky).length, 1, 'the second answered by a replay')
  assert.equal(effects.get(ids.busy), 1)
  const [first, second] = attempts.get(ids.busy)
  assert.ok(second - first >= 950, `Retry-After: 1 honoured (${second - first} ms)`)
  assert.equal(effects.get(ids.refuse), undefined)
  assert.equal(requests.get(ids.refuse), 1, 'a final answer is not retried')
  const dead = await outbox.deadLetters()
  assert.deepEqual(dead.map((r) => r.id), [ids.refuse])
  assert.match(dead[0].reason ?? dead[0].lastError ?? '', /HTTP 422/)
  assert.equal(effects.get('my-key'), 1)
})
