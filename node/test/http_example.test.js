'use strict'
// examples/http_payments.js runs: the payment is charged once, its retry replayed, the reused
// key refused, the refund's row written once.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const EXAMPLE = path.join(__dirname, '..', 'examples', 'http_payments.js')

test('examples/http_payments.js runs: charged once, retry replayed, reused key refused', () => {
  const r = spawnSync(process.execPath, [EXAMPLE], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(r.stdout.trim().split('\n'), [
    'payment: 201 {"id":"pay_1","amount":1000,"currency":"EUR"} (replayed: no)',
    'retry: 201 {"id":"pay_1","amount":1000,"currency":"EUR"} (replayed: true)',
    'reused key: 422 urn:oncely:problem:idempotency-key-reused',
    'other client: 201 {"id":"pay_2","amount":700,"currency":"EUR"} (replayed: no)',
    'refund: 201 {"refund":"ref_1","payment":"pay_1","amount":300} (replayed: no)',
    'refund retry: 201 {"refund":"ref_1","payment":"pay_1","amount":300} (replayed: true)',
    'charges made: 2; refund rows: 1',
  ])
})
