// Seeds a running rollcall server for the dashboard's browser test, through the
// public API only (as any client would):
//   - one extra resident whose name is HTML markup (the page must show it as text);
//   - round A over one community, window ~31 h to ~21 h ago (already past its
//     deadline, so the server closes it by itself), and records for most people in it
//     — they arrive after that deadline, so they count as `late`;
//   - round B over the same community, open now (window from 7 h ago to 5 h ahead),
//     with records for part of the people, at a different rate per grid so the bars
//     differ; anyone sampled in B but not in A is a make-up for A;
//   - two earlier rounds, three and two days ago, closed, in which the same few
//     percent of people are never sampled (repeat missers for the campaign view);
//   - a few exemptions covering both rounds;
//   - an official token bound to the community's second grid.
// Writes what the test needs (ids, areas, tokens) as JSON to $SEED_OUT.
//
// Env: ROLLCALL_URL, ROLLCALL_ADMIN_TOKEN, ROLLCALL_FIXTURE (dir with register.csv), SEED_OUT.

import fs from 'node:fs';
import path from 'node:path';

const BASE = need('ROLLCALL_URL');
const ADMIN = need('ROLLCALL_ADMIN_TOKEN');
const FIXTURE = need('ROLLCALL_FIXTURE');
const OUT = need('SEED_OUT');

function need(name) {
  const v = process.env[name];
  if (!v) { console.error(`seed: ${name} is not set`); process.exit(2); }
  return v;
}

// ---- small helpers -----------------------------------------------------------------
async function call(method, p, { token = ADMIN, json, csv, expect = [200, 201] } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  let body;
  if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  if (csv !== undefined) { headers['Content-Type'] = 'text/csv'; body = csv; }
  const res = await fetch(BASE + p, { method, headers, body });
  const text = await res.text();
  if (!expect.includes(res.status)) throw new Error(`${method} ${p} -> ${res.status}: ${text.slice(0, 800)}`);
  return text ? JSON.parse(text) : null;
}

// Deterministic PRNG (mulberry32) so every run seeds the same city state.
function prng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(20220419);

// RFC 3339 in Asia/Shanghai (+08:00, no DST), as the API wants an explicit offset.
function sh(ms) {
  const d = new Date(ms + 8 * 3600e3);
  return d.toISOString().slice(0, 19) + '+08:00';
}
const HOUR = 3600e3;

function parseCsvLine(line) {
  const out = []; let cur = ''; let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') q = true;
    else if (c === ',') { out.push(cur); cur = ''; }
    else cur += c;
  }
  out.push(cur);
  return out;
}

// GB 11643-1999 check character (ISO 7064 MOD 11-2).
function withCheck(id17) {
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(id17[i]) * w[i];
  return id17 + '10X98765432'[sum % 11];
}

// ---- the register --------------------------------------------------------------------
const lines = fs.readFileSync(path.join(FIXTURE, 'register.csv'), 'utf8').split(/\r?\n/).filter(Boolean);
const header = parseCsvLine(lines[0]);
const col = (n) => { const i = header.indexOf(n); if (i < 0) throw new Error(`register.csv has no ${n}`); return i; };
const [iId, iName, iPhone, iArea, iHh] = ['person_id', 'name', 'phone', 'area', 'household'].map(col);
const everyone = lines.slice(1).map(parseCsvLine);
const first = everyone[0];
const community = first[iArea].split('/').slice(0, 2).join('/');
const people = everyone
  .filter((r) => r[iArea].startsWith(community + '/'))
  .map((r) => ({ id: r[iId], area: r[iArea], grid: r[iArea].split('/').slice(0, 3).join('/') }));
const grids = [...new Set(people.map((p) => p.grid))].sort();
const ids = new Set(everyone.map((r) => r[iId]));
console.log(`seed: ${community}: ${people.length} residents in ${grids.length} grids`);

// A resident whose name is markup, never sampled, so they are on the missing list
// of the grid the test opens. They join the community's last household and their name
// sorts after CJK names, so they come last in the lists (out of the README screenshot).
const last = everyone.filter((r) => r[iArea].startsWith(community + '/')).pop();
let seq = 990, hostileId;
do { hostileId = withCheck(`61080219900101${seq++}`); } while (ids.has(hostileId));
const HOSTILE_NAME = '龥<img src=x onerror="window.__xss=1">测<b>试</b>';
const quote = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
const reg = await call('POST', '/v1/register', {
  csv: 'person_id,name,phone,area,household\n' +
    [hostileId, HOSTILE_NAME, last[iPhone], last[iArea], last[iHh]].map(quote).join(',') + '\n',
});
console.log(`seed: register upsert ${JSON.stringify(reg)}`);
people.push({ id: hostileId, area: last[iArea], grid: last[iArea].split('/').slice(0, 3).join('/'), never: true });

// ---- tokens ----------------------------------------------------------------------------
const scanner = await call('POST', '/v1/tokens', { json: { role: 'scanner', name: 'browser-test S01', site: 'S01' } });
const officialGrid = grids[1] || grids[0];
const official = await call('POST', '/v1/tokens', { json: { role: 'official', name: 'browser-test grid official', area: officialGrid } });

// ---- rounds and records --------------------------------------------------------------------
const now = Date.now();
const hour0 = Math.floor(now / HOUR) * HOUR;
let tubeSeq = 0;

