// The child JVM of HostileSuiteTest: generates the hostile cases of a seed (case i from its own
// Random(seed, i), so a parent that restarts a child at case k gets the same cases) and runs cases
// from..until one after another, printing for each
//   BEGIN i <what>          before it runs (the parent attributes a crash or hang to it)
//   EXPECT_EXIT <status>    before a handler that ends the JVM on purpose
//   END i <verdict> <detail>
// and DONE at the end. Verdicts: typed (an OncelyException with the code, and where it is fixed the
// exact text, of the core), documented (a result the API documents), and the failures untyped
// (anything else thrown), wrong (a result or text the API does not document), changed (a refused
// call that changed the SQLite store: every row of every table before and after it).
package dev.oncely

import java.io.File
import java.io.IOException
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.coroutines.cancellation.CancellationException
import kotlin.random.Random
import kotlin.system.exitProcess
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

const val MAX_SAFE = 9007199254740991L

/** Thrown by handlers of the suite: an Error subclass of its own (not an Exception). */
class HostileError(message: String?) : Error(message)

/** What a case found: `typed`, `documented`, or a failure (`untyped`, `wrong`, `changed`). */
class Verdict(val kind: String, val detail: String)

fun typed(detail: String) = Verdict("typed", detail)
fun documented(detail: String) = Verdict("documented", detail)
fun wrong(detail: String) = Verdict("wrong", detail)
fun untyped(e: Throwable) = Verdict("untyped", "${e.javaClass.name}: ${e.message?.take(200)}")

fun surrogateMessage(name: String, unit: Char, index: Int) =
    "invalid argument `$name`: holds a lone surrogate U+%04X at character $index; text must be valid Unicode".format(unit.code)

fun integerMessage(name: String, got: String, max: Long = MAX_SAFE) =
    "invalid argument `$name`: must be a whole number from 0 to $max, got $got"

/** [s] with each lone surrogate replaced by U+FFFD: how a handler's failure text is stored. */
fun lossy(s: String): String = buildString {
    var i = 0
    while (i < s.length) {
        val c = s[i]
        if (c.isHighSurrogate() && i + 1 < s.length && s[i + 1].isLowSurrogate()) {
            append(c).append(s[i + 1]); i += 2; continue
        }
        append(if (c.isSurrogate()) '\uFFFD' else c); i++
    }
}

/** The first lone surrogate of [s] and its position in code points, or null. */
fun firstLone(s: String): Pair<Char, Int>? {
    var i = 0
    var cp = 0
    while (i < s.length) {
        val c = s[i]
        if (c.isHighSurrogate() && i + 1 < s.length && s[i + 1].isLowSurrogate()) { i += 2; cp++; continue }
        if (c.isSurrogate()) return c to cp
        i++; cp++
    }
    return null
}

/** The stored failure text of a handler that threw [t] (the core's handler contract). */
fun failureText(t: Throwable): String = when (t) {
    is HandlerException.Permanent -> lossy(t.reason).ifEmpty { "Permanent" }
    is HandlerException.Retry -> lossy(t.error ?: "").ifEmpty { t.typeName }
    else -> lossy(t.message ?: "").ifEmpty { t.javaClass.simpleName }
}

/** Hostile text: valid pieces (ASCII, é, 中, emoji pairs, NUL, control characters) and, often, lone surrogates. */
fun Random.text(lone: Boolean = nextInt(2) == 0, max: Int = 40): String = buildString {
    val pieces = listOf("a", "Z", "0", "-", " ", "é", "中", "\uD83D\uDE00", "\u0000", "\n", "\u202E", "%", "'", "\"", ":")
    repeat(nextInt(max + 1)) { append(pieces[nextInt(pieces.size)]) }
    if (lone) {
        val unit = if (nextBoolean()) (0xD800 + nextInt(0x400)).toChar() else (0xDC00 + nextInt(0x400)).toChar()
        // A high surrogate must not be followed by a low one (they would pair up).
        insert(if (unit.isHighSurrogate()) length else nextInt(length + 1).let { if (it > 0 && this[it - 1].isHighSurrogate()) it - 1 else it }, unit)
        if (unit.isHighSurrogate() && nextBoolean()) append("tail")
    }
}

fun Random.hugeText(): String = "x".repeat(listOf(513, 70_000, 1 shl 20, 4 shl 20)[nextInt(4)]) + (if (nextBoolean()) "\uDFFF" else "")

/** A message for a handler's exception (no line breaks: an object's exception is read from its text). */
fun Random.message(): String? = when (nextInt(6)) {
    0 -> null
    1 -> ""
    2 -> "x".repeat(256 * 1024)
    else -> text(max = 20).replace('\n', ' ').replace(":", "")
}

fun Random.throwable(): Throwable {
    val m = message()
    return when (nextInt(12)) {
        0 -> RuntimeException(m)
        1 -> IOException(m)
        2 -> IllegalStateException(m)
        3 -> AssertionError(m)
        4 -> NotImplementedError(m ?: "An operation is not implemented.")
        5 -> StackOverflowError()
        6 -> OutOfMemoryError(m)
        7 -> LinkageError(m)
        8 -> HostileError(m)
        9 -> Throwable(m)
        10 -> HandlerException.Permanent(m ?: "")
        else -> HandlerException.Retry(m, "RetryType")
    }
}

