'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const oncely = require('..')

test('loads and reports its version', () => {
  assert.equal(typeof oncely.version(), 'string')
})

test('inbox process runs a handler once per id', async () => {
  const inbox = new oncely.Inbox('memory', 'payments', { mode: 'exactly_once', lease: 30 })
  let runs = 0
  const charge = async () => { runs++; return Buffer.from('charged') }
  const first = await inbox.process('order-1', '{"amount":10}', charge)
  const again = await inbox.process('order-1', '{"amount":10}', charge)
  assert.deepEqual([first.result.toString(), first.replayed], ['charged', false])
  assert.deepEqual([again.result.toString(), again.replayed], ['charged', true])
  assert.equal(runs, 1)
})
