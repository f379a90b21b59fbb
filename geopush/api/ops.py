"""The ops dashboard (`GET /dashboard`) and the summary behind it (`GET /v1/ops/summary`).

The page is one self-contained HTML document: no external assets, so it works on an
air-gapped ops network and leaks nothing to a CDN; a Content-Security-Policy with a
per-response nonce makes sure of it. It holds no data itself and needs no key to load; it
asks for an ops key and keeps it in sessionStorage (gone with the tab), then reads the
JSON API like any other client.

The summary aggregates from PostgreSQL in a handful of queries inside one read-only
snapshot, so its numbers agree with each other. It names no customer, device token or
coordinate: ids, counts and reason codes only.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from geopush import metrics
from geopush.api.auth import OPS, require_role
from geopush.api.body import query_int
from geopush.codes import DeliveryStatus, Outcome
from geopush.runtime import RUNTIME

DEFAULT_WINDOW_H = 24
MAX_WINDOW_H = 30 * 24
RECENT_FAILURES = 20
MAX_OFFERS = 200
# A dashboard refreshing every few seconds must never hold a connection for long.
_STATEMENT_TIMEOUT = "5s"

_OUTBOX = """
SELECT count(*) AS depth,
       count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE lease_until > now()) AS in_flight,
       min(created_at) AS oldest
FROM deliveries WHERE status = 'queued'
"""
# One pass over the window's deliveries gives the status/reason table and each offer's
# delivery funnel; the groups are few (offers x statuses x reasons), the rows are not.
_DELIVERIES = """
SELECT offer_id, status, coalesce(reason, '') AS reason, count(*) AS n,
       count(opened_at) AS opened, count(redeemed_at) AS redeemed
FROM deliveries WHERE created_at >= $1
GROUP BY offer_id, status, coalesce(reason, '')
"""
_DECISIONS = """
SELECT offer_id, outcome, coalesce(reason, '') AS reason, count(*) AS n
FROM decisions WHERE decided_at >= $1
GROUP BY offer_id, outcome, coalesce(reason, '')
"""
_RECENT_FAILURES = """
SELECT delivery_id, offer_id, reason, attempts, created_at, finished_at, last_error
FROM deliveries WHERE status = 'failed'
ORDER BY finished_at DESC NULLS LAST LIMIT $1
"""
_OFFERS = """
SELECT offer_id, definition ->> 'name' AS name, trigger, status,
       (definition ->> 'priority')::integer AS priority, created_at
