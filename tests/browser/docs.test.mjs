// The API browser (Swagger UI at /docs/) in a real browser, under the
// Content-Security-Policy header the server sends: it loads, renders every
// operation of /openapi.json, requests nothing from another origin, and
// nothing is refused by the policy (a refusal is a console error).
//
// Env: ROLLCALL_URL, WORK (scratch dir). Exits non-zero on the first failure.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (n) => { const v = process.env[n]; if (!v) { console.error(`${n} is not set`); process.exit(2); } return v; };
const BASE = env('ROLLCALL_URL');
const WORK = env('WORK');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let checks = 0;
function ok(cond, what, detail) {
  checks++;
  if (!cond) throw new Error(`FAILED: ${what}${detail === undefined ? '' : `\n  ${JSON.stringify(detail)}`}`);
  console.log(`  ok  ${what}`);
}

const doc = await (await fetch(BASE + '/openapi.json')).json();
const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);

const userData = fs.mkdtempSync(path.join(WORK, 'chromium-docs-'));
const context = await chromium.launchPersistentContext(userData, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const problems = [];
const foreign = [];
let status = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== new URL(BASE).origin) foreign.push(r.url());
  });
  const res = await page.goto(BASE + '/docs/');
  const csp = res.headers()['content-security-policy'] || '';
  ok(csp.includes("frame-ancestors 'none'"), 'the page carries its Content-Security-Policy', csp);
  await page.waitForSelector('.opblock');
  await page.waitForFunction((n) => document.querySelectorAll('.opblock').length === n, operations);
  ok(true, `all ${operations} operations of /openapi.json are shown`);
  // Open one operation: its parameters render (the UI's scripts run).
  await page.click('#operations-status-gateStatus .opblock-summary');
  await page.waitForSelector('#operations-status-gateStatus .parameters');
  ok(true, 'an operation opens and shows its parameters');
  await page.waitForTimeout(500);
  ok(foreign.length === 0, 'nothing is requested from another origin', foreign);
  ok(problems.length === 0, 'no page errors and nothing refused by the policy', problems);
} catch (e) {
  console.error(e.message || e);
  status = 1;
} finally {
  await context.close();
}
if (status === 0) console.log(`PASS: ${checks} checks`);
process.exit(status);
