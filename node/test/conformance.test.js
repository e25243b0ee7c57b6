'use strict'
// The Node.js runner of oncely's conformance scenarios (tests/conformance/README.md): every
// tests/conformance/scenarios/**/*.json runs unchanged on the "memory" store, on an SQLite temp
// file and (with ONCELY_POSTGRES_URL) on a fresh PostgreSQL schema, with the same canonical
// rendering and extra checks (growing fencing tokens, documented delay bounds) as the Rust runner
// and the Python port. ONCELY_CONFORMANCE_FILTER=substring
// restricts the run.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const oncely = require('..')
const { Inbox, ManualClock, OncelyError, Outbox, Permanent, Retry, RetryPolicy, Snooze, Store, Worker } = oncely

const ROOT = path.resolve(__dirname, '..', '..')
const SCENARIOS = path.join(ROOT, 'tests', 'conformance', 'scenarios')
const CLOCK_START_MS = 1_700_000_000_000
const DEFAULT_RETRY = {
  max_attempts: 10,
  backoff: { kind: 'exponential', initial_ms: 100, factor: 2.0, max_ms: 60000 },
  jitter: 'full',
}
const MODES = ['at_most_once', 'at_least_once', 'exactly_once']

class Malformed extends Error {}
class HandlerFailed extends Error {}
class HandlerFailedPermanently extends Permanent {}
// The exception class a `work` step's `raise` handler throws (tests/conformance/README.md).
class HandlerFailure extends Error {}
// What this runner's language can express (a handler may return any value, hints any number).
const CAPABILITIES = ['dynamic_handlers']

// The scenario format itself is checked once, by the Rust runner against
// tests/conformance/scenario.schema.json: this runner only maps steps to calls.

const isObj = (o) => o !== null && typeof o === 'object' && !Array.isArray(o)

const text = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('utf8'))
const secs = (ms) => (ms === null || ms === undefined ? undefined : ms / 1000)
const off = (t) => t - CLOCK_START_MS
const errOf = (e) => ({ error: e.code.replace(/^ONCELY_/, '').toLowerCase() })
const g = (s, k) => (s[k] === null ? undefined : s[k])

// Documented delay bounds (README "Checks beyond expect"), computed independently of the core.
function delayBounds(policy, n, prev, prevKnown = true) {
  const b = policy.backoff
  n = Math.max(n, 1)
  if (b.kind === 'decorrelated') {
    const base = Number(b.base_ms)
    const top = prevKnown ? Math.min(Math.max((prev == null ? base : Number(prev)) * 3.0, base), Number(b.max_ms)) : Number(b.max_ms)
    return [Math.floor(base), Math.floor(top)]
  }
  let base
  if (b.kind === 'fixed') base = Number(b.delay_ms)
  else if (b.kind === 'linear') base = Math.min(Number(b.initial_ms) + Number(b.step_ms) * (n - 1), Number(b.max_ms))
  else base = Math.min(Number(b.initial_ms) * Number(b.factor) ** (n - 1), Number(b.max_ms))
  const jitter = policy.jitter ?? 'full'
  if (jitter === 'none') return [Math.floor(base), Math.floor(base)]
  if (jitter === 'equal') return [Math.floor(base / 2), Math.floor(base)]
  return [0, Math.floor(base)]
}

function checkScheduleBounds(policy, delays) {
  let prev = null
  for (let i = 0; i < delays.length; i++) {
    const [lo, hi] = delayBounds(policy, i + 1, prev)
    if (!(lo <= delays[i] && delays[i] <= hi)) {
      return `invariant: delay ${i + 1} of the schedule is ${delays[i]} ms, outside the documented [${lo}, ${hi}] ms`
    }
    prev = delays[i]
  }
  return null
}

class MemoryBackend {
  constructor() { this.store = new Store('memory') }
  get() { return this.store }
  restart() {} // the store stands in for a shared durable one: it survives
}

class SqliteBackend {
  constructor(dir) { this.path = path.join(dir, 'oncely.db'); this.store = null }
  get() { return (this.store ??= new Store(this.path)) }
  restart() { this.store = null } // dropped; the file is closed once the GC collects the handles
}

