'use strict'
// The native HTTP binding (HttpGate, HttpClaim, HttpRetry, httpVerdict): what it converts and
// refuses, and that it hands the core's answers through unchanged. The rules themselves are
// pinned by the conformance scenarios (http_conformance.test.js) and the core's tests.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const {
  HttpGate, HttpClaim, HttpRetry, httpVerdict, Store, InvalidArgumentError,
} = require('..')

const post = (key, body = '{"amount":10}', extra = {}) => ({
  method: 'POST',
  path: '/payments',
  headers: [['content-type', 'application/json'], ...(key ? [['Idempotency-Key', key]] : [])],
  body,
  ...extra,
})

test('admit: run, complete, then the replay; pass; respond with a problem', async () => {
  const gate = new HttpGate('memory')
  const a = await gate.admit(post('k1'))
  assert.equal(a.kind, 'run')
  assert.equal(a.response, null)
  assert.ok(a.claim instanceof HttpClaim)
  assert.equal(a.claim.id, '0:k1')
  assert.ok(a.claim.token >= 1)
  assert.equal(await a.claim.complete({ status: 201, headers: [['Location', '/p/1'], ['Set-Cookie', 's=1']], body: 'made' }), true)
  const again = await gate.admit(post('k1'))
  assert.equal(again.kind, 'respond')
  assert.equal(again.claim, null)
  assert.deepEqual(again.response.headers, [['Location', '/p/1'], ['idempotent-replayed', 'true']])
  assert.ok(Buffer.isBuffer(again.response.body))
  assert.equal(again.response.body.toString(), 'made')
  assert.equal((await gate.admit({ method: 'GET', path: '/payments', headers: [] })).kind, 'pass')
  const missing = await gate.admit(post(null))
  assert.equal(missing.kind, 'respond')
  assert.equal(missing.response.status, 400)
  assert.equal(JSON.parse(missing.response.body).type, 'urn:oncely:problem:idempotency-key-missing')
})

test('complete: a 5xx gives the key back (false); abandon gives it back; a bad response is refused and gives it back', async () => {
  const gate = new HttpGate('memory', { lease: 30 })
  const a = await gate.admit(post('k2'))
  assert.equal(await a.claim.complete({ status: 503, headers: [], body: Buffer.from('down') }), false)
  const b = await gate.admit(post('k2'))
  assert.equal(b.kind, 'run')
  await b.claim.abandon()
  const c = await gate.admit(post('k2'))
  assert.equal(c.kind, 'run')
  await assert.rejects(c.claim.complete({ status: 600, headers: [], body: '' }), (e) => e instanceof InvalidArgumentError && /status/.test(e.message))
  const d = await gate.admit(post('k2'))
  assert.equal(d.kind, 'run', 'the key was given back')
  await assert.rejects(d.claim.complete({ status: 201, headers: { a: 'b' } }), InvalidArgumentError)
  assert.equal((await gate.admit(post('k2'))).kind, 'run', 'a response that is not one gives the key back too')
})

test('bad arguments are InvalidArgumentError with the core text; HttpClaim cannot be constructed', async () => {
  assert.throws(() => new HttpGate('memory', { retension: 5 }), (e) => e instanceof InvalidArgumentError && e.message.includes('has no option `retension`'))
  assert.throws(() => new HttpGate('memory', { lease: '30s' }), /invalid type: string "30s", expected f64/)
  assert.throws(() => new HttpGate(42), InvalidArgumentError)
  const gate = new HttpGate('memory')
  await assert.rejects(gate.admit({ method: 'POST', path: '/p', headers: [['a']] }), /item 0 has 1 elements/)
  await assert.rejects(gate.admit({ method: 'POST', path: '/p', headers: {} }), InvalidArgumentError)
  await assert.rejects(gate.admit({ method: 'POST', headers: [] }), /`path`: is required/)
  await assert.rejects(gate.admit({ ...post('k'), extra: 1 }), /has no option `extra`/)
  await assert.rejects(gate.admit({ ...post('k'), scope: 'x'.repeat(201) }), /scope/)
  assert.throws(() => new HttpClaim(), TypeError)
})

