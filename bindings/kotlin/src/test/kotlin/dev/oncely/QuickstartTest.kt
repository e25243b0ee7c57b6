// The quickstart of bindings/kotlin/README.md, run as a test: the README shows the lines between
// the `quickstart` markers below, and `readmeShowsThisQuickstart` fails when the two differ.
package dev.oncely

import java.io.File
import java.nio.file.Files
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class QuickstartTest {
    @Test
    fun quickstart(): Unit = runBlocking {
        val dir = Files.createTempDirectory("oncely-quickstart-").toFile()
        try {
            val path = File(dir, "app.db").path
            val sent = mutableListOf<String>()
            // quickstart:begin
            // One SQLite file keeps the app's queue and its processed ids across restarts.
            val store = Store(path)

            // Sender: enqueue durably now, deliver whenever the network allows.
            val outbox = Outbox(store, "uploads")
            outbox.enqueue(NewMessage("photo-1".toByteArray(), id = "upload-1"))
            val summary = Worker(outbox).runUntilIdle { message ->
                // Send message.payload with message.id as the idempotency key; throwing (or
                // returning WorkerOutcome.Retry) retries later with backoff.
                sent.add(message.id)
                WorkerOutcome.Success
            }

            // Receiver: run an effect once per id, whatever the number of deliveries.
            val inbox = Inbox(store, "payments")
            val first = inbox.process("payment-42", "10 EUR".toByteArray()) { "receipt-1".toByteArray() }
            val again = inbox.process("payment-42", "10 EUR".toByteArray()) { error("not run: replayed") }
            check(again.replayed && again.result.contentEquals(first.result))
            // quickstart:end
            assertEquals(listOf("upload-1"), sent)
            assertEquals(1uL, summary.succeeded)
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun readmeShowsThisQuickstart() {
        val source = File(REPO_ROOT, "bindings/kotlin/src/test/kotlin/dev/oncely/QuickstartTest.kt").readLines()
        val begin = source.indexOfFirst { it.trim() == "// quickstart:begin" }
        val end = source.indexOfFirst { it.trim() == "// quickstart:end" }
        val indent = source[begin].indexOf("//")
        val snippet = source.subList(begin + 1, end).joinToString("\n") { it.drop(indent).trimEnd() }
        val readme = File(REPO_ROOT, "bindings/kotlin/README.md").readText()
        assertTrue(readme.contains(snippet), "bindings/kotlin/README.md does not show the quickstart of QuickstartTest.kt:\n$snippet")
    }
}
