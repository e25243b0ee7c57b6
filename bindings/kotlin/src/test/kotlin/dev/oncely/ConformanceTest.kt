// The Kotlin runner of oncely's conformance scenarios (tests/conformance/README.md): every
// tests/conformance/scenarios/**/*.json runs unchanged on the "memory" store and on an SQLite temp
// file, through the uniffi binding, with the same canonical rendering and the same extra checks
// (growing fencing tokens, documented delay bounds) as the Rust, Python and Node runners.
// ONCELY_CONFORMANCE_FILTER=substring restricts the run.
package dev.oncely

import java.io.File
import java.nio.file.Files
import java.util.Collections
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min
import kotlin.math.pow
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.buildJsonArray
import kotlinx.serialization.json.buildJsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.put
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import org.junit.jupiter.api.fail

private const val CLOCK_START_MS = 1_700_000_000_000L
private val DEFAULT_RETRY: JsonObject = Json.parseToJsonElement(
    """{"max_attempts": 10, "backoff": {"kind": "exponential", "initial_ms": 100, "factor": 2.0, "max_ms": 60000}, "jitter": "full"}""",
).jsonObject
private val MODES = setOf("at_most_once", "at_least_once", "exactly_once")

/** The scenario is malformed (a typo, an unknown op): reported as a failure, never skipped. */
class Malformed(message: String) : Exception(message)

/** The runner's own exception class, thrown by `work` handlers that `raise` (README, `work`). */
class HandlerFailure(message: String) : Exception(message)

/**
 * Capabilities a scenario may require (README, `requires`), and whether this runner has them:
 * Kotlin's handler types cannot return arbitrary values nor give fractional or non-numeric hints.
 */
private val CAPABILITIES = mapOf("dynamic_handlers" to false)

// The scenario format itself is checked once, by the Rust runner against
// tests/conformance/scenario.schema.json: this runner only maps steps to calls.

// Field access: an absent key and a JSON null are both "not given".
private fun JsonObject.opt(k: String): JsonElement? = this[k]?.takeIf { it !is JsonNull }
private fun JsonObject.str(k: String): String? = opt(k)?.jsonPrimitive?.content
private fun JsonObject.long(k: String): Long? = opt(k)?.jsonPrimitive?.content?.toLong()
private fun JsonObject.req(k: String): String = str(k) ?: throw Malformed("missing `$k`")

private fun text(b: ByteArray?): JsonElement = if (b == null) JsonNull else JsonPrimitive(String(b, Charsets.UTF_8))
private fun bytes(s: String?): ByteArray? = s?.toByteArray(Charsets.UTF_8)
private fun off(t: Long): Long = t - CLOCK_START_MS
private fun errOf(e: OncelyException): JsonElement = buildJsonObject { put("error", e.code) }

/** Documented delay bounds (README "Checks beyond expect"), computed independently of the core. */
private fun delayBounds(policy: JsonObject, attempt: Int, prev: Long?, prevKnown: Boolean = true): Pair<Long, Long> {
    val b = policy["backoff"]!!.jsonObject
    val n = max(attempt, 1)
    fun num(k: String) = b[k]!!.jsonPrimitive.content.toDouble()
    if (b.str("kind") == "decorrelated") {
        val base = num("base_ms")
        val top = if (prevKnown) min(max((prev?.toDouble() ?: base) * 3.0, base), num("max_ms")) else num("max_ms")
        return floor(base).toLong() to floor(top).toLong()
    }
    val base = when (b.str("kind")) {
        "fixed" -> num("delay_ms")
        "linear" -> min(num("initial_ms") + num("step_ms") * (n - 1), num("max_ms"))
        else -> min(num("initial_ms") * num("factor").pow(n - 1), num("max_ms"))
    }
    return when (policy.str("jitter") ?: "full") {
        "none" -> floor(base).toLong() to floor(base).toLong()
        "equal" -> floor(base / 2).toLong() to floor(base).toLong()
        else -> 0L to floor(base).toLong()
    }
}

private fun checkScheduleBounds(policy: JsonObject, delays: List<Long>): String? {
    var prev: Long? = null
    delays.forEachIndexed { i, d ->
        val (lo, hi) = delayBounds(policy, i + 1, prev)
        if (d !in lo..hi) return "invariant: delay ${i + 1} of the schedule is $d ms, outside the documented [$lo, $hi] ms"
        prev = d
    }
    return null
}

