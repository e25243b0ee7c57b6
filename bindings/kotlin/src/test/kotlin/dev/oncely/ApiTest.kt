// The Kotlin API itself: suspend functions, errors (variant, code and the core's message text),
// handler callbacks, the worker, events, the transactional inbox and outbox, and bad input that
// must come back as a typed error (never a crash of the JVM).
package dev.oncely

import java.io.File
import java.nio.file.Files
import java.util.Collections
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** A process handler from a lambda. */
fun handler(f: () -> ByteArray) = object : ProcessHandler {
    override fun handle(): ByteArray = f()
}

/** A worker handler from a lambda. */
fun delivery(f: (Message) -> WorkerOutcome) = object : DeliveryHandler {
    override fun deliver(message: Message): WorkerOutcome = f(message)
}

/** A transactional handler from a lambda. */
fun inTx(f: (SqlTransaction) -> ByteArray) = object : TransactionHandler {
    override fun handle(tx: SqlTransaction): ByteArray = f(tx)
}

fun work(f: (SqlTransaction) -> Unit) = object : TransactionWork {
    override fun run(tx: SqlTransaction) = f(tx)
}

/** An exception of the tests' own, to see its class name stored when it has no message. */
class Boom(message: String? = null) : Exception(message)

class ApiTest {
    private lateinit var dir: File

    @BeforeEach
    fun setUp() {
        dir = Files.createTempDirectory("oncely-api-").toFile()
    }

    @AfterEach
    fun tearDown() {
        dir.deleteRecursively()
    }

    private fun sqlitePath(name: String = "oncely.db") = File(dir, name).path

    @Test
    fun everyCoreErrorCodeHasItsVariant() {
        val variants = listOf(
            OncelyException.InvalidArgument("m"), OncelyException.Conflict("m"), OncelyException.InProgress("m"),
            OncelyException.LeaseLost("m"), OncelyException.Storage("m"), OncelyException.CorruptStore("m"),
            OncelyException.Closed("m"), OncelyException.Timeout("m"),
        )
        assertEquals(errorCodes(), variants.map { it.code })
        assertEquals("handler_failed", OncelyException.HandlerFailed("m").code)
        assertEquals("replayed_failure", OncelyException.ReplayedFailure("m").code)
    }

    @Test
    fun errorsCarryTheCodeAndTheCoresMessage(): Unit = runBlocking {
        val inbox = Inbox(Store("memory"), "payments")
        val empty = assertThrows<OncelyException.InvalidArgument> { inbox.begin("") }
        assertEquals("invalid_argument", empty.code)
        assertEquals("invalid argument `id`: must not be empty", empty.message)

        val t = (inbox.begin("p-1", "a".toByteArray()) as BeginOutcome.Claimed).ticket
        val conflict = assertThrows<OncelyException.Conflict> { inbox.process("p-1", "b".toByteArray(), handler { ByteArray(0) }) }
        assertEquals("conflict", conflict.code)
        assertEquals("id `p-1` was already used with a different payload (fingerprint mismatch)", conflict.message)

        val busy = assertThrows<OncelyException.InProgress> { inbox.process("p-1", "a".toByteArray(), handler { ByteArray(0) }) }
        assertEquals("id `p-1` is being processed by another caller", busy.message)

        t.finish("ok".toByteArray())
        val stale = assertThrows<OncelyException.LeaseLost> { t.finish("again".toByteArray()) }
        assertEquals("lease_lost", stale.code)
        assertEquals("lease on id `p-1` was lost (fencing token ${t.token()} is stale)", stale.message)

        val negative = assertThrows<OncelyException.InvalidArgument> { inbox.begin("p-2", null, CallOptions(leaseMs = -5)) }
        assertEquals("invalid argument `lease_ms`: must be a whole number from 0 to 9007199254740991, got -5", negative.message)
    }

