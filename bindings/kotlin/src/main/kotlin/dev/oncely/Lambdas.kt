// Hand-written (not generated): Kotlin lambdas for the callback interfaces, so handlers read as
// `inbox.process(id, payload) { effect() }`. Each one only wraps the lambda in the interface and
// calls the generated method; the rules are the core's. (The generated interfaces are not `fun
// interface`s, so Kotlin would not convert a lambda by itself.) Each wrapper hands an exception
// the lambda throws to oncely as what it is — its message and its simple class name — so the
// core's handler contract (oncely::handler) gives the same outcome and text as in Python and Node.
package dev.oncely

import kotlin.coroutines.cancellation.CancellationException

/**
 * This exception as a handler's failure for oncely: a [HandlerException] as it is; any other as
 * [HandlerException.Retry] with its [Throwable.message] and its simple class name. The core stores
 * the message, or the class name when the message is null or empty (`IOException`), exactly as
 * for a Python or JavaScript handler. The lambda forms below apply it to whatever their lambda
 * throws; a handler object that lets an exception escape gets the same result from the
 * exception's text, so call it only to be explicit.
 */
fun Throwable.toHandlerException(): HandlerException = this as? HandlerException
    ?: HandlerException.Retry(message, this::class.simpleName ?: javaClass.name.substringAfterLast('.'))

/** Runs a handler lambda, turning what it throws into a [HandlerException]; cancellation passes. */
private inline fun <T> handling(f: () -> T): T = try {
    f()
} catch (e: CancellationException) {
    throw e
} catch (e: Throwable) {
    throw e.toHandlerException()
}

/**
 * [Inbox.processSuspending] with the handler as a (suspend) lambda: runs it at most / at least /
 * exactly once for [id] (by the mode) and returns its result, or the stored one with
 * `replayed = true`. Throw [HandlerException.Permanent] for a failure no retry will cure; any
 * other exception is retryable, with its message (or its class name) as the failure.
 */
suspend fun Inbox.process(
    id: String,
    payload: ByteArray? = null,
    options: CallOptions? = null,
    handler: suspend () -> ByteArray,
): Processed = processSuspending(id, payload, object : SuspendProcessHandler {
    override suspend fun handle(): ByteArray = handling { handler() }
}, options)

/**
 * [Inbox.processInTransaction] with the handler as a lambda: its writes through the
 * [SqlTransaction], the processed mark and the stored result commit together, or none of them.
 */
suspend fun Inbox.processInTransaction(
    id: String,
    payload: ByteArray? = null,
    options: CallOptions? = null,
    handler: (SqlTransaction) -> ByteArray,
): Processed = processInTransaction(id, payload, object : TransactionHandler {
    override fun handle(tx: SqlTransaction): ByteArray = handling { handler(tx) }
}, options)

/** [Store.inTransaction] with the work as a lambda: all of it commits, or none (it threw). */
suspend fun Store.inTransaction(work: (SqlTransaction) -> Unit) = inTransaction(object : TransactionWork {
    override fun run(tx: SqlTransaction) = handling { work(tx) }
})

/**
 * [Worker.runUntilIdleSuspending] with the handler as a (suspend) lambda: return
 * [WorkerOutcome.Success], `Retry`, `Snooze` or `Fail`; throw [HandlerException.Permanent] to fail
 * for good; any other exception retries, with its message (or its class name) as the error.
 */
suspend fun Worker.runUntilIdle(handler: suspend (Message) -> WorkerOutcome): RunSummary =
    runUntilIdleSuspending(object : SuspendDeliveryHandler {
        override suspend fun deliver(message: Message): WorkerOutcome = handling { handler(message) }
    })

/**
 * [Worker.runSuspending] with the handler as a (suspend) lambda: delivers until [Worker.stop]; a
 * handler still running after the shutdown timeout is cancelled.
 */
suspend fun Worker.run(handler: suspend (Message) -> WorkerOutcome): RunSummary =
    runSuspending(object : SuspendDeliveryHandler {
        override suspend fun deliver(message: Message): WorkerOutcome = handling { handler(message) }
    })

/** [Outbox.onEvent] with the listener as a lambda (called after each change committed; keep it quick). */
fun Outbox.onEvent(listener: (OutboxEvent) -> Unit) = onEvent(object : OutboxListener {
    override fun onEvent(event: OutboxEvent) = listener(event)
})