test('HttpRetry.next and httpVerdict hand the core\'s decisions through', () => {
  const retry = new HttpRetry('key-1', { max_attempts: 3, backoff: { kind: 'fixed', delay_ms: 250 }, jitter: 'none' })
  assert.equal(retry.next(503, null), 0.25)
  assert.equal(retry.next(409, '2'), 2, 'Retry-After wins')
  assert.equal(retry.next(null, null), null, 'the policy gave up: hand the answer over')
  assert.equal(new HttpRetry('k').next(201, null), null)
  assert.equal(new HttpRetry('k').next(422, null), null)
  assert.throws(() => new HttpRetry('k', { max_attempts: 0 }), InvalidArgumentError)
  assert.deepEqual(httpVerdict(201, null), { kind: 'done', after: null })
  assert.deepEqual(httpVerdict(422), { kind: 'final', after: null })
  assert.deepEqual(httpVerdict(null, null), { kind: 'again', after: null })
  assert.deepEqual(httpVerdict(429, '3'), { kind: 'again', after: 3 })
  assert.deepEqual(httpVerdict(503, 'soon'), { kind: 'again', after: null })
  assert.throws(() => httpVerdict(70000), InvalidArgumentError)
  assert.throws(() => httpVerdict('200'), InvalidArgumentError)
})

