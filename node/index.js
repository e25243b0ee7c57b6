'use strict'
// oncely for Node.js. The native module (built by `napi build --platform`, loaded by native.js)
// does all the work; this file only maps errors to classes, serializes the retry policy and
// adapts `Inbox.process` handlers (any return value -> a Promise of a Buffer).

const { EventEmitter } = require('node:events')
const native = require('./native.js')

class OncelyError extends Error {
  constructor(message, code) {
    super(message)
    this.name = new.target.name
    Object.defineProperty(this, 'code', { value: code ?? 'ONCELY_ERROR', enumerable: true })
  }
}
class InvalidArgumentError extends OncelyError {}
class ConflictError extends OncelyError {}
class InProgressError extends OncelyError {}
class LeaseLostError extends OncelyError {}
class StorageError extends OncelyError {}
class CorruptStoreError extends OncelyError {}
class ClosedError extends OncelyError {}
class TimeoutError extends OncelyError {}
class ReplayedFailureError extends OncelyError {
  constructor(message, code) {
    super(message, code)
    this.reason = Buffer.from(message, 'utf8')
  }
}
// A constructor argument of Permanent, Retry or Snooze as text, as String() makes it, or ''
// when it cannot be made one (an object without toString, a revoked Proxy, a throwing
// toString): throwing one of them never fails, and the core falls back to its type name.
function textOf(v) {
  try {
    return String(v)
  } catch {
    return ''
  }
}

class Permanent extends Error {
  constructor(message) {
    super(message === undefined ? undefined : textOf(message))
    this.name = new.target.name
  }
}

/**
 * Throw from a `Worker` handler: this attempt failed; retry by the policy, or after `after`
 * seconds (e.g. the receiver's Retry-After) when given.
 */
class Retry extends Error {
  constructor(error = '', options = undefined) {
    checkKnown('Retry options', options)
    const text = textOf(error)
    super(text)
    this.name = new.target.name
    this.error = text
    this.after = options?.after ?? null
  }
}
/** Throw from a `Worker` handler: not now; try again after `seconds`, no attempt used up. */
class Snooze extends Error {
  constructor(seconds) {
    super(`snooze ${textOf(seconds)}s`)
    this.name = new.target.name
    this.seconds = seconds
  }
}

// Refuses an options object that index.js reads itself when it is not an object or has a key
// `which` (e.g. 'run options') does not know: the native check every options object goes through.
function checkKnown(which, options) {
  try {
    native._checkOptions(which, options)
  } catch (e) {
    throw translate(e)
  }
}

// The code of a native error that is a handler's own failure (re-thrown as the handler threw it).
const HANDLER_FAILED = 'ONCELY_HANDLER_FAILED'

const CLASSES = {
  ONCELY_INVALID_ARGUMENT: InvalidArgumentError,
  ONCELY_CONFLICT: ConflictError,
  ONCELY_IN_PROGRESS: InProgressError,
  ONCELY_LEASE_LOST: LeaseLostError,
  ONCELY_STORAGE: StorageError,
  ONCELY_CORRUPT_STORE: CorruptStoreError,
  ONCELY_CLOSED: ClosedError,
  ONCELY_TIMEOUT: TimeoutError,
  ONCELY_REPLAYED_FAILURE: ReplayedFailureError,
}

// Argument-conversion failures reported by napi itself (wrong JS type for a parameter).
const NAPI_ARG_CODES = new Set([
  'InvalidArg', 'ObjectExpected', 'StringExpected', 'NameExpected', 'FunctionExpected',
  'NumberExpected', 'BooleanExpected', 'ArrayExpected', 'BigintExpected',
])

