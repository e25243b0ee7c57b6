#!/usr/bin/env node
'use strict'
// The package's `install` script: `npm install ./node` builds the native module from source when
// there is none for this platform yet. It runs `cargo build --release -p oncely-node` (a Rust
// toolchain is needed; the crate is part of the oncely workspace) and copies the library to the
// file name native.js loads (`oncely.<platform>.node`). With a `.node` for this platform already
// present (a `napi build`, a previous install) it does nothing; ONCELY_FORCE_BUILD=1 rebuilds.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const here = path.resolve(__dirname, '..')

function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
    const abi = arch === 'arm' ? (glibc ? 'gnueabihf' : 'musleabihf') : glibc ? 'gnu' : 'musl'
    return `linux-${arch}-${abi}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const target = path.join(here, `oncely.${platformSuffix()}.node`)
if (fs.existsSync(target) && process.env.ONCELY_FORCE_BUILD !== '1') {
  process.exit(0)
}

const cargo = process.env.CARGO || 'cargo'
console.error(`oncely: building the native module from source (${cargo} build --release -p oncely-node); this takes a few minutes once`)
const r = spawnSync(cargo, ['build', '--release', '-p', 'oncely-node', '--message-format=json-render-diagnostics'], {
  cwd: here,
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
  maxBuffer: 256 * 1024 * 1024,
})
if (r.error) {
  console.error(`oncely: cannot run ${cargo}: ${r.error.message}. Install a Rust toolchain (https://rustup.rs) and retry.`)
  process.exit(1)
}
if (r.status !== 0) {
  console.error('oncely: the native build failed (see above)')
  process.exit(r.status ?? 1)
}
let library
for (const line of r.stdout.split('\n')) {
  if (!line.startsWith('{')) continue
  const m = JSON.parse(line)
  if (m.reason === 'compiler-artifact' && m.target?.name === 'oncely_node' && m.target.kind.includes('cdylib')) {
    library = m.filenames.find((f) => /\.(so|dylib|dll)$/.test(f))
  }
}
if (!library) {
  console.error('oncely: the build did not report the oncely_node library')
  process.exit(1)
}
fs.copyFileSync(library, target)
console.error(`oncely: built ${path.basename(target)}`)
