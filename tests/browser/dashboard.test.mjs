// The officials' dashboard in a real browser: headless Debian chromium driven by
// playwright-core, against a rollcall server seeded by seed.mjs. Every number the
// page shows is checked against what the API answers for the same question
// (fetched here from Node with the same token).
//
// Env: ROLLCALL_URL, ROLLCALL_ADMIN_TOKEN, SEED_JSON, WORK (scratch dir),
//      SCREENSHOT (desktop PNG, e.g. docs/dashboard.png), PHONE_SCREENSHOT (360 px PNG),
//      CAMPAIGN_SCREENSHOT (the campaign view, e.g. docs/campaign.png).
// Exits non-zero on the first failure.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (n) => { const v = process.env[n]; if (!v) { console.error(`${n} is not set`); process.exit(2); } return v; };
const BASE = env('ROLLCALL_URL');
const ADMIN = env('ROLLCALL_ADMIN_TOKEN');
const SEED = JSON.parse(fs.readFileSync(env('SEED_JSON'), 'utf8'));
const WORK = env('WORK');
const SCREENSHOT = env('SCREENSHOT');
const PHONE_SCREENSHOT = env('PHONE_SCREENSHOT');
const CAMPAIGN_SCREENSHOT = env('CAMPAIGN_SCREENSHOT');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CSV_HEADER = 'person_id,name,phone,area,household,head_title,head_name,head_phone';
const FIELDS = ['in_scope', 'sampled', 'made_up', 'exempt', 'missing', 'late'];

let checks = 0;
function ok(cond, what, detail) {
  checks++;
  if (!cond) throw new Error(`FAILED: ${what}${detail === undefined ? '' : `\n  ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  console.log(`  ok  ${what}`);
}
function same(actual, expected, what) {
  ok(JSON.stringify(actual) === JSON.stringify(expected), what, { page: actual, api: expected });
}

async function api(p, token = ADMIN) {
  const res = await fetch(BASE + p, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${p} -> ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}
async function apiText(p, token = ADMIN) {
  const res = await fetch(BASE + p, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${p} -> ${res.status}: ${(await res.text()).slice(0, 300)}`);
  return res.text();
}
const q = encodeURIComponent;
const coverage = (round, area, token) => api(`/v1/rounds/${round}/coverage?${area ? `area=${q(area)}&` : ''}depth=1`, token);
const pctText = (c) => (c.in_scope ? (Math.floor((1000 * c.sampled) / c.in_scope) / 10).toFixed(1) + '%' : '—');
const counts = (c) => Object.fromEntries(FIELDS.map((f) => [f, c[f]]).concat([['pct', pctText(c)]]));

// Reads the numbers the page shows for the selected node and for each child row.
async function pageNumbers(page) {
  return page.evaluate((fields) => {
    const read = (root) => {
      const o = {};
      for (const f of fields) {
        const el = root.querySelector(`[data-k="${f}"]`);
        o[f] = el ? Number(el.textContent.replace(/,/g, '')) : null;
      }
      const p = root.querySelector('[data-k="pct"]');
      o.pct = p ? p.textContent.trim() : null;
      return o;
    };
    return {
      area: document.getElementById('summary-name').title,
      node: read(document.getElementById('summary-card')),
      children: [...document.querySelectorAll('#children .child')].map((el) => ({ area: el.dataset.area, ...read(el) })),
    };
  }, FIELDS);
}

async function checkCoverageView(page, round, area, token, label) {
  const api = await coverage(round, area, token);
  await page.waitForFunction((a) => document.getElementById('summary-name')?.title === a, api.area);
  const shown = await pageNumbers(page);
  same(shown.node, counts(api), `${label}: ${api.area} shows the API's numbers (${pctText(api)} of ${api.in_scope})`);
  same(shown.children.map((c) => c.area), api.children.map((c) => c.area), `${label}: the same ${api.children.length} areas below, in the API's order`);
  for (const c of api.children) {
    const row = shown.children.find((x) => x.area === c.area);
    const { area: _a, ...nums } = row;
    same(nums, counts(c), `${label}:   ${c.area.split('/').pop()} ${pctText(c)}`);
  }
  return api;
}

async function download(page, selector, dest) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const failure = await dl.failure();
  ok(!failure, `${selector} downloads (${dl.suggestedFilename()})`, failure);
  await dl.saveAs(dest);
  return { name: dl.suggestedFilename(), bytes: fs.readFileSync(dest) };
}

function parseCsv(text) {
  const rows = []; let row = []; let cur = ''; let qd = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (qd) {
      if (c === '"' && text[i + 1] === '"') { cur += '"'; i++; } else if (c === '"') qd = false; else cur += c;
    } else if (c === '"') qd = true;
    else if (c === ',') { row.push(cur); cur = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cur); rows.push(row); row = []; cur = '';
    } else cur += c;
  }
  if (cur !== '' || row.length) { row.push(cur); rows.push(row); }
  return rows;
}

