import test from 'node:test'
import assert from 'node:assert/strict'
import oncely, { Inbox, Outbox, ConflictError } from '../index.js'

test('ESM import: default and named exports', () => {
  assert.equal(typeof oncely.version(), 'string')
  assert.equal(Inbox, oncely.Inbox)
  assert.equal(Outbox, oncely.Outbox)
  assert.equal(ConflictError, oncely.ConflictError)
})
