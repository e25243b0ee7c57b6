'use strict'
// Several Node server processes share one store (an SQLite file; a PostgreSQL schema with
// ONCELY_POSTGRES_URL) behind oncely/http's transactional route: the handler inserts a row into
// its own table inside the store transaction. Racing duplicate keyed POSTs are spread over the
// processes; every key's row is inserted exactly once and every duplicate gets the first
// response (the answering process's pid and sequence number included).
//
// This file is also the server: forked with ONCELY_HTTP_CHILD set, it serves instead of testing.

if (process.env.ONCELY_HTTP_CHILD) {
  serve()
  return
}

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { fork } = require('node:child_process')
const { Store } = require('..')
const { idempotentFetch } = require('../http')

function serve() {
  const express = require('express')
  const { Store } = require('..')
  const { transactional } = require('../http')
  const location = process.env.ONCELY_HTTP_CHILD
  const pg = location.startsWith('postgres')
  const store = new Store(location)
  const app = express()
  let seq = 0
  const sleeper = new Int32Array(new SharedArrayBuffer(4))
  app.post('/apply', transactional({ store, policy: { lease: 10 } }, (tx, req) => {
    const key = req.get('idempotency-key')
    seq += 1
    const body = JSON.parse(req.rawBody.toString('utf8'))
    tx.execute(pg ? 'INSERT INTO applied (key, pid, amount) VALUES ($1, $2, $3)' : 'INSERT INTO applied (key, pid, amount) VALUES (?, ?, ?)', [key, process.pid, body.amount])
    // A wider race window: the row is written, nothing is committed yet.
    Atomics.wait(sleeper, 0, 0, 20)
    return { status: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, pid: process.pid, seq }) }
  }))
  const server = app.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
  process.on('disconnect', () => process.exit(0))
}

const PROCESSES = 3
const KEYS = 16
const DUPLICATES = 4

async function startServers(location) {
  const children = []
  const ports = []
  for (let i = 0; i < PROCESSES; i++) {
    const child = fork(__filename, [], { env: { ...process.env, ONCELY_HTTP_CHILD: location }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    ports.push(await new Promise((resolve, reject) => {
      child.once('message', (m) => resolve(m.port))
      child.once('exit', (code) => reject(new Error(`server ${i} exited (${code})`)))
    }))
  }
  return {
    ports,
    stop: async () => {
      await Promise.all(children.map((c) => new Promise((resolve) => {
        if (c.exitCode !== null) return resolve()
        c.once('exit', resolve)
        c.kill()
      })))
    },
  }
}

async function race(location, placeholders) {
  const store = new Store(location)
  await store.transaction((tx) => tx.execute('CREATE TABLE applied (key TEXT NOT NULL, pid INTEGER NOT NULL, amount INTEGER NOT NULL)'))
  const servers = await startServers(location)
  try {
    // A duplicate in flight is answered 409 with Retry-After; the client tries again with the same key.
    const send = idempotentFetch(fetch, { retry: { max_attempts: 60, backoff: { kind: 'fixed', delay_ms: 50 }, jitter: 'none' } })
    const calls = []
    for (let k = 0; k < KEYS; k++) {
      for (let d = 0; d < DUPLICATES; d++) {
        const port = servers.ports[(k + d) % PROCESSES]
        calls.push(send(`http://127.0.0.1:${port}/apply`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `key-${k}` },
          body: JSON.stringify({ amount: k }),
        }).then(async (r) => ({ k, port, status: r.status, replayed: r.headers.get('idempotent-replayed'), body: await r.text() })))
      }
    }
    const answers = await Promise.all(calls)
    const rows = await store.transaction((tx) => tx.execute('SELECT key, pid FROM applied ORDER BY key'))
    const byKey = new Map()
    for (const [key, pid] of rows) byKey.set(key, [...(byKey.get(key) ?? []), pid])
    for (let k = 0; k < KEYS; k++) {
      assert.equal(byKey.get(`key-${k}`)?.length, 1, `key-${k} applied ${byKey.get(`key-${k}`)?.length ?? 0} times (${placeholders})`)
      const mine = answers.filter((a) => a.k === k)
      assert.ok(mine.every((a) => a.status === 201), JSON.stringify(mine))
      const first = mine.filter((a) => a.replayed === null)
      assert.equal(first.length, 1, `key-${k}: one first answer, the others replays: ${JSON.stringify(mine)}`)
      assert.ok(mine.every((a) => a.body === first[0].body), `key-${k}: every duplicate got the first response: ${JSON.stringify(mine)}`)
      assert.equal(JSON.parse(first[0].body).pid, byKey.get(`key-${k}`)[0], 'the response is the one of the process that wrote the row')
    }
    assert.equal(rows.length, KEYS)
    // Every process answered (on SQLite, the process holding the write lock may well apply
    // every key: the others wait for the lock, then find the key done and replay it).
    assert.equal(new Set(answers.map((a) => a.port)).size, PROCESSES)
  } finally {
    await servers.stop()
  }
}

test(`${PROCESSES} server processes on one SQLite file: racing duplicates apply once, all get the first response`, { timeout: 60_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-http-cluster-'))
  try {
    await race(path.join(dir, 'shared.db'), 'sqlite')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

const PG = process.env.ONCELY_POSTGRES_URL
test(`${PROCESSES} server processes on one PostgreSQL schema: racing duplicates apply once`, { skip: !PG && 'ONCELY_POSTGRES_URL is not set', timeout: 60_000 }, async () => {
  await race(await Store.postgresSchemaUrl(PG, `http_cluster_${process.pid}`), 'postgres')
})

test('the postgres HTTP cluster test runs under CI', (t) => {
  if (PG) return
  assert.notEqual(process.env.CI, 'true', 'ONCELY_POSTGRES_URL is not set under CI')
  t.skip('!! ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)')
})