test('respondInTransaction on SQLite: rows and response commit together; a throw is re-thrown as thrown', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-http-bind-'))
  try {
    const store = new Store(path.join(dir, 'a.db'))
    await store.transaction((tx) => tx.execute('CREATE TABLE t (k TEXT)'))
    const gate = new HttpGate(store)
    let runs = 0
    const handler = (tx) => {
      runs++
      tx.execute('INSERT INTO t VALUES (?)', ['x'])
      return { status: 201, headers: [['content-type', 'text/plain']], body: 'ok' }
    }
    const first = await gate.respondInTransaction(post('t1'), handler)
    assert.deepEqual([first.status, first.body.toString()], [201, 'ok'])
    const again = await gate.respondInTransaction(post('t1'), handler)
    assert.deepEqual(again.headers, [['content-type', 'text/plain'], ['idempotent-replayed', 'true']])
    assert.equal(runs, 1)
    class Declined extends Error {}
    await assert.rejects(gate.respondInTransaction(post('t2'), (tx) => {
      tx.execute('INSERT INTO t VALUES (?)', ['y'])
      throw new Declined('card declined')
    }), Declined)
    await assert.rejects(gate.respondInTransaction(post('t3'), async () => ({ status: 201 })), /must be synchronous/)
    await assert.rejects(gate.respondInTransaction(post('t4'), () => 'ok'), InvalidArgumentError)
    const busy = await gate.respondInTransaction(post('t5'), () => ({ status: 503, headers: [], body: 'later' }))
    assert.equal(busy.status, 503)
    assert.deepEqual(await store.transaction((tx) => tx.execute('SELECT k FROM t')), [['x']])
    assert.equal((await gate.respondInTransaction(post('t1', '{"amount":11}'), handler)).status, 422)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('oncely/http and its typings: require by name, tsc --strict', { timeout: 120_000 }, () => {
  const pkg = path.resolve(__dirname, '..')
  const http = require('oncely/http')
  for (const name of ['idempotency', 'transactional', 'fastifyIdempotency', 'fastifyTransactional', 'idempotentFetch', 'sendRequest', 'deliverRequests']) {
    assert.equal(typeof http[name], 'function', name)
  }
  const file = path.join(pkg, 'test', `.http-typings-${process.pid}.ts`)
  fs.writeFileSync(file, `
import { idempotency, idempotentFetch, transactional, sendRequest, deliverRequests, fastifyIdempotency, fastifyTransactional } from 'oncely/http'
const ft = fastifyTransactional({ store: 'app.db' }, (tx, request) => ({ status: 201, body: 'ok' })).handler
import { Outbox, Worker, HttpGate, HttpRetry, httpVerdict } from 'oncely'
const mw = idempotency({ store: 'memory', policy: { methods: ['POST'], retention: 60 }, scope: (req) => req.get('x-tenant') })
const f = idempotentFetch(fetch, { retry: { max_attempts: 3 }, timeout: 2 })
const route = transactional({ store: 'app.db' }, (tx, req) => { tx.execute('SELECT 1'); return { status: 201, headers: { 'content-type': 'text/plain' }, body: 'ok' } })
async function main() {
  const r: Response = await f('http://x', { method: 'POST', body: '{}' })
  const o = new Outbox('memory', 'http')
  const key: string = await sendRequest(o, { url: 'http://x', body: '{}' })
  const w = new Worker(o, deliverRequests(fetch))
  const g = new HttpGate('memory', { lease: 3 })
  const a = await g.admit({ method: 'POST', path: '/', headers: [['idempotency-key', 'k']] })
  if (a.kind === 'run' && a.claim) { const ok: boolean = await a.claim.complete({ status: 201, headers: [], body: 'x' }); const t: number = a.claim.token }
  if (a.response) { const b: Buffer = a.response.body; const h: Array<[string, string]> = a.response.headers }
  const resp = await g.respondInTransaction({ method: 'POST', path: '/', headers: [] }, (tx) => ({ status: 200, body: 'x' }))
  const n: number | null = new HttpRetry('k').next(503, null)
  const v: 'done' | 'final' | 'again' = httpVerdict(200, null).kind
  console.log(mw, route, r, key, w, resp.body.length, n, v, fastifyIdempotency)
}
main()
`)
  try {
    const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc')
    const r = spawnSync(process.execPath, [tsc, '--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(pkg, 'node_modules', '@types'),
      path.join(pkg, 'index.d.ts'), path.join(pkg, 'http', 'index.d.ts'), file], { cwd: pkg, encoding: 'utf8' })
    assert.equal(r.status, 0, r.stdout + r.stderr)
  } finally {
    fs.rmSync(file, { force: true })
  }
})

test('admitNow answers refusals and recent replays without the store; null when only the store can', async () => {
  const { HttpGate } = require('..')
  const gate = new HttpGate('memory')
  const headers = [['content-type', 'application/json'], ['idempotency-key', 'k']]
  assert.equal(gate.admitNow({ method: 'POST', path: '/p', headers: [], body: Buffer.from('{}') }).response.status, 400)
  assert.equal(gate.admitNow({ method: 'GET', path: '/p', headers: [] }).kind, 'pass')
  assert.equal(gate.admitNow({ method: 'POST', path: '/p', headers, body: Buffer.from('{}') }), null)
  const { claim } = await gate.admit({ method: 'POST', path: '/p', headers, body: Buffer.from('{}') })
  assert.equal(await claim.complete({ status: 201, headers: [['content-type', 'text/plain']], body: Buffer.from('paid') }), true)
  const replay = gate.admitNow({ method: 'POST', path: '/p', headers, body: Buffer.from('{}') })
  assert.equal(replay.kind, 'respond')
  assert.equal(replay.response.status, 201)
  assert.equal(replay.response.body.toString(), 'paid')
  assert.equal(gate.admitNow({ method: 'POST', path: '/p', headers, body: Buffer.from('{"x":1}') }).response.status, 422)
})

test('a queued request has one payload form and its key is the message id', () => {
  const { httpRequestPayload, httpRequestOf, InvalidArgumentError } = require('..')
  const { key, payload } = httpRequestPayload({
    method: 'POST', url: 'http://127.0.0.1:1/pay', headers: [['Content-Type', 'application/json'], ['Idempotency-Key', 'k-1']], body: Buffer.from('{}\0'),
  })
  assert.equal(key, 'k-1')
  const r = httpRequestOf(payload)
  assert.deepEqual([r.method, r.url, r.headers, r.body.toString()], ['POST', 'http://127.0.0.1:1/pay', [['Content-Type', 'application/json']], '{}\0'])
  // The same bytes Python writes for the same request (the core's one form).
  assert.equal(payload.toString(), '{"method":"POST","url":"http://127.0.0.1:1/pay","headers":[["Content-Type","application/json"]],"body":"e30A"}')
  assert.equal(httpRequestPayload({ method: 'POST', url: 'http://h/' }).key.length, 36)
  assert.throws(() => httpRequestOf(Buffer.from('{"method":"POST"}')), InvalidArgumentError)
})