/** A backend: how a store is opened and what a `restart` drops. */
interface Backend {
    fun store(): Store
    fun restart()
}

/** One in-memory store per scenario; it survives a restart (it stands in for a shared durable store). */
class MemoryBackend : Backend {
    private val store = Store("memory")
    override fun store() = store
    override fun restart() {}
}

/** An SQLite file in a temp directory; a restart closes the store handle and reopens the file. */
class SqliteBackend(dir: File) : Backend {
    private val path = File(dir, "oncely.db").path
    private var store: Store? = null
    override fun store(): Store = store ?: Store(path).also { store = it }
    override fun restart() {
        store?.close()
        store = null
    }
}

/** A fresh schema of its own on the server in ONCELY_POSTGRES_URL; a restart closes the store
 * (its connections) and reopens it. */
class PostgresBackend(server: String, schema: String) : Backend {
    private val url = postgresSchemaUrl(server, schema)
    private var store: Store? = null
    override fun store(): Store = store ?: Store(url).also { store = it }
    override fun restart() {
        store?.close()
        store = null
    }
}

/** The PostgreSQL server of the `postgres` backend (`scripts/with-postgres.sh` sets it). */
val POSTGRES_SERVER: String? = System.getenv("ONCELY_POSTGRES_URL")?.ifEmpty { null }

/** A delivery kept under a name; `live` is dropped by a restart (then it settles by id and token). */
private class Held(
    val queue: String, val id: String, val token: ULong, val attempt: Int, val payload: ByteArray,
    val key: String?, val headers: Map<String, String>, val lastError: String?, var live: Delivery?,
)

private fun renderSettled(s: Settled): JsonElement = when (s) {
    is Settled.Acked -> buildJsonObject { put("settled", "acked") }
    is Settled.GaveUp -> buildJsonObject { put("settled", "gave_up") }
    is Settled.Dropped -> buildJsonObject { put("settled", "dropped") }
    is Settled.Retrying -> buildJsonObject { put("settled", buildJsonObject { put("retrying_at_ms", off(s.atMs)) }) }
    is Settled.Returned -> buildJsonObject { put("settled", buildJsonObject { put("returned_at_ms", off(s.atMs)) }) }
    is Settled.Extended -> buildJsonObject { put("settled", buildJsonObject { put("extended_until_ms", off(s.untilMs)) }) }
}

private fun renderEvent(e: OutboxEvent): JsonElement = buildJsonObject {
    put("kind", e.name)
    put("id", e.id)
    when (val k = e.kind) {
        is EventKind.Leased -> put("attempt", k.attempt.toLong())
        is EventKind.Retried -> {
            put("retry_at_ms", off(k.retryAtMs))
            put("error", k.error)
        }
        is EventKind.Snoozed -> put("until_ms", off(k.untilMs))
        is EventKind.Parked -> put("until_ms", off(k.untilMs))
        is EventKind.DeadLettered -> put("reason", k.reason)
        else -> {}
    }
}

private fun statusName(s: Status) = when (s) {
    Status.SEEN -> "seen"
    Status.SUCCEEDED -> "succeeded"
    Status.FAILED -> "failed"
}

private fun enqueuedName(e: Enqueued) = when (e) {
    Enqueued.QUEUED -> "queued"
    Enqueued.ALREADY_QUEUED -> "already_queued"
    Enqueued.ALREADY_DELIVERED -> "already_delivered"
}

/** One run of one scenario on one backend. */
class Run(scenario: JsonObject, private val backend: Backend) {
    private val clock = ManualClock(CLOCK_START_MS)
    private val scope: String
    private val inboxOptions: InboxOptions
    private val queue: String
    private val outboxSpec: JsonObject
    private val retryPolicy: JsonObject
    private val inboxes = mutableMapOf<String, Inbox>()
    private val tickets = mutableMapOf<String, Pair<String, Ticket>>()
    private val tokenNames = mutableMapOf<ULong, String>()
    private val maxToken = mutableMapOf<String, ULong>()
    private val effects = Collections.synchronizedMap(mutableMapOf<String, Int>())
    private val outboxes = mutableMapOf<String, Outbox>()
    private val held = mutableMapOf<String, Held>()
    private val events: MutableList<OutboxEvent> = Collections.synchronizedList(mutableListOf())
    private val outTokens = mutableMapOf<String, ULong>()
    private val delays = mutableMapOf<String, Long>()
    /** Every native handle of this "process", closed by a restart and at the end. */
    private val handles = mutableListOf<AutoCloseable>()
    var violation: String? = null
        private set

