'use strict'
// `Idempotency-Key` for HTTP in Node: Express middleware, a Fastify plugin, a transactional
// route, a retrying `fetch` and durable requests through an outbox. Thin adapters: each one
// carries a request or a response between the framework and the core (oncely::http, through
// `HttpGate`, `HttpRetry` and `httpVerdict`); every decision — which requests take a key, what
// is stored, replayed or refused, when a client tries again — is the core's (see README.md).

const { randomUUID } = require('node:crypto')
const { Readable } = require('node:stream')
const { HttpGate, HttpRetry, httpVerdict, httpRequestPayload, httpRequestOf, Permanent, Retry, InvalidArgumentError } = require('..')

const KEY_HEADER = 'idempotency-key'

function invalid(name, reason) {
  return new InvalidArgumentError(`invalid argument \`${name}\`: ${reason}`, 'ONCELY_INVALID_ARGUMENT')
}

// The options every server adapter takes: a `gate` to share, or a `store` and a `policy` to
// open one with; `scope(req)` names the request's key space; `onError(error, req)` hears a
// completion that failed (the response is sent anyway).
function serverOptions(options, extra = []) {
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object with `store` (or `gate`)')
  const known = ['store', 'policy', 'gate', 'scope', 'onError', ...extra]
  for (const k of Object.keys(options)) {
    if (!known.includes(k)) throw invalid('options', `has no option \`${k}\` (known: ${known.join(', ')})`)
  }
  const { store, policy, gate, scope, onError } = options
  if (scope !== undefined && scope !== null && typeof scope !== 'function') throw invalid('scope', 'must be a function of the request')
  if (onError !== undefined && onError !== null && typeof onError !== 'function') throw invalid('onError', 'must be a function')
  let g = gate
  if (g === undefined || g === null) g = new HttpGate(store, policy)
  else if (!(g instanceof HttpGate)) throw invalid('gate', 'must be an HttpGate')
  const report = onError ?? ((e) => process.emitWarning(`oncely/http: a response was sent but not settled: ${e?.message ?? e}`))
  return {
    gate: g,
    scope: scope ?? (() => null),
    // Never throws: it runs where the response still has to be sent.
    onError: (e, req) => {
      try {
        report(e, req)
      } catch {
        // the listener's own failure is not the response's
      }
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions

// Node's raw header list (`[name, value, name, value, ...]`) as `[name, value]` pairs.
function rawPairs(raw) {
  const out = []
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]])
  return out
}

// Outgoing headers (`{ name: string | number | string[] }`) as `[name, value]` pairs.
function headerPairs(headers, rawNames) {
  const out = []
  const names = rawNames ?? Object.keys(headers)
  for (const name of names) {
    const v = headers[name.toLowerCase()] ?? headers[name]
    if (v === undefined || v === null) continue
    if (Array.isArray(v)) for (const x of v) out.push([name, String(x)])
    else out.push([name, String(v)])
  }
  return out
}

// A handler's response for the core: headers as pairs (an object of headers is made pairs).
function responseInit(r) {
  if (r === null || typeof r !== 'object') return r
  const headers = r.headers === undefined || r.headers === null || Array.isArray(r.headers) ? r.headers : headerPairs(r.headers)
  return { status: r.status, headers, body: r.body }
}

// The request as the gate sees it.
function gateRequest(method, url, rawHeaders, body, scope) {
  const at = url.indexOf('?')
  return {
    method,
    path: at < 0 ? url : url.slice(0, at),
    query: at < 0 ? '' : url.slice(at + 1),
    headers: rawPairs(rawHeaders),
    body,
    scope: scope ?? null,
  }
}

function toBuffer(chunk, encoding) {
  if (chunk === undefined || chunk === null) return null
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  return Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8')
}

async function collect(stream) {
  const chunks = []
  for await (const c of stream) chunks.push(toBuffer(c))
  return Buffer.concat(chunks)
}