async function postRecords(recs, prefix) {
  // 10 people per pooled tube, 2,000 records per call: like a site's scanners.
  const withTubes = recs.map((r, i) => ({
    person_id: r.id,
    tube_id: `${prefix}${String(Math.floor(i / 10) + tubeSeq).padStart(7, '0')}`,
    collected_at: sh(r.at),
  }));
  tubeSeq += Math.ceil(recs.length / 10) + 1;
  let accepted = 0;
  for (let i = 0; i < withTubes.length; i += 2000) {
    const batch = withTubes.slice(i, i + 2000);
    const res = await call('POST', '/v1/records', { token: scanner.token, json: { records: batch } });
    if (res.rejected.length || res.accepted + res.duplicates !== batch.length) {
      throw new Error(`records rejected: ${JSON.stringify(res).slice(0, 800)}`);
    }
    accepted += res.accepted;
  }
  return accepted;
}

// Two earlier rounds of the campaign, days ago, past their deadlines (the server
// closes them by itself): a campaign view of several rounds, and people who miss
// round after round (the same few percent are never sampled in them).
const chronic = new Set(people.filter(() => rand() < 0.04).map((p) => p.id));
const earlier = [];
for (const [k, daysAgo] of [[1, 3], [2, 2]]) {
  const opens = hour0 - (daysAgo * 24 + 7) * HOUR, deadline = opens + 10 * HOUR;
  const r = await call('POST', '/v1/rounds', {
    json: { name: `前期第${k}轮全员核酸`, scope: [community], opens_at: sh(opens), deadline: sh(deadline) },
  });
  const recs = people.filter((p) => !p.never && !chronic.has(p.id) && rand() < 0.9 + 0.03 * k)
    .map((p) => ({ id: p.id, at: opens + Math.floor(rand() * (deadline - opens - 60e3)) }));
  console.log(`seed: round ${r.id} (${daysAgo} days ago): ${await postRecords(recs, `BE${k}`)} records`);
  earlier.push(r.id);
}

// Round A: already past its deadline.
const aOpens = hour0 - 31 * HOUR, aDeadline = hour0 - 21 * HOUR;
const roundA = await call('POST', '/v1/rounds', {
  json: { name: '第1轮全员核酸', scope: [community], opens_at: sh(aOpens), deadline: sh(aDeadline) },
});
const recsA = people.filter((p) => !p.never && !chronic.has(p.id) && rand() < 0.93)
  .map((p) => ({ id: p.id, at: aOpens + Math.floor(rand() * (aDeadline - aOpens - 60e3)) }));
console.log(`seed: round ${roundA.id} (past deadline): ${await postRecords(recsA, 'BTA')} records`);

// Round B: open now. Each grid gets its own rate, between about 55 % and 95 %.
const bOpens = hour0 - 7 * HOUR, bDeadline = hour0 + 5 * HOUR;
const roundB = await call('POST', '/v1/rounds', {
  json: { name: '第2轮全员核酸', scope: [community], opens_at: sh(bOpens), deadline: sh(bDeadline) },
});
const rate = new Map(grids.map((g, i) => [g, 0.55 + 0.4 * (((i * 7) % grids.length) / Math.max(1, grids.length - 1))]));
const hourWeights = [6, 14, 18, 15, 11, 9, 7, 6]; // the morning rush, then a trickle
const lastAt = now - 60e3;
const recsB = [];
for (const p of people) {
  if (p.never || rand() >= rate.get(p.grid)) continue;
  let r = rand() * hourWeights.reduce((a, b) => a + b, 0), h = 0;
  while (r >= hourWeights[h]) r -= hourWeights[h++];
  const at = Math.min(lastAt, bOpens + h * HOUR + Math.floor(rand() * HOUR));
  recsB.push({ id: p.id, at });
}
recsB.sort((a, b) => a.at - b.at); // tubes fill in time order, as at a real site
console.log(`seed: round ${roundB.id} (open): ${await postRecords(recsB, 'BTB')} records`);

// Exemptions (bedridden, away) for a few people sampled in neither round; they cover both.
const sampledB = new Set(recsB.map((r) => r.id));
const sampledA = new Set(recsA.map((r) => r.id));
const exempt = people.filter((p) => !p.never && !sampledA.has(p.id) && !sampledB.has(p.id)).filter(() => rand() < 0.08).slice(0, 40);
for (const [i, p] of exempt.entries()) {
  await call('POST', '/v1/exemptions', {
    json: { person_id: p.id, reason: i % 3 ? 'bedridden' : 'away', from: sh(now - 72 * HOUR), until: sh(now + 72 * HOUR), note: 'browser test' },
  });
}
console.log(`seed: ${exempt.length} exemptions`);

// Round A closes by itself at its (past) deadline, within a second.
let closed = false;
for (let i = 0; i < 150 && !closed; i++) { // up to 30 s on a loaded CI machine
  const rounds = await call('GET', '/v1/rounds');
  closed = rounds.rounds.some((r) => r.id === roundA.id && r.state === 'closed');
  if (!closed) await new Promise((r) => setTimeout(r, 200));
}
if (!closed) throw new Error(`round ${roundA.id} did not close by itself past its deadline`);
for (const id of earlier) {
  const r = await call('GET', `/v1/rounds/${id}`);
  if (r.state !== 'closed') throw new Error(`round ${id} did not close by itself past its deadline`);
}

fs.writeFileSync(OUT, JSON.stringify({
  community, grids, officialGrid, official: official.token,
  closedRound: roundA.id, openRound: roundB.id, earlierRounds: earlier,
  hostile: { name: HOSTILE_NAME, grid: people[people.length - 1].grid },
}, null, 2));
console.log(`seed: done -> ${OUT}`);