    init {
        val ispec = scenario["inbox"]?.jsonObject ?: JsonObject(mapOf())
        scope = ispec.str("scope")?.ifEmpty { null } ?: "default"
        val mode = ispec.str("mode")?.let {
            if (it !in MODES) throw Malformed("inbox.mode: unknown mode $it")
            modeFromName(it)
        }
        val policy = ispec.str("cache_policy")?.let {
            when (it) {
                "success_only" -> CachePolicy.SUCCESS_ONLY
                "success_and_failure" -> CachePolicy.SUCCESS_AND_FAILURE
                else -> throw Malformed("inbox.cache_policy: unknown policy $it")
            }
        }
        inboxOptions = InboxOptions(mode = mode, leaseMs = ispec.long("lease_ms"), retentionMs = ispec.long("retention_ms"), cachePolicy = policy)
        outboxSpec = scenario["outbox"]?.jsonObject ?: JsonObject(mapOf())
        queue = outboxSpec.str("queue")?.ifEmpty { null } ?: "default"
        retryPolicy = outboxSpec.opt("retry")?.jsonObject ?: DEFAULT_RETRY
        outboxSpec.str("mode")?.let { if (it !in MODES) throw Malformed("outbox.mode: unknown mode $it") }
        ordering() // malformed orderings are reported before the first step
    }

    private fun <T : AutoCloseable> own(h: T): T = h.also { handles.add(it) }

    private fun ordering(): Ordering? {
        val o = outboxSpec.opt("ordering") ?: return null
        val bad = Malformed("outbox.ordering: expected \"unordered\" or {\"fifo_per_key\": ...}, got $o")
        if (o is JsonPrimitive && o.isString && o.content == "unordered") return Ordering.Unordered
        if (o !is JsonObject || o.keys != setOf("fifo_per_key")) throw bad
        val p = o["fifo_per_key"]!!
        val poison = when {
            p is JsonPrimitive && p.isString && p.content == "block" -> PoisonPolicy.Block
            p is JsonPrimitive && p.isString && p.content == "dead_letter" -> PoisonPolicy.DeadLetter
            p is JsonObject && p.keys == setOf("park_ms") -> PoisonPolicy.Park(p["park_ms"]!!.jsonPrimitive.content.toLongOrNull() ?: throw bad)
            else -> throw bad
        }
        return Ordering.FifoPerKey(poison)
    }

    private fun inbox(scope: String): Inbox =
        inboxes.getOrPut(scope) { own(Inbox(backend.store(), scope, inboxOptions, clock)) }

    private fun outbox(q: String): Outbox = outboxes.getOrPut(q) {
        val s = outboxSpec
        val budget = s.opt("retry_budget")?.jsonObject?.let {
            RetryBudget(
                ratio = it["ratio"]!!.jsonPrimitive.content.toDouble(),
                minPerSecond = it.str("min_per_second")?.toDouble(),
                burst = it.str("burst")?.toDouble(),
            )
        }
        val options = OutboxOptions(
            mode = s.str("mode")?.let { modeFromName(it) },
            retry = s.opt("retry")?.let { own(RetryPolicy.fromJson(it.toString())) },
            leaseMs = s.long("lease_ms"),
            ordering = ordering(),
            seed = s.str("seed")?.toULong(),
            retryBudget = budget,
            maxPayloadBytes = s.str("max_payload_bytes")?.toULong(),
            dedupWindowMs = s.long("dedup_window_ms"),
        )
        val o = own(Outbox(backend.store(), q, options, clock))
        o.onEvent(object : OutboxListener {
            override fun onEvent(event: OutboxEvent) {
                events.add(event)
            }
        })
        o
    }

    private fun ticket(name: String): Ticket = tickets[name]?.second ?: throw Malformed("no ticket named `$name` is held")

    private fun heldNamed(name: String): Held = held[name] ?: throw Malformed("no delivery named `$name` is held")