// A native error carries its code as `code` (napi's error status): `ONCELY_…` for the core's
// errors (the subclass for the code, the core's text as the message), napi's status name for
// napi's own.
function translate(e) {
  if (e instanceof OncelyError || !(e instanceof Error)) return e
  if (typeof e.code === 'string' && e.code.startsWith('ONCELY_')) {
    const Class = CLASSES[e.code] ?? OncelyError
    const out = new Class(e.message, e.code)
    out.stack = [`${out.name}: ${out.message}`, ...String(e.stack ?? '').split('\n').slice(1)].join('\n')
    return out
  }
  if (NAPI_ARG_CODES.has(e.code)) {
    return new InvalidArgumentError(`invalid argument: ${e.message}`, 'ONCELY_INVALID_ARGUMENT')
  }
  return e
}

// `isAsync`: the method returns a Promise, so a synchronous failure (napi's argument conversion)
// becomes a rejection too.
function wrapMethod(fn, isAsync) {
  return function (...args) {
    let r
    try {
      r = fn.apply(this, args)
    } catch (e) {
      if (isAsync) return Promise.reject(translate(e))
      throw translate(e)
    }
    if (r && typeof r.then === 'function') return r.then(undefined, (e) => Promise.reject(translate(e)))
    return r
  }
}

// Methods of the classes with async methods that are synchronous.
const SYNC_METHODS = new Set(['recordEvents', 'takeEvents', 'nowMs', '_setEventListener', '_completeProcess'])

function wrapClass(Class, prepareArgs, hasAsync = false) {
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(Class.prototype))) {
    if (name !== 'constructor' && typeof d.value === 'function' && !d.value.adapted) {
      Object.defineProperty(Class.prototype, name, { ...d, value: wrapMethod(d.value, hasAsync && !SYNC_METHODS.has(name)) })
    }
  }
  return new Proxy(Class, {
    // As a JS class: a call without `new` is a TypeError (napi would initialize `this`, which
    // may be anything, e.g. the module's exports).
    apply(target) {
      throw new TypeError(`Class constructor ${target.name} cannot be invoked without 'new'`)
    },
    construct(target, args, newTarget) {
      try {
        return Reflect.construct(target, prepareArgs ? prepareArgs(args) : args, newTarget === undefined ? target : newTarget)
      } catch (e) {
        throw translate(e)
      }
    },
  })
}

function toBuffer(r) {
  if (Buffer.isBuffer(r)) return r
  if (typeof r === 'string') {
    // Natively: a lone surrogate is refused (Buffer.from would replace it by U+FFFD).
    try {
      return native._utf8(r)
    } catch (e) {
      throw translate(e)
    }
  }
  if (r instanceof Uint8Array) return Buffer.from(r.buffer, r.byteOffset, r.byteLength)
  throw new InvalidArgumentError(
    `invalid argument \`handler\`: must return a Buffer, Uint8Array or string (or a Promise of one), got ${r === null ? 'null' : typeof r}`,
    'ONCELY_INVALID_ARGUMENT',
  )
}

const nativeProcess = native.Inbox.prototype._process
native.Inbox.prototype.process = async function process(id, payload, handler, options) {
  if (typeof handler !== 'function') {
    throw new InvalidArgumentError(`invalid argument \`handler\`: must be a function, got ${typeof handler}`, 'ONCELY_INVALID_ARGUMENT')
  }
  let failed = false
  let thrown
  const failure = (e) => {
    failed = true
    thrown = e
    return failureAnswer(e)
  }
  const answer = (v) => {
    try {
      return { result: toBuffer(v) }
    } catch (e) {
      return failure(e)
    }
  }
  // The native side calls `adapted(callId)` on this thread: it answers at once for a handler
  // that returned without a Promise, else later through `_completeProcess` (never throws).
  const inbox = this
  const adapted = (callId) => {
    let r
    try {
      r = handler()
    } catch (e) {
      return failure(e)
    }
    if (r !== null && (typeof r === 'object' || typeof r === 'function')) {
      let then
      try {
        then = r.then
      } catch (e) {
        return failure(e)
      }
      if (typeof then === 'function') {
        const done = (a) => inbox._completeProcess(callId, a)
        ;(r instanceof Promise ? r : Promise.resolve(r)).then((v) => done(answer(v)), (e) => done(failure(e)))
        return undefined
      }
    }
    return answer(r)
  }
  try {
    return await nativeProcess.call(this, id, payload, adapted, options)
  } catch (e) {
    if (failed && e?.code === HANDLER_FAILED) throw thrown
    throw translate(e)
  }
}
native.Inbox.prototype.process.adapted = true
delete native.Inbox.prototype._process

