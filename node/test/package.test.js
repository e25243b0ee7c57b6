'use strict'
// `npm install ./node` from a scratch project outside the repository gives a package that
// loads from CommonJS and ESM by its name and runs a worker. (The module built by the test run
// is present, so the install script has nothing to build; building from source when it is
// missing is the same script, scripts/build-native.js.)
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const PKG = path.resolve(__dirname, '..')

test('npm install ./node in a scratch project; require and import by name', { timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oncely-scratch-'))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }))
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const install = spawnSync(npm, ['install', PKG, '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, encoding: 'utf8' })
  assert.equal(install.status, 0, install.stderr)
  fs.writeFileSync(path.join(dir, 'cjs.js'), `
    const { Outbox, Worker, version } = require('oncely')
    ;(async () => {
      const o = new Outbox('memory', 'q')
      await o.enqueue('x', { id: 'a' })
      const s = await new Worker(o, async () => {}).drain()
      console.log(version(), s.succeeded)
    })()`)
  fs.writeFileSync(path.join(dir, 'esm.mjs'), `
    import oncely, { Inbox } from 'oncely'
    const inbox = new Inbox('memory', 'rx')
    const r = await inbox.process('id', null, () => 'done')
    console.log(oncely.Inbox === Inbox, r.result.toString())`)
  const cjs = spawnSync(process.execPath, ['cjs.js'], { cwd: dir, encoding: 'utf8' })
  assert.equal(cjs.status, 0, cjs.stderr)
  assert.equal(cjs.stdout.trim(), `${require('..').version()} 1`)
  const esm = spawnSync(process.execPath, ['esm.mjs'], { cwd: dir, encoding: 'utf8' })
  assert.equal(esm.status, 0, esm.stderr)
  assert.equal(esm.stdout.trim(), 'true done')
})