    @Test
    fun aForeignFileIsACorruptStoreAndIsLeftAsItWas() {
        val f = File(dir, "notes.txt")
        f.writeText("not a database, just some text that is long enough to look like a header".repeat(20))
        val before = f.readBytes()
        val e = assertThrows<OncelyException.CorruptStore> { Store(f.path) }
        assertEquals("corrupt_store", e.code)
        assertTrue(e.message!!.startsWith("not a usable oncely store"), e.message)
        assertArrayEquals(before, f.readBytes())
    }

    @Test
    fun badInputIsATypedErrorAndWritesNothing(): Unit = runBlocking {
        val store = Store(sqlitePath())
        val outbox = Outbox(store, "q")
        for (id in listOf("", "x".repeat(513), "a\u0000b")) {
            assertThrows<OncelyException.InvalidArgument> { outbox.enqueue(NewMessage(ByteArray(1), id = id)) }
        }
        assertThrows<OncelyException.InvalidArgument> { outbox.enqueue(NewMessage(ByteArray(1), id = "ok", delayMs = -1)) }
        val big = Outbox(store, "small", OutboxOptions(maxPayloadBytes = 8u))
        assertThrows<OncelyException.InvalidArgument> {
            big.enqueueMany(listOf(NewMessage("fits".toByteArray(), id = "a"), NewMessage(ByteArray(9), id = "b")))
        }
        assertNull(big.get("a"), "a refused batch wrote its first message")
        assertEquals(0uL, outbox.stats().ready + big.stats().ready)
        assertThrows<OncelyException.InvalidArgument> { RetryPolicy.fromJson("{\"max_attempts\": 0}") }
        assertThrows<OncelyException.InvalidArgument> { RetryPolicy.fromJson("not json") }
        assertThrows<OncelyException.InvalidArgument> {
            RetryPolicy(maxAttempts = 3u, backoff = Backoff.Exponential(100, Double.NaN, 1000), jitter = Jitter.FULL)
        }
        assertThrows<OncelyException.InvalidArgument> { Outbox(store, "q2", OutboxOptions(leaseMs = 0)) }
        assertThrows<OncelyException.InvalidArgument> { Worker(outbox, WorkerOptions(concurrency = 0u)) }
        assertThrows<OncelyException.InvalidArgument> { Store("") }
        assertThrows<OncelyException.InvalidArgument> { modeFromName("twice") }
        assertThrows<OncelyException.InvalidArgument> { ManualClock(0).advanceMs(-1) }
        assertEquals(Mode.AT_LEAST_ONCE, modeFromName("at_least_once"))
        assertEquals("exactly_once", modeName(Mode.EXACTLY_ONCE))
    }

    @Test
    fun concurrentSuspendCallsRunTheEffectOnce(): Unit = runBlocking {
        val inbox = Inbox(Store(sqlitePath()), "orders")
        val runs = AtomicInteger()
        val results = (1..16).map {
            async(Dispatchers.IO) {
                inbox.process("order-7", "pay 10".toByteArray(), handler {
                    runs.incrementAndGet()
                    Thread.sleep(50)
                    "receipt-1".toByteArray()
                }, CallOptions(waitMs = 10_000))
            }
        }.awaitAll()
        assertEquals(1, runs.get())
        assertEquals(1, results.count { !it.replayed })
        assertTrue(results.all { String(it.result!!) == "receipt-1" })
    }

    @Test
    fun handlerFailuresFollowTheCachePolicy(): Unit = runBlocking {
        val store = Store("memory")
        val inbox = Inbox(store, "a", InboxOptions(cachePolicy = CachePolicy.SUCCESS_AND_FAILURE))
        val runs = AtomicInteger()
        val permanent = assertThrows<OncelyException.HandlerFailed> {
            inbox.process("x", null, handler {
                runs.incrementAndGet()
                throw HandlerException.Permanent("card declined")
            })
        }
        assertEquals("card declined", permanent.message)
        val replay = assertThrows<OncelyException.ReplayedFailure> { inbox.process("x", null, handler { ByteArray(0) }) }
        assertEquals("card declined", replay.message)
        assertEquals(1, runs.get())

        // Any other exception is retryable, with its message: the id is given back and the next
        // call runs again.
        val retry = Inbox(store, "b")
        val e = assertThrows<OncelyException.HandlerFailed> { retry.process("y", null, handler { error("socket closed") }) }
        assertEquals("socket closed", e.message)
        val ok = retry.process("y", null, handler { "done".toByteArray() })
        assertFalse(ok.replayed)
        assertEquals("done", String(ok.result!!))
        val again = retry.process("y") { error("must not run") }
        assertTrue(again.replayed)
        assertEquals(RecordStatus.SUCCEEDED, retry.get("y")!!.status)
    }

