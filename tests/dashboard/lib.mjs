// What the dashboard tests, the screenshot and the load measurement share: the built binaries,
// a store helper, a server on a free loopback port, the browser.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const ONCELY = process.env.ONCELY_BIN;
export const HELPER = process.env.ONCELY_STORE_HELPER;
if (!ONCELY || !HELPER) throw new Error('run through ./run.sh (ONCELY_BIN and ONCELY_STORE_HELPER unset)');

/** Runs the store helper (crates/oncely-cli/examples/dashboard_store.rs); its stdout. */
export function helper(...args) {
  return execFileSync(HELPER, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** The core's numbers for the store (Outbox::stats per queue, scope_counts per scope). */
export function storeStats(location) {
  return JSON.parse(helper('stats', location));
}

/** `oncely serve` on a free loopback port; resolves once it listens. */
export async function serve(location, { token, showPayloads, args = [] } = {}) {
  const env = { ...process.env };
  delete env.ONCELY_SERVE_TOKEN;
  if (token) env.ONCELY_SERVE_TOKEN = token;
  const argv = ['serve', '--db', location, '--bind', '127.0.0.1:0', ...(showPayloads ? ['--show-payloads'] : []), ...args];
  const child = spawn(ONCELY, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([l]) => l),
    once(child, 'exit').then(([code]) => { throw new Error(`oncely serve exited ${code}: ${stderr}`); }),
  ]);
  const m = /^listening on (http:\/\/\S+)$/.exec(first);
  if (!m) throw new Error(`unexpected first line ${first}`);
  return {
    url: m[1],
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** Headless Chromium from the system (never a downloaded browser). */
export function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** The queues table as shown: { queue: { field: text } }. */
export async function shownQueues(page) {
  return page.$$eval('#queues tbody tr', (rows) => Object.fromEntries(rows.map((r) => [
    r.dataset.queue,
    Object.fromEntries([...r.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.textContent])),
  ])));
}

/** The inbox scopes table as shown: { scope: { field: text } }. */
export async function shownScopes(page) {
  return page.$$eval('#scopes tbody tr', (rows) => Object.fromEntries(rows.map((r) => [
    r.dataset.scope,
    Object.fromEntries([...r.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.textContent])),
  ])));
}

/** A number as the page writes it. */
export const num = (n) => Number(n).toLocaleString('en-US');
