'use strict'
// A TCP fault proxy (node:net) between idempotentFetch and an Express server with the
// idempotency middleware: it drops requests (closes the client's connection before forwarding
// a byte), drops responses (forwards the request, then closes the client's connection when the
// answer starts), and delays answers past the client's timeout. Every payment's effect happens
// exactly once, and the answer the client finally gets is the first response.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const net = require('node:net')
const express = require('express')
const { idempotency, idempotentFetch } = require('../http')

// The proxy: each request (one per connection) meets the next fault planned for its
// Idempotency-Key (`plan(key)` answers the list; then 'pass' for ever).
function faultProxy(upstreamPort, plan) {
  const log = []
  const attempts = new Map()
  const open = new Set()
  const server = net.createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => {})
    client.once('data', (first) => {
      const key = /idempotency-key: *(\S+)/i.exec(first.toString('latin1'))?.[1] ?? ''
      const n = attempts.get(key) ?? 0
      attempts.set(key, n + 1)
      const fault = plan(key)[n] ?? 'pass'
      log.push([key, fault])
      if (fault === 'drop-request') return client.destroy()
      const upstream = net.connect(upstreamPort, '127.0.0.1')
      open.add(upstream)
      upstream.on('error', () => client.destroy())
      upstream.on('close', () => {
        open.delete(upstream)
        // A delayed answer stays pending until the client gives up.
        if (fault === 'pass') client.end()
        else if (fault !== 'delay') client.destroy()
      })
      client.on('close', () => upstream.destroy())
      upstream.write(first)
      client.pipe(upstream)
      upstream.on('data', (chunk) => {
        if (fault === 'drop-response') {
          client.destroy()
          upstream.destroy()
        } else if (fault === 'delay') {
          // Held back past the client's timeout (the client gives up and closes first).
          setTimeout(() => client.destroyed || client.write(chunk), 5_000).unref()
        } else {
          client.write(chunk)
        }
      })
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      log,
      close: () => new Promise((r) => {
        for (const s of open) s.destroy()
        server.close(r)
      }),
    }))
  })
}

test('drops and delays through a fault proxy: each payment charged once, the client gets the first response', { timeout: 60_000 }, async () => {
  const charges = new Map()
  const firstResponse = new Map()
  let seq = 0
  const app = express()
  app.use(idempotency({ store: 'memory', policy: { lease: 10 } }))
  app.use(express.json())
  app.post('/payments', (req, res) => {
    const key = req.get('idempotency-key')
    charges.set(key, (charges.get(key) ?? 0) + 1)
    const body = JSON.stringify({ payment: ++seq, amount: req.body.amount })
    firstResponse.set(key, firstResponse.get(key) ?? body)
    res.status(201).type('application/json').send(body)
  })
  // One request per connection, so each attempt meets the proxy's next fault.
  const server = http.createServer((req, res) => {
    res.shouldKeepAlive = false
    app(req, res)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  const plan = [
    ['drop-request'],
    ['drop-response'],
    ['delay'],
    ['drop-request', 'drop-response'],
    ['drop-response', 'delay', 'drop-request'],
    [],
  ]
  const proxy = await faultProxy(server.address().port, (key) => plan[Number(key.slice(4))] ?? [])
  const send = idempotentFetch(fetch, { timeout: 1.5, retry: { max_attempts: 8, backoff: { kind: 'fixed', delay_ms: 20 }, jitter: 'none' } })
  try {
    for (const [i, f] of plan.entries()) {
      const key = `pay-${i}`
      const r = await send(`http://127.0.0.1:${proxy.port}/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ amount: 10 + i }),
      })
      assert.equal(r.status, 201, `${key} (${f})`)
      assert.equal(await r.text(), firstResponse.get(key), `${key}: the first response`)
      // A request whose answer was lost (after the handler ran) is answered by a replay.
      const lost = f.some((x) => x !== 'drop-request')
      assert.equal(r.headers.get('idempotent-replayed'), lost ? 'true' : null, `${key} (${f})`)
    }
    assert.deepEqual([...charges.values()], plan.map(() => 1), 'each payment charged once')
    assert.deepEqual(proxy.log.filter(([, f]) => f !== 'pass').map(([, f]) => f), plan.flat(), 'every fault was met, in order')
  } finally {
    await proxy.close()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
})

// A client that gives up while the handler still runs (its timeout is shorter than the handler)
// does not give the key back: its retries are answered 409 until the handler answers, then get
// its response replayed. The handler runs once.
const Fastify = require('fastify')
const { fastifyIdempotency } = require('../http')

// A 409's Retry-After is the time left on the first request's lease (at least 1 s): a short
// lease keeps the test short.
const SLOW_POLICY = { lease: 1 }

const SLOW_SERVERS = {
  async express(charge) {
    const app = express()
    app.use(idempotency({ store: 'memory', policy: SLOW_POLICY }))
    app.post('/slow', async (req, res) => res.status(201).send(await charge(req.get('idempotency-key'))))
    const server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)) })
    return { port: server.address().port, close: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)) } }
  },
  async fastify(charge) {
    const app = Fastify({ forceCloseConnections: true })
    await app.register(fastifyIdempotency, { store: 'memory', policy: SLOW_POLICY })
    app.post('/slow', async (request, reply) => reply.code(201).send(await charge(request.headers['idempotency-key'])))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { port: app.server.address().port, close: () => app.close() }
  },
}

for (const [name, start] of Object.entries(SLOW_SERVERS)) {
  test(`${name}: a client that times out while the handler runs does not make it run twice`, { timeout: 30_000 }, async () => {
    const runs = []
    const srv = await start(async (key) => {
      runs.push(key)
      await new Promise((r) => setTimeout(r, 400))
      return `charged ${key} (run ${runs.length})`
    })
    try {
      const send = idempotentFetch(fetch, { timeout: 0.1, retry: { max_attempts: 40, backoff: { kind: 'fixed', delay_ms: 50 }, jitter: 'none' } })
      const r = await send(`http://127.0.0.1:${srv.port}/slow`, { method: 'POST', headers: { 'idempotency-key': 'slow-1' }, body: '{}' })
      assert.equal(r.status, 201)
      assert.equal(await r.text(), 'charged slow-1 (run 1)')
      assert.equal(r.headers.get('idempotent-replayed'), 'true')
      assert.deepEqual(runs, ['slow-1'])
    } finally {
      await srv.close()
    }
  })
}
