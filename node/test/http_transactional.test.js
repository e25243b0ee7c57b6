'use strict'
// The transactional routes (Express `transactional`, Fastify `fastifyTransactional`) on SQLite
// (and PostgreSQL with ONCELY_POSTGRES_URL): the handler's row and the stored response commit
// together; a retry is replayed without a second row; a throw or a 5xx rolls the row back and
// leaves the key free; the same key with another body is refused.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const express = require('express')
const Fastify = require('fastify')
const { Store } = require('..')
const { transactional, fastifyTransactional } = require('../http')

const PG = process.env.ONCELY_POSTGRES_URL
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-http-tx-'))
test.after(() => fs.rmSync(TMP, { recursive: true, force: true }))

// What the route does with a request body `{ n, fail }`: insert row n, then answer, throw or 503.
function ledger(pg) {
  return (tx, body) => {
    const { n, fail } = JSON.parse(body.toString('utf8'))
    tx.execute(pg ? 'INSERT INTO ledger (n) VALUES ($1)' : 'INSERT INTO ledger (n) VALUES (?)', [n])
    if (fail === 'throw') throw new Error('bank unreachable')
    if (fail === '503') return { status: 503, headers: { 'retry-after': '1' }, body: 'later' }
    return { status: 201, headers: [['content-type', 'application/json']], body: JSON.stringify({ row: n }) }
  }
}

const SERVERS = {
  async express(store, route) {
    const app = express()
    app.post('/ledger', transactional({ store }, (tx, req) => route(tx, req.rawBody)))
    app.use((err, req, res, next) => res.status(500).end(String(err.message)))
    const server = await new Promise((r) => { const s = app.listen(0, '127.0.0.1', () => r(s)) })
    return { url: `http://127.0.0.1:${server.address().port}/ledger`, close: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)) } }
  },
  async fastify(store, route) {
    const app = Fastify({ forceCloseConnections: true })
    app.post('/ledger', fastifyTransactional({ store }, (tx, request) => route(tx, request.rawBody)))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { url: `http://127.0.0.1:${app.server.address().port}/ledger`, close: () => app.close() }
  },
}

const STORES = { sqlite: async (n) => path.join(TMP, `${n}.db`) }
if (PG) STORES.postgres = async (n) => Store.postgresSchemaUrl(PG, `http_tx_${process.pid}_${n}`)

let fresh = 0
for (const [server, start] of Object.entries(SERVERS)) {
  for (const [storeName, location] of Object.entries(STORES)) {
    test(`${server} transactional route on ${storeName}`, async () => {
      const store = new Store(await location(`${server}_${++fresh}`))
      await store.transaction((tx) => tx.execute('CREATE TABLE ledger (n INTEGER NOT NULL)'))
      const srv = await start(store, ledger(storeName === 'postgres'))
      const post = async (key, body) => {
        const r = await fetch(srv.url, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) })
        return { status: r.status, replayed: r.headers.get('idempotent-replayed'), body: await r.text() }
      }
      try {
        assert.deepEqual(await post('a', { n: 1 }), { status: 201, replayed: null, body: '{"row":1}' })
        assert.deepEqual(await post('a', { n: 1 }), { status: 201, replayed: 'true', body: '{"row":1}' })
        assert.equal((await post('a', { n: 2 })).status, 422)
        assert.equal((await post('b', { n: 3, fail: 'throw' })).status, 500)
        assert.equal((await post('c', { n: 4, fail: '503' })).status, 503)
        assert.deepEqual(await post('b', { n: 3 }), { status: 201, replayed: null, body: '{"row":3}' }, 'the key was left free')
        assert.equal((await post('missing-key-is-refused', { n: 9 })).status, 201)
        const r = await fetch(srv.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":8}' })
        assert.equal(r.status, 400)
        assert.equal((await r.json()).type, 'urn:oncely:problem:idempotency-key-missing')
        const rows = await store.transaction((tx) => tx.execute('SELECT n FROM ledger ORDER BY n'))
        assert.deepEqual(rows.map(([n]) => n), [1, 3, 9], 'no row of a thrown, 503 or refused request')
      } finally {
        await srv.close()
      }
    })
  }
}