class Ctx(val i: Int, val rnd: Random, val store: Store, val clock: ManualClock) {
    val tag = "c$i"
    private val policy = RetryPolicy(10u, Backoff.Fixed(60_000), Jitter.NONE)
    val inbox by lazy { Inbox(store, "in-$tag", null, clock) }
    val outbox by lazy { Outbox(store, "out-$tag", OutboxOptions(leaseMs = 3_600_000, retry = policy), clock) }
    suspend fun ticket(): Ticket = (inbox.begin("t-$tag") as BeginOutcome.Claimed).ticket
    suspend fun delivery(): Delivery {
        outbox.enqueue(NewMessage(byteArrayOf(1), id = "d-$tag"))
        return outbox.lease(1u).single()
    }

    /** Every row of every table, as text (blobs by size and hash). */
    suspend fun snapshot(): List<String> {
        val out = mutableListOf<String>()
        store.inTransaction(work { tx ->
            for (t in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", listOf())) {
                val name = (t[0] as SqlValue.Text).v
                for (row in tx.execute("SELECT * FROM \"$name\"", listOf())) {
                    out += name + ":" + row.joinToString("|") {
                        when (it) {
                            is SqlValue.Blob -> "blob${it.v.size}/${it.v.contentHashCode()}"
                            else -> it.toString()
                        }
                    }
                }
            }
        })
        return out.sorted()
    }

    /**
     * Runs a call that may be refused: accepted, or an OncelyException (of [code] and with the text
     * [message] when given; never with the text [not]) that left the store as it was.
     */
    suspend fun call(code: String?, message: String?, not: String? = null, f: suspend () -> Any?): Verdict {
        val before = snapshot()
        val e = try {
            f(); null
        } catch (e: Throwable) {
            e
        }
        if (e == null) return if (code == null) documented("accepted") else wrong("accepted; expected $code: $message")
        if (e !is OncelyException) return untyped(e)
        val text = e.message ?: ""
        if (code != null && e.code != code) return wrong("${e.code} ($text); expected $code")
        if (message != null && text != message) return wrong("`$text`; expected `$message`")
        if (not != null && text == not) return wrong("`$text`: an integer in range refused as out of range")
        if (text.isEmpty() || text.length > 4000) return wrong("${e.code} with a message of ${text.length} characters")
        val after = snapshot()
        if (before != after) return Verdict("changed", "${e.code} ($text) but ${(after - before.toSet()).take(2)} / ${(before - after.toSet()).take(2)}")
        return typed(e.code)
    }
}

/** One string parameter of the public API: its name in errors and a call passing it. */
class TextParam(val what: String, val name: String, val prepare: suspend Ctx.() -> (suspend (String) -> Any?))

val textParams: List<TextParam> = listOf(
    TextParam("Store(location)", "location") { { s -> Store(s) } },
    TextParam("postgresSchemaUrl(url)", "url") { { s -> postgresSchemaUrl(s, "x") } },
    TextParam("postgresSchemaUrl(schema)", "schema") { { s -> postgresSchemaUrl("postgres://u@127.0.0.1:1/db", s) } },
    TextParam("Inbox(scope)", "scope") { { s -> Inbox(store, s) } },
    TextParam("Outbox(queue)", "queue") { { s -> Outbox(store, s) } },
    TextParam("modeFromName", "mode") { { s -> modeFromName(s) } },
    TextParam("RetryPolicy.fromJson", "retry") { { s -> RetryPolicy.fromJson(s) } },
    TextParam("inbox.begin(id)", "id") { { s -> inbox.begin(s) } },
    TextParam("inbox.beginMany(id)", "id") { { s -> inbox.beginMany(listOf(BeginRequest(s))) } },
    TextParam("inbox.process(id)", "id") { { s -> inbox.process(s, null, handler { byteArrayOf() }) } },
    TextParam("inbox.process { }(id)", "id") { { s -> inbox.process(s) { byteArrayOf() } } },
    TextParam("inbox.processInTransaction(id)", "id") { { s -> inbox.processInTransaction(s, null, inTx { byteArrayOf() }) } },
    TextParam("inbox.get(id)", "id") { { s -> inbox.get(s) } },
    TextParam("ticket.settle(error)", "error") { val t = ticket(); { s -> t.settle(null, s, false) } },
    TextParam("outbox.enqueue(id)", "id") { { s -> outbox.enqueue(NewMessage(byteArrayOf(), id = s)) } },
    TextParam("outbox.enqueue(key)", "key") { { s -> outbox.enqueue(NewMessage(byteArrayOf(), key = s)) } },
    TextParam("outbox.enqueue(header name)", "headers") { { s -> outbox.enqueue(NewMessage(byteArrayOf(), headers = mapOf(s to "v"))) } },
    TextParam("outbox.enqueue(header value)", "headers") { { s -> outbox.enqueue(NewMessage(byteArrayOf(), headers = mapOf("h" to s))) } },
    TextParam("outbox.enqueueMany(id)", "id") { { s -> outbox.enqueueMany(listOf(NewMessage(byteArrayOf()), NewMessage(byteArrayOf(), id = s))) } },
    TextParam("outbox.settle(id)", "id") { { s -> outbox.settle(s, 1uL, Settle.Ack) } },
    TextParam("outbox.settle(Retry.error)", "error") { val d = delivery(); { s -> outbox.settle(d.id(), d.token(), Settle.Retry(null, s)) } },
    TextParam("outbox.settle(Fail.reason)", "reason") { val d = delivery(); { s -> outbox.settle(d.id(), d.token(), Settle.Fail(s)) } },
    TextParam("outbox.cancel(id)", "id") { { s -> outbox.cancel(s) } },
    TextParam("outbox.get(id)", "id") { { s -> outbox.get(s) } },
    TextParam("outbox.replay(id)", "id") { { s -> outbox.replay(s) } },
    TextParam("outbox.purgeDead(ids)", "ids") { { s -> outbox.purgeDead(listOf("ok", s)) } },
    TextParam("delivery.retry(error)", "error") { val d = delivery(); { s -> d.retry(s) } },
    TextParam("delivery.fail(reason)", "reason") { val d = delivery(); { s -> d.fail(s) } },
    TextParam("delivery.settle(Retry.error)", "error") { val d = delivery(); { s -> d.settle(Settle.Retry(5, s)) } },
    TextParam("tx.execute(sql)", "sql") { { s -> inTransactionRethrowing { tx -> tx.execute(s, listOf()) } } },
    TextParam("tx.execute(params)", "params") { { s -> inTransactionRethrowing { tx -> tx.execute("SELECT ?1", listOf(SqlValue.Text(s))) } } },
    TextParam("tx.enqueue(id)", "id") { { s -> inTransactionRethrowing { tx -> tx.enqueue(outbox, NewMessage(byteArrayOf(), id = s)) } } },
)

