'use strict'
// The transactional inbox and enqueue: synchronous handlers writing through `tx`, committed
// with oncely's own records or not at all.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const {
  Store, Inbox, Outbox, Worker, Transaction, Permanent, ClosedError, StorageError, InvalidArgumentError,
  ReplayedFailureError,
} = require('..')

function tmpdb(name = 'tx.db') {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-tx-')), name)
}

async function setup() {
  const store = new Store(tmpdb())
  await store.transaction((tx) => {
    tx.execute('CREATE TABLE ledger (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)')
  })
  return { store, inbox: new Inbox(store, 'bank'), outbox: new Outbox(store, 'receipts') }
}

const rows = (store, sql, params) => store.transaction((tx) => tx.execute(sql, params))

test('the effect, the processed mark and the result commit once', async () => {
  const { store, inbox } = await setup()
  let runs = 0
  const charge = (tx) => {
    runs++
    assert.ok(tx instanceof Transaction)
    assert.equal(tx.open, true)
    tx.execute('INSERT INTO ledger (id, amount) VALUES (?1, ?2)', ['order-1', 10])
    return 'charged'
  }
  const first = await inbox.processTransactional('order-1', '{"amount":10}', charge)
  const again = await inbox.processTransactional('order-1', '{"amount":10}', charge)
  assert.deepEqual([first.result.toString(), first.replayed], ['charged', false])
  assert.deepEqual([again.result.toString(), again.replayed], ['charged', true])
  assert.equal(runs, 1)
  assert.deepEqual(await rows(store, 'SELECT id, amount FROM ledger'), [['order-1', 10]])
  assert.equal((await inbox.get('order-1')).state, 'succeeded')
})

test('a throw rolls back the effect and the claim, and is re-thrown as is', async () => {
  const { store, inbox } = await setup()
  class Declined extends Error {}
  await assert.rejects(
    inbox.processTransactional('o', null, (tx) => {
      tx.execute("INSERT INTO ledger VALUES ('o', 1)")
      throw new Declined('card declined')
    }),
    Declined,
  )
  assert.deepEqual(await rows(store, 'SELECT * FROM ledger'), [])
  assert.equal(await inbox.get('o'), null)
  // Retried later: runs again and commits.
  const r = await inbox.processTransactional('o', null, (tx) => {
    tx.execute("INSERT INTO ledger VALUES ('o', 1)")
    return Buffer.from('ok')
  })
  assert.equal(r.result.toString(), 'ok')
  assert.deepEqual(await rows(store, 'SELECT * FROM ledger'), [['o', 1]])
})

test('Permanent is a permanent failure (stored by the cache policy), rolled back', async () => {
  const store = new Store(tmpdb())
  await store.transaction((tx) => tx.execute('CREATE TABLE t (x)'))
  const inbox = new Inbox(store, 'rx', { cachePolicy: 'success_and_failure' })
  await assert.rejects(inbox.processTransactional('p', null, (tx) => {
    tx.execute('INSERT INTO t VALUES (1)')
    throw new Permanent('no such account')
  }), Permanent)
  await assert.rejects(inbox.processTransactional('p', null, () => 'x'), ReplayedFailureError)
  assert.deepEqual(await rows(store, 'SELECT * FROM t'), [])
})

test('an async handler is refused with a typed error and rolled back', async () => {
  const { store, inbox } = await setup()
  await assert.rejects(
    inbox.processTransactional('a', null, async (tx) => {
      tx.execute("INSERT INTO ledger VALUES ('a', 1)")
      return 'x'
    }),
    (e) => e instanceof InvalidArgumentError && /must be synchronous/.test(e.message),
  )
  await assert.rejects(store.transaction(async () => 1), InvalidArgumentError)
  assert.deepEqual(await rows(store, 'SELECT * FROM ledger'), [])
  assert.equal(await inbox.get('a'), null)
})

test('tx is invalid once its handler returned', async () => {
  const { inbox, outbox } = await setup()
  let kept
  await inbox.processTransactional('k', null, (tx) => {
    kept = tx
    return 'x'
  })
  assert.equal(kept.open, false)
  assert.throws(() => kept.execute('SELECT 1'), ClosedError)
  assert.throws(() => kept.enqueue(outbox, 'late'), ClosedError)
  assert.equal(await outbox.get('late'), null)
})

test('values round-trip: null, integers, BigInt, reals, text, blobs, booleans', async () => {
  const store = new Store(tmpdb())
  const out = await store.transaction((tx) => {
    tx.execute('CREATE TABLE v (a, b, c, d, e, f, g)')
    tx.execute('INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)', [null, 42, 2n ** 60n, 1.5, 'text', Buffer.from([1, 2]), true])
    return tx.execute('SELECT * FROM v')
  })
  assert.deepEqual(out, [[null, 42, 2n ** 60n, 1.5, 'text', Buffer.from([1, 2]), 1]])
})