    private fun beginOutcome(scope: String, name: String?, r: BeginOutcome): JsonElement = when (r) {
        is BeginOutcome.Claimed -> {
            val t = own(r.ticket)
            if (t.token() > 0u) {
                val key = "$scope\u0000${t.id()}"
                val earlier = maxToken[key] ?: 0u
                if (t.token() <= earlier && violation == null) {
                    violation = "invariant: the claim of `${t.id()}` got fencing token ${t.token()}, not larger than the earlier token $earlier of that id"
                }
                maxToken[key] = maxOf(earlier, t.token())
                if (name != null) tokenNames[t.token()] = name
            }
            if (name != null) tickets[name] = scope to t
            buildJsonObject {
                put("outcome", "claimed")
                put("fenced", t.token() > 0u)
            }
        }
        is BeginOutcome.Duplicate -> buildJsonObject {
            put("outcome", "duplicate")
            put("status", statusName(r.status))
            put("result", text(r.result))
        }
        is BeginOutcome.InProgress -> buildJsonObject { put("outcome", "in_progress") }
        is BeginOutcome.Conflict -> buildJsonObject { put("outcome", "conflict") }
    }

    private suspend fun okOrError(f: suspend () -> Unit): JsonElement = try {
        f()
        buildJsonObject { put("ok", true) }
    } catch (e: OncelyException) {
        errOf(e)
    }

    private fun policyOk(): Boolean = try {
        RetryPolicy.fromJson(retryPolicy.toString()).close()
        true
    } catch (e: OncelyException) {
        false
    }

    private suspend fun settle(name: String, action: Settle): JsonElement {
        val h = heldNamed(name)
        val s: Settled = try {
            val d = h.live
            if (d != null) {
                when (action) {
                    is Settle.Ack -> {
                        d.ack()
                        Settled.Acked
                    }
                    is Settle.Retry -> d.retry(action.error, action.afterMs)
                    is Settle.Snooze -> d.snooze(action.afterMs)
                    is Settle.Fail -> d.fail(action.reason)
                    is Settle.Extend -> d.extend(action.leaseMs)
                    is Settle.Release -> d.release()
                }
            } else {
                outbox(h.queue).settle(h.id, h.token, action)
            }
        } catch (e: OncelyException) {
            return errOf(e)
        }
        if (action is Settle.Retry && s is Settled.Retrying) {
            val delay = max(s.atMs - clock.nowMs(), 0L)
            if (action.afterMs == null && policyOk()) {
                val n = h.attempt
                var prev: Long? = null
                var known = true
                if (n > 1) {
                    val k = "${h.queue}\u0000${h.id}\u0000${n - 1}"
                    if (k in delays) prev = delays[k] else known = false
                }
                val (lo, hi) = delayBounds(retryPolicy, n, prev, known)
                if (delay !in lo..hi && violation == null) {
                    violation = "invariant: the retry of `${h.id}` after attempt $n is scheduled $delay ms later, outside the documented [$lo, $hi] ms of the policy"
                }
            }
            delays["${h.queue}\u0000${h.id}\u0000${h.attempt}"] = delay
        }
        return renderSettled(s)
    }

    private suspend fun deadLetters(o: Outbox): List<String> {
        val ids = mutableListOf<String>()
        var after: ULong? = null
        while (true) {
            val page = o.deadLetters(after, 2u)
            ids.addAll(page.map { it.id })
            if (page.isNotEmpty()) after = page.last().seq
            if (page.size < 2) return ids
        }
    }

    /** Runs one step and renders its result (null for `advance` and `restart`). */
    suspend fun step(s: JsonObject): JsonElement? = try {
        stepInner(s.req("op"), s)
    } catch (e: OncelyException) {
        errOf(e)
    }

    private fun scopeOf(s: JsonObject) = s.str("scope")?.ifEmpty { null } ?: scope