// ---------------------------------------------------------------------------------------------
// Express

// The whole raw body of an Express/Node request, read once and kept as `req.rawBody`. A request
// that goes on to the route is then rewound (`rewind`) so it reads as a fresh stream of the same
// bytes and body parsers mounted after the middleware (express.json(), ...) still work; one
// answered at once (a replay, a refusal) is not, which saves the stream's cost where it is not
// needed.
async function rawBodyOf(req) {
  if (Buffer.isBuffer(req.rawBody)) return req.rawBody
  if (req.readableEnded || req._body) {
    throw invalid('idempotency', 'the request body was already read: mount the middleware before body parsers')
  }
  const body = await collect(req)
  req.rawBody = body
  return body
}

const STREAM_METHODS = [
  'on', 'once', 'addListener', 'prependListener', 'prependOnceListener', 'removeListener', 'off',
  'removeAllListeners', 'listeners', 'listenerCount', 'pipe', 'unpipe', 'read', 'resume', 'pause',
  'isPaused', 'setEncoding', 'unshift', Symbol.asyncIterator,
]
const STREAM_PROPERTIES = ['readable', 'readableEnded', 'readableFlowing', 'readableLength', '_readableState']

// `req` made to read as `body` again (its own stream is spent).
function rewind(req, body) {
  const again = Readable.from(body.length ? [body] : [], { objectMode: false })
  for (const m of STREAM_METHODS) req[m] = again[m].bind(again)
  for (const p of STREAM_PROPERTIES) Object.defineProperty(req, p, { configurable: true, get: () => again[p] })
}

function expressRequest(req, body, scope) {
  return gateRequest(req.method, req.originalUrl ?? req.url, req.rawHeaders, body, scope(req))
}

// Sends `response` exactly: its status, its headers (and no other), its body.
function sendExactly(res, response) {
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  res.writeHead(response.status, response.headers.flat())
  res.end(response.body)
}

// Holds back what the handler writes to `res` until it ends, settles `claim` by that response
// (stored or the key given back, by the policy), then sends it as it was. A client that went
// away does not settle it: the handler may still be running, and completes it when it answers
// (a handler that never answers leaves the key claimed until its lease runs out).
function captureExpress(req, res, claim, onError) {
  const { write, end, writeHead } = res
  const chunks = []
  res.writeHead = function (status, reason, headers) {
    if (typeof reason !== 'string') headers = reason
    else res.statusMessage = reason
    res.statusCode = status
    if (Array.isArray(headers)) {
      const pairs = Array.isArray(headers[0]) ? headers : rawPairs(headers)
      for (const [n, v] of pairs) res.appendHeader(n, v)
    } else if (headers) {
      for (const [n, v] of Object.entries(headers)) res.setHeader(n, v)
    }
    return res
  }
  res.write = function (chunk, encoding, cb) {
    const b = toBuffer(chunk, encoding)
    if (b) chunks.push(b)
    const done = typeof encoding === 'function' ? encoding : cb
    if (typeof done === 'function') process.nextTick(done)
    return true
  }
  res.end = function (chunk, encoding, cb) {
    if (typeof chunk === 'function') [cb, chunk] = [chunk, undefined]
    else if (typeof encoding === 'function') [cb, encoding] = [encoding, undefined]
    const b = toBuffer(chunk, encoding)
    if (b) chunks.push(b)
    res.write = write
    res.end = end
    res.writeHead = writeHead
    const body = Buffer.concat(chunks)
    const response = { status: res.statusCode, headers: headerPairs(res.getHeaders(), res.getRawHeaderNames?.()), body }
    claim.complete(response).catch((e) => onError(e, req)).finally(() => end.call(res, body, cb))
    return res
  }
}

