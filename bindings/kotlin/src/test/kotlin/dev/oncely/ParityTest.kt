// The Kotlin column of the API parity table (tests/parity/api.tsv): every name there exists in
// the `dev.oncely` package, found by Java reflection. `Type.member` is a public method of the
// class named `member` (a suspend function compiles to one with a trailing Continuation), its
// property getter (`getMember`, `isMember`), a method of its companion object (a named uniffi
// constructor), a nested class (a sealed class's variant), or an extension function in a
// hand-written file (`LambdasKt`, `CodesKt`) taking the type as its first parameter. Functions
// taking unsigned numbers get a mangled JVM name (`lease-WZ4Q5Ns`): the part before `-` counts.
// `Type.<init>` is a public constructor of the API (not uniffi's handle constructors);
// `module.name` is a top-level function. A row marked `known_gap` (6th column) may say `-`; any
// other empty or `-` cell fails.
package dev.oncely

import java.io.File
import java.lang.reflect.Method
import java.lang.reflect.Modifier
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.TestFactory

class ParityTest {
    private val facades = listOf("OncelyKt", "LambdasKt", "CodesKt").map { Class.forName("dev.oncely.$it") }

    private fun table(): File {
        var dir: File? = File(System.getProperty("user.dir")).absoluteFile
        while (dir != null) {
            val f = File(dir, "tests/parity/api.tsv")
            if (f.isFile) return f
            dir = dir.parentFile
        }
        error("tests/parity/api.tsv not found above ${System.getProperty("user.dir")}")
    }

    private fun named(m: Method, name: String) = m.name == name || m.name.startsWith("$name-")

    private fun cap(s: String) = s.replaceFirstChar { it.uppercase() }

    private fun classOf(owner: String): Class<*>? =
        try { Class.forName("dev.oncely." + owner.replace('.', '$')) } catch (e: ClassNotFoundException) { null }

    private fun exists(name: String): Boolean {
        val owner = name.substringBeforeLast('.')
        val member = name.substringAfterLast('.')
        if (owner == "module") {
            return facades.any { f -> f.methods.any { Modifier.isStatic(it.modifiers) && named(it, member) } }
        }
        val cls = classOf(owner) ?: return false
        if (member == "<init>") {
            val internal = setOf("UniffiWithHandle", "NoHandle")
            return cls.constructors.any { c -> c.parameterTypes.isNotEmpty() && c.parameterTypes.none { it.simpleName in internal } }
        }
        val candidates = listOf(member, "get" + cap(member), "is" + cap(member), member.takeIf { it.startsWith("is") })
        if (cls.methods.any { m -> candidates.any { it != null && named(m, it) } }) return true
        val companion = cls.declaredFields.firstOrNull { it.name == "Companion" }?.type
        if (companion != null && companion.methods.any { named(it, member) }) return true
        if (classOf("$owner.$member") != null) return true
        return facades.any { f ->
            f.methods.any { m ->
                Modifier.isStatic(m.modifiers) && named(m, member) &&
                    m.parameterTypes.firstOrNull()?.isAssignableFrom(cls) == true
            }
        }
    }

    @TestFactory
    fun everyKotlinNameOfTheTableExists(): List<DynamicTest> {
        val lines = table().readLines()
        assertEquals(listOf("operation", "rust", "python", "node", "kotlin"), lines.first().split('\t'))
        val rows = lines.drop(1).withIndex().filter { it.value.isNotBlank() }
        assertTrue(rows.size > 50, "${rows.size} rows")
        return rows.map { (i, line) ->
            val cells = line.split('\t')
            DynamicTest.dynamicTest("api.tsv line ${i + 2}: ${cells[0]}") {
                assertTrue(cells.size == 5 || (cells.size == 6 && cells[5] == "known_gap"), "bad row: $line")
                val cell = cells[4]
                if (cells.size == 6 && cell == "-") return@dynamicTest
                assertTrue(cell.isNotEmpty() && cell != "-", "${cells[0]} has no Kotlin name")
                val missing = cell.split('|').map { it.trim() }.filter { !exists(it) }
                assertEquals(emptyList<String>(), missing, "${cells[0]}: not in dev.oncely")
            }
        }
    }
}

/** The calls added to close the table's Kotlin gaps (tests/parity/README.md). */
class ParityGapsTest {
    @org.junit.jupiter.api.Test
    fun messageAndDeliveryCarryTheIdempotencyKeyAndAvailableAt(): Unit = kotlinx.coroutines.runBlocking {
        val clock = ManualClock(1_000_000)
        val outbox = Outbox(Store("memory"), "q", null, clock)
        outbox.enqueue(NewMessage("p".toByteArray(), id = "m1", delayMs = 2000))
        clock.advanceMs(3000)
        val d = outbox.lease(1u).single()
        assertEquals(1_002_000L, d.availableAtMs())
        d.release()
        val seen = mutableListOf<Message>()
        Worker(outbox).runUntilIdle { m -> seen.add(m); WorkerOutcome.Success }
        assertEquals("m1", seen.single().idempotencyKey)
        assertEquals(seen.single().id, seen.single().idempotencyKey)
        assertTrue(seen.single().availableAtMs >= 1_002_000L)
        assertEquals(1_000_000L, seen.single().createdAtMs)
    }

    @org.junit.jupiter.api.Test
    fun inboxModeAndTicketSettle(): Unit = kotlinx.coroutines.runBlocking {
        assertEquals(Mode.EXACTLY_ONCE, Inbox(Store("memory"), "s").mode())
        assertEquals(Mode.AT_LEAST_ONCE, Inbox(Store("memory"), "s", InboxOptions(mode = Mode.AT_LEAST_ONCE)).mode())
        val inbox = Inbox(Store("memory"), "s", InboxOptions(cachePolicy = CachePolicy.SUCCESS_AND_FAILURE))
        (inbox.begin("a") as BeginOutcome.Claimed).ticket.settle("done".toByteArray())
        assertEquals(RecordStatus.SUCCEEDED, inbox.get("a")!!.status)
        (inbox.begin("b") as BeginOutcome.Claimed).ticket.settle(error = "flaky")
        assertEquals(null, inbox.get("b"), "a retryable failure gives the id back")
        assertTrue(inbox.begin("b") is BeginOutcome.Claimed)
        (inbox.begin("c") as BeginOutcome.Claimed).ticket.settle(error = "bad card", permanent = true)
        assertEquals(RecordStatus.FAILED, inbox.get("c")!!.status)
    }
}