function outboxOptions(spec) {
  const o = {}
  if (spec.mode != null) {
    if (!MODES.includes(spec.mode)) throw new Malformed(`outbox.mode: unknown mode ${spec.mode}`)
    o.mode = spec.mode
  }
  if (spec.lease_ms != null) o.lease = secs(spec.lease_ms)
  if (spec.retry != null) o.retry = spec.retry
  const ordering = spec.ordering
  if (ordering != null) {
    const bad = new Malformed(`outbox.ordering: expected "unordered" or {"fifo_per_key": ...}, got ${JSON.stringify(ordering)}`)
    if (ordering === 'unordered') o.ordering = 'unordered'
    else if (isObj(ordering) && Object.keys(ordering).join() === 'fifo_per_key') {
      const p = ordering.fifo_per_key
      o.ordering = 'fifo_per_key'
      if (p === 'block' || p === 'dead_letter') o.poison = p
      else if (isObj(p) && Object.keys(p).join() === 'park_ms' && Number.isInteger(p.park_ms)) {
        o.poison = 'park'
        o.parkAfter = secs(p.park_ms)
      } else throw bad
    } else throw bad
  }
  if (spec.seed != null) o.seed = spec.seed
  if (spec.retry_budget != null) {
    const b = spec.retry_budget
    o.retryBudget = { ratio: b.ratio, minPerSecond: b.min_per_second ?? undefined, burst: b.burst ?? undefined }
  }
  if (spec.max_payload_bytes != null) o.maxPayloadBytes = spec.max_payload_bytes
  if (spec.dedup_window_ms != null) o.dedupWindow = spec.dedup_window_ms / 1000
  return o
}

function renderSettled(s) {
  if (['acked', 'gave_up', 'dropped'].includes(s.kind)) return { settled: s.kind }
  const key = { retrying: 'retrying_at_ms', returned: 'returned_at_ms', extended: 'extended_until_ms' }[s.kind]
  return { settled: { [key]: off(s.atMs) } }
}

function renderEvent(e) {
  const out = { kind: e.kind, id: e.id }
  if (e.kind === 'leased') out.attempt = e.attempt
  else if (e.kind === 'retried') {
    out.retry_at_ms = off(e.retryAtMs)
    out.error = e.error
  } else if (e.kind === 'snoozed' || e.kind === 'parked') out.until_ms = off(e.untilMs)
  else if (e.kind === 'dead_lettered') out.reason = e.reason
  return out
}

class Run {
  constructor(scenario, backend) {
    this.backend = backend
    this.clock = new ManualClock(CLOCK_START_MS)
    const ispec = scenario.inbox ?? {}
    this.scope = ispec.scope || 'default'
    this.inboxOpts = { clock: this.clock }
    if (ispec.mode != null) {
      if (!MODES.includes(ispec.mode)) throw new Malformed(`inbox.mode: unknown mode ${ispec.mode}`)
      this.inboxOpts.mode = ispec.mode
    }
    if (ispec.lease_ms != null) this.inboxOpts.lease = secs(ispec.lease_ms)
    if (ispec.retention_ms != null) this.inboxOpts.retention = secs(ispec.retention_ms)
    if (ispec.cache_policy != null) {
      if (!['success_only', 'success_and_failure'].includes(ispec.cache_policy)) {
        throw new Malformed(`inbox.cache_policy: unknown policy ${ispec.cache_policy}`)
      }
      this.inboxOpts.cachePolicy = ispec.cache_policy
    }
    const ospec = scenario.outbox ?? {}
    this.queue = ospec.queue || 'default'
    this.outboxOpts = { ...outboxOptions(ospec), clock: this.clock }
    this.retryPolicy = ospec.retry ?? DEFAULT_RETRY
    this.inboxes = new Map()
    this.tickets = new Map()
    this.tokenNames = new Map()
    this.maxToken = new Map()
    this.effects = new Map()
    this.outboxes = new Map()
    this.held = new Map()
    this.events = []
    this.outTokens = new Map()
    this.delays = new Map()
    this.violation = null
  }

  inbox(scope) {
    if (!this.inboxes.has(scope)) this.inboxes.set(scope, new Inbox(this.backend.get(), scope, this.inboxOpts))
    return this.inboxes.get(scope)
  }

  ticket(name) {
    if (!this.tickets.has(name)) throw new Malformed(`no ticket named \`${name}\` is held`)
    return this.tickets.get(name)[1]
  }

