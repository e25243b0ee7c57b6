'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const oncely = require('..')

const CLASSES = {
  ONCELY_INVALID_ARGUMENT: 'InvalidArgumentError', ONCELY_CONFLICT: 'ConflictError',
  ONCELY_IN_PROGRESS: 'InProgressError', ONCELY_LEASE_LOST: 'LeaseLostError', ONCELY_STORAGE: 'StorageError',
  ONCELY_CORRUPT_STORE: 'CorruptStoreError', ONCELY_CLOSED: 'ClosedError', ONCELY_TIMEOUT: 'TimeoutError',
}

test('one Error subclass per stable code, all under OncelyError', () => {
  for (const name of Object.values(CLASSES)) {
    assert.ok(oncely[name].prototype instanceof oncely.OncelyError, name)
    assert.ok(oncely[name].prototype instanceof Error, name)
  }
})

test('ConflictError carries code and the core message', async () => {
  const inbox = new oncely.Inbox('memory', 's')
  await inbox.process('id', 'a', () => 'x')
  await assert.rejects(inbox.process('id', 'b', () => 'y'), (e) => {
    assert.ok(e instanceof oncely.ConflictError)
    assert.equal(e.code, 'ONCELY_CONFLICT')
    assert.equal(e.message, 'id `id` was already used with a different payload (fingerprint mismatch)')
    assert.equal(e.name, 'ConflictError')
    return true
  })
})

test('LeaseLostError on a stale ticket', async () => {
  const clock = new oncely.ManualClock()
  const inbox = new oncely.Inbox('memory', 's', { clock, lease: 1 })
  const first = await inbox.begin('id')
  clock.advance(2)
  const second = await inbox.begin('id')
  assert.equal(second.outcome, 'claimed')
  await assert.rejects(first.ticket.finish('late'), { code: 'ONCELY_LEASE_LOST', name: 'LeaseLostError' })
})

test('TimeoutError when waiting for a first delivery runs out', async () => {
  const inbox = new oncely.Inbox('memory', 's')
  await inbox.begin('id')
  await assert.rejects(inbox.process('id', null, () => 'x', { wait: 0.02 }), oncely.TimeoutError)
})

test('CorruptStoreError / StorageError on a bad SQLite path', () => {
  const fs = require('node:fs')
  const os = require('node:os')
  const path = require('node:path')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-node-'))
  try {
    const f = path.join(dir, 'junk.db')
    fs.writeFileSync(f, 'this is not an SQLite database, not at all, no'.repeat(100))
    assert.throws(() => new oncely.Store(f), (e) => e instanceof oncely.OncelyError && /^ONCELY_(CORRUPT_STORE|STORAGE)$/.test(e.code))
    assert.throws(() => new oncely.Store(path.join(dir, 'no', 'such', 'dir', 'x.db')), (e) => e instanceof oncely.StorageError || e instanceof oncely.CorruptStoreError)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