    private suspend fun stepInner(op: String, s: JsonObject): JsonElement? {
        when (op) {
            "begin" -> {
                val sc = scopeOf(s)
                val r = inbox(sc).begin(s.req("id"), bytes(s.str("payload")), CallOptions(mode = s.str("mode")?.let { modeFromName(it) }, leaseMs = s.long("lease_ms")))
                return beginOutcome(sc, s.str("ticket"), r)
            }
            "finish" -> {
                val t = ticket(s.req("ticket"))
                return okOrError { t.finish(bytes(s.req("result"))!!) }
            }
            "fail", "release" -> {
                val tn = s.str("ticket")
                val dn = s.str("delivery")
                if ((tn == null) == (dn == null)) throw Malformed("`$op` needs exactly one of `ticket` (inbox) and `delivery` (outbox)")
                if (tn != null) {
                    val t = ticket(tn)
                    return if (op == "fail") okOrError { t.fail(bytes(s.req("reason"))!!) } else okOrError { t.release() }
                }
                return if (op == "fail") settle(dn!!, Settle.Fail(s.req("reason"))) else settle(dn!!, Settle.Release)
            }
            "process" -> {
                val h = s["handler"]!!.jsonObject
                val returns = h.str("returns")
                val fails = h.str("fails")
                if ((returns == null) == (fails == null)) throw Malformed("a handler needs exactly one of `returns` and `fails`")
                val permanent = h.opt("permanent")?.jsonPrimitive?.booleanOrNull ?: false
                val id = s.req("id")
                val handler = object : ProcessHandler {
                    override fun handle(): ByteArray {
                        effects.merge(id, 1, Int::plus)
                        if (returns != null) return returns.toByteArray(Charsets.UTF_8)
                        // Any exception but Permanent is retryable; this one reaches oncely as its text.
                        throw if (permanent) HandlerException.Permanent(fails!!) else HandlerFailure(fails!!)
                    }
                }
                val options = CallOptions(mode = s.str("mode")?.let { modeFromName(it) }, leaseMs = s.long("lease_ms"), waitMs = s.long("wait_ms"))
                return try {
                    val p = inbox(scopeOf(s)).process(id, bytes(s.str("payload")), handler, options)
                    buildJsonObject {
                        put("result", text(p.result))
                        put("replayed", p.replayed)
                    }
                } catch (e: OncelyException.HandlerFailed) {
                    buildJsonObject { put("handler_error", e.message) }
                } catch (e: OncelyException.ReplayedFailure) {
                    buildJsonObject { put("replayed_failure", e.message) }
                }
            }
            "effects" -> return buildJsonObject {
                for (k in s["expect"]!!.jsonObject.keys) put(k, (effects[k] ?: 0).toLong())
            }
            "advance" -> {
                clock.advanceMs(s.long("ms") ?: throw Malformed("missing `ms`"))
                return null
            }
            "restart" -> {
                tickets.clear()
                inboxes.clear()
                outboxes.clear()
                held.values.forEach { it.live = null }
                handles.forEach { it.close() }
                handles.clear()
                backend.restart()
                return null
            }
            "get" -> {
                val rec = inbox(scopeOf(s)).get(s.req("id")) ?: return buildJsonObject { put("record", JsonNull) }
                val state = when (rec.status) {
                    RecordStatus.IN_PROGRESS -> "in_progress"
                    RecordStatus.SEEN -> "seen"
                    RecordStatus.SUCCEEDED -> "succeeded"
                    RecordStatus.FAILED -> "failed"
                }
                val token: JsonElement = if (rec.token == 0uL) JsonNull else JsonPrimitive(tokenNames[rec.token] ?: "other")
                return buildJsonObject {
                    put("record", buildJsonObject {
                        put("state", state)
                        put("result", text(rec.result))
                        put("token", token)
                    })
                }
            }
            "purge_expired" -> return buildJsonObject { put("purged", inbox(scope).purgeExpired().toLong()) }
            "begin_many" -> {
                val sc = scopeOf(s)
                val reqs = s["requests"]!!.jsonArray.map { it.jsonObject }
                val answers = inbox(sc).beginMany(
                    reqs.map { BeginRequest(it.req("id"), bytes(it.str("payload")), it.str("mode")?.let { m -> modeFromName(m) }, it.long("lease_ms")) },
                )
                return buildJsonObject {
                    put("results", JsonArray(reqs.mapIndexed { i, r -> beginOutcome(sc, r.str("ticket"), answers[i]) }))
                }
            }
            "finish_many" -> {
                val scopes = mutableSetOf<String>()
                val batch = s["items"]!!.jsonArray.map { it.jsonObject }.map { item ->
                    val (sc, t) = tickets[item.req("ticket")] ?: throw Malformed("no ticket named `${item.req("ticket")}` is held")
                    scopes.add(sc)
                    FinishItem(t, bytes(item.req("result"))!!)
                }
                if (scopes.size != 1) throw Malformed("finish_many needs at least one item, all from one scope")
                val results = inboxes[scopes.first()]!!.finishMany(batch)
                return buildJsonObject {
                    put("results", JsonArray(results.map {
                        when (it) {
                            is ItemOutcome.Ok -> buildJsonObject { put("ok", true) }
                            is ItemOutcome.Failed -> buildJsonObject { put("error", it.code) }
                        }
                    }))
                }
            }
            "schedule" -> {
                val policy = s["policy"]!!.jsonObject
                val delaysMs = RetryPolicy.fromJson(policy.toString()).use { it.scheduleMs(s.req("seed").toULong(), s.req("n").toUInt()) }
                checkScheduleBounds(policy, delaysMs)?.let { if (violation == null) violation = it }
                return buildJsonObject { put("delays_ms", JsonArray(delaysMs.map { JsonPrimitive(it) })) }
            }
            "decide" -> {
                val d = RetryPolicy.fromJson(s["policy"]!!.toString()).use {
                    it.decide(
                        s.req("seed").toULong(), s.req("attempts").toUInt(), s.long("first_attempt_at_ms")!!, s.long("now_ms")!!,
                        s.long("last_delay_ms"), s.long("retry_after_ms"),
                    )
                }
                return when (d) {
                    is RetryDecision.GiveUp -> buildJsonObject { put("give_up", d.reason) }
                    is RetryDecision.RetryIn -> buildJsonObject { put("retry_in_ms", d.delayMs) }
                }
            }
        }
        return outboxStep(op, s)
    }

