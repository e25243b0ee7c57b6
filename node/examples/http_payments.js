'use strict'
// An Express payments service with Idempotency-Key (oncely/http), and a client that retries
// safely. Run it with `node node/examples/http_payments.js` (after node/run-tests.sh built the
// module, with express installed); test/http_example.test.js runs it.
//
// - POST /payments goes through the `idempotency` middleware: a payment is charged once per
//   key; a retry gets the first response replayed (`idempotent-replayed: true`); the same key
//   with another body is refused (422, an RFC 9457 problem).
// - POST /refunds is a transactional route: the refund's row and the stored response commit in
//   one SQLite transaction, so a crash can never keep one without the other.
const os = require('node:os')
const fs = require('node:fs')
const path = require('node:path')
const express = require('express')
const { Store } = require('oncely')
const { idempotency, transactional, idempotentFetch } = require('oncely/http')

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-http-')), 'payments.db')

// ANCHOR: readme
function paymentsService(store) {
  const charges = [] // the payment provider's side, for the demo
  const app = express()
  // Keys live per API client (scope); before body parsers (the key covers the raw body).
  const scope = (req) => req.get('x-api-client') ?? null
  app.post('/refunds', transactional({ store, scope }, (tx, req) => {
    const { payment, amount } = JSON.parse(req.rawBody.toString('utf8'))
    tx.execute('INSERT INTO refunds (payment, amount) VALUES (?, ?)', [payment, amount])
    const [[id]] = tx.execute('SELECT last_insert_rowid()')
    return { status: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refund: `ref_${id}`, payment, amount }) }
  }))
  app.use(idempotency({ store, scope, policy: { retention: 24 * 3600 } }))
  app.use(express.json())
  app.post('/payments', (req, res) => {
    const { amount, currency } = req.body
    if (!Number.isInteger(amount) || amount <= 0) {
      return res.status(422).type('application/problem+json').send({ title: 'amount must be a positive integer' })
    }
    charges.push({ amount, currency })
    res.status(201).location(`/payments/pay_${charges.length}`).json({ id: `pay_${charges.length}`, amount, currency })
  })
  return { app, charges }
}
// ANCHOR_END: readme

async function main() {
  const store = new Store(file)
  await store.transaction((tx) => tx.execute('CREATE TABLE IF NOT EXISTS refunds (id INTEGER PRIMARY KEY, payment TEXT, amount INTEGER)'))
  const { app, charges } = paymentsService(store)
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  const base = `http://127.0.0.1:${server.address().port}`

  // The client: one key per payment, kept across its retries (timeouts, 5xx, 409 in flight).
  const pay = idempotentFetch(fetch, {
    timeout: 5,
    retry: { max_attempts: 5, jitter: 'full', backoff: { kind: 'exponential', initial_ms: 50, factor: 2, max_ms: 1000 } },
  })
  const headers = { 'content-type': 'application/json', 'x-api-client': 'shop-1', 'idempotency-key': 'order-1001' }
  const show = async (what, r) => {
    const replayed = r.headers.get('idempotent-replayed') ?? 'no'
    console.log(`${what}: ${r.status} ${await r.text()} (replayed: ${replayed})`)
  }
  await show('payment', await pay(`${base}/payments`, { method: 'POST', headers, body: '{"amount":1000,"currency":"EUR"}' }))
  // The same request again (the client lost the answer): replayed, not charged again.
  await show('retry', await pay(`${base}/payments`, { method: 'POST', headers, body: '{ "currency": "EUR", "amount": 1000 }' }))
  // The same key with another amount: refused.
  const reused = await pay(`${base}/payments`, { method: 'POST', headers, body: '{"amount":5,"currency":"EUR"}' })
  console.log(`reused key: ${reused.status} ${JSON.parse(await reused.text()).type}`)
  // Another API client may use the same key: its own key space.
  await show('other client', await pay(`${base}/payments`, { method: 'POST', headers: { ...headers, 'x-api-client': 'shop-2' }, body: '{"amount":700,"currency":"EUR"}' }))

  const refund = { method: 'POST', headers: { ...headers, 'idempotency-key': 'refund-1' }, body: '{"payment":"pay_1","amount":300}' }
  await show('refund', await pay(`${base}/refunds`, refund))
  await show('refund retry', await pay(`${base}/refunds`, refund))

  const rows = await store.transaction((tx) => tx.execute('SELECT count(*) FROM refunds'))
  console.log(`charges made: ${charges.length}; refund rows: ${rows[0][0]}`)
  server.closeAllConnections()
  server.close()
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
