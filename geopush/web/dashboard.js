// The ops dashboard: is geopush healthy right now? Per-minute charts from
// /v1/ops/timeseries (counted in PostgreSQL, so right under --workers N), totals from
// /v1/ops/summary, the fences on a map, and each offer's funnel from its stats endpoint.
"use strict";
(() => {
  const { el, $, api, num, pct, secs, table, chart, makeMap, geometryLayer, setStatus } = GP;
  const key = GP.makeKey("geopush.opsKey");
  const REFRESH_MS = 5000;
  const MAX_STATS_CALLS = 20;
  let timer = null;
  let map = null;
  let fenceLayer = null;
  let fencesDrawnAt = 0;

  const call = (path) => api(key, "GET", path);

  function showKeyForm(text) {
    $("key-box").classList.remove("hidden");
    for (const id of ["forget", "window-box", "main"]) $(id).classList.add("hidden");
    setStatus(text, false);
  }
  function showDashboard() {
    $("key-box").classList.add("hidden");
    for (const id of ["forget", "window-box", "main"]) $(id).classList.remove("hidden");
    if (!map) map = makeMap($("map"));
  }
  function card(id, label, value, sub, bad) {
    return el("div", { class: "card" + (bad ? " bad" : ""), id: "card-" + id },
              el("div", { class: "label" }, label),
              el("div", { class: "value", "data-value": id }, value),
              sub ? el("div", { class: "sub" }, sub) : null);
  }
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
  const last = (a) => a.length ? a[a.length - 1] : 0;
  // The last complete minute: the current one is still filling.
  const lastFull = (a) => a.length > 1 ? a[a.length - 2] : last(a);

  function renderCards(s, t) {
    const d = s.deliveries, o = s.outbox, p = s.pings.since_start;
    const lat = t.latency.window;
    const failedRecent = sum(Object.fromEntries(Object.entries(t.failed).map(
      ([k, v]) => [k, sum(v)])));
    $("cards").replaceChildren(
      card("pings-min", "Pings / min", num(lastFull(t.pings)), "accepted, last full minute"),
      card("events-min", "Events / min", num(lastFull(t.events.enter) +
        lastFull(t.events.dwell) + lastFull(t.events.exit)), "enter, dwell, exit"),
      card("decisions-min", "Decisions / min", num(lastFull(t.decisions.queued) +
        lastFull(t.decisions.suppressed) + lastFull(t.decisions.control)),
        "queued, suppressed, control"),
      card("sent-min", "Pushes / min", num(lastFull(t.sent)), "accepted by FCM"),
      card("p50", "Event → send p50", secs(lat.p50), num(lat.count) + " sent in window"),
      card("p99", "Event → send p99", secs(lat.p99), "window of " + t.minutes + " min"),
      card("outbox", "Outbox depth", num(o.depth),
           num(o.due) + " due · oldest " + secs(o.oldest_age_s), o.oldest_age_s > 300),
      card("failed", "Failed", num(failedRecent), "in window", failedRecent > 0),
      card("geofences", "Geofences loaded", num(s.geofences.loaded),
           num(s.geofences.enabled) + " enabled of " + num(s.geofences.total)),
      card("pings-total", "Pings since start", num(p.accepted),
           num(p.rejected_total) + " rejected"),
      card("sent-total", "Sent", num(d.by_status.sent), "last " + s.window_hours + " h"),
      card("opened", "Opened", num(d.opened), pct(d.opened, d.by_status.sent) + " of sent"),
    );
  }

  function renderCharts(t) {
    const start = Date.parse(t.start) / 1000;
    const xs = t.pings.map((_, i) => start + 60 * i);
    const by = (obj) => Object.entries(obj).map(([label, values]) => ({ label, values }));
    chart($("c-pings"), "Pings accepted per minute", xs, [{ label: "pings", values: t.pings }],
          { fill: true });
    chart($("c-events"), "Visit events per minute", xs, by(t.events));
    chart($("c-decisions"), "Offer decisions per minute", xs, by(t.decisions));
    const ended = (obj, status) => Object.entries(obj).map(
      ([reason, values]) => ({ label: status + " " + reason, values }));
    chart($("c-deliveries"), "Deliveries per minute", xs,
          [{ label: "sent", values: t.sent, color: "#059669" },
           ...ended(t.cancelled, "cancelled")]);
    chart($("c-latency"), "Event → send latency (s)", xs,
          [{ label: "p50", values: t.latency.p50 }, { label: "p99", values: t.latency.p99 }],
          { points: true, yFormat: (v) => v === null ? "–" : (Math.round(v * 100) / 100) + "" });
    const failures = ended(t.failed, "failed");
    chart($("c-failures"), "Failures by reason per minute", xs,
          failures.length ? failures : [{ label: "failed", values: t.pings.map(() => 0),
                                          color: "#b91c1c" }]);
  }

  function renderTables(s) {
    const d = s.deliveries;
    $("window-label").textContent = "(last " + s.window_hours + " h)";
    $("by-reason").replaceChildren(table(["status", "reason", "count", ""],
      d.by_reason.map((r) => [el("span", { class: "pill " + r.status }, r.status),
        r.reason || "–", num(r.count),
        el("div", { class: "bar", style: "width:" +
          Math.max(1, Math.round(120 * r.count / Math.max(1, d.total))) + "px" })]), [2]));
    $("failures").replaceChildren(table(
      ["finished", "delivery", "offer", "reason", "attempts", "last error"],
      s.recent_failures.map((f) => [f.finished_at ? new Date(f.finished_at).toLocaleString() : "–",
        el("span", { class: "mono" }, f.id.slice(0, 8)),
        el("span", { class: "mono" }, f.offer_id.slice(0, 8)), f.reason, num(f.attempts),
        f.last_error || ""]), [4]));
  }

  async function renderOffers(s) {
    const stats = {};
    for (const o of s.offers.slice(0, MAX_STATS_CALLS)) {
      const r = await call("/v1/offers/" + encodeURIComponent(o.id) + "/stats");
      if (r.status === 200) stats[o.id] = r.body;
    }
    $("offers").replaceChildren(table(
      ["name", "trigger", "status", "triggered", "suppressed", "control", "queued", "sent",
       "failed", "opened", "redeemed", "open rate", "lift"],
      s.offers.map((o) => {
        const st = stats[o.id];
        if (!st) return [o.name || o.id.slice(0, 8), o.trigger, o.status, "…", "", "", "", "",
                         "", "", "", "", ""];
        const lift = st.conversion && st.conversion.lift !== null
          ? (100 * st.conversion.lift).toFixed(1) + " %" : "–";
        return [el("span", { "data-offer": o.id }, o.name || o.id.slice(0, 8)), o.trigger,
                el("span", { class: "pill " + o.status }, o.status), num(st.triggered),
                num(sum(st.suppressed)), num(st.control), num(st.queued),
                el("span", { "data-offer-sent": o.id }, num(st.sent)), num(sum(st.failed)),
                num(st.opened), num(st.redeemed), pct(st.opened, st.sent), lift];
      }), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
  }

  async function renderFences() {
    if (Date.now() - fencesDrawnAt < 60000) return;  // shapes change rarely
    const r = await GP.all(key, "/v1/geofences", 2000);
    if (r.status !== 200) return;
    fencesDrawnAt = Date.now();
    if (fenceLayer) fenceLayer.remove();
    fenceLayer = L.featureGroup().addTo(map);
    for (const f of r.items) {
      geometryLayer(f.geometry, { color: f.enabled ? "#1d4ed8" : "#6b7280", weight: 2,
                                  dashArray: f.enabled ? null : "4 4", fillOpacity: 0.15 })
        .bindTooltip(GP.tip(f.name + (f.enabled ? "" : " (disabled)"))).addTo(fenceLayer);
    }
    if (r.items.length) map.fitBounds(fenceLayer.getBounds(), { padding: [20, 20], maxZoom: 16 });
  }

  async function refresh() {
    clearTimeout(timer);
    if (!key.get()) return showKeyForm("enter an ops key to start");
    if (document.hidden) { timer = setTimeout(refresh, REFRESH_MS); return; }
    try {
      const minutes = Number($("window").value);
      const hours = Math.max(1, Math.ceil(minutes / 60));
      const [s, t] = await Promise.all([call("/v1/ops/summary?hours=" + hours),
                                        call("/v1/ops/timeseries?minutes=" + minutes)]);
      if (s.status === 401 || s.status === 403) {
        key.forget();
        return showKeyForm("that key was refused; enter an ops key");
      }
      if (s.status !== 200 || t.status !== 200) {
        setStatus("error: " + GP.errorMessage(s.status !== 200 ? s : t), true);
      } else {
        showDashboard();
        renderCards(s.body, t.body);
        renderCharts(t.body);
        renderTables(s.body);
        await renderOffers(s.body);
        await renderFences();
        setStatus("updated " + new Date().toLocaleTimeString(), false);
        document.body.dataset.loaded = "1";
      }
    } catch (e) {
      setStatus("cannot reach geopush: " + e.message, true);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("key").value.trim();
    $("key").value = "";
    if (v) { key.set(v); setStatus("loading…", false); refresh(); }
  });
  $("forget").addEventListener("click", () => {
    key.forget(); clearTimeout(timer); showKeyForm("key forgotten");
  });
  $("window").addEventListener("change", refresh);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
