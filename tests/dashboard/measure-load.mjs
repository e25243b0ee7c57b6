// The dashboard's page load time, to the numbers shown, on a store the caller filled (not part
// of `make test`). Prints each load and the time of each JSON endpoint the page calls first.
//
//   tests/dashboard/measure-load.sh            # fills a 1,000,000-message SQLite store first
import { serve, browser } from './lib.mjs';

const location = process.argv[2];
const loads = Number(process.argv[3] || 5);
const server = await serve(location);
const chrome = await browser();
try {
  const timeFetch = async (path) => {
    const times = [];
    let status;
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const r = await fetch(`${server.url}${path}`);
      await r.arrayBuffer();
      status = r.status;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return `${path} ${status}: median ${times[2].toFixed(0)} ms of 5 (min ${times[0].toFixed(0)}, max ${times[4].toFixed(0)})`;
  };
  const results = [];
  for (let i = 0; i < loads; i++) {
    const page = await chrome.newPage();
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready="1"]', { timeout: 120_000 });
    const ms = await page.evaluate(() => performance.getEntriesByName('oncely-numbers-shown')[0].startTime);
    results.push(ms);
    console.log(`load ${i + 1}: numbers shown ${ms.toFixed(0)} ms after navigation start`);
    await page.close();
  }
  results.sort((a, b) => a - b);
  console.log(`median ${results[Math.floor(results.length / 2)].toFixed(0)} ms, max ${results[results.length - 1].toFixed(0)} ms`);
  for (const path of ['/api/overview', '/api/dead?queue=bulk-dead&limit=100', '/api/dead?queue=bulk&limit=100', '/api/message?id=b00999999']) {
    console.log(await timeFetch(path));
  }
} finally {
  await chrome.close();
  await server.stop();
}