    private fun message(m: JsonObject) = NewMessage(
        payload = bytes(m.str("payload") ?: "")!!,
        id = m.req("id"),
        key = m.str("key"),
        headers = m.opt("headers")?.jsonObject?.mapValues { it.value.jsonPrimitive.content },
        delayMs = m.long("delay_ms"),
    )

    private suspend fun outboxStep(op: String, s: JsonObject): JsonElement {
        val q = s.str("queue")?.ifEmpty { null } ?: queue
        when (op) {
            "enqueue" -> return buildJsonObject { put("enqueued", enqueuedName(outbox(q).enqueue(message(s)))) }
            "enqueue_many" -> {
                val r = outbox(q).enqueueMany(s["messages"]!!.jsonArray.map { message(it.jsonObject) })
                return buildJsonObject { put("enqueued", JsonArray(r.map { JsonPrimitive(enqueuedName(it)) })) }
            }
            "lease" -> {
                val names = s.opt("as")?.jsonArray?.map { it.jsonPrimitive.content } ?: listOf()
                val ds = outbox(q).lease(s.req("max").toUInt())
                val leased = buildJsonArray {
                    ds.forEachIndexed { i, d0 ->
                        val d = own(d0)
                        val token = d.token()
                        if (token > 0u) {
                            val key = "$q\u0000${d.id()}"
                            val earlier = outTokens[key] ?: 0u
                            outTokens[key] = maxOf(earlier, token)
                            if (token <= earlier && violation == null) {
                                violation = "invariant: the lease of `${d.id()}` got fencing token $token, not larger than the earlier token $earlier of that id"
                            }
                        }
                        val name = if (i < names.size) names[i] else d.id()
                        add(buildJsonObject {
                            put("id", d.id())
                            put("attempt", d.attempt().toLong())
                            put("fenced", token > 0u)
                        })
                        held[name] = Held(q, d.id(), token, d.attempt().toInt(), d.payload(), d.key(), d.headers(), d.lastError(), d)
                    }
                }
                return buildJsonObject { put("leased", leased) }
            }
            "ack" -> return settle(s.req("delivery"), Settle.Ack)
            "retry" -> return settle(s.req("delivery"), Settle.Retry(s.long("after_ms"), s.str("error") ?: ""))
            "snooze" -> return settle(s.req("delivery"), Settle.Snooze(s.long("after_ms")!!))
            "extend" -> return settle(s.req("delivery"), Settle.Extend(s.long("lease_ms")!!))
            "inspect" -> {
                val h = heldNamed(s.req("delivery"))
                return buildJsonObject {
                    put("id", h.id)
                    put("attempt", h.attempt.toLong())
                    put("payload", String(h.payload, Charsets.UTF_8))
                    put("key", h.key?.let { JsonPrimitive(it) } ?: JsonNull)
                    put("headers", JsonObject(h.headers.mapValues { JsonPrimitive(it.value) }))
                    put("last_error", h.lastError?.let { JsonPrimitive(it) } ?: JsonNull)
                }
            }
            "cancel" -> {
                val c = when (outbox(q).cancel(s.req("id"))) {
                    Cancelled.CANCELLED -> "cancelled"
                    Cancelled.IN_FLIGHT -> "in_flight"
                    Cancelled.NOT_FOUND -> "not_found"
                }
                return buildJsonObject { put("cancel", c) }
            }
            "get_message" -> {
                val r = outbox(q).get(s.req("id")) ?: return buildJsonObject { put("message", JsonNull) }
                return buildJsonObject {
                    put("message", buildJsonObject {
                        put("state", when (r.status) {
                            MessageStatus.READY -> "ready"
                            MessageStatus.LEASED -> "leased"
                            MessageStatus.DEAD -> "dead"
                        })
                        put("attempts", r.attempts.toLong())
                        put("available_at_ms", off(r.availableAtMs))
                        put("last_error", r.lastError?.let { JsonPrimitive(it) } ?: JsonNull)
                        put("reason", r.reason?.let { JsonPrimitive(it) } ?: JsonNull)
                    })
                }
            }
            "dead_letters" -> return buildJsonObject { put("dead", JsonArray(deadLetters(outbox(q)).map { JsonPrimitive(it) })) }
            "replay" -> return buildJsonObject { put("replayed", outbox(q).replay(s.req("id"))) }
            "purge_dead" -> {
                val ids = s.opt("ids")?.jsonArray?.map { it.jsonPrimitive.content }
                return buildJsonObject { put("purged", outbox(q).purgeDead(ids).toLong()) }
            }
            "stats" -> {
                val st = outbox(q).stats()
                return buildJsonObject {
                    put("ready", st.ready.toLong())
                    put("scheduled", st.scheduled.toLong())
                    put("leased", st.leased.toLong())
                    put("dead", st.dead.toLong())
                    put("oldest_age_ms", st.oldestAgeMs?.let { JsonPrimitive(it) } ?: JsonNull)
                }
            }
            "counters" -> {
                val st = outbox(q).stats()
                return buildJsonObject {
                    put("enqueued", st.enqueued.toLong())
                    put("delivered", st.delivered.toLong())
                    put("retried", st.retried.toLong())
                    put("dead_lettered", st.deadLettered.toLong())
                    put("dropped", st.dropped.toLong())
                }
            }
            "events" -> {
                val out = synchronized(events) { events.map(::renderEvent).also { events.clear() } }
                return JsonArray(out)
            }
            "work" -> {
                val h = s["handler"]!!.jsonObject
                val does = h.req("does")
                fun ms(k: String): Long? = h.opt(k)?.jsonPrimitive?.content?.let {
                    it.toLongOrNull() ?: throw Malformed("`$k` $it is not a whole number of milliseconds (that needs dynamic_handlers)")
                }
                // Read (and refuse) the handler before the run: a Malformed thrown inside the
                // handler would only be a retryable failure.
                val act: () -> WorkerOutcome = when (does) {
                    // Kotlin's handler returns a WorkerOutcome: nothing and `true` are both Success.
                    "return_nothing", "return_true" -> ({ WorkerOutcome.Success })
                    "raise_retry" -> {
                        val outcome = WorkerOutcome.Retry(h.req("message"), ms("after_ms"))
                        ({ outcome })
                    }
                    "raise_snooze" -> {
                        val outcome = WorkerOutcome.Snooze(ms("after_ms") ?: throw Malformed("missing `after_ms`"))
                        ({ outcome })
                    }
                    "raise_permanent" -> {
                        val m = h.req("message")
                        ({ throw HandlerException.Permanent(m) })
                    }
                    "raise" -> {
                        val m = h.req("message")
                        ({ throw HandlerFailure(m) })
                    }
                    else -> throw Malformed("a Kotlin handler cannot `$does` (that needs dynamic_handlers)")
                }
                val summary = own(Worker(outbox(q))).runUntilIdle { _ -> act() }
                return buildJsonObject {
                    put("attempts", summary.attempts.toLong())
                    put("succeeded", summary.succeeded.toLong())
                    put("failed", summary.failed.toLong())
                }
            }
        }
        throw Malformed("unknown op `$op`")
    }

