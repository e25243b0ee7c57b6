'use strict'
// The generated index.d.ts (with dts-header.d.ts) passes `tsc --strict`, and the public API as a
// TypeScript user writes it (fixtures/typings.ts: worker, events, idempotent, transactional
// handlers, error classes) type-checks against it.
const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const PKG = path.resolve(__dirname, '..')

test('index.d.ts and fixtures/typings.ts pass tsc --strict', { timeout: 120_000 }, () => {
  const tsc = path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(process.execPath, [tsc, '--strict', '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(PKG, 'node_modules', '@types'),
    path.join(PKG, 'index.d.ts'), path.join(PKG, 'fixtures', 'typings.ts')], { cwd: PKG, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stdout + r.stderr)
})
