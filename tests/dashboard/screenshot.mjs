// docs/dashboard.png: the dashboard on a store with a few queues, dead letters and inbox
// scopes, after ~12 s of traffic so that the throughput charts have something to draw.
//
//   tests/dashboard/run.sh screenshot.mjs   (builds, then runs this instead of the tests)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HELPER, helper, serve, browser } from './lib.mjs';

const out = process.env.ONCELY_DASHBOARD_SCREENSHOT
  || join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'dashboard.png');
const tmp = mkdtempSync(join(tmpdir(), 'oncely-shot-'));
const location = join(tmp, 'store.db');
helper('fill', location);
const server = await serve(location);
const chrome = await browser();
try {
  const page = await chrome.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(server.url);
  await page.waitForSelector('body[data-ready="1"]');
  const traffic = spawn(HELPER, ['traffic', location, '30'], { stdio: 'inherit' });
  await page.waitForTimeout(24_000);
  await page.selectOption('[data-testid=dead-queue]', 'emails');
  await page.waitForSelector('#dead tbody tr[data-id=mail-0]');
  await page.check('#dead input[data-select=mail-1]');
  await page.check('#dead input[data-select=mail-2]');
  await page.fill('[data-testid=message-id]', 'pay-0');
  await page.click('[data-testid=message-submit]');
  await page.waitForSelector('[data-testid=message] [data-field=state]');
  await page.fill('[data-testid=inbox-scope]', 'orders');
  await page.fill('[data-testid=inbox-id]', 'order-1');
  await page.click('[data-testid=inbox-submit]');
  await page.waitForSelector('[data-testid=inbox] [data-field=state]');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
  await once(traffic, 'exit');
} finally {
  await chrome.close();
  await server.stop();
  rmSync(tmp, { recursive: true, force: true });
}