// The `retry` option as JSON text, passed natively as a fourth argument (the native side reads
// every other option, and refuses unknown ones).
function outboxArgs(args) {
  const [store, queue, options] = args
  if (options !== null && typeof options === 'object' && options.retry !== undefined && options.retry !== null) {
    const retry = options.retry
    let retryJson
    try {
      retryJson = typeof retry === 'string' ? retry : JSON.stringify(retry)
    } catch (e) {
      throw new InvalidArgumentError(`invalid argument \`retry\`: ${e.message}`, 'ONCELY_INVALID_ARGUMENT')
    }
    if (typeof retryJson !== 'string') {
      throw new InvalidArgumentError('invalid argument `retry`: must be a retry-policy object', 'ONCELY_INVALID_ARGUMENT')
    }
    return [store, queue, options, retryJson]
  }
  return [store, queue, options]
}

function policyArgs(args) {
  const [policy, ...rest] = args
  if (typeof policy === 'string') return args
  let json
  try {
    json = JSON.stringify(policy)
  } catch (e) {
    throw new InvalidArgumentError(`invalid argument \`retry\`: ${e.message}`, 'ONCELY_INVALID_ARGUMENT')
  }
  if (typeof json !== 'string') {
    throw new InvalidArgumentError('invalid argument `retry`: must be a retry-policy object', 'ONCELY_INVALID_ARGUMENT')
  }
  return [json, ...rest]
}

const nativeFinishMany = native.Inbox.prototype.finishMany
native.Inbox.prototype.finishMany = async function finishMany(items) {
  let results
  try {
    results = await nativeFinishMany.call(this, items)
  } catch (e) {
    throw translate(e)
  }
  return results.map((r) => (r.ok ? { ok: true } : { ok: false, error: translate(r.error) }))
}
native.Inbox.prototype.finishMany.adapted = true

// ---------------------------------------------------------------------------------------------
// Events: `outbox.events` is an EventEmitter fed by the core's event callback.

const EMITTERS = new WeakMap()

/** The outbox's EventEmitter: one event per committed state change, named by its kind. */
function eventsOf(outbox) {
  let emitter = EMITTERS.get(outbox)
  if (emitter) return emitter
  emitter = new EventEmitter()
  const dispatch = (ev) => {
    emitter.emit(ev.kind, ev)
    emitter.emit('event', ev)
  }
  let installed = false
  const total = () => emitter.eventNames().reduce((n, name) => n + emitter.listenerCount(name), 0)
  // The native listener is a GC root; reaching the outbox only weakly from it lets an outbox
  // that is no longer used be collected (and its listener released) with listeners still on.
  const ref = new WeakRef(outbox)
  emitter.on('newListener', () => {
    if (!installed) {
      installed = true
      ref.deref()?._setEventListener(dispatch)
    }
  })
  emitter.on('removeListener', () => {
    // 'newListener' and 'removeListener' themselves count: only ours are left at zero.
    if (installed && total() <= 2) {
      installed = false
      ref.deref()?._setEventListener(null)
    }
  })
  EMITTERS.set(outbox, emitter)
  return emitter
}

Object.defineProperty(native.Outbox.prototype, 'events', {
  configurable: true,
  get() {
    return eventsOf(this)
  },
})
for (const name of ['on', 'once', 'off']) {
  const method = function (event, listener) {
    // Events are named by their kind: any other key would be turned into a string by the
    // emitter (an array of 2^32 - 1 holes into a RangeError), so it is refused here.
    if (typeof event !== 'string' && typeof event !== 'symbol') {
      throw new InvalidArgumentError(`invalid argument \`event\`: must be an event name (a string), not ${typeof event}`, 'ONCELY_INVALID_ARGUMENT')
    }
    eventsOf(this)[name](event, listener)
    return this
  }
  method.adapted = true
  Object.defineProperty(native.Outbox.prototype, name, { configurable: true, writable: true, value: method })
}