    /** Closes every native handle of the run. */
    fun close() {
        handles.forEach { it.close() }
        handles.clear()
        backend.restart()
    }
}

/** The capabilities `scenario` requires that this runner lacks (checked by [checkScenario]). */
fun missingCapabilities(scenario: JsonObject): List<String> =
    (scenario["requires"] as? JsonArray)?.map { it.jsonPrimitive.content }?.filter { CAPABILITIES[it] != true } ?: listOf()

/**
 * Runs `scenario` on `backend`; fails on the first mismatch or malformed step. A well-formed
 * scenario that requires a capability this runner lacks is not run: it is reported as skipped
 * (JUnit: aborted), never as passed.
 */
fun runScenario(scenario: JsonObject, backend: Backend, label: String = "") {
    val run = try {
        val missing = missingCapabilities(scenario)
        if (missing.isNotEmpty()) {
            println("skip $label  (requires ${missing.joinToString()}: not expressible with Kotlin's handler types)")
            Assumptions.abort<Unit>("requires ${missing.joinToString()}")
        }
        Run(scenario, backend)
    } catch (e: Malformed) {
        fail("malformed scenario: ${e.message}")
    }
    try {
        runBlocking {
            scenario["steps"]!!.jsonArray.forEachIndexed { i, el ->
                val step = el.jsonObject
                val op = step.str("op")
                val actual = try {
                    run.step(step)
                } catch (e: Malformed) {
                    fail("step $i ($op): scenario error: ${e.message}")
                }
                run.violation?.let { fail("step $i ($op): $it") }
                val expect = step["expect"]
                if (expect != null && expect != actual) {
                    fail("step $i ($op): expected $expect, actual $actual")
                }
            }
        }
    } finally {
        run.close()
    }
}

