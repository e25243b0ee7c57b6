'use strict'
// examples/quickstart.js runs, and the root README shows it as it is (the code between its
// ANCHOR lines), so the README's Node example is always a tested one.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..', '..')
const QUICKSTART = path.join(ROOT, 'node', 'examples', 'quickstart.js')

function region(text, name) {
  const m = text.match(new RegExp(`// ANCHOR: ${name}\\n([\\s\\S]*?)// ANCHOR_END: ${name}`))
  assert.ok(m, `no ${name} anchors`)
  return m[1]
}

test('examples/quickstart.js runs: each payment charged once, one retried', () => {
  const r = spawnSync(process.execPath, [QUICKSTART], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  const charged = r.stdout.split('\n').filter((l) => l.startsWith('  charging: ')).sort()
  assert.deepEqual(charged, ['  charging: debit 10 EUR', '  charging: debit 20 EUR', '  charging: debit 30 EUR'])
  const delivered = [...r.stdout.matchAll(/^delivered (\d+) in (\d+) attempts$/gm)]
  assert.equal(delivered.reduce((n, m) => n + Number(m[1]), 0), 3)
  assert.equal(delivered.reduce((n, m) => n + Number(m[2]), 0), 4)
})

test("the root README's Node section shows examples/quickstart.js as it is", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const snippet = region(fs.readFileSync(QUICKSTART, 'utf8'), 'quickstart').trimEnd()
  assert.ok(readme.includes('node/examples/quickstart.js'), 'the README does not name node/examples/quickstart.js')
  assert.ok(readme.includes('```js\n' + snippet + '\n```'), `README.md's Node example differs from node/examples/quickstart.js; paste this:\n${snippet}`)
})

test("the root README's HTTP section shows examples/http_payments.js's service as it is", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const file = path.join(ROOT, 'node', 'examples', 'http_payments.js')
  const snippet = region(fs.readFileSync(file, 'utf8'), 'readme').trimEnd()
  assert.ok(readme.includes('node/examples/http_payments.js'), 'the README does not name node/examples/http_payments.js')
  assert.ok(readme.includes('```js\n' + snippet + '\n```'), `README.md's HTTP example differs; paste this:\n${snippet}`)
})