FROM offers WHERE deleted_at IS NULL ORDER BY created_at, offer_id LIMIT $1
"""
_GEOFENCES = """
SELECT count(*) AS total, count(*) FILTER (WHERE enabled) AS enabled FROM geofences
"""
_PINGS = "SELECT count(*) FROM pings WHERE received_at >= $1"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _ping_counts() -> dict[str, Any]:
    """Accepted and rejected pings since the service started (rejected pings are never
    stored, so only the counters know them)."""
    counts = metrics.counter_totals("geopush_pings", "result", "reason")
    rejected = {
        key.split("/", 1)[1]: int(value)
        for key, value in counts.items() if key.startswith("rejected/")
    }
    accepted = int(sum(v for k, v in counts.items() if k.startswith("accepted/")))
    return {"accepted": accepted, "rejected": rejected,
            "rejected_total": sum(rejected.values())}


def _new_funnel() -> dict[str, Any]:
    return {
        "triggered": 0, "suppressed": {}, "control": 0, "queued": 0,
        "deliveries": {s.value: 0 for s in DeliveryStatus},
        "failed": {}, "opened": 0, "redeemed": 0,
    }


async def summary(request: web.Request) -> web.Response:
    """Outbox, deliveries, failures, offer funnels, geofences and pings, for the dashboard.

    Deliveries and decisions are counted over the last `hours` (default 24); the outbox,
    recent failures and geofences are as of now; `pings.since_start` and
    `events.since_start` count since the service started, over all its workers.
    """
    await require_role(request, *OPS)
    hours = query_int(request, "hours", DEFAULT_WINDOW_H, 1, MAX_WINDOW_H)
    rt = request.app[RUNTIME]
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    async with rt.pool.acquire() as conn, conn.transaction(
        isolation="repeatable_read", readonly=True
    ):
        await conn.execute("SELECT set_config('statement_timeout', $1, true)",
                           _STATEMENT_TIMEOUT)
        outbox = await conn.fetchrow(_OUTBOX)
        delivery_rows = await conn.fetch(_DELIVERIES, since)
        decision_rows = await conn.fetch(_DECISIONS, since)
        failures = await conn.fetch(_RECENT_FAILURES, RECENT_FAILURES)
        offer_rows = await conn.fetch(_OFFERS, MAX_OFFERS)
        fences = await conn.fetchrow(_GEOFENCES)
        pings_stored = await conn.fetchval(_PINGS, since)

    by_status = {s.value: 0 for s in DeliveryStatus}
    by_reason: dict[tuple[str, str], int] = defaultdict(int)
    funnels: dict[str, dict[str, Any]] = defaultdict(_new_funnel)
    opened = redeemed = 0
    for r in delivery_rows:
        status, reason, n = r["status"], r["reason"], r["n"]
        by_status[status] = by_status.get(status, 0) + n
        by_reason[(status, reason)] += n
        opened += r["opened"]
        redeemed += r["redeemed"]
        f = funnels[str(r["offer_id"])]
        f["deliveries"][status] = f["deliveries"].get(status, 0) + n
        if status == DeliveryStatus.FAILED:
            f["failed"][reason] = f["failed"].get(reason, 0) + n
        f["opened"] += r["opened"]
        f["redeemed"] += r["redeemed"]
    for r in decision_rows:
        f = funnels[str(r["offer_id"])]
        f["triggered"] += r["n"]
        if r["outcome"] == Outcome.SUPPRESSED:
            f["suppressed"][r["reason"]] = f["suppressed"].get(r["reason"], 0) + r["n"]
        elif r["outcome"] == Outcome.CONTROL:
            f["control"] += r["n"]
        elif r["outcome"] == Outcome.QUEUED:
            f["queued"] += r["n"]

    oldest = outbox["oldest"]
    body = {
        "generated_at": now.isoformat(),
        "window_hours": hours,
        "since": since.isoformat(),
        "outbox": {
            "depth": outbox["depth"],
            "due": outbox["due"],
            "in_flight": outbox["in_flight"],
            "oldest_queued_at": _iso(oldest),
            "oldest_age_s": None if oldest is None else (now - oldest).total_seconds(),
        },
        "deliveries": {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_reason": [
                {"status": s, "reason": reason or None, "count": n}
                for (s, reason), n in sorted(by_reason.items(), key=lambda kv: -kv[1])
            ],
            "opened": opened,
            "redeemed": redeemed,
        },
        "recent_failures": [
            {
                "id": str(r["delivery_id"]),
                "offer_id": str(r["offer_id"]),
                "reason": r["reason"],
                "attempts": r["attempts"],
                "created_at": _iso(r["created_at"]),
                "finished_at": _iso(r["finished_at"]),
                "last_error": r["last_error"],
            }
            for r in failures
        ],
        "offers": [
            {
                "id": str(r["offer_id"]),
                "name": r["name"],
                "trigger": r["trigger"],
                "status": r["status"],
                "priority": r["priority"],
                "funnel": funnels.get(str(r["offer_id"]), _new_funnel()),
            }
            for r in offer_rows
        ],
        "geofences": {
            "loaded": len(rt.fences.info),
            "enabled": fences["enabled"],
            "total": fences["total"],
        },
        "pings": {"stored": pings_stored, "since_start": _ping_counts()},
        "events": {"since_start": {
            k: int(v) for k, v in metrics.counter_totals("geopush_events", "type").items()
        }},
    }
    return web.json_response(body)


async def dashboard(request: web.Request) -> web.Response:
    """The page; open to anyone because it carries no data, only the code that asks for it."""
    nonce = secrets.token_urlsafe(16)
    csp = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return web.Response(
        text=DASHBOARD_HTML.replace("__NONCE__", nonce),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/dashboard", dashboard),
        web.get("/v1/ops/summary", summary),
    ]


# The page. Every value from the API goes in through textContent, never innerHTML, so an
# offer named "<script>" is only text.
DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>geopush ops</title>
<style nonce="__NONCE__">
:root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec;
        --ok: #1f8f4e; --warn: #b7791f; --bad: #c53030; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: var(--bg); color: var(--ink); }
header { display: flex; align-items: center; gap: 16px; padding: 12px 20px;
         background: var(--ink); color: #fff; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header .status { margin-left: auto; font-size: 12px; opacity: .85; }
main { padding: 16px 20px; max-width: 1400px; margin: 0 auto; }
form.key { display: flex; gap: 8px; align-items: center; }
input, button, select { font: inherit; padding: 4px 8px; border-radius: 4px;
                        border: 1px solid var(--line); }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button.secondary { background: transparent; color: #fff; border-color: #fff6; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
         gap: 12px; margin-bottom: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
        padding: 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
               letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 600; margin-top: 2px; }
.card .sub { color: var(--muted); font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
          padding: 12px; margin-bottom: 16px; overflow-x: auto; }
section h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.err { white-space: normal; color: var(--muted); font-size: 12px; max-width: 380px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.pill { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
        background: var(--line); }
.pill.sent { background: #c6f6d5; } .pill.failed { background: #fed7d7; }
.pill.queued { background: #feebc8; } .pill.cancelled { background: #e2e8f0; }
.bar { height: 6px; background: var(--accent); border-radius: 3px; min-width: 1px; }
.empty { color: var(--muted); font-style: italic; }
.error { color: var(--bad); }
.hidden { display: none; }
</style>
</head>
<body>
<header>
  <h1>geopush ops</h1>
  <form class="key" id="key-form" autocomplete="off">
    <label for="key">Ops key</label>
    <input id="key" type="password" placeholder="gpk_…" size="28" required>
    <button type="submit">Open</button>
  </form>
  <button class="secondary hidden" id="forget" type="button">Forget key</button>
  <label class="hidden" id="window-box">Window
    <select id="window">
      <option value="1">1 h</option><option value="24" selected>24 h</option>
      <option value="168">7 days</option><option value="720">30 days</option>
    </select>
  </label>
  <span class="status" id="status">enter an ops key to start</span>
</header>
<main id="main" class="hidden">
  <div class="cards" id="cards"></div>
  <div class="grid">
    <section><h2>Deliveries by status and reason</h2><table id="by-reason"></table></section>
    <section><h2>Pings (since the service started)</h2><table id="pings"></table></section>
  </div>
  <section><h2>Offers: funnel</h2><table id="offers"></table></section>
  <section><h2>Recent failures</h2><table id="failures"></table></section>
</main>
<script nonce="__NONCE__">
"use strict";
const KEY = "geopush.opsKey";
const REFRESH_MS = 5000;
const MAX_STATS_CALLS = 20;
let timer = null;
let statsMissingUntil = 0;  // when GET /v1/offers/{id}/stats is absent, stop asking a while

const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function num(n) { return (n === undefined || n === null) ? "–" : Number(n).toLocaleString(); }
function pct(a, b) { return b ? (100 * a / b).toFixed(1) + " %" : "–"; }
function short(id) { return id ? String(id).slice(0, 8) : "–"; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
function age(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function table(t, head, rows, numeric) {
  t.replaceChildren();
  const tr = el("tr");
  head.forEach((h, i) => tr.append(el("th", h, numeric.includes(i) ? "num" : "")));
  t.append(tr);
  if (!rows.length) {
    const r = el("tr"); const td = el("td", "nothing yet", "empty");
    td.colSpan = head.length; r.append(td); t.append(r); return;
  }
  for (const row of rows) {
    const r = el("tr");
    row.forEach((cell, i) => {
      if (cell instanceof Node) { const td = el("td"); td.append(cell); r.append(td); }
      else r.append(el("td", cell, numeric.includes(i) ? "num" : ""));
    });
    t.append(r);
  }
}
function card(label, value, sub) {
  const c = el("div", null, "card");
  c.append(el("div", label, "label"), el("div", value, "value"));
  if (sub) c.append(el("div", sub, "sub"));
  return c;
}

async function api(path) {
  const key = sessionStorage.getItem(KEY);
  const resp = await fetch(path, { headers: { "Authorization": "Bearer " + key },
                                   cache: "no-store" });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  return { status: resp.status, body };
}

function renderSummary(s) {
  const d = s.deliveries, o = s.outbox, p = s.pings.since_start;
  $("cards").replaceChildren(
    card("Outbox depth", num(o.depth),
         num(o.due) + " due · " + num(o.in_flight) + " in flight · oldest " + age(o.oldest_age_s)),
    card("Sent", num(d.by_status.sent), "last " + s.window_hours + " h"),
    card("Failed", num(d.by_status.failed), pct(d.by_status.failed, d.total) + " of deliveries"),
    card("Cancelled", num(d.by_status.cancelled), "left the geofence before sending"),
    card("Opened", num(d.opened), pct(d.opened, d.by_status.sent) + " of sent"),
    card("Redeemed", num(d.redeemed), pct(d.redeemed, d.by_status.sent) + " of sent"),
    card("Geofences loaded", num(s.geofences.loaded),
         num(s.geofences.enabled) + " enabled of " + num(s.geofences.total)),
    card("Pings", num(p.accepted) + " / " + num(p.rejected_total),
         "accepted / rejected · " + num(s.pings.stored) + " stored in window"),
  );
  table($("by-reason"), ["status", "reason", "count", ""],
        d.by_reason.map((r) => {
          const bar = el("div", null, "bar");
          bar.style.width = Math.max(1, Math.round(120 * r.count / Math.max(1, d.total))) + "px";
          return [el("span", r.status, "pill " + r.status), r.reason || "–", num(r.count), bar];
        }), [2]);
  const rej = Object.entries(p.rejected).sort((a, b) => b[1] - a[1]);
  table($("pings"), ["result", "reason", "count"],
        [["accepted", "–", num(p.accepted)], ...rej.map(([k, v]) => ["rejected", k, num(v)])],
        [2]);
  table($("failures"), ["finished", "delivery", "offer", "reason", "attempts", "last error"],
        s.recent_failures.map((f) => [when(f.finished_at), el("span", short(f.id), "mono"),
                                      el("span", short(f.offer_id), "mono"), f.reason,
                                      num(f.attempts), el("span", f.last_error || "", "err")]),
        [4]);
}

async function offerStats(offers) {
  const stats = {};
  if (Date.now() < statsMissingUntil) return stats;
  for (const offer of offers.slice(0, MAX_STATS_CALLS)) {
    const r = await api("/v1/offers/" + encodeURIComponent(offer.id) + "/stats");
    if (r.status === 200 && r.body) stats[offer.id] = r.body;
    else if (r.status === 404 || r.status === 405) {
      statsMissingUntil = Date.now() + 60000;
      break;
    }
  }
  return stats;
}

function sumValues(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }

async function renderOffers(summary) {
  const listed = await api("/v1/offers?limit=100");
  const offers = (listed.status === 200 && listed.body) ? listed.body.items : summary.offers;
  const funnels = {};
  for (const o of summary.offers) funnels[o.id] = o.funnel;
  const stats = await offerStats(offers);
  table($("offers"),
        ["offer", "name", "trigger", "status", "triggered", "suppressed", "control", "queued",
         "sent", "failed", "opened", "redeemed", "open rate", "lift"],
        offers.map((o) => {
          const f = funnels[o.id] || { triggered: 0, suppressed: {}, control: 0, queued: 0,
                                       deliveries: {}, failed: {}, opened: 0, redeemed: 0 };
          const st = stats[o.id];
          const triggered = st ? st.triggered : f.triggered;
          const suppressed = st ? sumValues(st.suppressed) : sumValues(f.suppressed);
          const control = st ? st.control : f.control;
          const queued = st ? st.queued : f.queued;
          const sent = st ? st.sent : (f.deliveries.sent || 0);
          const failed = st ? sumValues(st.failed) : sumValues(f.failed);
          const opened = st ? st.opened : f.opened;
          const redeemed = st ? st.redeemed : f.redeemed;
          const lift = st && st.conversion && st.conversion.lift !== null &&
                       st.conversion.lift !== undefined
            ? (100 * st.conversion.lift).toFixed(1) + " %" : "–";
          return [el("span", short(o.id), "mono"), o.name || "–", o.trigger,
                  el("span", o.status, "pill"), num(triggered), num(suppressed), num(control),
                  num(queued), num(sent), num(failed), num(opened), num(redeemed),
                  pct(opened, sent), lift];
        }), [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
}

async function refresh() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY)) return showKeyForm("enter an ops key to start");
  if (document.hidden) { timer = setTimeout(refresh, REFRESH_MS); return; }
  try {
    const r = await api("/v1/ops/summary?hours=" + encodeURIComponent($("window").value));
    if (r.status === 401) {
      sessionStorage.removeItem(KEY);
      return showKeyForm("that key was refused; enter an ops key");
    }
    if (r.status !== 200) {
      const msg = r.body && r.body.error ? r.body.error.message : "HTTP " + r.status;
      setStatus("error: " + msg, true);
    } else {
      showDashboard();
      renderSummary(r.body);
      await renderOffers(r.body);
      setStatus("updated " + new Date().toLocaleTimeString(), false);
    }
  } catch (e) {
    setStatus("cannot reach geopush: " + e.message, true);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function setStatus(text, bad) { const s = $("status"); s.textContent = text;
                                s.className = "status" + (bad ? " error" : ""); }
function showKeyForm(text) {
  $("key-form").classList.remove("hidden");
  $("forget").classList.add("hidden");
  $("window-box").classList.add("hidden");
  $("main").classList.add("hidden");
  setStatus(text, false);
}
function showDashboard() {
  $("key-form").classList.add("hidden");
  $("forget").classList.remove("hidden");
  $("window-box").classList.remove("hidden");
  $("main").classList.remove("hidden");
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  if (key) { sessionStorage.setItem(KEY, key); setStatus("loading…", false); refresh(); }
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY); clearTimeout(timer); showKeyForm("key forgotten");
});
$("window").addEventListener("change", refresh);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
refresh();
</script>
</body>
</html>
"""
