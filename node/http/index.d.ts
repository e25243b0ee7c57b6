// oncely/http: `Idempotency-Key` for Express, Fastify and fetch, over the core's HttpGate,
// HttpRetry and httpVerdict (see README.md in this folder).
import type { HttpGate, HttpPolicy, HttpResponseInit, Outbox, Store, Transaction, Message } from '../index'

/** The options of the server adapters. */
export interface IdempotencyOptions<Req = any> {
  /** The store the keys live in (a `Store` or a location), when no `gate` is given. */
  store?: Store | string
  /** The HTTP options (`methods`, `required`, `store`, `retention`, ...), when no `gate` is given. */
  policy?: HttpPolicy | null
  /** A gate to share between adapters (instead of `store` and `policy`). */
  gate?: HttpGate
  /** Whose key space a request's key lives in (a tenant, a user), or null for one shared space. */
  scope?: ((req: Req) => string | null | undefined) | null
  /** Hears a completion that failed (the response is sent anyway); default a process warning. */
  onError?: ((error: unknown, req: Req) => void) | null
}

/** Express (or plain Node) middleware: the gate in front of the routes after it. Mount it before body parsers. */
export declare function idempotency(
  options: IdempotencyOptions,
): (req: any, res: any, next: (err?: unknown) => void) => void

/** A response a transactional route returns: headers as pairs or an object. */
export interface RouteResponse {
  /** The status code (100–599). */
  status: number
  /** The headers, as pairs or an object. */
  headers?: Array<[string, string]> | Record<string, string> | null
  /** The body (a string is sent as UTF-8). */
  body?: Buffer | Uint8Array | string | null
}

/**
 * An Express route answering with the synchronous `handler(tx, req)` inside one store transaction
 * (`gate.respondInTransaction`): its writes and the stored response commit together.
 */
export declare function transactional(
  options: IdempotencyOptions,
  handler: (tx: Transaction, req: any) => RouteResponse,
): (req: any, res: any, next: (err?: unknown) => void) => void

/** The Fastify plugin: `fastify.register(fastifyIdempotency, options)`. */
export declare function fastifyIdempotency(
  fastify: any,
  options: IdempotencyOptions,
  done: (err?: Error) => void,
): void

/**
 * Fastify route options (`app.post(path, fastifyTransactional(options, handler))`) answering with
 * the synchronous `handler(tx, request)` inside one store transaction.
 */
export declare function fastifyTransactional(
  options: IdempotencyOptions,
  handler: (tx: Transaction, request: any) => RouteResponse,
): { preParsing: (request: any, reply: any, payload: any) => Promise<any>; handler: (request: any, reply: any) => Promise<any> }

/** The options of `idempotentFetch`. */
export interface IdempotentFetchOptions {
  /** A retry-policy object (as the Outbox's `retry` option); default the core's policy. */
  retry?: object | null
  /** Seconds per attempt before it counts as no answer. */
  timeout?: number | null
}

/**
 * A fetch that adds an `Idempotency-Key` (kept across attempts) and retries as the core's
 * `HttpRetry` says (no answer, 409, 408/425/429, 5xx; honouring `Retry-After`).
 */
export declare function idempotentFetch(
  fetch?: typeof globalThis.fetch,
  options?: IdempotentFetchOptions,
): typeof globalThis.fetch

/** A request to send durably. */
export interface DurableRequest {
  /** The method (default POST). */
  method?: string
  /** Where to send it. */
  url: string | URL
  /** Its headers; an `Idempotency-Key` among them is its key (and message id). */
  headers?: Record<string, string> | Array<[string, string]>
  /** Its body (a string is sent as UTF-8). */
  body?: Buffer | Uint8Array | string | null
}

/** Enqueues `request` in `outbox` as a message whose id is its `Idempotency-Key`; resolves to the key. */
export declare function sendRequest(outbox: Outbox, request: DurableRequest): Promise<string>

/** The options of `deliverRequests`. */
export interface DeliverOptions {
  /** Seconds per attempt before it counts as no answer. */
  timeout?: number | null
  /** Called with each response (e.g. to read its body). */
  onResponse?: ((response: Response, message: Message) => unknown) | null
}

/**
 * A `Worker` handler sending `sendRequest`'s messages with the message id as the key: done acks,
 * final throws `Permanent`, again throws `Retry` (after the server's `Retry-After`).
 */
export declare function deliverRequests(
  fetch?: typeof globalThis.fetch,
  options?: DeliverOptions,
): (message: Message) => Promise<void>

/** `"idempotency-key"`. */
export declare const KEY_HEADER: 'idempotency-key'
