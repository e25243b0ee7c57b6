// The dashboard of `oncely serve` in headless Chromium: the numbers it shows are the store's,
// replay and purge (single and bulk, each confirmed) change the store, message and inbox
// look-ups, payloads hidden unless --show-payloads, the token prompt and the CSRF refusals.
// On SQLite always; on PostgreSQL when ONCELY_POSTGRES_URL is set (required under CI).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { helper, storeStats, serve, browser, shownQueues, shownScopes, num } from './lib.mjs';

const tmp = mkdtempSync(join(tmpdir(), 'oncely-dashboard-'));
const backends = [['sqlite', () => join(tmp, 'store.db')]];
const pgUrl = process.env.ONCELY_POSTGRES_URL;
if (pgUrl) {
  backends.push(['postgresql', () => helper('schema-url', pgUrl, `dash_${process.pid}_${Date.now() % 1e6}`)]);
} else if (process.env.CI === 'true') {
  throw new Error('ONCELY_POSTGRES_URL is not set under CI: the PostgreSQL run must not skip');
} else {
  console.error('!! SKIPPED: the PostgreSQL run (set ONCELY_POSTGRES_URL, or use scripts/with-postgres.sh)');
}

let chrome;
before(async () => { chrome = await browser(); });
after(async () => {
  await chrome?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** One raw HTTP request (any headers, Host and Origin included); { status, body }. */
function raw(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function openPage(url) {
  const page = await chrome.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  return page;
}

/** Waits until the page shows the store's numbers for every queue and scope, then checks them. */
async function expectStoreNumbers(page, location) {
  const want = storeStats(location);
  const wantQueues = Object.fromEntries(Object.entries(want.queues).map(([q, s]) => [q, {
    queue: q, ready: num(s.ready), scheduled: num(s.scheduled), leased: num(s.leased), dead: num(s.dead),
    depth: num(s.depth), enqueued: num(s.enqueued), delivered: num(s.delivered), retried: num(s.retried),
    'dead-lettered': num(s.dead_lettered), dropped: num(s.dropped),
  }]));
  const wantScopes = Object.fromEntries(Object.entries(want.scopes).map(([sc, c]) => [sc, {
    scope: sc, in_progress: num(c.in_progress), completed: num(c.completed), succeeded: num(c.succeeded),
    failed: num(c.failed), seen: num(c.seen), expired: num(c.expired),
  }]));
  const pick = (shown) => Object.fromEntries(Object.entries(shown).map(([k, row]) => [k, Object.fromEntries(
    Object.entries(row).filter(([f]) => !['oldest', 'enqueued-rate', 'delivered-rate'].includes(f)))]));
  let queues, scopes;
  for (let i = 0; i < 40; i++) {
    queues = pick(await shownQueues(page));
    scopes = await shownScopes(page);
    try {
      assert.deepEqual(queues, wantQueues);
      assert.deepEqual(scopes, wantScopes);
      return want;
    } catch { await page.waitForTimeout(250); }
  }
  assert.deepEqual(queues, wantQueues, 'queues shown == the store\'s stats');
  assert.deepEqual(scopes, wantScopes, 'inbox scopes shown == the store\'s counts');
  return want;
}

async function chooseDeadQueue(page, queue) {
  await page.selectOption('[data-testid=dead-queue]', queue);
  await page.waitForFunction((q) => document.getElementById('dead-count').textContent.endsWith(`in ${q}`), queue);
}

async function confirm(page, expectText) {
  const dialog = page.locator('[data-testid=confirm]');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await page.textContent('[data-testid=confirm-text]'), expectText);
  await page.click('[data-testid=confirm-yes]');
  await dialog.waitFor({ state: 'hidden' });
}

const deadIds = (page) => page.$$eval('#dead tbody tr', (rows) => rows.map((r) => r.dataset.id));

for (const [backend, makeLocation] of backends) {
  describe(`dashboard on ${backend}`, () => {
    let location, server, page;
    before(async () => {
      location = makeLocation();
      helper('fill', location);
      server = await serve(location);
      page = await openPage(server.url);
    });
    after(async () => {
      await page?.close();
      await server?.stop();
    });

    test('the numbers shown are the store\'s, with a throughput chart per queue', async () => {
      const want = await expectStoreNumbers(page, location);
      assert.deepEqual(Object.keys(want.queues).sort(), ['emails', 'payments', 'webhooks']);
      assert.equal(want.scopes.orders.in_progress, 1);
      assert.equal(await page.locator('#charts .chart svg').count(), 3);
      // A second poll gives rates: each chart draws its lines.
      await page.waitForFunction(() => {
        const path = document.querySelector('#charts .chart[data-queue=payments] path[data-series=delivered]');
        return path && path.getAttribute('d').includes('L');
      });
      if (backend === 'sqlite' && process.env.ONCELY_DASHBOARD_SCREENSHOT_RAW) {
        await page.screenshot({ path: process.env.ONCELY_DASHBOARD_SCREENSHOT_RAW, fullPage: true });
      }
    });

    test('dead letters show reason, last error, attempts, headers and created time', async () => {
      await chooseDeadQueue(page, 'payments');
      assert.deepEqual(await deadIds(page), ['pay-0', 'pay-1']);
      const row = page.locator('#dead tbody tr[data-id=pay-0]');
      assert.match(await row.locator('[data-field=reason]').textContent(), /card declined by issuer/);
      assert.match(await row.locator('[data-field=last_error]').textContent(), /card declined by issuer/);
      assert.equal(await row.locator('[data-field=attempts]').textContent(), '1');
      assert.match(await row.textContent(), /tenant: acme/);
      assert.match(await row.locator('[data-field=created]').textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$/);
    });

    test('replay: cancelled changes nothing; confirmed, it leaves the dead list and is delivered by a worker', async () => {
      await chooseDeadQueue(page, 'emails');
      assert.deepEqual(await deadIds(page), ['mail-0', 'mail-1', 'mail-2', 'mail-3', 'mail-4']);
      await page.click('#dead tbody tr[data-id=mail-0] [data-action=replay]');
      await page.locator('[data-testid=confirm]').waitFor({ state: 'visible' });
      await page.click('[data-testid=confirm-no]');
      assert.equal(storeStats(location).queues.emails.dead, 5, 'nothing happens before the confirmation');
      await page.click('#dead tbody tr[data-id=mail-0] [data-action=replay]');
      await confirm(page, /Replay dead letter mail-0 of queue emails/);
      await page.waitForSelector('#dead tbody tr[data-id=mail-0]', { state: 'detached' });
      let s = storeStats(location).queues.emails;
      assert.deepEqual([s.dead, s.ready], [4, 1]);
      helper('deliver', location, 'emails', 'mail-0');
      s = storeStats(location).queues.emails;
      assert.deepEqual([s.dead, s.ready, s.delivered], [4, 0, 1]);
      await page.waitForSelector('#queues tr[data-queue=emails] td[data-field=delivered]:text-is("1")');
    });

    test('purge one dead letter', async () => {
      await chooseDeadQueue(page, 'payments');
      await page.click('#dead tbody tr[data-id=pay-0] [data-action=purge]');
      await confirm(page, /Delete dead letter pay-0 of queue payments\? This cannot be undone/);
      await page.waitForSelector('#dead tbody tr[data-id=pay-0]', { state: 'detached' });
      assert.deepEqual(await deadIds(page), ['pay-1']);
      assert.equal(storeStats(location).queues.payments.dead, 1);
    });

    test('bulk: purge the selected, then purge all', async () => {
      await chooseDeadQueue(page, 'emails');
      await page.check('#dead input[data-select=mail-1]');
      await page.check('#dead input[data-select=mail-2]');
      await page.click('[data-testid=purge-selected]');
      await confirm(page, /Delete 2 dead letters of queue emails/);
      await page.waitForFunction(() => document.querySelectorAll('#dead tbody tr').length === 2);
      assert.deepEqual(await deadIds(page), ['mail-3', 'mail-4']);
      assert.equal(storeStats(location).queues.emails.dead, 2);
      await page.click('[data-testid=purge-all]');
      await confirm(page, /Delete ALL 2 dead letters of queue emails/);
      await page.waitForFunction(() => document.querySelectorAll('#dead tbody tr').length === 0);
      assert.equal(storeStats(location).queues.emails.dead, 0);
    });

    test('bulk: replay the selected (select all)', async () => {
      await chooseDeadQueue(page, 'payments');
      await page.check('[data-testid=select-all]');
      await page.click('[data-testid=replay-selected]');
      await confirm(page, /Replay dead letter pay-1 of queue payments/);
      await page.waitForFunction(() => document.querySelectorAll('#dead tbody tr').length === 0);
      assert.equal(storeStats(location).queues.payments.dead, 0);
    });

    test('a message by id: its record, payload hidden', async () => {
      await page.fill('[data-testid=message-id]', 'pay-5');
      await page.selectOption('[data-testid=message-queue]', '');
      await page.click('[data-testid=message-submit]');
      const out = page.locator('[data-testid=message]');
      await out.locator('[data-field=state]').waitFor();
      assert.equal(await out.locator('[data-field=queue]').textContent(), 'payments');
      assert.match(await out.locator('[data-field=state]').textContent(), /^(leased|ready)$/);
      assert.match(await out.locator('[data-field=headers]').textContent(), /tenant: acme/);
      assert.match(await out.locator('[data-field=payload]').textContent(), /^\d+ bytes \(hidden/);
      assert.doesNotMatch(await page.content(), /4111 1111/);
      await page.fill('[data-testid=message-id]', 'no-such-id');
      await page.click('[data-testid=message-submit]');
      await out.locator('[data-field=none]').waitFor();
    });

    test('an inbox record by scope and id: outcome and expiry, result hidden', async () => {
      await page.fill('[data-testid=inbox-scope]', 'orders');
      await page.fill('[data-testid=inbox-id]', 'order-1');
      await page.click('[data-testid=inbox-submit]');
      const out = page.locator('[data-testid=inbox]');
      await out.locator('[data-field=state]').waitFor();
      assert.equal(await out.locator('[data-field=state]').textContent(), 'succeeded');
      assert.match(await out.locator('[data-field=expires]').textContent(), /UTC \(in /);
      assert.match(await out.locator('[data-field=result]').textContent(), /^34 bytes \(hidden/);
      await page.fill('[data-testid=inbox-id]', 'order-bad');
      await page.click('[data-testid=inbox-submit]');
      await page.waitForSelector('[data-testid=inbox] [data-field=state]:text-is("failed")');
    });

    test('after all that, the numbers shown are still the store\'s', async () => {
      await expectStoreNumbers(page, location);
    });

    test('--show-payloads shows payloads and stored results', async () => {
      const shown = await serve(location, { showPayloads: true });
      const p = await openPage(shown.url);
      try {
        await p.fill('[data-testid=message-id]', 'pay-5');
        await p.click('[data-testid=message-submit]');
        await p.waitForSelector('[data-testid=message] [data-field=payload]:has-text("4111 1111 1111 1111")');
        await p.fill('[data-testid=inbox-scope]', 'orders');
        await p.fill('[data-testid=inbox-id]', 'order-1');
        await p.click('[data-testid=inbox-submit]');
        await p.waitForSelector('[data-testid=inbox] [data-field=result]:has-text("accepted")');
      } finally {
        await p.close();
        await shown.stop();
      }
    });

    test('with a token: the page asks for it and the API refuses without it', async () => {
      const guarded = await serve(location, { token: 's3cret' });
      const p = await chrome.newPage();
      p.setDefaultTimeout(10_000);
      try {
        assert.equal((await raw(`${guarded.url}/api/overview`)).status, 401);
        assert.equal((await raw(`${guarded.url}/api/overview`, { headers: { Authorization: 'Bearer s3cret' } })).status, 200);
        await p.goto(guarded.url);
        await p.waitForSelector('[data-testid=login]', { state: 'visible' });
        assert.equal(await p.isVisible('[data-testid=queues]'), false);
        await p.fill('[data-testid=token-input]', 'wrong');
        await p.click('[data-testid=token-submit]');
        await p.waitForSelector('[data-testid=login-error]:has-text("refused")');
        await p.fill('[data-testid=token-input]', 's3cret');
        await p.click('[data-testid=token-submit]');
        await p.waitForSelector('body[data-ready="1"]');
        await expectStoreNumbers(p, location);
        // ?token= on first load: kept in sessionStorage, removed from the address bar.
        const q = await chrome.newPage();
        await q.goto(`${guarded.url}/?token=s3cret`);
        await q.waitForSelector('body[data-ready="1"]');
        assert.doesNotMatch(q.url(), /token/);
        await q.close();
      } finally {
        await p.close();
        await guarded.stop();
      }
    });

    test('CSRF: a POST without the token, from another origin or another site is 403', async () => {
      const html = (await raw(`${server.url}/`)).body;
      const csrf = /name="oncely-csrf" content="([0-9a-f]{64})"/.exec(html)[1];
      const host = new URL(server.url).host;
      const post = (headers) => raw(`${server.url}/api/purge`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: '{"queue":"payments","ids":["nope"]}',
      });
      assert.equal((await post({})).status, 403, 'no CSRF header');
      assert.equal((await post({ 'X-Oncely-CSRF': 'f'.repeat(64) })).status, 403, 'a wrong CSRF token');
      assert.equal((await post({ 'X-Oncely-CSRF': csrf, Origin: 'http://evil.example' })).status, 403, 'a foreign Origin');
      assert.equal((await post({ 'X-Oncely-CSRF': csrf, 'Sec-Fetch-Site': 'cross-site' })).status, 403, 'cross-site');
      const ok = await post({ 'X-Oncely-CSRF': csrf, Origin: `http://${host}`, 'Sec-Fetch-Site': 'same-origin' });
      assert.equal(ok.status, 200, ok.body);
      assert.deepEqual(JSON.parse(ok.body), { queue: 'payments', purged: 0 });
      assert.equal((await raw(`${server.url}/api/purge`)).status, 405, 'mutations are POST only');
      // A tokenless server answers the dashboard only when addressed as loopback (DNS rebinding).
      assert.equal((await raw(`${server.url}/`, { headers: { Host: `evil.example:${new URL(server.url).port}` } })).status, 403);
      // A page of another origin in the browser cannot post either.
      const evil = http.createServer((_, res) => { res.setHeader('Content-Type', 'text/html'); res.end('<p>evil</p>'); });
      await new Promise((r) => evil.listen(0, '127.0.0.1', r));
      const p = await chrome.newPage();
      try {
        await p.goto(`http://localhost:${evil.address().port}/`);
        const status = await p.evaluate(async ([target, token]) => {
          try {
            const r = await fetch(`${target}/api/purge`, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: '{"queue":"payments","all":true}' });
            return r.type;
          } catch (e) { return String(e); }
        }, [server.url, csrf]);
        assert.ok(status, 'the cross-origin request was made');
        assert.equal(storeStats(location).queues.payments.dead, 0);
      } finally {
        await p.close();
        evil.close();
      }
    });
  });
}