/**
 * Express middleware: `Idempotency-Key` by the core's gate. Mount it before body parsers (it
 * reads the raw body, keeps it as `req.rawBody`, and lets later parsers read it again). Options:
 * `store` (a `Store` or location) and `policy` (the HTTP options), or `gate` (an `HttpGate` to
 * share); `scope(req)` (a string or null: whose key space); `onError(error, req)` (a completion
 * that failed; the response is still sent). A keyed request runs the route once: the response
 * it sends is stored (or the key given back) before it goes out; a retry gets it replayed, a
 * refusal is sent as an RFC 9457 problem, and the route does not run.
 */
function idempotency(options) {
  const { gate, scope, onError } = serverOptions(options)
  return function idempotencyMiddleware(req, res, next) {
    rawBodyOf(req)
      .then((body) => {
        // Answered at once when no store access is needed (a refusal, a recent replay).
        const request = expressRequest(req, body, scope)
        return gate.admitNow(request) ?? gate.admit(request)
      })
      .then((admission) => {
        if (admission.kind === 'respond') return sendExactly(res, admission.response)
        rewind(req, req.rawBody)
        if (admission.kind === 'run') captureExpress(req, res, admission.claim, onError)
        next()
      })
      .catch(next)
  }
}

/**
 * An Express route that answers with the synchronous `handler(tx, req)` inside one transaction
 * of the store (SQLite or PostgreSQL) through `gate.respondInTransaction`: what it writes with
 * `tx.execute`, the key's claim and its stored response commit together (exactly once). It
 * returns `{ status, headers, body }` (headers as pairs or an object); a throw rolls back,
 * gives the key back and goes to `next(error)`. Options as `idempotency`'s. Use it without the
 * `idempotency` middleware on the same route.
 */
function transactional(options, handler) {
  if (typeof handler !== 'function') throw invalid('handler', 'must be a function (tx, req) => response')
  const { gate, scope } = serverOptions(options)
  return function transactionalRoute(req, res, next) {
    rawBodyOf(req)
      .then((body) => gate.respondInTransaction(expressRequest(req, body, scope), (tx) => responseInit(handler(tx, req))))
      .then((response) => sendExactly(res, response), next)
  }
}

// ---------------------------------------------------------------------------------------------
// Fastify

const CLAIM = Symbol('oncely.claim')

function sendRaw(reply, response) {
  reply.hijack()
  reply.raw.writeHead(response.status, response.headers.flat())
  reply.raw.end(response.body)
}

/**
 * Fastify plugin (`fastify.register(fastifyIdempotency, options)`, options as
 * `idempotency`'s): applies to the routes of the context it is registered in. The raw body is
 * kept as `request.rawBody` (a `preParsing` hook) and admitted in `preHandler`; for a keyed
 * request the response is settled in `onSend` (stored, or the key given back by the policy)
 * before it is sent, and a request whose handler failed (`onError`) or whose response never went
 * out gives its key back.
 */
function fastifyIdempotency(fastify, options, done) {
  let settings
  try {
    settings = serverOptions(options)
  } catch (e) {
    return done(e)
  }
  const { gate, scope, onError } = settings
  fastify.addHook('preParsing', async (request, reply, payload) => {
    const body = await collect(payload)
    request.rawBody = body
    const again = Readable.from(body.length ? [body] : [])
    again.receivedEncodedLength = body.length
    return again
  })
  fastify.addHook('preHandler', async (request, reply) => {
    const body = request.rawBody ?? Buffer.alloc(0)
    const asked = gateRequest(request.method, request.raw.url, request.raw.rawHeaders, body, scope(request))
    const admission = gate.admitNow(asked) ?? (await gate.admit(asked))
    if (admission.kind === 'respond') {
      sendRaw(reply, admission.response)
      return reply
    }
    if (admission.kind === 'run') request[CLAIM] = { claim: admission.claim, failed: false, settled: false }
  })
  fastify.addHook('onError', async (request) => {
    if (request[CLAIM]) request[CLAIM].failed = true
  })
  fastify.addHook('onSend', async (request, reply, payload) => {
    const c = request[CLAIM]
    if (!c || c.settled) return payload
    c.settled = true
    if (c.failed) {
      await c.claim.abandon().catch((e) => onError(e, request))
      return payload
    }
    const body = payload instanceof Readable ? await collect(payload) : toBuffer(payload) ?? Buffer.alloc(0)
    const response = { status: reply.statusCode, headers: headerPairs(reply.getHeaders()), body }
    await c.claim.complete(response).catch((e) => onError(e, request))
    return body
  })
  const giveBack = async (request) => {
    const c = request[CLAIM]
    if (c && !c.settled) {
      c.settled = true
      await c.claim.abandon().catch((e) => onError(e, request))
    }
  }
  // A reply that went out without onSend (hijacked by the route) gives the key back. An aborted
  // request does not: its handler may still be running, and settles the claim when it answers.
  fastify.addHook('onResponse', giveBack)
  done()
}
// As fastify-plugin does: the hooks apply to the context the plugin is registered in.
fastifyIdempotency[Symbol.for('skip-override')] = true
fastifyIdempotency[Symbol.for('fastify.display-name')] = 'oncely-idempotency'