// ---------------------------------------------------------------------------------------------
// Worker

// What a worker handler did, described for the core's handler contract (oncely::handler, in
// node/src/worker.rs): which value it returned or what it threw, with the thrown value's message
// and type name. The core decides what that means (success, retry, snooze, dead letter) and
// which text is stored; nothing here interprets it.
function typeNameOf(e) {
  try {
    if (e !== null && typeof e === 'object' && typeof e.constructor === 'function' && e.constructor.name) {
      return e.constructor.name
    }
    return typeof e
  } catch {
    return typeof e
  }
}

function messageOf(e) {
  try {
    return e instanceof Error ? String(e.message) : String(e)
  } catch {
    return undefined // unreadable: the core falls back to the type name
  }
}

// A Snooze/Retry hint: a number, or what it is when it is not one (never converted with
// Number(), which would make null, '', false and [] a delay of 0).
function hintOf(v) {
  if (typeof v === 'number') return { hint: v }
  return { badHint: v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? JSON.stringify(v) : typeof v }
}

// An inbox handler's failure for the native side (a `ProcessAnswer`, node/src/inbox.rs): what it
// threw, described as for a worker handler; the core decides the stored text
// (oncely::handler::failure_text: the message, else the type name). Never throws.
function failureAnswer(e) {
  let permanent = false
  try {
    permanent = e instanceof Permanent
  } catch {
    // a Proxy whose getPrototypeOf throws: any other thrown value
  }
  return { raised: permanent ? 'permanent' : 'other', message: messageOf(e), typeName: typeNameOf(e) }
}

function thrownAnswer(e) {
  const typeName = typeNameOf(e)
  try {
    if (e instanceof Permanent) return { raised: 'permanent', message: messageOf(e), typeName }
    if (e instanceof Retry) {
      const after = e.after === null || e.after === undefined ? {} : hintOf(e.after)
      return { raised: 'retry', message: messageOf(e.error), typeName, ...after }
    }
    if (e instanceof Snooze) return { raised: 'snooze', typeName, ...(e.seconds === undefined ? {} : hintOf(e.seconds)) }
  } catch {
    // a getter that throws: described as any other thrown value
  }
  return { raised: 'other', message: messageOf(e), typeName }
}

function returnedAnswer(v) {
  if (v === undefined || v === null) return { returned: 'nothing' }
  if (v === true) return { returned: 'true' }
  let shown
  try {
    shown = typeof v === 'string' ? JSON.stringify(v) : String(v)
  } catch {
    shown = typeof v
  }
  return { returned: 'value', shown }
}

// `(callId, message) => answer | undefined`: the answer at once for a handler that
// returned without a Promise; otherwise undefined, and `complete(callId, outcome)` when the
// Promise settles. Never throws.
function adaptWorkerHandler(handler, complete) {
  return (callId, message) => {
    let r
    try {
      r = handler(message)
    } catch (e) {
      return thrownAnswer(e)
    }
    if (r !== null && (typeof r === 'object' || typeof r === 'function')) {
      let then
      try {
        then = r.then
      } catch (e) {
        return thrownAnswer(e)
      }
      if (typeof then === 'function') {
        // Neither callback throws (complete is a plain native call taking a plain object).
        const ok = (v) => complete(callId, returnedAnswer(v))
        const bad = (e) => complete(callId, thrownAnswer(e))
        if (r instanceof Promise) r.then(ok, bad)
        else Promise.resolve(r).then(ok, bad)
        return undefined
      }
    }
    return returnedAnswer(r)
  }
}

const EMPTY_SUMMARY = Object.freeze({ attempts: 0, succeeded: 0, failed: 0, released: 0 })

function checkSignal(signal) {
  if (signal !== undefined && signal !== null && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('invalid argument `signal`: must be an AbortSignal', 'ONCELY_INVALID_ARGUMENT')
  }
}

