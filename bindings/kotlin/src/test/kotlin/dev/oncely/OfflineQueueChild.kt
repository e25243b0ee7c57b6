// The child JVM of OfflineQueueTest: an "app" with an outbox on an SQLite file whose worker
// uploads to a receiver over a "network" that is up only while a flag file exists. The receiver
// is an inbox on its own SQLite file that applies each upload (a row in `effects`) in the same
// transaction as its processed mark: the exactly-once end of the pipe.
//
// Usage: OfflineQueueChild APP_DB RECEIVER_DB NETWORK_FLAG ENQUEUE_COUNT DROP_EVERY EXIT_WHEN_EMPTY
//   ENQUEUE_COUNT  messages m-0 … m-(n-1) to enqueue first (0: none), then prints "ENQUEUED n"
//   DROP_EVERY     k > 0: the acknowledgement of every k-th message's first applied delivery is
//                  "lost" (the handler reports a retryable failure after the receiver applied it),
//                  so the outbox redelivers and the receiver's inbox must suppress the duplicate
//   EXIT_WHEN_EMPTY  "true": stop when the queue is empty and print "DONE"; else run until killed
// Prints one line per event on stdout: RETRIED id (offline), APPLIED id, DUPLICATE id, ACK_LOST id.
package dev.oncely

import java.io.File
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking

const val OFFLINE_QUEUE = "uploads"
const val OFFLINE_SCOPE = "receiver"

/** The app's outbox configuration, the same in every child process. */
fun offlineOutbox(store: Store): Outbox = Outbox(
    store,
    OFFLINE_QUEUE,
    OutboxOptions(
        mode = Mode.EXACTLY_ONCE,
        retry = RetryPolicy(maxAttempts = 1_000_000u, backoff = Backoff.Fixed(delayMs = 20), jitter = Jitter.NONE),
        // A killed worker's leases run out quickly, so the next process redelivers soon.
        leaseMs = 1_000,
    ),
)

object OfflineQueueChild {
    @JvmStatic
    fun main(args: Array<String>) {
        val (appDb, receiverDb, flagPath) = args
        val enqueueCount = args[3].toInt()
        val dropEvery = args[4].toInt()
        val exitWhenEmpty = args[5].toBoolean()
        val network = File(flagPath)
        val out = System.out
        fun say(line: String) = synchronized(out) {
            out.println(line)
            out.flush()
        }

        val app = Store(appDb)
        val outbox = offlineOutbox(app)
        val receiverStore = Store(receiverDb)
        val receiver = Inbox(receiverStore, OFFLINE_SCOPE)
        runBlocking {
            receiverStore.inTransaction(object : TransactionWork {
                override fun run(tx: SqlTransaction) {
                    tx.execute("CREATE TABLE IF NOT EXISTS effects (id TEXT NOT NULL, payload BLOB NOT NULL)")
                }
            })
            if (enqueueCount > 0) {
                // One durable enqueue per message, as an app would do per user action.
                for (i in 0 until enqueueCount) {
                    outbox.enqueue(NewMessage(payload = "photo-$i".toByteArray(), id = "m-$i"))
                }
                say("ENQUEUED $enqueueCount")
            }
            val firstDelivery = java.util.concurrent.ConcurrentHashMap<String, Boolean>()
            val handler = object : DeliveryHandler {
                override fun deliver(message: Message): WorkerOutcome {
                    if (!network.exists()) {
                        say("RETRIED ${message.id}")
                        return WorkerOutcome.Retry(error = "offline", afterMs = null)
                    }
                    // The upload: the receiver applies it once per idempotency key.
                    val p = runBlocking {
                        receiver.processInTransaction(message.id, message.payload, object : TransactionHandler {
                            override fun handle(tx: SqlTransaction): ByteArray {
                                tx.execute(
                                    "INSERT INTO effects (id, payload) VALUES (?1, ?2)",
                                    listOf(SqlValue.Text(message.id), SqlValue.Blob(message.payload)),
                                )
                                return "stored ${message.id}".toByteArray()
                            }
                        })
                    }
                    say(if (p.replayed) "DUPLICATE ${message.id}" else "APPLIED ${message.id}")
                    val n = message.id.removePrefix("m-").toIntOrNull() ?: 0
                    if (dropEvery > 0 && n % dropEvery == 0 && firstDelivery.putIfAbsent(message.id, true) == null) {
                        say("ACK_LOST ${message.id}")
                        return WorkerOutcome.Retry(error = "the acknowledgement was lost", afterMs = 0)
                    }
                    return WorkerOutcome.Success
                }
            }
            val worker = Worker(outbox, WorkerOptions(concurrency = 4u, pollIntervalMs = 10))
            val run = launch(Dispatchers.IO) { worker.run(handler) }
            if (exitWhenEmpty) {
                while (true) {
                    val s = outbox.stats()
                    if (s.ready + s.scheduled + s.leased + s.dead == 0uL) break
                    delay(20)
                }
                worker.stop()
                run.join()
                say("DONE")
            } else {
                run.join()
            }
        }
    }
}