    @Test
    fun pullStyleOutboxWithEvents(): Unit = runBlocking {
        val clock = ManualClock(1_000_000)
        val outbox = Outbox(
            Store(sqlitePath()), "q",
            OutboxOptions(retry = RetryPolicy(2u, Backoff.Fixed(100), Jitter.NONE), leaseMs = 1_000), clock,
        )
        val events = Collections.synchronizedList(mutableListOf<String>())
        outbox.onEvent(object : OutboxListener {
            override fun onEvent(event: OutboxEvent) {
                events.add("${event.name} ${event.id}")
            }
        })
        assertEquals(Enqueued.QUEUED, outbox.enqueue(NewMessage("hi".toByteArray(), id = "m1", headers = mapOf("h" to "v"))))
        assertEquals(Enqueued.ALREADY_QUEUED, outbox.enqueue(NewMessage("hi".toByteArray(), id = "m1")))
        val d = outbox.lease(10u).single()
        assertEquals("m1", d.idempotencyKey())
        assertEquals(mapOf("h" to "v"), d.headers())
        assertEquals(Settled.Retrying(1_000_100), d.retry("502"))
        clock.advanceMs(100)
        val d2 = outbox.lease(10u).single()
        assertEquals(2u, d2.attempt())
        assertEquals("502", d2.lastError())
        assertEquals(Settled.GaveUp, d2.retry("503"))
        assertEquals(listOf("m1"), outbox.deadLetters().map { it.id })
        assertEquals("gave up after 2 attempts: 503", outbox.get("m1")!!.reason)
        assertTrue(outbox.replay("m1"))
        outbox.lease(1u).single().ack()
        assertEquals(
            listOf("enqueued m1", "leased m1", "retried m1", "leased m1", "dead_lettered m1", "replayed m1", "leased m1", "acked m1"),
            events.toList(),
        )
        val s = outbox.stats()
        assertEquals(0uL, s.ready + s.leased + s.dead)
        assertEquals(1uL, s.delivered)
    }

    @Test
    fun aThrowingListenerIsIgnoredAndTheOthersStillHearEveryEvent(): Unit = runBlocking {
        val outbox = Outbox(Store("memory"), "q")
        val heard = Collections.synchronizedList(mutableListOf<String>())
        outbox.onEvent(object : OutboxListener {
            override fun onEvent(event: OutboxEvent) = throw IllegalStateException("listener bug")
        })
        outbox.onEvent { event -> heard.add(event.name) }
        assertEquals(Enqueued.QUEUED, outbox.enqueue(NewMessage(ByteArray(0), id = "a")))
        outbox.lease(1u).single().ack()
        assertEquals(listOf("enqueued", "leased", "acked"), heard.toList())
    }

