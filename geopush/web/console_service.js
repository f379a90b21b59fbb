// The console's Service tab (SPEC section 14): per store, the five dimensions with their
// gap (perception − expectation) as a diverging bar chart, the recovery figures, and the
// open cases with their time against the SLA and buttons to mark one contacted or
// resolved. Loaded after console.js; it shows itself when console.js selects its tab.
"use strict";
(() => {
  const { el, $, api, num, table, setStatus } = GP;
  const key = GP.makeKey("geopush.marketerKey");
  const call = (method, path, body) => api(key, method, path, body);
  // [feedback] recovery_sla_s, as the server reports it with its recovery figures.
  let slaS = 3600;
  const share = (x) => x === null || x === undefined ? "–" : (100 * x).toFixed(0) + " %";
  const dur = (s) => s === null || s === undefined ? "–"
    : s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min"
    : (s / 3600).toFixed(1) + " h";
  const storeNames = {};

  // The composer may make feedback requests and recovery offers.
  const trigger = $("o-trigger");
  if (trigger && GP.hasRoute("POST", "/v1/feedback")) {
    for (const t of ["feedback", "recovery"]) {
      if (![...trigger.options].some((o) => o.value === t)) trigger.append(el("option", {}, t));
    }
  }

  function gapChart(dims) {
    // Scores are 1–5, so a gap lies in [−4, 4]: each bar grows from the centre line.
    return el("div", { class: "gap-chart" }, ...dims.map((d) => {
      const w = Math.min(50, 50 * Math.abs(d.gap) / 4);
      const bar = el("div", {
        class: "gap-bar " + (d.gap < 0 ? "below" : "above"),
        style: d.gap < 0 ? `right:50%;width:${w}%` : `left:50%;width:${w}%`,
      });
      return el("div", { class: "gap-row", "data-dimension": d.dimension },
        el("span", {}, d.dimension),
        el("div", { class: "gap-track" }, el("div", { class: "gap-zero" }), bar),
        el("span", { class: "num" }, (d.gap > 0 ? "+" : "") + d.gap.toFixed(2)),
        el("span", { class: "muted num small-text" },
           `${d.perception.toFixed(1)} vs ${d.expectation.toFixed(1)}, n=${d.n}`));
    }));
  }

  function figuresRow(r) {
    return [num(r.cases), num(r.open), dur(r.first_response_p50_s), dur(r.first_response_p90_s),
            share(r.resolved_within_sla), share(r.recovered)];
  }
  const FIG_HEAD = ["cases", "open", "1st response p50", "p90", "resolved in SLA", "recovered"];

  async function loadService() {
    const days = $("s-days").value;
    const r = await call("GET", "/v1/service?days=" + days);
    if (r.status !== 200) {
      $("s-stores").replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    if (Number.isFinite(r.body.recovery.sla_s)) slaS = r.body.recovery.sla_s;
    $("s-figures").replaceChildren(el("h3", {}, "Recovery, all stores"),
      table(FIG_HEAD, [figuresRow(r.body.recovery)], [0, 1, 2, 3, 4, 5]));
    if (!r.body.stores.length) {
      $("s-stores").replaceChildren(el("div", { class: "empty" }, "no answers yet"));
    } else {
      $("s-stores").replaceChildren(...r.body.stores.map((s) => {
        storeNames[s.store_id] = s.store_name || s.store_id;
        return el("div", { class: "service-store", "data-store": s.store_id },
          el("h3", {}, `${s.store_name || s.store_id} — ${num(s.responses)} answers, overall ` +
             (s.overall === null ? "–" : s.overall.toFixed(2))),
          gapChart(s.dimensions),
          table(FIG_HEAD, [figuresRow(s.recovery)], [0, 1, 2, 3, 4, 5]));
      }));
    }
    await loadCases();
  }

  async function loadCases() {
    const r = await call("GET", "/v1/cases?limit=100");
    if (r.status !== 200) {
      $("s-cases").replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    const now = Date.now();
    const live = r.body.items.filter((c) => c.status !== "resolved");
    const rows = live.map((c) => {
      const age = (now - Date.parse(c.opened_at)) / 1000;
      const late = age > slaS;
      const act = (status, label) => el("button", {
        type: "button", class: "secondary small", "data-case": c.id, "data-action": status,
        onclick: async () => {
          const p = await call("PATCH", "/v1/cases/" + c.id, { status });
          if (p.status !== 200) return setStatus("error: " + GP.errorMessage(p), true);
          setStatus(`case marked ${status}`, false);
          await loadService();
        },
      }, label);
      return [storeNames[c.store_id] || c.store_id, c.status,
              el("span", { class: late ? "late" : "" }, dur(age) + (late ? " (past SLA)" : "")),
              c.recovered ? "yes" : "no",
              el("span", {}, c.status === "open" ? act("contacted", "Contacted") : "",
                 act("resolved", "Resolved"))];
    });
    $("s-cases").replaceChildren(table(["store", "status", "open for", "came back", ""],
                                       rows, []));
  }

  $("s-days").addEventListener("change", loadService);
  document.addEventListener("geopush:tab", (ev) => { if (ev.detail === "service") loadService(); });
  if (location.hash === "#service" && document.body.dataset.loaded === "1") loadService();
})();