val REPO_ROOT: File = File(System.getProperty("oncely.repo.root") ?: "../..").canonicalFile
val SCENARIOS: File = File(REPO_ROOT, "tests/conformance/scenarios")

fun scenarioNames(): List<String> {
    val filter = System.getenv("ONCELY_CONFORMANCE_FILTER")
    return SCENARIOS.walkTopDown()
        .filter { it.isFile && it.name.endsWith(".json") }
        .map { it.relativeTo(SCENARIOS).invariantSeparatorsPath.removeSuffix(".json") }
        .sorted()
        .filter { filter.isNullOrEmpty() || filter in it }
        .toList()
}

private val runCounter = java.util.concurrent.atomic.AtomicInteger()

class ConformanceTest {
    @Test
    fun scenariosExist() {
        assertTrue(SCENARIOS.isDirectory, "no scenarios under $SCENARIOS")
        assertTrue(scenarioNames().isNotEmpty() || !System.getenv("ONCELY_CONFORMANCE_FILTER").isNullOrEmpty())
    }

    /** Under CI the PostgreSQL runs must not be skipped; elsewhere a missing server is said loudly. */
    @Test
    fun postgresRunsUnderCi() {
        if (POSTGRES_SERVER != null) return
        assertTrue(System.getenv("CI") != "true", "ONCELY_POSTGRES_URL is not set under CI")
        System.err.println("!! SKIPPED: the postgres backend (ONCELY_POSTGRES_URL is not set; scripts/with-postgres.sh sets it)")
    }

    @TestFactory
    fun scenarios(): List<DynamicTest> = scenarioNames().flatMap { name ->
        val backends = listOf("memory", "sqlite") + listOfNotNull(POSTGRES_SERVER?.let { "postgres" })
        backends.map { backendName ->
            DynamicTest.dynamicTest("$backendName $name") {
                val scenario = Json.parseToJsonElement(File(SCENARIOS, "$name.json").readText()).jsonObject
                val dir = Files.createTempDirectory("oncely-kotlin-").toFile()
                try {
                    val backend = when (backendName) {
                        "memory" -> MemoryBackend()
                        "sqlite" -> SqliteBackend(dir)
                        else -> PostgresBackend(POSTGRES_SERVER!!, "kt_conformance_${ProcessHandle.current().pid()}_${runCounter.incrementAndGet()}")
                    }
                    runScenario(scenario, backend, "$backendName  $name")
                } finally {
                    dir.deleteRecursively()
                }
            }
        }
    }
}