  beginOutcome(scope, name, r) {
    if (r.outcome === 'claimed') {
      const t = r.ticket
      if (t.token > 0) {
        const key = `${scope}\0${t.id}`
        const earlier = this.maxToken.get(key) ?? 0
        if (t.token <= earlier && this.violation === null) {
          this.violation = `invariant: the claim of \`${t.id}\` got fencing token ${t.token}, not larger than the earlier token ${earlier} of that id`
        }
        this.maxToken.set(key, Math.max(earlier, t.token))
        if (name != null) this.tokenNames.set(t.token, name)
      }
      if (name != null) this.tickets.set(name, [scope, t])
      return { outcome: 'claimed', fenced: t.token > 0 }
    }
    if (r.outcome === 'duplicate') return { outcome: 'duplicate', status: r.replay.status, result: text(r.replay.result) }
    return { outcome: r.outcome }
  }

  async okOrError(fn) {
    try {
      await fn()
      return { ok: true }
    } catch (e) {
      if (e instanceof OncelyError) return errOf(e)
      throw e
    }
  }

  outbox(queue) {
    if (!this.outboxes.has(queue)) {
      const o = new Outbox(this.backend.get(), queue, this.outboxOpts)
      o.recordEvents()
      this.outboxes.set(queue, o)
    }
    return this.outboxes.get(queue)
  }

  drainEvents() {
    for (const o of this.outboxes.values()) this.events.push(...o.takeEvents())
  }

  heldNamed(name) {
    if (!this.held.has(name)) throw new Malformed(`no delivery named \`${name}\` is held`)
    return this.held.get(name)
  }

  policyOk() {
    try {
      new RetryPolicy(this.retryPolicy)
      return true
    } catch (e) {
      if (e instanceof OncelyError) return false
      throw e
    }
  }

  async settle(name, action, kw = {}) {
    const h = this.heldNamed(name)
    let s
    try {
      if (h.live !== null) {
        const d = h.live
        s = await {
          ack: () => d.ack(),
          retry: () => d.retry(kw.error ?? '', kw.after),
          snooze: () => d.snooze(kw.after),
          fail: () => d.fail(kw.reason),
          extend: () => d.extend(kw.lease),
          release: () => d.release(),
        }[action]()
        if (action === 'ack') s = { kind: 'acked' }
      } else {
        s = await this.outbox(h.queue).settle(h.id, h.token, action, kw)
      }
    } catch (e) {
      if (e instanceof OncelyError) return errOf(e)
      throw e
    }
    if (action === 'retry' && s.kind === 'retrying') {
      const delay = Math.max(s.atMs - this.clock.nowMs(), 0)
      if (kw.after === undefined && this.policyOk()) {
        const n = h.attempt
        let prev = null
        let known = true
        if (n > 1) {
          const k = `${h.queue}\0${h.id}\0${n - 1}`
          if (this.delays.has(k)) prev = this.delays.get(k)
          else known = false
        }
        const [lo, hi] = delayBounds(this.retryPolicy, n, prev, known)
        if (!(lo <= delay && delay <= hi) && this.violation === null) {
          this.violation = `invariant: the retry of \`${h.id}\` after attempt ${n} is scheduled ${delay} ms later, outside the documented [${lo}, ${hi}] ms of the policy`
        }
      }
      this.delays.set(`${h.queue}\0${h.id}\0${h.attempt}`, delay)
    }
    return renderSettled(s)
  }

  async deadLetters(o) {
    const ids = []
    let after
    for (;;) {
      const page = await o.deadLetters(after, 2)
      ids.push(...page.map((r) => r.id))
      if (page.length) after = page[page.length - 1].seq
      if (page.length < 2) return ids
    }
  }

  async step(s) {
    try {
      return await this.stepInner(s.op, s)
    } catch (e) {
      if (e instanceof OncelyError) return errOf(e)
      throw e
    } finally {
      this.drainEvents()
    }
  }

