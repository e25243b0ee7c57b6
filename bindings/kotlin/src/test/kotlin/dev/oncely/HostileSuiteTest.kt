// The hostile-input generator suite: seeded cases over every public call and option of the Kotlin
// API (lone surrogates in every string parameter, huge strings and byte arrays, integers out of
// range, unknown names, hostile handlers of every kind: throwing anything including Error
// subclasses, returning anything, never returning (cut by the caller's withTimeout or the
// worker's shutdownTimeoutMs), re-entering the same id, System.exit / Runtime.halt). The cases run
// in child JVMs (HostileChild), one child per batch: when a child dies or stops answering, the
// case it was running is counted as a crash or hang and a new child goes on from the next case.
// A handler that ends the JVM on purpose must end it with the status it asked for. Fails on any
// crash, hang, untyped error, undocumented result or store changed by a refused call; prints one
// summary line. ONCELY_HOSTILE_CASES=N (default 300) and ONCELY_HOSTILE_SEED=S (default: random,
// printed) choose the run.
package dev.oncely

import java.io.File
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * Failures of the core that the suite finds and this binding cannot fix without deciding a rule of
 * its own: counted as "known core gap", printed, not failed; each says what the core must change.
 */
private val knownCoreGaps: List<Pair<String, (String, String) -> Boolean>> = listOf(
    // None at the moment. (The three this suite found — a busy timeout past i32::MAX ms, an SQL
    // error and a schema URL error that quoted their input whole — were fixed in the core.)
)

class HostileSuiteTest {
    @Test
    fun hostileCasesNeverCrashHangOrGoUntyped() {
        val total = System.getenv("ONCELY_HOSTILE_CASES")?.toInt() ?: 300
        val seed = System.getenv("ONCELY_HOSTILE_SEED")?.toLong() ?: (System.nanoTime() and 0xFFFF_FFFFL)
        val caseTimeoutSeconds = 20L
        println("hostile: $total cases, seed $seed (replay: ONCELY_HOSTILE_SEED=$seed ONCELY_HOSTILE_CASES=$total)")
        val dir = Files.createTempDirectory("oncely-hostile-").toFile()
        val counts = sortedMapOf<String, Int>()
        val failures = mutableListOf<String>()
        val known = mutableListOf<String>()
        val started = System.nanoTime()
        var children = 0
        var next = 0
        try {
            while (next < total) {
                children++
                val java = File(System.getProperty("java.home"), "bin/java").path
                val classpath = System.getProperty("surefire.test.class.path") ?: System.getProperty("java.class.path")
                val err = File(dir, "child-$children.err")
                val process = ProcessBuilder(
                    java, "-Xmx512m", "-Djna.library.path=${System.getProperty("jna.library.path")}", "-cp", classpath,
                    "dev.oncely.HostileChild", dir.path, seed.toString(), next.toString(), total.toString(),
                ).directory(dir).redirectError(err).start()
                val lines = LinkedBlockingQueue<String>()
                thread(isDaemon = true) {
                    process.inputStream.bufferedReader().useLines { all -> all.forEach { lines.put(it) } }
                    lines.put("\u0000EOF")
                }
                var current = -1
                var what = ""
                var expectExit: Int? = null
                while (true) {
                    val line = lines.poll(if (current < 0) 120 else caseTimeoutSeconds, TimeUnit.SECONDS)
                    when {
                        line == null -> {
                            process.destroyForcibly().waitFor()
                            if (current < 0) error("a hostile child did not start; stderr: ${err.readText().takeLast(3000)}")
                            counts.merge("hang", 1, Int::plus)
                            failures += "hang     #$current $what (no answer in $caseTimeoutSeconds s)"
                            next = current + 1
                            break
                        }
                        line.startsWith("BEGIN ") -> {
                            current = line.split(' ')[1].toInt(); what = line.substringAfter(' ').substringAfter(' '); expectExit = null
                        }
                        line.startsWith("EXPECT_EXIT ") -> expectExit = line.substringAfter(' ').toInt()
                        line.startsWith("END ") -> {
                            val parts = line.split(' ', limit = 4)
                            val detail = parts.getOrElse(3) { "" }
                            val gap = knownCoreGaps.firstOrNull { it.second(what, detail) }?.first
                            val kind = if (gap != null && parts[2] != "typed" && parts[2] != "documented") "known" else parts[2]
                            counts.merge(kind, 1, Int::plus)
                            if (kind == "known") known += "known    #${parts[1]} $what: $gap"
                            else if (kind != "typed" && kind != "documented") failures += "%-8s #%s %s: %s".format(kind, parts[1], what, detail)
                            next = parts[1].toInt() + 1
                            current = -2
                        }
                        line == "DONE" -> { process.waitFor(30, TimeUnit.SECONDS); next = total; break }
                        line == "\u0000EOF" -> {
                            val status = if (process.waitFor(30, TimeUnit.SECONDS)) process.exitValue() else -1
                            if (current < 0) error("a hostile child ended between cases (exit $status); stderr: ${err.readText().takeLast(3000)}")
                            if (expectExit != null && status == expectExit) {
                                counts.merge("documented", 1, Int::plus)
                            } else {
                                counts.merge("crash", 1, Int::plus)
                                failures += "crash    #$current $what (exit $status): ${err.readText().takeLast(600).replace('\n', ' ')}"
                            }
                            next = current + 1
                            break
                        }
                        else -> {} // a handler's or the library's own output
                    }
                }
            }
        } finally {
            dir.deleteRecursively()
        }
        val seconds = (System.nanoTime() - started) / 1e9
        val c = { k: String -> counts[k] ?: 0 }
        println(
            "hostile: $total cases (seed $seed, ${children} child JVMs, %.1f s): typed %d, documented %d, crash %d, hang %d, untyped %d, wrong %d, changed store %d, known core gaps %d"
                .format(seconds, c("typed"), c("documented"), c("crash"), c("hang"), c("untyped"), c("wrong"), c("changed"), c("known")),
        )
        known.take(20).forEach { println("  $it") }
        failures.take(60).forEach { println("  $it") }
        assertTrue(failures.isEmpty(), "${failures.size} hostile cases failed (seed $seed):\n" + failures.take(60).joinToString("\n"))
    }
}