    @Test
    fun workerDeliversEveryMessageAndSettlesByOutcome(): Unit = runBlocking {
        val outbox = Outbox(Store(sqlitePath()), "jobs", OutboxOptions(retry = RetryPolicy(3u, Backoff.Fixed(1), Jitter.NONE)))
        outbox.enqueueMany((0 until 40).map { NewMessage("job $it".toByteArray(), id = "j$it") })
        val attempts = ConcurrentHashMap<String, Int>()
        val delivered = ConcurrentHashMap<String, Int>()
        val worker = Worker(outbox, WorkerOptions(concurrency = 8u, pollIntervalMs = 5))
        val deadline = System.currentTimeMillis() + 30_000
        var total = RunSummary(0u, 0u, 0u, 0u)
        while (true) {
            val s = worker.runUntilIdle(delivery { m ->
                val n = attempts.merge(m.id, 1, Int::plus)!!
                assertEquals(n.toUInt(), m.attempt)
                when {
                    m.id == "j13" -> throw HandlerException.Permanent("poison")
                    m.id.endsWith("7") && n == 1 -> throw RuntimeException("flaky")
                    m.id.endsWith("5") && n == 1 -> WorkerOutcome.Retry(error = "later", afterMs = 0)
                    else -> {
                        delivered.merge(m.id, 1, Int::plus)
                        WorkerOutcome.Success
                    }
                }
            })
            total = RunSummary(total.attempts + s.attempts, total.succeeded + s.succeeded, total.failed + s.failed, 0u)
            val st = outbox.stats()
            if (st.ready + st.scheduled + st.leased == 0uL) break
            assertTrue(System.currentTimeMillis() < deadline, "the worker did not finish: $st")
            delay(5)
        }
        assertEquals((0 until 40).map { "j$it" }.filter { it != "j13" }.toSet(), delivered.keys)
        assertTrue(delivered.values.all { it == 1 }, "a message was delivered twice: $delivered")
        assertEquals(39uL, total.succeeded)
        assertEquals(listOf("j13"), outbox.deadLetters().map { it.id })
        assertEquals("failed permanently: poison", outbox.get("j13")!!.reason)
    }

    /**
     * The handler contract (oncely::handler) through both kinds of handler: an exception's
     * message is stored, or its simple class name when the message is null or empty (as in
     * Python and Node); bad hints are retries whose error says so.
     */
    @Test
    fun handlerFailuresStoreTheMessageOrTheClassName(): Unit = runBlocking {
        val acts: Map<String, () -> WorkerOutcome> = mapOf(
            "message" to { throw IllegalStateException("socket: closed") },
            "null" to { throw java.io.IOException() },
            "empty" to { throw RuntimeException("") },
            "own" to { throw Boom() },
            "two-lines" to { throw Boom("line 1\nline 2") },
            "permanent-empty" to { throw HandlerException.Permanent("") },
            "retry-empty" to { WorkerOutcome.Retry("", null) },
            "fail-empty" to { WorkerOutcome.Fail("") },
            "snooze-zero" to { WorkerOutcome.Snooze(0) },
            "snooze-negative" to { WorkerOutcome.Snooze(-500) },
            "retry-negative" to { WorkerOutcome.Retry("busy", -1000) },
        )
        val expected = mapOf(
            "message" to "socket: closed",
            "null" to "IOException",
            "empty" to "RuntimeException",
            "own" to "Boom",
            "two-lines" to "line 1\nline 2",
            "permanent-empty" to "Permanent",
            "retry-empty" to "Retry",
            "fail-empty" to "Permanent",
            "snooze-zero" to "bad Snooze.seconds: invalid argument `seconds`: must be greater than zero",
            "snooze-negative" to "bad Snooze.seconds: invalid argument `seconds`: must not be negative, got -0.5",
            "retry-negative" to "busy (bad Retry.after: invalid argument `after`: must not be negative, got -1)",
        )
        for (blocking in listOf(true, false)) {
            val clock = ManualClock(1_000_000)
            val outbox = Outbox(Store("memory"), "q", OutboxOptions(retry = RetryPolicy(3u, Backoff.Fixed(100), Jitter.NONE)), clock)
            outbox.enqueueMany(acts.keys.map { NewMessage(ByteArray(0), id = it) })
            val worker = Worker(outbox)
            // The blocking handler is an object (its exceptions reach oncely as their text); the
            // suspending one is the lambda form (Lambdas.kt hands over message and class name).
            val s = if (blocking) worker.runUntilIdle(delivery { m -> acts[m.id]!!() }) else worker.runUntilIdle { m -> acts[m.id]!!() }
            assertEquals(acts.size.toULong(), s.attempts)
            assertEquals(acts.size.toULong(), s.failed)
            for ((id, text) in expected) assertEquals(text, outbox.get(id)!!.lastError, "$id (blocking: $blocking)")
            assertEquals(setOf("permanent-empty", "fail-empty"), outbox.deadLetters().map { it.id }.toSet())
        }

        // The inbox and the transactional calls store the same texts.
        val inbox = Inbox(Store("memory"), "in")
        assertEquals("IOException", assertThrows<OncelyException.HandlerFailed> { inbox.process("a") { throw java.io.IOException() } }.message)
        assertEquals("Boom", assertThrows<OncelyException.HandlerFailed> { inbox.process("b", null, handler { throw Boom("") }) }.message)
        val store = Store(sqlitePath())
        assertEquals("Boom", assertThrows<OncelyException.HandlerFailed> { store.inTransaction { throw Boom() } }.message)
        assertEquals("IOException", assertThrows<OncelyException.HandlerFailed> { store.inTransaction(work { throw java.io.IOException() }) }.message)

        // What the lambda forms do with an exception, for handler objects that want it explicitly.
        val r = java.io.IOException("reset").toHandlerException() as HandlerException.Retry
        assertEquals("reset" to "IOException", r.error to r.typeName)
        val p = HandlerException.Permanent("gone")
        assertTrue(p.toHandlerException() === p)
    }