  async stepInner(op, s) {
    if (op === 'begin') {
      const scope = g(s, 'scope') || this.scope
      const r = await this.inbox(scope).begin(s.id, g(s, 'payload'), { mode: g(s, 'mode'), lease: secs(s.lease_ms) })
      return this.beginOutcome(scope, g(s, 'ticket'), r)
    }
    if (op === 'finish') {
      const t = this.ticket(s.ticket)
      return this.okOrError(() => t.finish(Buffer.from(s.result)))
    }
    if (op === 'fail' || op === 'release') {
      if ((g(s, 'ticket') === undefined) === (g(s, 'delivery') === undefined)) {
        throw new Malformed(`\`${op}\` needs exactly one of \`ticket\` (inbox) and \`delivery\` (outbox)`)
      }
      if (g(s, 'ticket') !== undefined) {
        const t = this.ticket(s.ticket)
        if (op === 'fail') return this.okOrError(() => t.fail(Buffer.from(s.reason)))
        return this.okOrError(() => t.release())
      }
      if (op === 'fail') return this.settle(s.delivery, 'fail', { reason: s.reason })
      return this.settle(s.delivery, 'release')
    }
    if (op === 'process') {
      const h = s.handler
      if ((h.returns == null) === (h.fails == null)) throw new Malformed('a handler needs exactly one of `returns` and `fails`')
      const scope = g(s, 'scope') || this.scope
      const id = s.id
      const handler = () => {
        this.effects.set(id, (this.effects.get(id) ?? 0) + 1)
        if (h.returns != null) return Buffer.from(h.returns)
        if (h.permanent) throw new HandlerFailedPermanently(h.fails)
        throw new HandlerFailed(h.fails)
      }
      try {
        const p = await this.inbox(scope).process(id, g(s, 'payload'), handler, {
          mode: g(s, 'mode'), lease: secs(s.lease_ms), wait: secs(s.wait_ms),
        })
        return { result: text(p.result), replayed: p.replayed }
      } catch (e) {
        if (e instanceof HandlerFailed || e instanceof HandlerFailedPermanently) return { handler_error: e.message }
        if (e instanceof oncely.ReplayedFailureError) return { replayed_failure: text(e.reason) }
        throw e
      }
    }
    if (op === 'effects') return Object.fromEntries(Object.keys(s.expect).map((k) => [k, this.effects.get(k) ?? 0]))
    if (op === 'advance') {
      this.clock.advanceMs(s.ms)
      return null
    }
    if (op === 'restart') {
      this.drainEvents()
      this.tickets.clear()
      this.inboxes.clear()
      this.outboxes.clear()
      for (const h of this.held.values()) h.live = null
      this.backend.restart()
      return null
    }
    if (op === 'get') {
      const rec = await this.inbox(g(s, 'scope') || this.scope).get(s.id)
      if (rec === null || rec === undefined) return { record: null }
      const token = rec.token === 0 ? null : (this.tokenNames.get(rec.token) ?? 'other')
      return { record: { state: rec.state, result: text(rec.result), token } }
    }
    if (op === 'purge_expired') return { purged: await this.inbox(this.scope).purgeExpired() }
    if (op === 'begin_many') {
      const scope = g(s, 'scope') || this.scope
      const reqs = s.requests.map((r) => ({ id: r.id, payload: r.payload ?? undefined, mode: r.mode ?? undefined, lease: secs(r.lease_ms) }))
      const answers = await this.inbox(scope).beginMany(reqs)
      return { results: s.requests.map((r, i) => this.beginOutcome(scope, r.ticket, answers[i])) }
    }
    if (op === 'finish_many') {
      const scopes = new Set()
      const batch = []
      for (const item of s.items) {
        if (!this.tickets.has(item.ticket)) throw new Malformed(`no ticket named \`${item.ticket}\` is held`)
        const [scope, t] = this.tickets.get(item.ticket)
        scopes.add(scope)
        batch.push([t, Buffer.from(item.result)])
      }
      if (scopes.size !== 1) throw new Malformed('finish_many needs at least one item, all from one scope')
      const results = await this.inboxes.get([...scopes][0]).finishMany(batch)
      return { results: results.map((r) => (r.ok ? { ok: true } : errOf(r.error))) }
    }
    if (op === 'schedule') {
      const delays = new RetryPolicy(s.policy).scheduleMs(s.seed, s.n)
      const v = checkScheduleBounds(s.policy, delays)
      if (v && this.violation === null) this.violation = v
      return { delays_ms: delays }
    }
    if (op === 'decide') {
      const d = new RetryPolicy(s.policy).decideMs({
        seed: s.seed, attempts: s.attempts, firstAttemptAtMs: s.first_attempt_at_ms, nowMs: s.now_ms,
        lastDelayMs: g(s, 'last_delay_ms'), retryAfterMs: g(s, 'retry_after_ms'),
      })
      return d.giveUp != null ? { give_up: d.giveUp } : { retry_in_ms: d.retryInMs }
    }
    return this.outboxStep(op, s)
  }