const userData = fs.mkdtempSync(path.join(WORK, 'chromium-profile-'));
const context = await chromium.launchPersistentContext(userData, {
  executablePath: CHROMIUM,
  headless: true,
  acceptDownloads: true,
  permissions: ['clipboard-read', 'clipboard-write'],
  viewport: { width: 1366, height: 940 },
  locale: 'zh-CN',
  timezoneId: 'UTC', // the page must show Shanghai times whatever the device's zone
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const problems = [];
let status = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
  page.on('console', (m) => {
    // 4xx answers we provoke on purpose are logged by chromium as resource errors.
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  const round = SEED.openRound;

  console.log('login');
  await page.goto(BASE + '/');
  await page.fill('#token', 'not-a-real-token-' + 'x'.repeat(30));
  await page.click('#login-btn');
  await page.waitForSelector('#err-login .err[data-code="unauthorized"]');
  ok(true, 'a wrong token is refused with unauthorized');
  await page.fill('#token', ADMIN);
  await page.click('#login-btn');
  await page.waitForSelector('.round-card');
  ok(await page.evaluate(() => sessionStorage.getItem('rollcall.token') !== null), 'the token is kept in sessionStorage');

  console.log('rounds');
  const rounds = (await api('/v1/rounds')).rounds;
  const cards = await page.$$eval('.round-card', (els) => els.map((e) => ({ id: e.dataset.roundId, state: e.querySelector('.chip').textContent })));
  same(cards.map((c) => c.id).sort(), rounds.map((r) => r.id).sort(), 'every round of GET /v1/rounds is listed');
  for (const r of rounds) {
    same(cards.find((c) => c.id === r.id).state, r.state === 'open' ? '进行中' : '已截止', `round ${r.id} is shown ${r.state}`);
  }

  console.log('the campaign at a glance');
  await page.waitForSelector('#campaign:not([hidden]) svg.campaign circle.pt');
  const withPeople = rounds.filter((r) => r.counts && r.counts.in_scope);
  ok(withPeople.length >= 4, `a campaign of several rounds (${withPeople.length})`);
  const pts = await page.$$eval('#campaign-chart circle.pt', (els) => els.map((e) => ({ id: e.dataset.roundId, pct: e.dataset.pct })));
  same(pts.map((x) => x.id), withPeople.map((r) => r.id), 'one point per round, in time order');
  const pctOf = (c) => (Math.floor((1000 * c.sampled) / c.in_scope) / 10).toFixed(1) + '%';
  same(pts.map((x) => x.pct), withPeople.map((r) => pctOf(r.counts)), 'each point is its round\'s coverage');
  const bars2 = await page.$$eval('#campaign-chart rect.mb', (els) => els.map((e) => Number(e.dataset.missing)));
  same(bars2, withPeople.map((r) => r.counts.missing), 'each bar is its round\'s missing count');
  const lastRound = withPeople[withPeople.length - 1];
  const lastCov = await api(`/v1/rounds/${lastRound.id}/coverage?depth=1`);
  const areaRows = () => page.$$eval('#campaign-areas tbody tr', (trs) => trs.map((tr) => ({
    area: tr.dataset.area, missing: Number(tr.querySelector('[data-k="missing"]').textContent.replace(/,/g, '')) })));
  const byArea = await areaRows();
  same(byArea, lastCov.children.map((c) => ({ area: c.area, missing: c.missing })), 'the areas below, as in the last round, by name');
  await page.click('[data-csort="missing"]');
  await page.click('[data-csort="missing"]');
  const byMissing = await areaRows();
  ok(byMissing.every((r, i) => i === 0 || byMissing[i - 1].missing >= r.missing), 'sorted by missing, most first, on a second click',
    byMissing.map((r) => r.missing));
  const repeat = await api('/v1/repeat-missing');
  ok(repeat.total > 0, `the seeded campaign has repeat missers (${repeat.total})`);
  same(Number((await page.textContent('#repeat-count')).replace(/,/g, '')), repeat.total, 'the repeat missers\' count is the API\'s');
  // The page from the top (the header bar stays over whatever scrolls under it) down
  // to the end of the campaign card.
  await page.evaluate(() => window.scrollTo(0, 0));
  const box = await (await page.$('#campaign')).boundingBox();
  await page.screenshot({ path: CAMPAIGN_SCREENSHOT, clip: { x: 0, y: 0, width: 1366, height: Math.ceil(box.y + box.height + 12) } });
  ok(fs.statSync(CAMPAIGN_SCREENSHOT).size > 10000, `campaign screenshot saved to ${CAMPAIGN_SCREENSHOT}`);

  console.log('repeat missers');
  await page.click('#repeat-open');
  await page.waitForSelector('#repeat-total');
  same(Number((await page.textContent('#repeat-total')).replace(/,/g, '')), repeat.total, 'the view lists the API\'s total');
  const rrows = await page.$$eval('#repeat-list tbody tr', (trs) => trs.map((tr) => ({
    id: tr.querySelector('.id').textContent, misses: Number(tr.dataset.misses) })));
  same(rrows, repeat.people.map((p) => ({ id: p.person_id, misses: p.misses })), 'the repeat missers, most misses first, masked');
  await page.selectOption('#repeat-min', '3');
  const strict = await api('/v1/repeat-missing?last=3&min=3');
  await page.waitForFunction((n) => document.getElementById('repeat-total')?.textContent.replace(/,/g, '') === String(n), strict.total);
  ok(strict.total <= repeat.total, `asking for more misses narrows the list (${strict.total})`);
  await page.click('#repeat-back');
  await page.waitForSelector('.round-card');

  console.log('open the round: the community');
  await page.click(`.round-card[data-round-id="${round}"]`);
  const top = await checkCoverageView(page, round, null, ADMIN, 'community');
  ok(top.area === SEED.community, `the round opens on its scope (${top.area})`);
  const t = top;
  ok(t.sampled > 0 && t.missing > 0 && t.made_up >= 0 && t.exempt > 0 && t.in_scope === t.sampled + t.made_up + t.exempt + t.missing,
    'the seeded numbers are non-trivial and add up', t);

  const prog = await api(`/v1/rounds/${round}/progress?area=${q(top.area)}`);
  await page.waitForSelector('#progress svg rect.b');
  const bars = await page.$$eval('#progress rect.b', (els) => els.map((e) => Number(e.dataset.n)));
  ok(Math.abs(bars.length - prog.buckets.length) <= 1, `one bar per hour (${bars.length} bars, ${prog.buckets.length} buckets)`);
  same(bars.reduce((a, b) => a + b, 0), prog.buckets.reduce((a, b) => a + b.sampled, 0), 'the hourly bars add up to the API\'s buckets');
  ok(bars.some((n) => n > 0), 'some hours have samples');

  console.log('screenshot (desktop)');
  await page.waitForSelector('#missing table');
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  ok(fs.statSync(SCREENSHOT).size > 10000, `desktop screenshot saved to ${SCREENSHOT}`);

  console.log('drill down to a grid');
  const grid = SEED.hostile.grid;
  await page.click(`#children .child[data-area="${grid}"]`);
  const g = await checkCoverageView(page, round, grid, ADMIN, 'grid');
  const crumbs = await page.$$eval('#crumbs [data-area]', (els) => els.map((e) => e.dataset.area));
  same(crumbs, [SEED.community, grid], 'the breadcrumb leads from the community to the grid');

  console.log('the missing list');
  const miss = await api(`/v1/rounds/${round}/missing?area=${q(grid)}&format=json`);
  await page.waitForFunction((n) => document.getElementById('missing-count')?.textContent.replace(/,/g, '') === String(n), miss.total);
  ok(miss.total === g.missing, `the list's total (${miss.total}) is the grid's missing count`);
  const rows = await page.$$eval('#missing table.people tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('.name').textContent, id: tr.querySelector('.id').textContent })));
  same(rows.length, Math.min(100, miss.total), 'the first page of the list is shown');
  same(rows.slice(0, 20), miss.people.slice(0, 20).map((p) => ({ name: p.name, id: p.person_id })), 'names and IDs in the API\'s order');
  ok(rows.every((r) => /^\d{6}\*{8}\d{3}[\dX]$/.test(r.id)), 'IDs are shown masked as the API gives them');
  for (let i = 0; i < 100 && await page.$('#missing .more'); i++) await page.click('#missing .more');
  const all = await page.$$eval('#missing table.people tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('.name').textContent, id: tr.querySelector('.id').textContent })));
  same(all, miss.people.map((p) => ({ name: p.name, id: p.person_id })), `"show more" leads to the whole list (${miss.total})`);
  ok(all.some((r) => r.name === SEED.hostile.name), 'a name made of HTML is shown as text', SEED.hostile.name);
  ok(await page.evaluate(() => document.querySelectorAll('#missing img, #missing b').length === 0 && window.__xss === undefined),
    'and no element or script came from register data');

  console.log('by head');
  const grouped = await api(`/v1/rounds/${round}/missing?area=${q(grid)}&format=json&group_by=head`);
  await page.click('[data-tab="head"]');
  await page.waitForSelector('#missing .group');
  const groups = await page.$$eval('#missing .group', (els) => els.map((e) => ({
    head: e.querySelector('.gh .who').textContent.trim(), n: e.querySelectorAll('tbody tr').length })));
  same(groups.length, Math.min(25, grouped.groups.length), 'one block per responsible head');
  same(groups.slice(0, 10), grouped.groups.slice(0, 10).map((x) => ({
    head: x.head ? `${x.head.title} ${x.head.name}` : '无负责人 no head', n: x.people.length })), 'each head with their doors');

  console.log('messages per head, with a copy button');
  const messages = (await apiText(`/v1/rounds/${round}/missing?area=${q(grid)}&group_by=head&format=text`)).trim().split('\n\n');
  await page.click('[data-tab="text"]');
  await page.waitForSelector('#missing .msg-block');
  const blocks = await page.$$eval('#missing .msg-block pre', (els) => els.map((e) => e.textContent));
  same(blocks.length, grouped.groups.length, 'one message per head group');
  same(blocks, messages, 'each message as the API gives it');
  ok(blocks.every((b) => !/\d{17}[\dX]/.test(b)), 'no ID number in any message');
  await page.click('#missing .msg-block[data-index="1"] button.copy');
  await page.waitForSelector('#missing .msg-block[data-index="1"] button.copy[data-copied="true"]');
  same(await page.evaluate(() => navigator.clipboard.readText()), messages[1], 'the copy button puts that head\'s message on the clipboard');
  await page.click('[data-tab="list"]');
  await page.waitForSelector('#missing table.people');

  console.log('exports');
  const csv = await download(page, '[data-export="csv"]', path.join(WORK, 'export.csv'));
  ok(csv.name.endsWith('.csv'), `the CSV is named ${csv.name}`);
  const text = csv.bytes.toString('utf8').replace(/^\uFEFF/, '');
  const table = parseCsv(text).filter((r) => r.length > 1 || r[0] !== '');
  same(table[0].join(','), CSV_HEADER, 'the CSV header is the contract\'s');
  same(table.length - 1, miss.total, `the CSV has one row per missing person (${miss.total})`);
  same(table.slice(1, 6).map((r) => r[0]), miss.people.slice(0, 5).map((p) => p.person_id), 'the CSV rows are the list\'s, masked');
  const xlsx = await download(page, '[data-export="xlsx"]', path.join(WORK, 'export.xlsx'));
  ok(xlsx.bytes.subarray(0, 2).toString('latin1') === 'PK' && xlsx.name.endsWith('.xlsx'), `the XLSX is a zip file (${xlsx.bytes.length} bytes)`);

  console.log('errors are shown with their code');
  await page.goto(`${BASE}/#/round/${round}?area=${q(SEED.community + '/不存在的网格')}`);
  await page.waitForSelector('#err-main .err[data-code="unknown_area"]');
  ok(true, 'an area not in the register shows unknown_area');
  await page.click('#crumbs button');
  await page.waitForFunction((a) => document.getElementById('summary-name')?.title === a, SEED.community);
  ok(await page.$('#err-main .err') === null, 'the breadcrumb leads back up and the error goes');

  console.log('phone size');
  await page.goto(`${BASE}/#/round/${round}?area=${q(grid)}`);
  await page.setViewportSize({ width: 360, height: 780 });
  await checkCoverageView(page, round, grid, ADMIN, 'phone');
  await page.waitForSelector('#missing table');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  ok(overflow <= 360, `nothing overflows a 360 px screen (scrollWidth ${overflow})`);
  fs.mkdirSync(path.dirname(PHONE_SCREENSHOT), { recursive: true });
  await page.screenshot({ path: PHONE_SCREENSHOT });
  ok(true, `phone screenshot saved to ${PHONE_SCREENSHOT}`);
  await page.setViewportSize({ width: 1366, height: 940 });

  console.log('an official of one grid');
  await page.click('#logout');
  await page.waitForSelector('#token');
  ok(await page.evaluate(() => sessionStorage.getItem('rollcall.token') === null), 'logging out forgets the token');
  await page.fill('#token', SEED.official);
  await page.click('#login-btn');
  await page.waitForSelector(`.round-card[data-round-id="${round}"]`);
  await page.click(`.round-card[data-round-id="${round}"]`);
  const own = await checkCoverageView(page, round, null, SEED.official, 'official');
  same(own.area, SEED.officialGrid, 'an official\'s view opens on their own area');
  const other = SEED.grids.find((x) => x !== SEED.officialGrid);
  await page.goto(`${BASE}/#/round/${round}?area=${q(other)}`);
  await page.waitForSelector('#err-main .err[data-code="out_of_scope"]');
  const errText = await page.textContent('#err-main .err');
  ok(errText.includes('out_of_scope'), 'another grid shows out_of_scope with its code', errText);

  same(problems, [], 'no script errors, dialogs or unexpected console errors');
  console.log(`\nPASS: ${checks} checks`);
} catch (e) {
  status = 1;
  console.error(`\n${e.stack || e}`);
  if (problems.length) console.error(`browser problems:\n  ${problems.join('\n  ')}`);
  try {
    const page = context.pages()[0];
    const shot = path.join(WORK, 'failure.png');
    await page.screenshot({ path: shot, fullPage: true });
    const keep = path.join(path.dirname(PHONE_SCREENSHOT), 'failure.png');
    fs.copyFileSync(shot, keep);
    console.error(`screenshot of the failure: ${keep}`);
  } catch (_) { /* the browser is gone */ }
} finally {
  await context.close();
}
process.exit(status);
