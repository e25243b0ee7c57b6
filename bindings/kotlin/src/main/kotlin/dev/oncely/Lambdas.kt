// Hand-written (not generated): Kotlin lambdas for the callback interfaces, so handlers read as
// `inbox.process(id, payload) { effect() }`. Each one only wraps the lambda in the interface and
// calls the generated method; the rules are the core's. (The generated interfaces are not `fun
// interface`s, so Kotlin would not convert a lambda by itself.)
package dev.oncely

/**
 * [Inbox.processSuspending] with the handler as a (suspend) lambda: runs it at most / at least /
 * exactly once for [id] (by the mode) and returns its result, or the stored one with
 * `replayed = true`. Throw [HandlerException.Permanent] for a failure no retry will cure; any
 * other exception is retryable.
 */
suspend fun Inbox.process(
    id: String,
    payload: ByteArray? = null,
    options: CallOptions? = null,
    handler: suspend () -> ByteArray,
): Processed = processSuspending(id, payload, object : SuspendProcessHandler {
    override suspend fun handle(): ByteArray = handler()
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
    override fun handle(tx: SqlTransaction): ByteArray = handler(tx)
}, options)

/** [Store.inTransaction] with the work as a lambda: all of it commits, or none (it threw). */
suspend fun Store.inTransaction(work: (SqlTransaction) -> Unit) = inTransaction(object : TransactionWork {
    override fun run(tx: SqlTransaction) = work(tx)
})

/** [Worker.runUntilIdleSuspending] with the handler as a (suspend) lambda. */
suspend fun Worker.runUntilIdle(handler: suspend (Message) -> WorkerOutcome): RunSummary =
    runUntilIdleSuspending(object : SuspendDeliveryHandler {
        override suspend fun deliver(message: Message): WorkerOutcome = handler(message)
    })

/**
 * [Worker.runSuspending] with the handler as a (suspend) lambda: delivers until [Worker.stop]; a
 * handler still running after the shutdown timeout is cancelled.
 */
suspend fun Worker.run(handler: suspend (Message) -> WorkerOutcome): RunSummary =
    runSuspending(object : SuspendDeliveryHandler {
        override suspend fun deliver(message: Message): WorkerOutcome = handler(message)
    })

/** [Outbox.onEvent] with the listener as a lambda (called after each change committed; keep it quick). */
fun Outbox.onEvent(listener: (OutboxEvent) -> Unit) = onEvent(object : OutboxListener {
    override fun onEvent(event: OutboxEvent) = listener(event)
})