  async outboxStep(op, s) {
    const q = g(s, 'queue') || this.queue
    if (op === 'enqueue') {
      const r = await this.outbox(q).enqueue(Buffer.from(g(s, 'payload') || ''), {
        id: s.id, key: g(s, 'key'), headers: g(s, 'headers'), delay: secs(s.delay_ms),
      })
      return { enqueued: r }
    }
    if (op === 'enqueue_many') {
      const msgs = s.messages.map((m) => ({
        payload: Buffer.from(m.payload || ''), id: m.id, key: m.key ?? undefined, headers: m.headers ?? undefined, delay: secs(m.delay_ms),
      }))
      return { enqueued: await this.outbox(q).enqueueMany(msgs) }
    }
    if (op === 'lease') {
      const names = g(s, 'as') || []
      const leased = []
      const ds = await this.outbox(q).lease(s.max)
      ds.forEach((d, i) => {
        if (d.token > 0) {
          const key = `${q}\0${d.id}`
          const earlier = this.outTokens.get(key) ?? 0
          this.outTokens.set(key, Math.max(earlier, d.token))
          if (d.token <= earlier && this.violation === null) {
            this.violation = `invariant: the lease of \`${d.id}\` got fencing token ${d.token}, not larger than the earlier token ${earlier} of that id`
          }
        }
        const name = i < names.length ? names[i] : d.id
        leased.push({ id: d.id, attempt: d.attempt, fenced: d.token > 0 })
        this.held.set(name, {
          queue: q, id: d.id, token: d.token, attempt: d.attempt, payload: d.payload, key: d.key ?? null,
          headers: { ...d.headers }, lastError: d.lastError ?? null, live: d,
        })
      })
      return { leased }
    }
    if (op === 'ack') return this.settle(s.delivery, 'ack')
    if (op === 'retry') return this.settle(s.delivery, 'retry', { after: secs(s.after_ms), error: g(s, 'error') || '' })
    if (op === 'snooze') return this.settle(s.delivery, 'snooze', { after: secs(s.after_ms) })
    if (op === 'extend') return this.settle(s.delivery, 'extend', { lease: secs(s.lease_ms) })
    if (op === 'inspect') {
      const h = this.heldNamed(s.delivery)
      return { id: h.id, attempt: h.attempt, payload: text(h.payload), key: h.key, headers: h.headers, last_error: h.lastError }
    }
    if (op === 'work') {
      const summary = await new Worker(this.outbox(q), workHandler(s.handler)).drain()
      return { attempts: summary.attempts, succeeded: summary.succeeded, failed: summary.failed }
    }
    if (op === 'cancel') return { cancel: await this.outbox(q).cancel(s.id) }
    if (op === 'get_message') {
      const r = await this.outbox(q).get(s.id)
      if (r == null) return { message: null }
      return {
        message: {
          state: r.state, attempts: r.attempts, available_at_ms: off(r.availableAtMs),
          last_error: r.lastError ?? null, reason: r.reason ?? null,
        },
      }
    }
    if (op === 'dead_letters') return { dead: await this.deadLetters(this.outbox(q)) }
    if (op === 'replay') return { replayed: await this.outbox(q).replay(s.id) }
    if (op === 'purge_dead') return { purged: await this.outbox(q).purgeDead(g(s, 'ids')) }
    if (op === 'stats') {
      const st = await this.outbox(q).stats()
      return { ready: st.ready, scheduled: st.scheduled, leased: st.leased, dead: st.dead, oldest_age_ms: st.oldestAgeMs ?? null }
    }
    if (op === 'counters') {
      const st = await this.outbox(q).stats()
      return { enqueued: st.enqueued, delivered: st.delivered, retried: st.retried, dead_lettered: st.deadLettered, dropped: st.dropped }
    }
    if (op === 'events') {
      this.drainEvents()
      const out = this.events.map(renderEvent)
      this.events = []
      return out
    }
    throw new Malformed(`unknown op \`${op}\``)
  }
}