/**
 * Runs `handler` over an outbox's messages with bounded concurrency. The core's worker leases,
 * extends leases of long handlers, and settles each delivery by what the handler did:
 * returning (or resolving to) `undefined`/`true` acks it; throwing or rejecting retries it by
 * the retry policy; `Permanent` dead-letters it at once; `Retry(error, {after})` retries after
 * `after` seconds; `Snooze(seconds)` tries again later without using up an attempt. Handlers
 * run on the JS thread, called from Rust through a threadsafe function: the event loop is
 * never blocked by the worker.
 */
class Worker {
  #native
  #handler
  #running = null

  constructor(outbox, handler, options = undefined) {
    if (!(outbox instanceof native.Outbox)) {
      throw new InvalidArgumentError('invalid argument `outbox`: must be an Outbox', 'ONCELY_INVALID_ARGUMENT')
    }
    if (typeof handler !== 'function') {
      throw new InvalidArgumentError(`invalid argument \`handler\`: must be a function, got ${typeof handler}`, 'ONCELY_INVALID_ARGUMENT')
    }
    if (options !== undefined && options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new InvalidArgumentError('invalid argument `options`: must be an object', 'ONCELY_INVALID_ARGUMENT')
    }
    try {
      this.#native = new native.NativeWorker(outbox, options ?? undefined)
    } catch (e) {
      throw translate(e)
    }
    const nativeWorker = this.#native
    this.#handler = adaptWorkerHandler(handler, (callId, outcome) => nativeWorker._complete(callId, outcome))
  }

  /**
   * Delivers until nothing is due and nothing is in flight (messages scheduled for later are
   * left for a later call); resolves to a `RunSummary`.
   */
  async drain() {
    try {
      return await this.#native.runUntilIdle(this.#handler)
    } catch (e) {
      throw translate(e)
    }
  }

