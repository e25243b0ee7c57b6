// Hostile input, pinned case by case (the generator suite, HostileSuiteTest, draws many more):
// lone surrogates in every string parameter refused with the core's text (never merged into one
// id), integers out of range refused with the core's text (never wrapped or unbounded), and the
// handler objects that used to hang or commit: an Error subclass or a lone surrogate escaping a
// handler object, a listener that calls its outbox.
package dev.oncely

import java.io.File
import java.nio.file.Files
import kotlin.random.Random
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

class HostileInputTest {
    private lateinit var dir: File

    @BeforeEach
    fun setUp() {
        dir = Files.createTempDirectory("oncely-hostile-input-").toFile()
    }

    @AfterEach
    fun tearDown() {
        dir.deleteRecursively()
    }

    private var cases = 0

    /** A fresh case context (its own ids) on one SQLite store. */
    private fun ctx(): Ctx = (cases++).let { Ctx(it, Random(it), Store(File(dir, "s.db").path), ManualClock(1_700_000_000_000)) }

    @Test
    fun twoLoneSurrogatesAreTwoRefusalsNeverOneMergedId() = runBlocking {
        val inbox = Inbox(Store(File(dir, "ids.db").path), "s")
        val ran = mutableListOf<String>()
        val high = assertThrows<OncelyException.InvalidArgument> { inbox.process("\uD800") { ran += "high"; "first".toByteArray() } }
        assertEquals("invalid argument `id`: holds a lone surrogate U+D800 at character 0; text must be valid Unicode", high.message)
        val low = assertThrows<OncelyException.InvalidArgument> { inbox.process("\uDFFF") { ran += "low"; "second".toByteArray() } }
        assertEquals("invalid argument `id`: holds a lone surrogate U+DFFF at character 0; text must be valid Unicode", low.message)
        assertEquals("invalid_argument", low.code)
        assertEquals(listOf<String>(), ran)
        // Nothing under what a lossy conversion would have made of them.
        assertNull(inbox.get("\uFFFD"))
        assertNull(inbox.get("?"))
        // A well-formed pair is one character, kept as it is, and counted as one.
        assertEquals("smile", String(inbox.process("\uD83D\uDE00") { "smile".toByteArray() }.result!!))
        assertEquals(RecordStatus.SUCCEEDED, inbox.get("\uD83D\uDE00")!!.status)
        val after = assertThrows<OncelyException.InvalidArgument> { inbox.get("\uD83D\uDE00-\uDC00") }
        assertEquals("invalid argument `id`: holds a lone surrogate U+DC00 at character 2; text must be valid Unicode", after.message)
    }

    @Test
    fun everyStringParameterRefusesALoneSurrogateWithTheCoreText() = runBlocking {
        val wrongs = mutableListOf<String>()
        for (p in textParams) {
            for ((s, unit, at) in listOf(Triple("\uD800", '\uD800', 0), Triple("ab\uDFFFc", '\uDFFF', 2), Triple("\uD83D\uDE00x\uDC00", '\uDC00', 2))) {
                val c = ctx()
                val f = p.prepare(c)
                val v = c.call("invalid_argument", surrogateMessage(p.name, unit, at)) { f(s) }
                if (v.kind != "typed") wrongs += "${p.what} ${s.map { "%04X".format(it.code) }}: ${v.kind} ${v.detail}"
            }
        }
        assertTrue(wrongs.isEmpty(), wrongs.joinToString("\n"))
        assertTrue(textParams.size >= 30, "the table lost parameters: ${textParams.size}")
    }

    @Test
    fun scheduleLengthIsBoundedByTheCore() {
        val p = RetryPolicy(3u, Backoff.Fixed(10), Jitter.NONE)
        assertEquals(100_000, p.scheduleMs(1u, 100_000u).size)
        for (n in listOf(100_001u, 4_000_000_000u, UInt.MAX_VALUE)) {
            val e = assertThrows<OncelyException.InvalidArgument> { p.scheduleMs(1u, n) }
            assertEquals("invalid argument `n`: must be a whole number from 0 to 100000, got $n", e.message)
        }
        val seed = assertThrows<OncelyException.InvalidArgument> { p.scheduleMs(ULong.MAX_VALUE, 1u) }
        assertEquals("invalid argument `seed`: must be a whole number from 0 to 9007199254740991, got 18446744073709551615", seed.message)
    }