    @Test
    fun workerRunStopsGracefully(): Unit = runBlocking {
        val outbox = Outbox(Store("memory"), "q")
        val seen = ConcurrentHashMap.newKeySet<String>()
        val worker = Worker(outbox, WorkerOptions(pollIntervalMs = 5, shutdownTimeoutMs = 5_000))
        val run = async(Dispatchers.IO) {
            worker.run { m ->
                seen.add(m.id)
                WorkerOutcome.Success
            }
        }
        for (i in 0 until 20) outbox.enqueue(NewMessage(ByteArray(0), id = "m$i"))
        withTimeout(20_000) { while (seen.size < 20) delay(5) }
        assertFalse(worker.stopped())
        worker.stop()
        val summary = withTimeout(20_000) { run.await() }
        assertTrue(worker.stopped())
        assertEquals(20uL, summary.succeeded)
        assertEquals(0uL, outbox.stats().ready)
    }

    @Test
    fun suspendingHandlersAwaitWithoutAThreadAndCallOncelyAgain(): Unit = runBlocking {
        val store = Store(sqlitePath())
        val receiver = Inbox(store, "receiver")
        val outbox = Outbox(store, "q")
        outbox.enqueueMany((0 until 10).map { NewMessage("p$it".toByteArray(), id = "s$it") })
        val worker = Worker(outbox, WorkerOptions(concurrency = 10u, pollIntervalMs = 5))
        val summary = worker.runUntilIdle { m ->
            delay(20) // a suspending upload
            // The receiver's own suspend call, from inside the handler.
            receiver.process(m.id, m.payload) {
                delay(1)
                "got ${String(m.payload)}".toByteArray()
            }
            WorkerOutcome.Success
        }
        assertEquals(10uL, summary.succeeded)
        for (i in 0 until 10) assertEquals("got p$i", String(receiver.get("s$i")!!.result!!))
        // A suspending handler's exception is a retryable failure with its text.
        val e = assertThrows<OncelyException.HandlerFailed> {
            receiver.process("bad") {
                delay(1)
                throw IllegalArgumentException("no route")
            }
        }
        assertEquals("no route", e.message)
        val p = assertThrows<OncelyException.HandlerFailed> { receiver.process("perm") { throw HandlerException.Permanent("gone") } }
        assertEquals("gone", p.message)
    }