  /**
   * Delivers until `stop()` is called or `signal` aborts; then stops leasing, waits up to
   * `shutdownTimeout` for handlers in flight, settles those still running as failed attempts
   * and resolves to a `RunSummary`. A stopped worker stays stopped: a later `run` resolves at
   * once.
   */
  run(options = undefined) {
    try {
      checkKnown('run options', options)
    } catch (e) {
      return Promise.reject(e)
    }
    if (this.#running) return this.#running
    const signal = options?.signal
    try {
      checkSignal(signal)
    } catch (e) {
      return Promise.reject(e)
    }
    if (this.#native.stopped) return Promise.resolve({ ...EMPTY_SUMMARY })
    let onAbort
    if (signal) {
      if (signal.aborted) this.#native.stop()
      onAbort = () => this.#native.stop()
      signal.addEventListener('abort', onAbort, { once: true })
    }
    const running = (async () => {
      try {
        return await this.#native.run(this.#handler)
      } catch (e) {
        throw translate(e)
      } finally {
        if (signal) signal.removeEventListener('abort', onAbort)
        this.#running = null
      }
    })()
    this.#running = running
    return running
  }

  /**
   * Starts `run` in the background and returns the worker; `stop()` resolves to its summary (or
   * rejects with its error).
   */
  start(options = undefined) {
    checkKnown('run options', options)
    checkSignal(options?.signal)
    // Kept for stop(); the no-op catch keeps a failed background run from being an unhandled
    // rejection before stop() hands it over.
    this.run(options).catch(() => {})
    return this
  }

  /** Asks a running worker to shut down gracefully; resolves when it has (to its summary). */
  stop() {
    this.#native.stop()
    return this.#running ?? Promise.resolve({ ...EMPTY_SUMMARY })
  }

  /** Whether `stop()` was called (or the run's signal aborted). */
  get stopped() {
    return this.#native.stopped
  }

  /** Whether a `run`/`start` is under way. */
  get running() {
    return this.#running !== null
  }
}

// ---------------------------------------------------------------------------------------------
// idempotent(fn, { key, payload, inbox })

function templateKey(template) {
  return (...args) =>
    template.replace(/\{(\d+)((?:\.[A-Za-z_$][\w$]*)*)\}/g, (_, index, path) => {
      let v = args[Number(index)]
      for (const p of path.split('.').slice(1)) v = v?.[p]
      if (v === undefined || v === null) {
        throw new InvalidArgumentError(`invalid argument \`key\`: {${index}${path}} is ${v} for this call`, 'ONCELY_INVALID_ARGUMENT')
      }
      try {
        return String(v)
      } catch {
        // an object without toString (Object.create(null)), a revoked Proxy, a throwing toString
        throw new InvalidArgumentError(`invalid argument \`key\`: {${index}${path}} cannot be made a string for this call`, 'ONCELY_INVALID_ARGUMENT')
      }
    })
}

/**
 * Wraps `fn` so that each call runs it through `inbox.process`: at most / at least / exactly
 * once per id, by the inbox's mode (or `mode`). `key` names the id: a function of the call's
 * arguments, or a template such as `'order-{0.id}'` (`{N}` is argument N, `.name` a property).
 * `payload` (optional, a function of the same arguments returning a Buffer or string) is
 * fingerprinted, so reusing an id with other data rejects with `ConflictError`. `fn` must
 * return (or resolve to) a Buffer, Uint8Array or string; the wrapper resolves to the result as
 * a Buffer — for a duplicate, the stored result, without calling `fn`. A thrown error is
 * re-thrown (the id is given back for a retry); throw `Permanent` for a permanent failure.
 */
function idempotent(fn, options) {
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError(`invalid argument \`fn\`: must be a function, got ${typeof fn}`, 'ONCELY_INVALID_ARGUMENT')
  }
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('invalid argument `options`: must be an object with `key` and `inbox`', 'ONCELY_INVALID_ARGUMENT')
  }
  checkKnown('idempotent options', options)
  const { key, payload, inbox, mode, lease, wait } = options
  if (!(inbox instanceof native.Inbox)) {
    throw new InvalidArgumentError('invalid argument `inbox`: must be an Inbox', 'ONCELY_INVALID_ARGUMENT')
  }
  let keyOf
  if (typeof key === 'function') keyOf = key
  else if (typeof key === 'string') keyOf = templateKey(key)
  else throw new InvalidArgumentError('invalid argument `key`: must be a function or a template string', 'ONCELY_INVALID_ARGUMENT')
  if (payload !== undefined && payload !== null && typeof payload !== 'function') {
    throw new InvalidArgumentError('invalid argument `payload`: must be a function of the arguments', 'ONCELY_INVALID_ARGUMENT')
  }
  const callOptions = { mode, lease, wait }
  const wrapped = async function (...args) {
    const id = keyOf.apply(this, args)
    const data = payload ? payload.apply(this, args) : undefined
    const done = await inbox.process(id, data, () => fn.apply(this, args), callOptions)
    return done.result
  }
  Object.defineProperty(wrapped, 'name', { value: fn.name, configurable: true })
  return wrapped
}

native.Inbox.prototype.idempotent = function (fn, options) {
  return idempotent(fn, { ...options, inbox: this })
}
native.Inbox.prototype.idempotent.adapted = true

// ---------------------------------------------------------------------------------------------
// Transactional handlers: synchronous functions of a Transaction (see node/src/transaction.rs).

const ASYNC_TX_HANDLER =
  'invalid argument `handler`: a transactional handler must be synchronous, but it returned a Promise. ' +
  "It runs while the store's transaction is open (on the store's writer thread, which waits for it), " +
  'so all of its work must be done before it returns; do asynchronous work before or after the transaction'