    @Test
    fun everyWideIntegerParameterIsAWholeNumberFrom0To2Pow53Minus1() = runBlocking {
        val wrongs = mutableListOf<String>()
        for (p in intParams) {
            if (p.max != MAX_SAFE) continue
            val values = if (p.unsigned) listOf(MAX_SAFE + 1, -1L) else listOf(-1L, MAX_SAFE + 1, Long.MIN_VALUE, Long.MAX_VALUE)
            for (v in values) {
                val shown = if (p.unsigned) v.toULong().toString() else v.toString()
                val c = ctx()
                val f = p.prepare(c)
                val verdict = c.call("invalid_argument", integerMessage(p.name, shown)) { f(v) }
                if (verdict.kind != "typed") wrongs += "${p.name}=$shown: ${verdict.kind} ${verdict.detail}"
            }
            val c = ctx()
            val f = p.prepare(c)
            val edge = c.call(null, null, not = integerMessage(p.name, MAX_SAFE.toString())) { f(MAX_SAFE) }
            if (edge.kind != "typed" && edge.kind != "documented") wrongs += "${p.name}=2^53-1: ${edge.kind} ${edge.detail}"
        }
        assertTrue(wrongs.isEmpty(), wrongs.joinToString("\n"))
    }

    @Test
    fun anErrorThrownByAHandlerObjectIsARetryableFailureWithItsName() = runBlocking {
        val store = Store(File(dir, "e.db").path)
        val inbox = Inbox(store, "s")
        withTimeout(20_000) {
            val blocking = assertThrows<OncelyException.HandlerFailed> { inbox.process("a", null, handler { throw AssertionError() }) }
            assertEquals("AssertionError", blocking.message)
            val suspending = assertThrows<OncelyException.HandlerFailed> {
                inbox.processSuspending("b", null, object : SuspendProcessHandler {
                    override suspend fun handle(): ByteArray = throw StackOverflowError()
                })
            }
            assertEquals("StackOverflowError", suspending.message)
            val named = assertThrows<OncelyException.HandlerFailed> { inbox.process("c", null, handler { throw HostileError("deep") }) }
            assertEquals("deep", named.message)
        }
        assertNull(inbox.get("a"))
        assertNull(inbox.get("b"))
        // A transaction whose work throws a Throwable commits nothing.
        val thrown = assertThrows<OncelyException.HandlerFailed> {
            store.inTransaction(work { tx ->
                tx.execute("CREATE TABLE t (x)", listOf())
                throw Throwable("no")
            })
        }
        assertEquals("no", thrown.message)
        store.inTransaction(work { tx ->
            assertEquals(0, tx.execute("SELECT name FROM sqlite_master WHERE name = 't'", listOf()).size)
        })
    }

    @Test
    fun aLoneSurrogateInAnEscapingExceptionIsStoredLossily() = runBlocking {
        val store = Store(File(dir, "l.db").path)
        val inbox = Inbox(store, "s")
        withTimeout(20_000) {
            val blocking = assertThrows<OncelyException.HandlerFailed> { inbox.process("a", null, handler { throw IllegalStateException("bad \uD800 text") }) }
            assertEquals("bad \uFFFD text", blocking.message)
            val suspending = assertThrows<OncelyException.HandlerFailed> {
                inbox.processSuspending("b", null, object : SuspendProcessHandler {
                    override suspend fun handle(): ByteArray = throw IllegalStateException("bad \uDFFF")
                })
            }
            assertEquals("bad \uFFFD", suspending.message)
            val lambda = assertThrows<OncelyException.HandlerFailed> { inbox.process("c") { throw HandlerException.Permanent("p\uD800") } }
            assertEquals("p\uFFFD", lambda.message)
        }
        val outbox = Outbox(store, "q", OutboxOptions(retry = RetryPolicy(3u, Backoff.Fixed(60_000), Jitter.NONE)))
        outbox.enqueue(NewMessage(byteArrayOf(), id = "m"))
        Worker(outbox).runUntilIdle { WorkerOutcome.Retry("busy \uDBFF", null) }
        assertEquals("busy \uFFFD", outbox.get("m")!!.lastError)
    }

    @Test
    fun aListenerMayCallItsOutbox() = runBlocking {
        val outbox = Outbox(Store(File(dir, "o.db").path), "q")
        val seen = mutableListOf<String>()
        outbox.onEvent(object : OutboxListener {
            override fun onEvent(event: OutboxEvent) {
                seen += "${event.name} ${runBlocking { outbox.get(event.id) }?.status}"
            }
        })
        withTimeout(20_000) { outbox.enqueue(NewMessage(byteArrayOf(), id = "m")) }
        assertEquals(listOf("enqueued READY"), seen)
    }
}
