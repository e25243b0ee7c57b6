'use strict'
// The Node column of the API parity table (tests/parity/api.tsv): every name there exists.
// `Type.member` is looked up on the exported class — its prototype (methods, getters) or the
// class itself (static methods); `Type.constructor` needs Type to be an exported class;
// `module.name` is an export. A type that is not a class at runtime (a plain object such as
// `InboxRecord` or `Message`) is checked against its `export interface` in index.d.ts, which
// run-tests.sh keeps equal to what the build generates. A row marked `known_gap` (6th column)
// may say `-`; any other empty or `-` cell fails.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const oncely = require('..')

const TABLE = path.join(__dirname, '..', '..', 'tests', 'parity', 'api.tsv')
const DTS = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')

function rows() {
  const lines = fs.readFileSync(TABLE, 'utf8').split('\n')
  assert.deepEqual(lines[0].split('\t'), ['operation', 'rust', 'python', 'node', 'kotlin'])
  const out = []
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return
    const cells = line.split('\t')
    assert.ok(cells.length === 5 || (cells.length === 6 && cells[5] === 'known_gap'), `api.tsv line ${i + 2}: bad row`)
    out.push({ line: i + 2, cells })
  })
  return out
}

// The members of every `export interface NAME { ... }` (augmentations included) in index.d.ts.
function interfaceMembers(name) {
  const members = new Set()
  const re = new RegExp(`^export interface ${name}(?:<[^>]*>)? \\{$`, 'gm')
  let m
  while ((m = re.exec(DTS)) !== null) {
    const body = DTS.slice(m.index + m[0].length, DTS.indexOf('\n}', m.index))
    for (const f of body.matchAll(/^ {2}(?:readonly )?([A-Za-z_$][\w$]*)\??[:(<]/gm)) members.add(f[1])
  }
  return members
}

function exists(name) {
  const dot = name.lastIndexOf('.')
  const owner = name.slice(0, dot)
  const member = name.slice(dot + 1)
  if (owner === 'module') return Object.prototype.hasOwnProperty.call(oncely, member)
  const C = oncely[owner]
  if (typeof C === 'function') {
    if (member === 'constructor') return typeof C.prototype === 'object'
    return member in C.prototype || member in C
  }
  return interfaceMembers(owner).has(member)
}

const ROWS = rows()

test('the parity table has rows', () => {
  assert.ok(ROWS.length > 50, `${ROWS.length} rows`)
})

for (const { line, cells } of ROWS) {
  test(`api.tsv line ${line}: ${cells[0]}`, (t) => {
    const cell = cells[3]
    if (cells.length === 6 && cell === '-') return t.skip(`known gap: ${cells[0]}`)
    assert.ok(cell && cell !== '-', `${cells[0]} has no Node name`)
    const missing = cell.split('|').map((n) => n.trim()).filter((n) => !exists(n))
    assert.deepEqual(missing, [], `${cells[0]}: not in the Node package: ${missing.join(', ')}`)
  })
}
