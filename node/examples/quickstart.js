'use strict'
// The Node quickstart of the root README: an outbox, a worker and an exactly-once receiver.
// Run it with `node node/examples/quickstart.js` (after `npm install ./node`, or after
// node/run-tests.sh built the module). test/readme.test.js runs it and checks that the README
// shows the code between the ANCHOR lines as it is here.
const os = require('node:os')
const fs = require('node:fs')
const path = require('node:path')

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-')), 'oncely.db')

// ANCHOR: quickstart
const { Store, Outbox, Inbox, Worker } = require('oncely')

async function main() {
  const store = new Store(file) // one SQLite file, shared by the outbox and the inbox
  const outbox = new Outbox(store, 'payments', {
    retry: { max_attempts: 5, jitter: 'full',
             backoff: { kind: 'exponential', initial_ms: 10, factor: 2.0, max_ms: 1000 } },
  })
  const inbox = new Inbox(store, 'bank', { mode: 'exactly_once' }) // the receiver's processed ids
  outbox.on('dead_lettered', (e) => console.log(`gave up on ${e.id}: ${e.reason}`))

  for (let n = 1; n <= 3; n++) await outbox.enqueue(`debit ${n}0 EUR`, { id: `payment-${n}` })

  const worker = new Worker(outbox, async (message) => {
    // The receiver deduplicates on the id: the effect runs once per message id.
    await inbox.process(message.id, message.payload, async () => {
      console.log(`  charging: ${message.payload}`)
      return 'charged'
    })
    if (message.id === 'payment-2' && message.attempt === 1) {
      throw new Error("the bank's answer was lost") // any error: retry with backoff
    }
    // Return normally for success; throw new Permanent(reason) to dead-letter at once,
    // new Retry(error, { after: seconds }) or new Snooze(seconds) to say when to try again.
  }, { concurrency: 4 })

  const pending = async () => {
    const stats = await outbox.stats()
    return stats.ready + stats.scheduled
  }
  while ((await pending()) > 0) {
    const summary = await worker.drain() // `worker.start()` / `await worker.stop()` run until stopped
    console.log(`delivered ${summary.succeeded} in ${summary.attempts} attempts`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

main()
// ANCHOR_END: quickstart
