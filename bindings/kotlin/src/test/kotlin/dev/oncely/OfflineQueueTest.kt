// The offline queue of a mobile app, on a real JVM: uploads are enqueued on an SQLite file while
// the network is down (every attempt fails and is retried), the process is killed with SIGKILL
// (as Android or iOS kill an app), a new process on the same file delivers when the network is
// back — and is itself killed mid-delivery, with some acknowledgements lost on the way — and a
// third process finishes. Every upload must reach the receiver exactly once: the test counts the
// receiver's effects (rows written in the same transaction as its processed mark).
package dev.oncely

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.fail

class OfflineQueueTest {
    private lateinit var dir: File
    private val children = mutableListOf<Process>()

    @BeforeEach
    fun setUp() {
        dir = Files.createTempDirectory("oncely-offline-").toFile()
    }

    @AfterEach
    fun tearDown() {
        children.forEach { it.destroyForcibly() }
        dir.deleteRecursively()
    }

    /** A child JVM running [OfflineQueueChild]; its stdout lines arrive in `lines`. */
    private inner class Child(vararg args: String) {
        val lines = LinkedBlockingQueue<String>()
        val seen = mutableListOf<String>()
        val process: Process

        init {
            val java = File(System.getProperty("java.home"), "bin/java").path
            val classpath = System.getProperty("surefire.test.class.path") ?: System.getProperty("java.class.path")
            val cmd = listOf(
                java, "-Djna.library.path=${System.getProperty("jna.library.path")}", "-cp", classpath,
                OfflineQueueChild::class.java.name,
            ) + args
            process = ProcessBuilder(cmd).redirectError(File(dir, "child-${children.size}.err")).start()
            children.add(process)
            val reader = BufferedReader(InputStreamReader(process.inputStream))
            Thread {
                try {
                    reader.lineSequence().forEach { lines.put(it) }
                } catch (_: java.io.IOException) {
                    // The child was killed and its pipe closed under the reader.
                }
                lines.put(EOF)
            }.apply { isDaemon = true }.start()
        }

        /** Waits for a line that `matches` (at most `seconds`), keeping every line read. */
        fun await(what: String, seconds: Long = 60, matches: (String) -> Boolean): String {
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
            while (true) {
                val left = deadline - System.nanoTime()
                val line = lines.poll(maxOf(left, 0), TimeUnit.NANOSECONDS)
                    ?: fail("no `$what` from the child within $seconds s; stderr: ${stderr()}")
                if (line == EOF) fail("the child ended before `$what` (exit ${process.waitFor()}); stderr: ${stderr()}")
                seen.add(line)
                if (matches(line)) return line
            }
        }

        fun stderr(): String = File(dir, "child-${children.indexOf(process)}.err").let { if (it.exists()) it.readText().take(4000) else "" }

        /** SIGKILL (Process.destroyForcibly on Linux): no shutdown hook, no graceful anything. */
        fun kill() {
            process.destroyForcibly()
            assertTrue(process.waitFor(30, TimeUnit.SECONDS), "the child did not die")
            assertEquals(128 + 9, process.exitValue(), "the child was not ended by SIGKILL")
            while (true) {
                val line = lines.poll(5, TimeUnit.SECONDS) ?: break
                if (line == EOF) break
                seen.add(line)
            }
        }
    }

    @Test
    fun uploadsQueuedOfflineSurviveSigkillAndArriveExactlyOnce() {
        val n = 60
        val dropEvery = 7
        val appDb = File(dir, "app.db").path
        val receiverDb = File(dir, "receiver.db").path
        val network = File(dir, "network-up")

        // 1. Offline: the app enqueues every upload; each delivery attempt fails and is retried.
        val a = Child(appDb, receiverDb, network.path, "$n", "$dropEvery", "false")
        a.await("ENQUEUED") { it == "ENQUEUED $n" }
        a.await("a failed attempt") { it.startsWith("RETRIED ") }
        a.kill()
        assertTrue(a.seen.none { it.startsWith("APPLIED") || it.startsWith("DUPLICATE") }, "something was delivered while offline")

        // What survived the kill: all n uploads, none delivered, none dead.
        runBlocking {
            Store(appDb).use { store ->
                offlineOutbox(store).use { outbox ->
                    val s = outbox.stats()
                    assertEquals(n.toULong(), s.ready + s.scheduled + s.leased, "queued uploads after the kill: $s")
                    assertEquals(0uL, s.dead)
                }
            }
        }

        // 2. The network is back: a new process delivers, and is killed mid-way.
        network.createNewFile()
        val b = Child(appDb, receiverDb, network.path, "0", "$dropEvery", "false")
        var applied = 0
        b.await("some uploads applied") { it.startsWith("APPLIED ") && ++applied >= n / 3 }
        b.kill()

        // 3. A third process delivers the rest and stops when the queue is empty.
        val c = Child(appDb, receiverDb, network.path, "0", "$dropEvery", "true")
        c.await("DONE", seconds = 120) { it == "DONE" }
        assertTrue(c.process.waitFor(30, TimeUnit.SECONDS))
        assertEquals(0, c.process.exitValue(), "the last child failed: ${c.stderr()}")

        // The receiver's effects: every upload exactly once.
        val rows = mutableListOf<Pair<String, Long>>()
        runBlocking {
            Store(receiverDb).use { store ->
                store.inTransaction(object : TransactionWork {
                    override fun run(tx: SqlTransaction) {
                        for (r in tx.execute("SELECT id, count(*) FROM effects GROUP BY id ORDER BY id")) {
                            rows.add((r[0] as SqlValue.Text).v to (r[1] as SqlValue.Integer).v)
                        }
                    }
                })
            }
        }
        val counts = rows.toMap()
        val expected = (0 until n).map { "m-$it" }.toSet()
        assertEquals(expected, counts.keys, "uploads lost or unknown ones applied")
        val repeated = counts.filterValues { it != 1L }
        assertTrue(repeated.isEmpty(), "uploads applied more than once: $repeated")

        // The duplicate suppression was exercised, not merely unneeded: acknowledgements were lost
        // and the receiver answered the redeliveries with its stored result.
        val lines = b.seen + c.seen
        val ackLost = lines.filter { it.startsWith("ACK_LOST ") }.map { it.removePrefix("ACK_LOST ") }
        val duplicates = lines.filter { it.startsWith("DUPLICATE ") }.map { it.removePrefix("DUPLICATE ") }
        assertTrue(ackLost.isNotEmpty(), "no acknowledgement was lost: the test did not exercise redelivery")
        assertTrue(duplicates.isNotEmpty(), "no redelivery reached the receiver")
        // Handler runs that applied an effect, over all processes, match the effects: one each.
        val appliedIds = lines.filter { it.startsWith("APPLIED ") }.map { it.removePrefix("APPLIED ") }
        assertEquals(appliedIds.size, appliedIds.toSet().size, "the receiver applied an upload twice: $appliedIds")

        // And the app's queue is empty, nothing dead.
        runBlocking {
            Store(appDb).use { store ->
                offlineOutbox(store).use { outbox ->
                    val s = outbox.stats()
                    assertEquals(0uL, s.ready + s.scheduled + s.leased + s.dead, "left in the app's queue: $s")
                }
            }
        }
    }

    private companion object {
        const val EOF = "\u0000EOF"
    }
}