// Adapts a synchronous `(tx) => value` for the native side, which gets a `ProcessAnswer`: the
// result `toAnswer(value)` (a Buffer) or the failure (never a throw). `state.thrown` keeps what
// the handler threw (or the error for a returned Promise) to re-throw it as is.
function adaptTxHandler(handler, toAnswer, state) {
  return (tx) => {
    try {
      const r = handler(tx)
      if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
        Promise.resolve(r).catch(() => {})
        throw new InvalidArgumentError(ASYNC_TX_HANDLER, 'ONCELY_INVALID_ARGUMENT')
      }
      return { result: toAnswer(r) }
    } catch (e) {
      state.failed = true
      state.thrown = e
      return failureAnswer(e)
    }
  }
}

function checkHandler(handler) {
  if (typeof handler !== 'function') {
    throw new InvalidArgumentError(`invalid argument \`handler\`: must be a function, got ${typeof handler}`, 'ONCELY_INVALID_ARGUMENT')
  }
}

const nativeProcessTransactional = native.Inbox.prototype._processTransactional
/**
 * Runs the synchronous `handler(tx)` exactly once per id inside one transaction of the store
 * (SQLite or PostgreSQL): its `tx.execute` writes, its `tx.enqueue` messages, the id's
 * processed mark and the returned result (Buffer, Uint8Array or string) commit together, or none
 * of them does. A
 * thrown error rolls everything back and is re-thrown (the id may be processed again); throw
 * `Permanent` for a permanent failure. A handler returning a Promise is refused with
 * `InvalidArgumentError` and rolled back.
 */
native.Inbox.prototype.processTransactional = async function processTransactional(id, payload, handler) {
  checkHandler(handler)
  const state = { failed: false, thrown: undefined }
  const adapted = adaptTxHandler(handler, toBuffer, state)
  try {
    return await nativeProcessTransactional.call(this, id, payload, adapted)
  } catch (e) {
    if (state.failed && e?.code === HANDLER_FAILED) throw state.thrown
    throw translate(e)
  }
}
native.Inbox.prototype.processTransactional.adapted = true
delete native.Inbox.prototype._processTransactional

const nativeTransaction = native.Store.prototype._transaction
/**
 * Runs the synchronous `work(tx)` in one transaction of the store (SQLite or PostgreSQL) and
 * resolves to what it returned: its `tx.execute` writes and `tx.enqueue` messages commit
 * together when it returns, and none of them remains when it throws (the error is re-thrown). A
 * `work` returning a Promise is refused with `InvalidArgumentError` and rolled back.
 */
native.Store.prototype.transaction = async function transaction(work) {
  checkHandler(work)
  const state = { failed: false, thrown: undefined }
  let value
  const adapted = adaptTxHandler(work, (r) => {
    value = r
    return EMPTY_BUFFER
  }, state)
  try {
    await nativeTransaction.call(this, adapted)
  } catch (e) {
    if (state.failed && e?.code === HANDLER_FAILED) throw state.thrown
    throw translate(e)
  }
  return value
}
native.Store.prototype.transaction.adapted = true
delete native.Store.prototype._transaction
const EMPTY_BUFFER = Buffer.alloc(0)

// ---------------------------------------------------------------------------------------------
// HTTP (node/src/http.rs): the policy and the retry policy as JSON text; the transactional
// handler adapted as the inbox's is. Every rule is the core's (oncely::http).

// An options object as JSON text for the native side (which reads it with the core's parser and
// refuses unknown fields); undefined/null stays absent, a string is passed as it is.
function jsonArg(name, value) {
  if (value === undefined || value === null || typeof value === 'string') return value ?? undefined
  let json
  try {
    json = JSON.stringify(value)
  } catch (e) {
    throw new InvalidArgumentError(`invalid argument \`${name}\`: ${e.message}`, 'ONCELY_INVALID_ARGUMENT')
  }
  if (typeof json !== 'string') {
    throw new InvalidArgumentError(`invalid argument \`${name}\`: must be an object`, 'ONCELY_INVALID_ARGUMENT')
  }
  return json
}

const gateArgs = ([store, policy, ...rest]) => [store, jsonArg('policy', policy), ...rest]
const httpRetryArgs = ([key, retry, ...rest]) => [key, jsonArg('retry', retry), ...rest]

