'use strict'
// oncely for Node.js. The native module (built by `napi build --platform`, loaded by native.js)
// does all the work; this file only maps errors to classes, serializes the retry policy and
// adapts `Inbox.process` handlers (any return value -> a Promise of a Buffer).

const native = require('./native.js')

const SEP = '\x1f'

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
class Permanent extends Error {
  constructor(message) {
    super(message)
    this.name = new.target.name
  }
}

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

function translate(e) {
  if (e instanceof OncelyError || !(e instanceof Error)) return e
  const i = e.message.indexOf(SEP)
  if (i > 0) {
    const code = e.message.slice(0, i)
    const Class = CLASSES[code] ?? OncelyError
    const out = new Class(e.message.slice(i + 1), code)
    out.stack = `${out.name}: ${out.message}\n${(e.stack ?? '').split('\n').slice(1).join('\n')}`
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
const SYNC_METHODS = new Set(['recordEvents', 'takeEvents', 'nowMs'])

function wrapClass(Class, prepareArgs, hasAsync = false) {
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(Class.prototype))) {
    if (name !== 'constructor' && typeof d.value === 'function' && !d.value.adapted) {
      Object.defineProperty(Class.prototype, name, { ...d, value: wrapMethod(d.value, hasAsync && !SYNC_METHODS.has(name)) })
    }
  }
  return new Proxy(Class, {
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
  if (typeof r === 'string') return Buffer.from(r, 'utf8')
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
  const adapted = async () => {
    try {
      return toBuffer(await handler())
    } catch (e) {
      failed = true
      thrown = e
      const text = e instanceof Error ? e.message : String(e)
      throw new Error((e instanceof Permanent ? 'permanent' : 'retryable') + SEP + text)
    }
  }
  try {
    return await nativeProcess.call(this, id, payload, adapted, options)
  } catch (e) {
    if (failed && typeof e?.message === 'string' && e.message.startsWith('ONCELY_HANDLER_FAILED' + SEP)) throw thrown
    throw translate(e)
  }
}
native.Inbox.prototype.process.adapted = true
delete native.Inbox.prototype._process

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
    return [store, queue, { ...options, retry: undefined, retryJson }, ...args.slice(3)]
  }
  return args
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
  return results.map((r) => (r.ok ? { ok: true } : { ok: false, error: translate(new Error(r.error)) }))
}
native.Inbox.prototype.finishMany.adapted = true

// napi reads any object (a string, an array) as a string map: only plain objects are headers.
function checkHeaders(options) {
  const h = options?.headers
  if (h !== undefined && h !== null && (typeof h !== 'object' || Array.isArray(h))) {
    throw new InvalidArgumentError(
      `invalid argument \`headers\`: must be an object of strings, got ${Array.isArray(h) ? 'an array' : typeof h}`,
      'ONCELY_INVALID_ARGUMENT',
    )
  }
}
const nativeEnqueue = native.Outbox.prototype.enqueue
native.Outbox.prototype.enqueue = async function enqueue(payload, options) {
  checkHeaders(options)
  return nativeEnqueue.call(this, payload, options)
}
const nativeEnqueueMany = native.Outbox.prototype.enqueueMany
native.Outbox.prototype.enqueueMany = async function enqueueMany(messages) {
  if (Array.isArray(messages)) messages.forEach(checkHeaders)
  return nativeEnqueueMany.call(this, messages)
}

const ManualClock = wrapClass(native.ManualClock)
const RetryPolicy = wrapClass(native.RetryPolicy, policyArgs)
const Store = wrapClass(native.Store)
const Inbox = wrapClass(native.Inbox, undefined, true)
const Outbox = wrapClass(native.Outbox, outboxArgs, true)
wrapClass(native.Ticket, undefined, true)
wrapClass(native.Delivery, undefined, true)
const Ticket = native.Ticket
const Delivery = native.Delivery
const Begin = native.Begin
const version = native.version

module.exports = {
  ManualClock, RetryPolicy, Store, Inbox, Outbox, Ticket, Delivery, Begin, version,
  OncelyError, InvalidArgumentError, ConflictError, InProgressError, LeaseLostError, StorageError,
  CorruptStoreError, ClosedError, TimeoutError, ReplayedFailureError, Permanent,
}