/**
 * A Fastify route answering with the synchronous `handler(tx, request)` inside one store
 * transaction (`gate.respondInTransaction`), as `transactional` does for Express: route options
 * to pass as they are, `app.post('/refunds', fastifyTransactional(options, handler))` (a
 * `preParsing` hook keeps the raw body as `request.rawBody`, the `handler` answers). A throw
 * rolls back, gives the key back and is Fastify's error to answer. Do not register
 * `fastifyIdempotency` for such a route.
 */
function fastifyTransactional(options, handler) {
  if (typeof handler !== 'function') throw invalid('handler', 'must be a function (tx, request) => response')
  const { gate, scope } = serverOptions(options)
  return {
    preParsing: async (request, reply, payload) => {
      const body = await collect(payload)
      request.rawBody = body
      const again = Readable.from(body.length ? [body] : [])
      again.receivedEncodedLength = body.length
      return again
    },
    handler: async (request, reply) => {
      const req = gateRequest(request.method, request.raw.url, request.raw.rawHeaders, request.rawBody ?? Buffer.alloc(0), scope(request))
      const response = await gate.respondInTransaction(req, (tx) => responseInit(handler(tx, request)))
      sendRaw(reply, response)
      return reply
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Client

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal.reason)
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

// The caller's signal combined with a per-attempt timeout (seconds), if any.
function attemptSignal(signal, timeout) {
  if (!timeout) return { signal, done: () => {} }
  const c = new AbortController()
  const t = setTimeout(() => c.abort(new Error(`no answer within ${timeout} s`)), timeout * 1000)
  const onAbort = () => c.abort(signal.reason)
  if (signal?.aborted) c.abort(signal.reason)
  else signal?.addEventListener('abort', onAbort, { once: true })
  return {
    signal: c.signal,
    done: () => {
      clearTimeout(t)
      signal?.removeEventListener('abort', onAbort)
    },
  }
}

/**
 * A `fetch` that sends every request with an `Idempotency-Key` (the one it has, else a fresh
 * UUID), keeps the key and the body across attempts, and tries again as the core's `HttpRetry`
 * says: after a network error or a timeout (no answer), a 409 in flight, a 408/425/429 or a 5xx,
 * honouring `Retry-After`, until the retry policy gives up; then it resolves to the last
 * response (or rejects with the last error). Options: `retry` (a retry-policy object, as the
 * Outbox's `retry` option), `timeout` (seconds per attempt). The caller's `signal` stops it.
 */
function idempotentFetch(fetchFn = globalThis.fetch, options = {}) {
  if (typeof fetchFn !== 'function') throw invalid('fetch', 'must be a fetch function')
  const { retry, timeout } = options ?? {}
  for (const k of Object.keys(options ?? {})) {
    if (k !== 'retry' && k !== 'timeout') throw invalid('options', `has no option \`${k}\` (known: retry, timeout)`)
  }
  if (timeout !== undefined && timeout !== null && !(typeof timeout === 'number' && timeout > 0)) {
    throw invalid('timeout', 'must be a number of seconds above 0')
  }
  return async function fetchIdempotently(input, init = {}) {
    const request = new Request(input, init)
    const headers = new Headers(request.headers)
    const key = headers.get(KEY_HEADER) ?? randomUUID()
    headers.set(KEY_HEADER, key)
    const body = request.body ? Buffer.from(await request.arrayBuffer()) : undefined
    const retries = new HttpRetry(key, retry)
    const signal = init?.signal ?? undefined
    for (;;) {
      const attempt = attemptSignal(signal, timeout)
      let response = null
      let error
      try {
        response = await fetchFn(request.url, { method: request.method, headers, body, signal: attempt.signal, redirect: request.redirect })
      } catch (e) {
        if (signal?.aborted) throw e
        error = e
      } finally {
        attempt.done()
      }
      const wait = retries.next(response ? response.status : null, response?.headers.get('retry-after') ?? null)
      if (wait === null) {
        if (response) return response
        throw error
      }
      if (response) await response.body?.cancel().catch(() => {})
      await sleep(wait * 1000, signal)
    }
  }
}

/**
 * Durable requests: enqueues `{ method, url, headers, body }` in `outbox` as one message whose id
 * is the request's `Idempotency-Key` (the one in `headers`, else a fresh id); resolves to the
 * key. The payload is the core's one form of a queued request (`httpRequestPayload`), so a worker
 * in any language can deliver it. A `Worker` with `deliverRequests(fetch)` sends it.
 */
async function sendRequest(outbox, { method = 'POST', url, headers = {}, body = null } = {}) {
  if (typeof url !== 'string' && !(url instanceof URL)) throw invalid('url', 'must be a string or a URL')
  const { key, payload } = httpRequestPayload({ method, url: String(url), headers: [...new Headers(headers)], body })
  await outbox.enqueue(payload, { id: key })
  return key
}

/**
 * A `Worker` handler that sends the requests `sendRequest` enqueued, with the message id as the
 * `Idempotency-Key`, and settles each by the core's `httpVerdict`: done acks it, final throws
 * `Permanent` (dead-lettered), again throws `Retry` with the server's `Retry-After` (a network
 * error or a timeout is again). Options: `timeout` (seconds per attempt), `onResponse(response,
 * message)` (called with each response, e.g. to read its body).
 */
function deliverRequests(fetchFn = globalThis.fetch, { timeout, onResponse } = {}) {
  if (typeof fetchFn !== 'function') throw invalid('fetch', 'must be a fetch function')
  return async function deliverRequest(message) {
    const r = httpRequestOf(message.payload)
    const headers = new Headers(r.headers)
    headers.set(KEY_HEADER, message.id)
    const attempt = attemptSignal(undefined, timeout)
    let response = null
    let error
    try {
      response = await fetchFn(r.url, {
        method: r.method,
        headers,
        body: r.body.length ? r.body : undefined,
        signal: attempt.signal,
      })
      if (onResponse) await onResponse(response, message)
      else await response.arrayBuffer()
    } catch (e) {
      if (!response) error = e
      else throw e
    } finally {
      attempt.done()
    }
    const status = response ? response.status : null
    const verdict = httpVerdict(status, response?.headers.get('retry-after') ?? null)
    const what = `${r.method} ${r.url}: ${response ? `HTTP ${status}` : `no answer (${error?.message ?? error})`}`
    if (verdict.kind === 'done') return undefined
    if (verdict.kind === 'final') throw new Permanent(what)
    throw new Retry(what, { after: verdict.after })
  }
}

module.exports = {
  idempotency,
  transactional,
  fastifyIdempotency,
  fastifyTransactional,
  idempotentFetch,
  sendRequest,
  deliverRequests,
  KEY_HEADER,
}