const nativeRespondInTransaction = native.HttpGate.prototype._respondInTransaction
/**
 * Answers `request` with the synchronous `handler(tx)` run inside one transaction of the store
 * (SQLite or PostgreSQL): its `tx.execute` writes, the key's claim and the stored response
 * commit together (`oncely::http::HttpGate::respond_in_transaction`). Resolves to the response
 * to send: the handler's, a replay or a refusal. A thrown error rolls everything back, gives the
 * key back and is re-thrown as it was thrown.
 */
native.HttpGate.prototype.respondInTransaction = async function respondInTransaction(request, handler) {
  checkHandler(handler)
  const state = { failed: false, thrown: undefined }
  const adapted = (tx) => {
    try {
      const r = handler(tx)
      if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function') {
        Promise.resolve(r).catch(() => {})
        throw new InvalidArgumentError(ASYNC_TX_HANDLER, 'ONCELY_INVALID_ARGUMENT')
      }
      return { response: r }
    } catch (e) {
      state.failed = true
      state.thrown = e
      return failureAnswer(e)
    }
  }
  try {
    return await nativeRespondInTransaction.call(this, request, adapted)
  } catch (e) {
    if (state.failed && e?.code === HANDLER_FAILED) throw state.thrown
    throw translate(e)
  }
}
native.HttpGate.prototype.respondInTransaction.adapted = true
delete native.HttpGate.prototype._respondInTransaction

const HttpGate = wrapClass(native.HttpGate, gateArgs, true)
const HttpRetry = wrapClass(native.HttpRetry, httpRetryArgs)
wrapClass(native.HttpClaim, undefined, true)
const httpVerdict = wrapMethod(native.httpVerdict, false)
const httpRequestPayload = wrapMethod(native.httpRequestPayload, false)
const httpRequestOf = wrapMethod(native.httpRequestOf, false)

const ManualClock = wrapClass(native.ManualClock)
const RetryPolicy = wrapClass(native.RetryPolicy, policyArgs)
/**
 * Creates the PostgreSQL schema `schema` in the database at `url` if missing and resolves to the
 * URL that keeps a store's tables there (a plain identifier, else `InvalidArgumentError`).
 */
native.Store.postgresSchemaUrl = wrapMethod(native._postgresSchemaUrl, true)
const Store = wrapClass(native.Store)
const Inbox = wrapClass(native.Inbox, undefined, true)
const Outbox = wrapClass(native.Outbox, outboxArgs, true)
// Classes whose objects oncely hands out (it never lets JS construct one): `new` and a call
// are TypeErrors.
function handedOut(Class, by) {
  const refuse = () => {
    throw new TypeError(`${Class.name} is not a constructor: ${by}`)
  }
  return new Proxy(Class, { apply: refuse, construct: refuse })
}
wrapClass(native.Ticket, undefined, true)
wrapClass(native.Delivery, undefined, true)
wrapClass(native.Transaction)
const Transaction = handedOut(native.Transaction, 'a Transaction is handed to the handler of store.transaction and inbox.processTransactional')
const Ticket = handedOut(native.Ticket, 'a Ticket is handed out by inbox.begin')
const Delivery = handedOut(native.Delivery, 'a Delivery is handed out by outbox.lease')
const Begin = handedOut(native.Begin, 'a Begin is the answer of inbox.begin')
const HttpClaim = handedOut(native.HttpClaim, 'an HttpClaim is handed out by gate.admit')
const version = native.version
const fingerprint = wrapMethod(native.fingerprint, false)

module.exports = {
  ManualClock, RetryPolicy, Store, Inbox, Outbox, Ticket, Delivery, Begin, version,
  OncelyError, InvalidArgumentError, ConflictError, InProgressError, LeaseLostError, StorageError,
  CorruptStoreError, ClosedError, TimeoutError, ReplayedFailureError, Permanent, Retry, Snooze,
  Worker, idempotent, Transaction, fingerprint, HttpGate, HttpClaim, HttpRetry, httpVerdict,
  httpRequestPayload, httpRequestOf,
}