    @Test
    fun shutdownCancelsASuspendingHandlerThatOutlivesTheTimeout(): Unit = runBlocking {
        val outbox = Outbox(Store("memory"), "q", OutboxOptions(retry = RetryPolicy(5u, Backoff.Fixed(1), Jitter.NONE)))
        outbox.enqueue(NewMessage(ByteArray(0), id = "slow"))
        val started = kotlinx.coroutines.CompletableDeferred<Unit>()
        val cancelled = kotlinx.coroutines.CompletableDeferred<Unit>()
        val worker = Worker(outbox, WorkerOptions(pollIntervalMs = 5, shutdownTimeoutMs = 100))
        val run = async(Dispatchers.IO) {
            worker.run { _ ->
                started.complete(Unit)
                try {
                    delay(60_000)
                } catch (e: kotlinx.coroutines.CancellationException) {
                    cancelled.complete(Unit)
                    throw e
                }
                WorkerOutcome.Success
            }
        }
        withTimeout(20_000) { started.await() }
        worker.stop()
        val summary = withTimeout(20_000) { run.await() }
        assertEquals(1uL, summary.released)
        withTimeout(20_000) { cancelled.await() }
        // The stopped attempt counts and is retried: the message is back in the queue.
        val r = outbox.get("slow")!!
        assertEquals(MessageStatus.READY, r.status)
        assertEquals(1u, r.attempts)
        assertEquals("the worker shut down during the attempt", r.lastError)
    }

    @Test
    fun transactionalInboxCommitsTheHandlersWritesWithTheMark(): Unit = runBlocking {
        val store = Store(sqlitePath())
        store.inTransaction { tx -> tx.execute("CREATE TABLE ledger (id TEXT PRIMARY KEY, amount INTEGER)") }
        val inbox = Inbox(store, "bank")
        val outbox = Outbox(store, "notifications")
        var kept: SqlTransaction? = null
        val first = inbox.processInTransaction("tx-1", "10".toByteArray(), inTx { tx ->
            kept = tx
            assertTrue(tx.isOpen())
            tx.execute("INSERT INTO ledger VALUES (?1, ?2)", listOf(SqlValue.Text("tx-1"), SqlValue.Integer(10)))
            assertEquals(Enqueued.QUEUED, tx.enqueue(outbox, NewMessage("notify".toByteArray(), id = "n-tx-1")))
            "applied".toByteArray()
        })
        assertEquals("applied", String(first.result!!))
        // The handle is invalidated when the handler returns.
        assertFalse(kept!!.isOpen())
        val closed = assertThrows<OncelyException.Closed> { kept!!.execute("SELECT 1") }
        assertEquals("closed", closed.code)

        val dup = inbox.processInTransaction("tx-1", "10".toByteArray()) { error("must not run") }
        assertTrue(dup.replayed)
        assertEquals("applied", String(dup.result!!))

        // A retryable failure rolls back the handler's writes and its enqueue; the id stays claimable.
        val offline = assertThrows<OncelyException.HandlerFailed> {
            inbox.processInTransaction("tx-2", null, inTx { tx ->
                tx.execute("INSERT INTO ledger VALUES ('tx-2', 20)")
                tx.enqueue(outbox, NewMessage("notify".toByteArray(), id = "n-tx-2"))
                throw HandlerException.Retry("bank offline", "Retry")
            })
        }
        assertEquals("bank offline", offline.message)
        assertNull(outbox.get("n-tx-2"))
        assertNull(inbox.get("tx-2"))
        // An SQL error is a typed error inside the handler, and the handler may go on.
        inbox.processInTransaction("tx-2", null, inTx { tx ->
            assertThrows<OncelyException.Storage> { tx.execute("INSERT INTO no_such_table VALUES (1)") }
            tx.execute("INSERT INTO ledger VALUES ('tx-2', 20)")
            ByteArray(0)
        })
        val rows = mutableListOf<List<SqlValue>>()
        store.inTransaction(work { rows.addAll(it.execute("SELECT id, amount FROM ledger ORDER BY id")) })
        assertEquals(listOf(listOf(SqlValue.Text("tx-1"), SqlValue.Integer(10)), listOf(SqlValue.Text("tx-2"), SqlValue.Integer(20))), rows)
        assertEquals(listOf("n-tx-1"), outbox.lease(10u).map { it.id() })

        // Ending the transaction from the handler is refused; other modes are refused.
        assertThrows<OncelyException.HandlerFailed> { inbox.processInTransaction("tx-3", null, inTx { it.execute("COMMIT"); ByteArray(0) }) }
        assertThrows<OncelyException.InvalidArgument> {
            inbox.processInTransaction("tx-4", null, inTx { ByteArray(0) }, CallOptions(mode = Mode.AT_LEAST_ONCE))
        }
        // The memory store has no transactions to join.
        assertThrows<OncelyException.InvalidArgument> { Inbox(Store("memory"), "m").processInTransaction("x", null, inTx { ByteArray(0) }) }
    }