// A `work` step's handler: acts out what the scenario says with every message (README, `work`).
// A `work` step's handler, by `does`.
const WORK_HANDLERS = {
  return_nothing: () => () => undefined,
  return_true: () => () => true,
  return: (h) => () => h.value,
  raise_retry: (h) => () => {
    throw new Retry(h.message, h.after_ms === undefined ? undefined : { after: h.after_ms / 1000 })
  },
  raise_snooze: (h) => () => { throw new Snooze(h.after_ms / 1000) },
  raise_permanent: (h) => () => { throw new Permanent(h.message) },
  raise: (h) => () => { throw new HandlerFailure(h.message) },
}

const workHandler = (h) => WORK_HANDLERS[h.does](h)

// JSON equality as the other runners use it: 1 and 1.0 are one JSON number in JS, so numbers
// compare by value; true is not 1, null is not absent.
function jsonEq(a, b) {
  if (a === null || b === null) return a === b
  if (typeof a !== typeof b) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEq(x, b[i]))
  }
  if (typeof a === 'object') {
    const ka = Object.keys(a).sort()
    const kb = Object.keys(b).sort()
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && jsonEq(a[k], b[k]))
  }
  return a === b
}

async function runScenario(scenario, backend) {
  let run
  try {
    run = new Run(scenario, backend)
  } catch (e) {
    if (e instanceof Malformed) assert.fail(`malformed scenario: ${e.message}`)
    throw e
  }
  for (const [i, step] of scenario.steps.entries()) {
    let actual
    try {
      actual = await run.step(step)
    } catch (e) {
      if (e instanceof Malformed) assert.fail(`step ${i} (${step.op}): scenario error: ${e.message}`)
      throw e
    }
    if (run.violation) assert.fail(`step ${i} (${step.op}): ${run.violation}`)
    if ('expect' in step && !jsonEq(step.expect, actual)) {
      assert.fail(`step ${i} (${step.op}): expected ${JSON.stringify(step.expect)}, actual ${JSON.stringify(actual)}`)
    }
  }
}

function scenarioNames() {
  const out = []
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.json')) out.push(path.relative(SCENARIOS, p).slice(0, -5).split(path.sep).join('/'))
    }
  }
  walk(SCENARIOS)
  const f = process.env.ONCELY_CONFORMANCE_FILTER
  return out.sort().filter((n) => !f || n.includes(f))
}

test('scenarios exist', () => {
  assert.ok(fs.statSync(SCENARIOS).isDirectory(), `no scenarios under ${SCENARIOS}`)
  assert.ok(scenarioNames().length > 0 || process.env.ONCELY_CONFORMANCE_FILTER)
})

// A fresh schema of its own on the server in ONCELY_POSTGRES_URL for each scenario.
let pgCount = 0
class PostgresBackend {
  constructor() { this.url = null; this.store = null }
  async prepare() {
    const schema = `node_conformance_${process.pid}_${++pgCount}`
    this.url = await Store.postgresSchemaUrl(process.env.ONCELY_POSTGRES_URL, schema)
  }
  get() { return (this.store ??= new Store(this.url)) }
  restart() { this.store = null } // the last handle: the pool's connections close once collected
}

test('the postgres backend runs under CI', (t) => {
  if (process.env.ONCELY_POSTGRES_URL) return
  assert.notEqual(process.env.CI, 'true', 'ONCELY_POSTGRES_URL is not set under CI')
  t.skip('!! the postgres backend: ONCELY_POSTGRES_URL is not set (scripts/with-postgres.sh sets it)')
})

const BACKENDS = { memory: MemoryBackend, sqlite: SqliteBackend }
if (process.env.ONCELY_POSTGRES_URL) BACKENDS.postgres = PostgresBackend
for (const name of scenarioNames()) {
  for (const [bname, Backend] of Object.entries(BACKENDS)) {
    test(`${bname}-${name}`, async () => {
      const scenario = JSON.parse(fs.readFileSync(path.join(SCENARIOS, `${name}.json`), 'utf8'))
      const missing = (scenario.requires ?? []).filter((r) => !CAPABILITIES.includes(r))
      assert.deepEqual(missing, [], `this runner cannot express ${missing}`)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-node-'))
      try {
        const backend = new Backend(dir)
        if (backend.prepare) await backend.prepare()
        await runScenario(scenario, backend)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }
}
