#!/usr/bin/env bash
# The dashboard in a real browser, end to end:
#
#   bash tests/browser/run.sh target/release/rollcall
#
# Loads the fixture city into a fresh data directory (offline with
# `rollcall import`, or over HTTP when the binary has no `import` yet), starts
# `rollcall serve` on a free port with a random admin token, seeds two rounds,
# records and exemptions through the API (seed.mjs), then drives headless
# Debian chromium with playwright-core (dashboard.test.mjs), then loads the API
# browser at /docs/ under its CSP (docs.test.mjs). Writes the desktop
# screenshot to docs/dashboard.png, the campaign view to docs/campaign.png and
# a 360 px one to tests/browser/out/.
#
# Installs when absent: Debian's `chromium` and a CJK font
# (`fonts-wqy-microhei`), with apt-get as root; playwright-core from
# package-lock.json with `npm ci` (it never downloads a browser).
# Needs: node >= 20 with npm, curl. Always stops the server it started.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:?usage: tests/browser/run.sh path/to/rollcall}"
[ -x "$bin" ] || { echo "run.sh: $bin is not an executable" >&2; exit 2; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
fixture="${ROLLCALL_FIXTURE:-$repo/fixtures/chongwen}"
out="$here/out"

work="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-browser.XXXXXX")"
server_pid=""
cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    # SIGINT is what `rollcall serve` waits for (Ctrl-C); SIGKILL if it lingers.
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$work/server.log" >&2 || true
  fi
  if [ "${ROLLCALL_KEEP_WORK:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '== %s\n' "$*"; }

# ---- what the test needs on the machine ----------------------------------------------
for tool in node npm curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool is required" >&2; exit 2; }
done
apt_pkgs=()
[ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
# Without a CJK font every Chinese label renders as boxes in the screenshot.
if ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family | grep -q .; }; then
  apt_pkgs+=(fonts-wqy-microhei)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  step "installing ${apt_pkgs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi
step "npm ci (playwright-core)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

# ---- data: the fixture city ------------------------------------------------------------
[ -f "$fixture/register.csv" ] && [ -f "$fixture/heads.csv" ] ||
  { echo "run.sh: no register.csv/heads.csv in $fixture" >&2; exit 2; }
data="$work/data"
mkdir -p "$data"
if "$bin" import --help >/dev/null 2>&1; then
  step "rollcall import (offline)"
  "$bin" import register "$fixture/register.csv" --data "$data"
  "$bin" import heads "$fixture/heads.csv" --data "$data"
  loaded=offline
else
  loaded=no
fi

# ---- the server --------------------------------------------------------------------------
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
token="$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')" # 40 hex characters
base="http://127.0.0.1:$port"
step "rollcall serve on $base"
ROLLCALL_ADMIN_TOKEN="$token" "$bin" serve --data "$data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for i in $(seq 600); do
  if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { echo "run.sh: the server exited" >&2; exit 1; }
  [ "$i" -lt 600 ] || { echo "run.sh: /readyz not ready after 60 s" >&2; exit 1; }
  sleep 0.1
done

post_csv() { # endpoint file
  local code
  code="$(curl -sS -o "$work/resp" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: text/csv' --data-binary @"$2" "$base$1")"
  [ "$code" = 200 ] || { echo "run.sh: POST $1 -> $code: $(head -c 600 "$work/resp")" >&2; exit 1; }
}
if [ "$loaded" = no ]; then
  step "loading the register over HTTP (no \`rollcall import\` in this binary)"
  # Upserts, so the file can go in parts that each stay well under the 8 MiB body limit.
  head -n 1 "$fixture/register.csv" >"$work/reg.header"
  tail -n +2 "$fixture/register.csv" | split -l 20000 - "$work/reg.part."
  for part in "$work"/reg.part.*; do
    cat "$work/reg.header" "$part" >"$part.csv"
    post_csv /v1/register "$part.csv"
  done
  post_csv /v1/heads "$fixture/heads.csv"
fi

# ---- rounds, records, exemptions; then the browser ----------------------------------------
step "seeding rounds and records"
ROLLCALL_URL="$base" ROLLCALL_ADMIN_TOKEN="$token" ROLLCALL_FIXTURE="$fixture" SEED_OUT="$work/seed.json" \
  node "$here/seed.mjs"

step "dashboard test (headless chromium)"
mkdir -p "$out" "$repo/docs"
ROLLCALL_URL="$base" ROLLCALL_ADMIN_TOKEN="$token" SEED_JSON="$work/seed.json" WORK="$work" \
  SCREENSHOT="$repo/docs/dashboard.png" PHONE_SCREENSHOT="$out/dashboard-phone.png" \
  CAMPAIGN_SCREENSHOT="$repo/docs/campaign.png" \
  node "$here/dashboard.test.mjs"

step "API browser test (Swagger UI under its Content-Security-Policy)"
ROLLCALL_URL="$base" WORK="$work" node "$here/docs.test.mjs"