/** Runs [f] in a store transaction and throws what it threw inside (so the caller sees the typed error). */
suspend fun Ctx.inTransactionRethrowing(f: (SqlTransaction) -> Unit) {
    var thrown: Throwable? = null
    store.inTransaction(work { tx ->
        try {
            f(tx)
        } catch (e: Throwable) {
            thrown = e
        }
    })
    thrown?.let { throw it }
}

/** One integer parameter: its name, its Kotlin type's range and a call passing it. */
class IntParam(val name: String, val unsigned: Boolean, val max: Long, val prepare: suspend Ctx.() -> (suspend (Long) -> Any?))

private val fixed = Backoff.Fixed(10)
val intParams: List<IntParam> = listOf(
    IntParam("start_ms", false, MAX_SAFE) { { v -> ManualClock(v) } },
    IntParam("ms", false, MAX_SAFE) { { v -> ManualClock(0).advanceMs(v) } },
    IntParam("ms", false, MAX_SAFE) { { v -> ManualClock(0).setMs(v) } },
    IntParam("lease_ms", false, MAX_SAFE) { { v -> Inbox(store, "i", InboxOptions(leaseMs = v)) } },
    IntParam("retention_ms", false, MAX_SAFE) { { v -> Inbox(store, "i", InboxOptions(retentionMs = v)) } },
    IntParam("lease_ms", false, MAX_SAFE) { { v -> inbox.begin("b-$tag", null, CallOptions(leaseMs = v)) } },
    IntParam("wait_ms", false, MAX_SAFE) { { v -> inbox.process("w-$tag", null, CallOptions(waitMs = v)) { byteArrayOf() } } },
    IntParam("lease_ms", false, MAX_SAFE) { { v -> Outbox(store, "q", OutboxOptions(leaseMs = v)) } },
    IntParam("after_ms", false, MAX_SAFE) { { v -> Outbox(store, "q", OutboxOptions(ordering = Ordering.FifoPerKey(PoisonPolicy.Park(v)))) } },
    IntParam("delay_ms", false, MAX_SAFE) { { v -> outbox.enqueue(NewMessage(byteArrayOf(), delayMs = v)) } },
    IntParam("available_at_ms", false, MAX_SAFE) { { v -> outbox.enqueue(NewMessage(byteArrayOf(), availableAtMs = v)) } },
    IntParam("after_ms", false, MAX_SAFE) { val d = delivery(); { v -> d.retry("e", v) } },
    IntParam("after_ms", false, MAX_SAFE) { val d = delivery(); { v -> d.snooze(v) } },
    IntParam("lease_ms", false, MAX_SAFE) { val d = delivery(); { v -> d.extend(v) } },
    IntParam("after_ms", false, MAX_SAFE) { val d = delivery(); { v -> d.settle(Settle.Snooze(v)) } },
    IntParam("lease_ms", false, MAX_SAFE) { val d = delivery(); { v -> outbox.settle(d.id(), d.token(), Settle.Extend(v)) } },
    IntParam("busy_timeout_ms", false, MAX_SAFE) { { v -> Store(File(store.location()).resolveSibling("bt-$tag.db").path, SqliteOptions(busyTimeoutMs = v)) } },
    IntParam("poll_interval_ms", false, MAX_SAFE) { { v -> Worker(outbox, WorkerOptions(pollIntervalMs = v)) } },
    IntParam("shutdown_timeout_ms", false, MAX_SAFE) { { v -> Worker(outbox, WorkerOptions(shutdownTimeoutMs = v)) } },
    IntParam("deadline_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.NONE, v) } },
    IntParam("delay_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, Backoff.Fixed(v), Jitter.NONE) } },
    IntParam("initial_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, Backoff.Exponential(v, 2.0, MAX_SAFE), Jitter.FULL) } },
    IntParam("max_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, Backoff.Linear(0, 5, v), Jitter.EQUAL) } },
    IntParam("base_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, Backoff.Decorrelated(v, MAX_SAFE), Jitter.NONE) } },
    IntParam("first_attempt_at_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.NONE).decide(1u, 1u, v, 5) } },
    IntParam("now_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.NONE).decide(1u, 1u, 0, v) } },
    IntParam("last_delay_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.NONE).decide(1u, 1u, 0, 5, v) } },
    IntParam("retry_after_ms", false, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.NONE).decide(1u, 1u, 0, 5, null, v) } },
    // unsigned 64-bit
    IntParam("seed", true, MAX_SAFE) { { v -> Outbox(store, "q", OutboxOptions(seed = v.toULong())) } },
    IntParam("seed", true, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.FULL).scheduleMs(v.toULong(), 3u) } },
    IntParam("seed", true, MAX_SAFE) { { v -> RetryPolicy(3u, fixed, Jitter.FULL).decide(v.toULong(), 1u, 0, 5) } },
    IntParam("token", true, MAX_SAFE) { val d = delivery(); { v -> outbox.settle(d.id(), v.toULong(), Settle.Ack) } },
    IntParam("after_seq", true, MAX_SAFE) { { v -> outbox.deadLetters(v.toULong(), 10u) } },
    IntParam("max_result_bytes", true, MAX_SAFE) { { v -> Inbox(store, "i", InboxOptions(maxResultBytes = v.toULong())) } },
    IntParam("max_payload_bytes", true, MAX_SAFE) { { v -> Outbox(store, "q", OutboxOptions(maxPayloadBytes = v.toULong())) } },
    // unsigned 32-bit: every value of the type is a number the core has a rule for
    IntParam("n", true, 100_000) { { v -> RetryPolicy(3u, fixed, Jitter.FULL).scheduleMs(7u, v.toUInt()) } },
    IntParam("max", true, 0xFFFF_FFFFL) { { v -> outbox.lease(v.toUInt()) } },
    IntParam("limit", true, 0xFFFF_FFFFL) { { v -> outbox.deadLetters(null, v.toUInt()) } },
    IntParam("recent_capacity", true, 0xFFFF_FFFFL) { { v -> Inbox(store, "i", InboxOptions(recentCapacity = v.toUInt())).process("r-$tag") { byteArrayOf() } } },
    IntParam("concurrency", true, 0xFFFF_FFFFL) { { v -> Worker(outbox, WorkerOptions(concurrency = v.toUInt())).runUntilIdle { WorkerOutcome.Success } } },
    IntParam("max_attempts", true, 0xFFFF_FFFFL) { { v -> RetryPolicy(v.toUInt(), fixed, Jitter.NONE) } },
    IntParam("attempts", true, 0xFFFF_FFFFL) { { v -> RetryPolicy(3u, fixed, Jitter.NONE).decide(1u, v.toUInt(), 0, 5) } },
)

/** One floating-point parameter: its name and a call passing it (the core checks the value). */
class DoubleParam(val name: String, val call: suspend Ctx.(Double) -> Any?)

val doubleParams: List<DoubleParam> = listOf(
    DoubleParam("retry_budget.ratio") { d -> Outbox(store, "q", OutboxOptions(retryBudget = RetryBudget(d))) },
    DoubleParam("retry_budget.min_per_second") { d -> Outbox(store, "q", OutboxOptions(retryBudget = RetryBudget(0.1, d))) },
    DoubleParam("retry_budget.burst") { d -> Outbox(store, "q", OutboxOptions(retryBudget = RetryBudget(0.1, null, d))) },
    DoubleParam("backoff.factor") { d -> RetryPolicy(3u, Backoff.Exponential(1, d, 100), Jitter.FULL).scheduleMs(1u, 20u) },
    DoubleParam("SqlValue.Real") { d -> inTransactionRethrowing { tx -> tx.execute("SELECT ?1", listOf(SqlValue.Real(d))) } },
)

fun doubleCase(rnd: Random): Case {
    val p = doubleParams[rnd.nextInt(doubleParams.size)]
    val values = listOf(Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, -1.0, 0.0, -0.0, 1e308, Double.MIN_VALUE, 0.5, 2.0, rnd.nextDouble(-1e9, 1e9))
    val d = values[rnd.nextInt(values.size)]
    return Case("double ${p.name}=$d") { call(null, null) { p.call(this, d) } }
}

fun Random.long(unsigned: Boolean, max: Long): Long {
    val edges = if (unsigned) {
        // bit patterns of ULong / UInt values
        if (max <= 0xFFFF_FFFFL) listOf(0L, 1L, max, max + 1, 0xFFFF_FFFFL, 100_000L, 100_001L, nextLong(0, 0x1_0000_0000L))
        else listOf(0L, 1L, MAX_SAFE, MAX_SAFE + 1, -1L /* ULong.MAX */, Long.MIN_VALUE, nextLong())
    } else {
        listOf(0L, 1L, -1L, MAX_SAFE, MAX_SAFE + 1, Long.MAX_VALUE, Long.MIN_VALUE, nextLong(), nextLong(0, 100_000))
    }
    return edges[nextInt(edges.size)].let { if (max <= 0xFFFF_FFFFL && unsigned) it and 0xFFFF_FFFFL else it }
}

/** The kinds of handler the API takes, and what a hostile one does. */
enum class HKind { INBOX_OBJECT, INBOX_SUSPEND_OBJECT, INBOX_LAMBDA, INBOX_TX_OBJECT, STORE_TX_OBJECT, WORKER_OBJECT, WORKER_SUSPEND_OBJECT, WORKER_LAMBDA, LISTENER_OBJECT }
enum class Act { RETURN, THROW, REENTER, NEVER, EXIT, HALT }

class Case(val what: String, val run: suspend Ctx.() -> Verdict)

/** Case [i] of [seed]; [exits] are the positions of the cases that end the JVM on purpose. */
fun hostileCase(seed: Long, i: Int, exits: Map<Int, Act>): Case {
    val rnd = Random(seed * 1_000_003 + i)
    exits[i]?.let { act ->
        val kind = listOf(HKind.INBOX_OBJECT, HKind.INBOX_SUSPEND_OBJECT, HKind.WORKER_OBJECT, HKind.WORKER_LAMBDA, HKind.INBOX_TX_OBJECT)[rnd.nextInt(5)]
        return handlerCase(rnd, kind, act)
    }
    return when (rnd.nextInt(100)) {
        in 0..39 -> textCase(rnd)
        in 40..64 -> intCase(rnd)
        in 65..67 -> nameCase(rnd)
        in 68..69 -> doubleCase(rnd)
        in 70..74 -> bytesCase(rnd)
        else -> {
            val kind = HKind.entries[rnd.nextInt(HKind.entries.size)]
            val act = listOf(Act.RETURN, Act.RETURN, Act.THROW, Act.THROW, Act.THROW, Act.REENTER, Act.NEVER)[rnd.nextInt(7)]
            handlerCase(rnd, kind, act)
        }
    }
}

fun textCase(rnd: Random): Case {
    val p = textParams[rnd.nextInt(textParams.size)]
    val s = if (rnd.nextInt(8) == 0) rnd.hugeText() else rnd.text()
    val lone = firstLone(s)
    return Case("text ${p.what} ${if (lone != null) "lone U+%04X at %d".format(lone.first.code, lone.second) else "valid"} (${s.length} chars)") {
        val f = p.prepare(this)
        if (lone != null) call("invalid_argument", surrogateMessage(p.name, lone.first, lone.second)) { f(s) }
        else call(null, null) { f(s) }
    }
}

fun intCase(rnd: Random): Case {
    val p = intParams[rnd.nextInt(intParams.size)]
    val v = rnd.long(p.unsigned, p.max)
    val shown = if (p.unsigned) v.toULong().toString() else v.toString()
    val inRange = if (p.unsigned) v.toULong() <= p.max.toULong() else v in 0..p.max
    return Case("int ${p.name}=$shown") {
        val f = p.prepare(this)
        if (inRange) call(null, null, not = integerMessage(p.name, shown, p.max)) { f(v) }
        else call("invalid_argument", integerMessage(p.name, shown, p.max)) { f(v) }
    }
}

fun nameCase(rnd: Random): Case {
    val names = listOf("at_most_once", "at_least_once", "exactly_once", "AT_MOST_ONCE", "ExactlyOnce", "exactly-once", " exactly_once", "", rnd.text(lone = false), "x".repeat(1 shl 20))
    val n = names[rnd.nextInt(names.size)]
    val json = listOf(
        """{"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}""",
        """{"max_attempts": 3, "backoff": {"kind": "fixd", "delay_ms": 10}, "jitter": "none"}""",
        """{"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "loud"}""",
        """{"max_atempts": 3}""",
        """{"max_attempts": -1, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}""",
        """{"max_attempts": 1e308, "backoff": {"kind": "exponential", "initial_ms": 1, "factor": NaN, "max_ms": 5}}""",
        """{"max_attempts": 3, "backoff": {"kind": "exponential", "initial_ms": 1, "factor": 1e309, "max_ms": 5}, "jitter": "full"}""",
        "[".repeat(100_000), "{\"a\":\"" + "x".repeat(2 shl 20) + "\"}", "", "null",
    )[rnd.nextInt(11)]
    return if (rnd.nextBoolean()) {
        Case("name modeFromName(${n.take(20)}…${n.length})") {
            try {
                val m = modeFromName(n)
                if (modeName(m) == n || n !in names.take(3)) documented("the core reads `${n.take(20)}` as $m") else wrong("`$n` read as $m")
            } catch (e: OncelyException) {
                if (n in names.take(3)) wrong("a valid name refused: ${e.message}")
                else if (e is OncelyException.InvalidArgument && e.message!!.startsWith("invalid argument `mode`") && e.message!!.length < 4000) typed(e.code)
                else wrong("${e.code}: ${e.message?.take(200)}")
            } catch (e: Throwable) {
                untyped(e)
            }
        }
    } else {
        Case("name RetryPolicy.fromJson(${json.take(30)}…${json.length})") {
            call(if (json.startsWith("""{"max_attempts": 3, "backoff": {"kind": "fixed", "delay_ms": 10}, "jitter": "none"}""")) null else "invalid_argument", null) {
                RetryPolicy.fromJson(json)
            }
        }
    }
}

fun bytesCase(rnd: Random): Case {
    val size = listOf(0, 1, 1 shl 20, (1 shl 20) + 1, 5 shl 20)[rnd.nextInt(5)]
    val big = ByteArray(size) { it.toByte() }
    val over = size > (1 shl 20)
    return when (rnd.nextInt(5)) {
        0 -> Case("bytes enqueue payload $size") { call(if (over) "invalid_argument" else null, null) { outbox.enqueue(NewMessage(big)) } }
        1 -> Case("bytes ticket.finish result $size") { val t = ticket(); call(if (over) "invalid_argument" else null, null) { t.finish(big) } }
        2 -> Case("bytes begin payload $size") { call(null, null) { inbox.begin("p-$tag", big) } }
        3 -> Case("bytes fingerprint $size") { if (fingerprint(big).length == 32) documented("fingerprint") else wrong("fingerprint") }
        else -> {
            val n = listOf(1, 1000, 100_000)[rnd.nextInt(3)]
            Case("bytes $n headers") {
                call(null, null) { outbox.enqueue(NewMessage(byteArrayOf(), headers = (0 until n).associate { "h$it" to "v".repeat(it % 50) })) }
            }
        }
    }
}

/** What a hostile worker handler returns. */
fun Random.outcome(): WorkerOutcome = when (nextInt(4)) {
    0 -> WorkerOutcome.Success
    1 -> WorkerOutcome.Retry(message() ?: "", listOf(null, 0L, 1500L, -1000L, Long.MIN_VALUE, Long.MAX_VALUE)[nextInt(6)])
    2 -> WorkerOutcome.Snooze(listOf(0L, 1L, 2000L, -5L, Long.MIN_VALUE, Long.MAX_VALUE)[nextInt(6)])
    else -> WorkerOutcome.Fail(message() ?: "")
}

fun handlerCase(rnd: Random, kind: HKind, act: Act): Case {
    val thrown = rnd.throwable()
    val outcome = rnd.outcome()
    val huge = rnd.nextInt(4) == 0
    val what = "handler $kind $act " + when (act) {
        Act.THROW -> "${thrown.javaClass.simpleName}(${thrown.message?.length})"
        Act.RETURN -> if (kind.name.startsWith("WORKER")) outcome.toString().take(60) else "result huge=$huge"
        else -> ""
    }
    return Case(what) { runHandler(kind, act, thrown, outcome, huge) }
}

/** Blocks a handler that must never return, until the case is over (so no thread stays stuck). */
class Never {
    val entered = CompletableDeferred<Unit>()
    private val latch = CountDownLatch(1)
    fun block() { entered.complete(Unit); latch.await() }
    suspend fun suspendForever(): Nothing { entered.complete(Unit); awaitCancellation() }
    fun release() = latch.countDown()
}

fun endJvm(act: Act): Nothing {
    if (act == Act.EXIT) { println("EXPECT_EXIT 77"); System.out.flush(); exitProcess(77) }
    println("EXPECT_EXIT 78"); System.out.flush()
    Runtime.getRuntime().halt(78)
    error("unreachable")
}

suspend fun Ctx.runHandler(kind: HKind, act: Act, thrown: Throwable, outcome: WorkerOutcome, huge: Boolean): Verdict {
    val never = Never()
    val id = "h-$tag"
    val result = if (huge) ByteArray((1 shl 20) + 10) else "ok".toByteArray()
    var inner: Throwable? = null
    // The body every inbox handler runs (blocking form).
    fun body(): ByteArray = when (act) {
        Act.RETURN -> result
        Act.THROW -> throw thrown
        Act.REENTER -> {
            inner = try { runBlocking { inbox.process(id) { byteArrayOf() } }; null } catch (e: Throwable) { e }
            "ok".toByteArray()
        }
        Act.NEVER -> { never.block(); result }
        Act.EXIT, Act.HALT -> endJvm(act)
    }
    suspend fun suspendingBody(): ByteArray = when (act) {
        Act.REENTER -> {
            inner = try { inbox.process(id) { byteArrayOf() }; null } catch (e: Throwable) { e }
            "ok".toByteArray()
        }
        Act.NEVER -> never.suspendForever()
        else -> body()
    }
    try {
        return when (kind) {
            HKind.INBOX_OBJECT, HKind.INBOX_SUSPEND_OBJECT, HKind.INBOX_LAMBDA, HKind.INBOX_TX_OBJECT -> {
                if (kind == HKind.INBOX_TX_OBJECT && act == Act.REENTER) return documented("skipped: a transactional handler must not call its own store")
                val call: suspend () -> Processed = when (kind) {
                    HKind.INBOX_OBJECT -> { { inbox.process(id, null, handler { body() }) } }
                    HKind.INBOX_SUSPEND_OBJECT -> { { inbox.processSuspending(id, null, object : SuspendProcessHandler { override suspend fun handle() = suspendingBody() }) } }
                    HKind.INBOX_LAMBDA -> { { inbox.process(id) { suspendingBody() } } }
                    else -> { { inbox.processInTransaction(id, null, inTx { body() }) } }
                }
                inboxVerdict(act, thrown, huge, never, call, id) { inner }
            }
            HKind.STORE_TX_OBJECT -> {
                if (act == Act.REENTER) return documented("skipped: a transactional handler must not call its own store")
                val e = try {
                    if (act == Act.NEVER) {
                        withTimeout(300) { store.inTransaction(work { body() }) }
                    } else store.inTransaction(work { body() })
                    null
                } catch (e: Throwable) { e }
                never.release()
                when {
                    act == Act.NEVER && e is TimeoutCancellationException -> documented("cut by the caller's timeout")
                    act == Act.RETURN && e == null -> documented("committed")
                    act == Act.THROW && e is OncelyException.HandlerFailed && e.message == failureText(thrown) -> documented("HandlerFailed")
                    e != null && e !is OncelyException -> untyped(e)
                    else -> wrong("in_transaction ended with ${e?.javaClass?.simpleName}: ${e?.message?.take(200)}")
                }
            }
            HKind.LISTENER_OBJECT -> {
                val o = Outbox(store, "l-$tag", null, clock)
                o.onEvent(object : OutboxListener {
                    override fun onEvent(event: OutboxEvent) {
                        if (act == Act.THROW) throw thrown
                        if (act == Act.REENTER) inner = try { runBlocking { o.get(event.id) }; null } catch (e: Throwable) { e }
                    }
                })
                if (act == Act.NEVER) return documented("skipped: a listener is called on the thread that made the change (keep it quick)")
                val r = try { o.enqueue(NewMessage(byteArrayOf(), id = id)) } catch (e: Throwable) { return if (e is OncelyException) wrong("enqueue refused: ${e.message}") else untyped(e) }
                if (r == Enqueued.QUEUED && inner == null) documented("the listener's ${act.name.lowercase()} did not change the enqueue") else wrong("$r, inner $inner")
            }
            else -> workerVerdict(kind, act, thrown, outcome, never, id) { message ->
                when (act) {
                    Act.RETURN -> if (message.attempt == 1u) outcome else WorkerOutcome.Success
                    Act.THROW -> throw thrown
                    Act.REENTER -> {
                        val again = runBlocking { outbox.enqueue(NewMessage(message.payload, id = message.id)) }
                        val cancel = runBlocking { outbox.cancel(message.id) }
                        if (again == Enqueued.ALREADY_QUEUED && cancel == Cancelled.IN_FLIGHT) WorkerOutcome.Success
                        else WorkerOutcome.Fail("re-entered: $again, $cancel")
                    }
                    Act.NEVER -> { never.block(); WorkerOutcome.Success }
                    Act.EXIT, Act.HALT -> endJvm(act)
                }
            }
        }
    } finally {
        never.release()
    }
}

suspend fun Ctx.inboxVerdict(act: Act, thrown: Throwable, huge: Boolean, never: Never, call: suspend () -> Processed, id: String, inner: () -> Throwable?): Verdict {
    val e = try {
        if (act == Act.NEVER) withTimeout(300) { call() } else call()
        null
    } catch (e: Throwable) { e }
    never.release()
    if (act == Act.NEVER) return if (e is TimeoutCancellationException) documented("cut by the caller's timeout") else wrong("never-returning handler: ${e?.javaClass?.simpleName}")
    if (e != null && e !is OncelyException) return untyped(e)
    return when (act) {
        Act.RETURN -> when {
            e == null && !huge -> documented("processed")
            e is OncelyException.InvalidArgument && huge -> typed("a result over max_result_bytes")
            else -> wrong("returned a ${if (huge) "huge " else ""}result: ${e?.message?.take(200)}")
        }
        Act.THROW -> {
            val expected = failureText(thrown)
            val rec = inbox.get(id)
            when {
                e !is OncelyException.HandlerFailed -> wrong("threw ${thrown.javaClass.simpleName}: ended with ${e?.javaClass?.simpleName} ${e?.message?.take(100)}")
                e.message != expected -> wrong("HandlerFailed `${e.message?.take(100)}`, expected `${expected.take(100)}`")
                rec != null -> wrong("the id stayed ${rec.status} after a failed handler")
                else -> documented("HandlerFailed with the contract's text; id released")
            }
        }
        Act.REENTER -> {
            val i = inner()
            if (e == null && i is OncelyException.InProgress) documented("re-entered: InProgress") else wrong("re-entered: $i, outer $e")
        }
        else -> wrong("unreachable")
    }
}

suspend fun Ctx.workerVerdict(kind: HKind, act: Act, thrown: Throwable, outcome: WorkerOutcome, never: Never, id: String, f: (Message) -> WorkerOutcome): Verdict {
    outbox.enqueue(NewMessage("p".toByteArray(), id = id))
    val worker = Worker(outbox, WorkerOptions(shutdownTimeoutMs = 200, pollIntervalMs = 10))
    val blocking = object : DeliveryHandler { override fun deliver(message: Message) = f(message) }
    val suspending = object : SuspendDeliveryHandler {
        override suspend fun deliver(message: Message): WorkerOutcome = if (act == Act.NEVER) never.suspendForever() else f(message)
    }
    val lambda: suspend (Message) -> WorkerOutcome = { m -> if (act == Act.NEVER) never.suspendForever() else f(m) }
    val summary = try {
        if (act == Act.NEVER) {
            runBlocking {
                val run = async {
                    when (kind) {
                        HKind.WORKER_OBJECT -> worker.run(blocking)
                        HKind.WORKER_SUSPEND_OBJECT -> worker.runSuspending(suspending)
                        else -> worker.run(lambda)
                    }
                }
                withTimeout(10_000) { never.entered.await() }
                worker.stop()
                withTimeout(10_000) { run.await() }
            }
        } else when (kind) {
            HKind.WORKER_OBJECT -> worker.runUntilIdle(blocking)
            HKind.WORKER_SUSPEND_OBJECT -> worker.runUntilIdleSuspending(suspending)
            else -> worker.runUntilIdle(lambda)
        }
    } catch (e: TimeoutCancellationException) {
        return Verdict("hang", "the worker did not stop within 10 s of stop() (shutdownTimeoutMs 200)")
    } catch (e: Throwable) {
        return if (e is OncelyException) wrong("the run failed: ${e.code} ${e.message?.take(200)}") else untyped(e)
    }
    never.release()
    val rec = outbox.get(id)
    fun bad(why: String) = wrong("$why; record $rec, summary $summary")
    return when (act) {
        Act.NEVER -> if (summary.released == 1uL && rec != null) documented("stopped at shutdown, released") else bad("a never-returning handler")
        Act.REENTER -> if (rec == null && summary.succeeded == 1uL) documented("re-entered: AlreadyQueued, InFlight") else bad("re-entered")
        Act.THROW -> {
            val expected = failureText(thrown)
            when {
                thrown is HandlerException.Permanent -> if (rec?.status == MessageStatus.DEAD && rec.reason == "failed permanently: $expected") documented("dead letter") else bad("expected a dead letter `${expected.take(60)}`")
                rec?.status == MessageStatus.READY && rec.lastError == expected && rec.attempts == 1u -> documented("retry with the contract's text")
                else -> bad("expected a retry `${expected.take(60)}`")
            }
        }
        Act.RETURN -> when (outcome) {
            is WorkerOutcome.Success -> if (rec == null) documented("acked") else bad("success")
            is WorkerOutcome.Fail -> if (rec?.status == MessageStatus.DEAD && rec.reason == "failed permanently: " + lossy(outcome.reason).ifEmpty { "Permanent" }) documented("dead letter") else bad("Fail")
            is WorkerOutcome.Retry -> {
                val base = lossy(outcome.error).ifEmpty { "Retry" }
                val after = outcome.afterMs
                when {
                    after == 0L && rec == null -> documented("retried at once, then acked")
                    after != null && after < 0 -> if (rec?.lastError?.startsWith("$base (bad Retry.after: ") == true) documented("bad hint: a retry by the policy") else bad("negative Retry.after")
                    rec?.status == MessageStatus.READY && rec.lastError == base -> documented("retry")
                    else -> bad("Retry")
                }
            }
            is WorkerOutcome.Snooze -> when {
                outcome.afterMs <= 0 -> if (rec?.lastError?.startsWith("bad Snooze.seconds: ") == true && rec.attempts == 1u) documented("bad hint: a retry by the policy") else bad("bad Snooze")
                rec?.status == MessageStatus.READY && rec.attempts == 0u && rec.lastError == null -> documented("snoozed, no attempt used")
                else -> bad("Snooze")
            }
        }
        else -> bad("unreachable")
    }
}

/** Positions and kinds of the cases that end the JVM on purpose: two per run (fewer when tiny). */
fun exitCases(seed: Long, total: Int): Map<Int, Act> {
    if (total < 20) return emptyMap()
    val r = Random(seed xor 0x5EED)
    return mapOf(r.nextInt(total / 2) to Act.EXIT, total / 2 + r.nextInt(total / 2) to Act.HALT)
}

object HostileChild {
    @JvmStatic
    fun main(args: Array<String>) {
        val (dirArg, seedArg, fromArg, totalArg) = args
        val dir = File(dirArg)
        val seed = seedArg.toLong()
        val total = totalArg.toInt()
        val exits = exitCases(seed, total)
        val clock = ManualClock(1_700_000_000_000)
        var store: Store? = null
        var storeBlock = -1
        runBlocking {
            for (i in fromArg.toInt() until total) {
                // A fresh SQLite file every 25 cases keeps the snapshots small.
                if (i / 25 != storeBlock) {
                    storeBlock = i / 25
                    store = Store(File(dir, "hostile-$storeBlock-${ProcessHandle.current().pid()}.db").path)
                }
                val case = hostileCase(seed, i, exits)
                println("BEGIN $i ${case.what.replace('\n', ' ')}")
                System.out.flush()
                val verdict = try {
                    case.run(Ctx(i, Random(seed + i), store!!, clock))
                } catch (e: Throwable) {
                    Verdict("untyped", "the case's own setup failed: ${e.javaClass.name}: ${e.message?.take(200)}")
                }
                println("END $i ${verdict.kind} ${verdict.detail.replace(Regex("[\\r\\n\\u2028\\u2029]"), " ").take(400)}")
                System.out.flush()
            }
        }
        println("DONE")
        System.out.flush()
        exitProcess(0)
    }
}