test('SQL errors and misuse are typed errors; the transaction stays usable', async () => {
  const { store, inbox, outbox } = await setup()
  const other = new Outbox(tmpdb('other.db'), 'q')
  const r = await inbox.processTransactional('m', null, (tx) => {
    assert.throws(() => tx.execute('NOT SQL'), StorageError)
    assert.throws(() => tx.execute('COMMIT'), StorageError)
    assert.throws(() => tx.execute('ROLLBACK'), StorageError)
    assert.throws(() => tx.execute('SELECT ?', [{}]), InvalidArgumentError)
    assert.throws(() => tx.execute('SELECT ?', [2n ** 70n]), InvalidArgumentError)
    assert.throws(() => tx.execute('SELECT ?', [Symbol('s')]), InvalidArgumentError)
    assert.throws(() => tx.execute(42), InvalidArgumentError)
    assert.throws(() => tx.execute('SELECT 1', 'not an array'), InvalidArgumentError)
    assert.throws(() => tx.enqueue(other, 'x'), InvalidArgumentError) // another SQLite file
    assert.throws(() => tx.enqueue({}, 'x'), InvalidArgumentError)
    tx.execute("INSERT INTO ledger VALUES ('m', 3)")
    tx.enqueue(outbox, 'receipt m', { id: 'r-m' })
    return 'ok'
  })
  assert.equal(r.result.toString(), 'ok')
  assert.deepEqual(await rows(store, 'SELECT * FROM ledger'), [['m', 3]])
  assert.equal((await outbox.get('r-m')).state, 'ready')
  await assert.rejects(new Inbox('memory', 'rx').processTransactional('a', null, () => 'x'), InvalidArgumentError)
  await assert.rejects(inbox.processTransactional('z', null, 'no function'), InvalidArgumentError)
  await assert.rejects(store.transaction(), InvalidArgumentError)
})

test('transactional enqueue: queued if and only if the transaction commits', async () => {
  const { store, outbox } = await setup()
  await assert.rejects(store.transaction((tx) => {
    tx.execute("INSERT INTO ledger VALUES ('x', 1)")
    assert.equal(tx.enqueue(outbox, 'rolled back', { id: 'gone' }), 'queued')
    throw new Error('abort')
  }), /abort/)
  assert.equal(await outbox.get('gone'), null)
  const answer = await store.transaction((tx) => {
    tx.execute("INSERT INTO ledger VALUES ('y', 1)")
    return [tx.enqueue(outbox, 'kept', { id: 'kept' }), tx.enqueue(outbox, 'kept', { id: 'kept' })]
  })
  assert.deepEqual(answer, ['queued', 'already_queued'])
  const delivered = []
  await new Worker(outbox, (m) => { delivered.push(m.id) }).drain()
  assert.deepEqual(delivered, ['kept'])
})

test('concurrent transactional calls: each handler runs once, in turn, on the JS thread', async () => {
  const { inbox } = await setup()
  // Many concurrent transactional calls: each handler runs on the JS thread in turn.
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    inbox.processTransactional(`c${i}`, null, (tx) => {
      tx.execute('INSERT INTO ledger VALUES (?, ?)', [`c${i}`, i])
      return String(i)
    })))
  assert.deepEqual(results.map((r) => r.result.toString()), Array.from({ length: 50 }, (_, i) => String(i)))
})

// The same API on PostgreSQL (ONCELY_POSTGRES_URL, set by scripts/with-postgres.sh): `$n`
// placeholders, a fresh schema per test.
const PG = process.env.ONCELY_POSTGRES_URL
let pgSchemas = 0
async function pgSetup() {
  const url = await Store.postgresSchemaUrl(PG, `node_tx_${process.pid}_${++pgSchemas}`)
  const store = new Store(url)
  await store.transaction((tx) => {
    tx.execute('CREATE TABLE ledger (id TEXT PRIMARY KEY, amount BIGINT NOT NULL)')
  })
  return { store, inbox: new Inbox(store, 'bank'), outbox: new Outbox(store, 'receipts') }
}

test('postgres: effect, mark and enqueued message commit once; a throw rolls all back', { skip: !PG && 'ONCELY_POSTGRES_URL is not set' }, async () => {
  const { store, inbox, outbox } = await pgSetup()
  let runs = 0
  const charge = (tx) => {
    runs++
    tx.execute('INSERT INTO ledger (id, amount) VALUES ($1, $2)', ['order-1', 10])
    assert.equal(tx.enqueue(outbox, 'receipt', { id: 'r-1' }), 'queued')
    return 'charged'
  }
  assert.equal((await inbox.processTransactional('order-1', 'p', charge)).replayed, false)
  assert.equal((await inbox.processTransactional('order-1', 'p', charge)).replayed, true)
  assert.equal(runs, 1)
  class Declined extends Error {}
  await assert.rejects(inbox.processTransactional('order-2', 'p', (tx) => {
    tx.execute('INSERT INTO ledger (id, amount) VALUES ($1, $2)', ['order-2', 20])
    tx.enqueue(outbox, 'receipt', { id: 'r-2' })
    throw new Declined('no')
  }), Declined)
  await assert.rejects(inbox.processTransactional('order-3', 'p', async () => 'x'), InvalidArgumentError)
  await assert.rejects(store.transaction((tx) => tx.execute('NOT SQL')), StorageError)
  assert.deepEqual(await store.transaction((tx) => tx.execute('SELECT id, amount FROM ledger ORDER BY id')), [['order-1', 10]])
  assert.equal(await inbox.get('order-2'), null)
  assert.equal(await outbox.get('r-2'), null)
  const delivered = []
  await new Worker(outbox, (m) => { delivered.push(m.id) }).drain()
  assert.deepEqual(delivered, ['r-1'])
})

test('the postgres transactional tests run under CI', (t) => {
  if (PG) return
  assert.notEqual(process.env.CI, 'true', 'ONCELY_POSTGRES_URL is not set under CI')
  t.skip('!! ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)')
})