    @Test
    fun transactionalOutboxEnqueuesOnlyWhenTheWorkCommits(): Unit = runBlocking {
        val store = Store(sqlitePath())
        val outbox = Outbox(store, "q")
        store.inTransaction(work { tx -> tx.enqueueMany(outbox, listOf(NewMessage(ByteArray(0), id = "a"), NewMessage(ByteArray(0), id = "b"))) })
        val failed = assertThrows<OncelyException.HandlerFailed> {
            store.inTransaction(work { tx ->
                tx.enqueue(outbox, NewMessage(ByteArray(0), id = "c"))
                throw IllegalStateException("the order was rejected")
            })
        }
        assertEquals("the order was rejected", failed.message)
        assertEquals(listOf("a", "b"), outbox.lease(10u).map { it.id() }.sorted())
        assertNull(outbox.get("c"))
        // An outbox on another store is refused inside the work; left uncaught, that error fails
        // the work (HandlerFailed, with the error's text) and rolls it back.
        val other = Outbox(Store(sqlitePath("other.db")), "q")
        store.inTransaction(work { tx ->
            val e = assertThrows<OncelyException.InvalidArgument> { tx.enqueue(other, NewMessage(ByteArray(0), id = "d")) }
            assertTrue(e.message!!.startsWith("invalid argument `outbox`: must use the same store"), e.message)
        })
        val uncaught = assertThrows<OncelyException.HandlerFailed> {
            store.inTransaction(work { tx ->
                tx.enqueue(outbox, NewMessage(ByteArray(0), id = "e"))
                tx.enqueue(other, NewMessage(ByteArray(0), id = "d"))
            })
        }
        assertTrue(uncaught.message!!.contains("invalid argument `outbox`"), uncaught.message)
        assertNull(outbox.get("e"))
        assertNull(other.get("d"))
    }

    @Test
    fun retryPolicyIsTheCoresArithmetic() {
        val p = RetryPolicy(5u, Backoff.Exponential(100, 2.0, 1_000), Jitter.NONE, deadlineMs = 10_000)
        assertEquals(listOf(100L, 200L, 400L, 800L), p.scheduleMs(0u, 4u))
        assertEquals(RetryDecision.RetryIn(400), p.decide(0u, 3u, 0, 1_000))
        assertEquals(RetryDecision.GiveUp("max_attempts"), p.decide(0u, 5u, 0, 1_000))
        assertEquals(RetryDecision.GiveUp("deadline"), p.decide(0u, 2u, 0, 9_900))
        assertEquals(p.toJson(), RetryPolicy.fromJson(p.toJson()).toJson())
        assertEquals(fingerprint("abc".toByteArray()), fingerprint("abc".toByteArray()))
        assertEquals(32, fingerprint(ByteArray(0)).length)
    }

    @Test
    fun cancellingTheCoroutineDoesNotBreakTheStore(): Unit = runBlocking {
        val inbox = Inbox(Store(sqlitePath()), "c")
        val job = launch(Dispatchers.IO) {
            inbox.process("slow", null, handler { Thread.sleep(200); "late".toByteArray() })
        }
        delay(50)
        job.cancel()
        job.join()
        // The store still answers; the id is either untouched, leased, or finished — never broken.
        val r = inbox.get("slow")
        assertTrue(r == null || r.status in setOf(RecordStatus.IN_PROGRESS, RecordStatus.SUCCEEDED), "$r")
        assertEquals("ok", String(inbox.process("other", null, handler { "ok".toByteArray() }).result!!))
    }
}
