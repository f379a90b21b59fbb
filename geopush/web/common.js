// Shared by the console and the dashboard: the key kept for the tab, the JSON API client,
// DOM building (text only, never innerHTML, so an offer named "<script>" stays text),
// charts (uPlot) and shapes on a map (Leaflet).
"use strict";

window.GP = (() => {
  const settings = JSON.parse(document.getElementById("geopush-settings").textContent);

  /** Element with attributes ({class, for, ...}, on* handlers) and text/node children. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k in e && typeof v !== "string") e[k] = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const $ = (id) => document.getElementById(id);

  /** The header's status line (both pages have one with id "status"). */
  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.className = "status" + (bad ? " error" : "");
  }

  /** Whether this geopush serves a route (sections for missing ones say so, no 404). */
  function hasRoute(method, path) { return settings.routes.includes(method + " " + path); }

  function makeKey(storageKey) {
    return {
      get: () => sessionStorage.getItem(storageKey),
      set: (v) => sessionStorage.setItem(storageKey, v),
      forget: () => sessionStorage.removeItem(storageKey),
    };
  }

  /** Call the API with the tab's key; resolve to {status, body}, never throw on HTTP errors. */
  async function api(key, method, path, body) {
    const headers = { "Authorization": "Bearer " + key.get() };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    if (resp.status !== 204) { try { data = await resp.json(); } catch (e) { data = null; } }
    return { status: resp.status, body: data };
  }

  function errorMessage(r) {
    return r.body && r.body.error ? r.body.error.message : "HTTP " + r.status;
  }

  const num = (n) => (n === undefined || n === null) ? "–" : Number(n).toLocaleString("en");
  const pct = (a, b) => b ? (100 * a / b).toFixed(1) + " %" : "–";
  const secs = (s) => (s === undefined || s === null) ? "–"
    : s < 1 ? Math.round(s * 1000) + " ms" : s < 120 ? s.toFixed(1) + " s"
    : (s / 60).toFixed(1) + " min";

  function table(head, rows, numeric) {
    const t = el("table");
    t.append(el("tr", {}, head.map((h, i) => el("th", { class: numeric.includes(i) ? "num" : "",
                                                        scope: "col" }, h))));
    if (!rows.length) {
      t.append(el("tr", {}, el("td", { class: "empty", colSpan: head.length }, "nothing yet")));
    }
    for (const row of rows) {
      t.append(el("tr", {}, row.map((c, i) => el("td", { class: numeric.includes(i) ? "num" : "" },
                                                 c))));
    }
    return t;
  }

  const PALETTE = ["#1d4ed8", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2",
                   "#be185d", "#4b5563"];

  /**
   * A time-series chart in `box` (replacing what was there): xs in Unix seconds,
   * series [{label, values, color?}]. Redrawn when the box is resized.
   */
  function chart(box, title, xs, series, opts) {
    opts = opts || {};
    const data = [xs, ...series.map((s) => s.values)];
    const shape = title + "|" + series.map((s) => s.label).join("|");
    if (box._plot && box._shape === shape) { box._plot.setData(data); return box._plot; }
    if (box._plot) { box._plot.destroy(); box._observer.disconnect(); box._plot = null; }
    box.replaceChildren(el("h3", {}, title));
    const host = el("div");
    box.append(host);
    if (!series.length) { host.append(el("div", { class: "empty" }, "nothing yet")); return null; }
    const width = Math.max(240, box.clientWidth - 4);
    const plot = new uPlot({
      width, height: opts.height || 170,
      scales: { x: { time: opts.time !== false } },
      axes: [{}, { size: 58, values: opts.yFormat
        ? (u, vals) => vals.map(opts.yFormat) : undefined }],
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: 2,
        fill: opts.fill ? (s.color || PALETTE[i % PALETTE.length]) + "22" : undefined,
        points: { show: opts.points || xs.length < 40 },
        value: opts.yFormat ? (u, v) => v === null ? "–" : opts.yFormat(v) : undefined,
      }))],
      legend: { live: false },
    }, data, host);
    box._plot = plot;
    box._shape = shape;
    box._observer = new ResizeObserver(() => {
      const w = Math.max(240, box.clientWidth - 4);
      if (Math.abs(w - plot.width) > 8) plot.setSize({ width: w, height: plot.height });
    });
    box._observer.observe(box);
    return plot;
  }

  /** A Leaflet map over `[console] tile_url` tiles, or on a plain background. */
  function makeMap(box) {
    const map = L.map(box, { zoomControl: true, attributionControl: !!settings.tile_url,
                             preferCanvas: false });
    if (settings.tile_url) {
      L.tileLayer(settings.tile_url, { maxZoom: 19, attribution: "map tiles" }).addTo(map);
    } else {
      box.classList.add("plain");
    }
    L.control.scale({ metric: true, imperial: false }).addTo(map);
    map.setView([39.91, 116.40], 11);
    return map;
  }

  /** Tooltip content as a text node: Leaflet puts a string tooltip in as HTML, and names
   *  come from marketers' forms and CSV/GeoJSON imports. */
  function tip(text) { return el("span", { text }); }

  /** A Leaflet layer for a geofence's geometry (GeoJSON lon/lat, or geopush's Circle). */
  function geometryLayer(geometry, style) {
    if (geometry.type === "Circle") {
      const [lon, lat] = geometry.center;
      return L.circle([lat, lon], Object.assign({ radius: geometry.radius_m }, style));
    }
    const rings = (poly) => poly.map((ring) => ring.map(([lon, lat]) => [lat, lon]));
    if (geometry.type === "Polygon") return L.polygon(rings(geometry.coordinates), style);
    return L.polygon(geometry.coordinates.map(rings), style);
  }

  /** geopush geometry of a Leaflet layer: a Circle, or a GeoJSON Polygon or MultiPolygon
   *  with every ring (holes and parts included), each ring closed again. */
  function layerGeometry(layer) {
    const r6 = (x) => Math.round(x * 1e6) / 1e6;
    if (layer instanceof L.Circle) {
      const c = layer.getLatLng();
      return { type: "Circle", center: [r6(c.lng), r6(c.lat)],
               radius_m: Math.round(layer.getRadius() * 10) / 10 };
    }
    const ring = (points) => {
      const coords = points.map((p) => [r6(p.lng), r6(p.lat)]);
      coords.push(coords[0]);
      return coords;
    };
    const depth = (a) => (Array.isArray(a) ? 1 + depth(a[0]) : 0);
    let latlngs = layer.getLatLngs();
    if (depth(latlngs) === 3) {
      return { type: "MultiPolygon", coordinates: latlngs.map((poly) => poly.map(ring)) };
    }
    if (depth(latlngs) === 1) latlngs = [latlngs];
    return { type: "Polygon", coordinates: latlngs.map(ring) };
  }

  /** Fetch every page of a list endpoint. */
  async function all(key, path, max) {
    const items = [];
    let cursor = null;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const r = await api(key, "GET", path + sep + "limit=500" +
                          (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      if (r.status !== 200) return { status: r.status, body: r.body, items };
      items.push(...r.body.items);
      cursor = r.body.next_cursor;
    } while (cursor && items.length < (max || 5000));
    return { status: 200, items };
  }

  return { settings, el, $, setStatus, hasRoute, makeKey, api, errorMessage, num, pct, secs,
           table, chart, makeMap, geometryLayer, layerGeometry, all, tip, PALETTE };
})();
