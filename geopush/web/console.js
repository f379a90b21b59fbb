// The marketers' console (SPEC section 13): stores and geofences on a map (draw, edit,
// enable/disable), offers (list, composer with a live preview per locale, pause/resume)
// and results (funnel, daily charts, control vs treatment, segments, basket rules,
// loyalty). It reads and writes the JSON API with the tab's marketer key; an API error
// is shown next to the field its `details[].field` names.
"use strict";
(() => {
  const { el, $, api, num, pct, table, chart, hasRoute, setStatus } = GP;
  const key = GP.makeKey("geopush.marketerKey");
  const SEGMENTS = ["new", "good", "best", "at_risk", "inactive", "unknown"];
  const TIMEZONES = ["Asia/Shanghai", "Europe/Paris", "America/Montreal", "America/New_York",
                     "Europe/London", "Asia/Tokyo", "UTC"];
  const state = { stores: [], fences: [], offers: [], editingOffer: null, selectedFence: null,
                  drawn: null, placingStore: false };
  let map = null;
  let fenceLayers = null;
  let storeLayers = null;

  const call = (method, path, body) => api(key, method, path, body);

  // ------------------------------------------------------------------ status, key, tabs
  function showKeyForm(text) {
    $("key-box").classList.remove("hidden");
    for (const id of ["main", "tabs", "forget"]) $(id).classList.add("hidden");
    setStatus(text, false);
  }
  // Every tab the page has (the Service tab's script adds its own behaviour).
  const TABS = [...document.querySelectorAll("#tabs [role=tab]")].map((b) => b.id.slice(8));
  function selectTab(name) {
    for (const t of TABS) {
      $("tab-" + t).classList.toggle("hidden", t !== name);
      $("tab-btn-" + t).setAttribute("aria-selected", String(t === name));
      $("tab-btn-" + t).tabIndex = t === name ? 0 : -1;
    }
    if (name === "map" && map) setTimeout(() => map.invalidateSize(), 0);
    if (name === "results") loadResults();
    document.dispatchEvent(new CustomEvent("geopush:tab", { detail: name }));
    location.hash = name;
  }
  $("tabs").addEventListener("keydown", (ev) => {
    const order = TABS;
    const i = order.findIndex((t) => $("tab-btn-" + t).getAttribute("aria-selected") === "true");
    const d = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
    if (!d) return;
    const next = order[(i + d + order.length) % order.length];
    selectTab(next);
    $("tab-btn-" + next).focus();
  });
  for (const t of TABS) {
    $("tab-btn-" + t).addEventListener("click", () => selectTab(t));
  }

  // ------------------------------------------------------------------ field errors
  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll(".has-error").forEach((e) => e.classList.remove("has-error"));
  }
  /** Put each `details[].field` message next to that field (or its nearest parent field). */
  function showErrors(form, statusBox, r) {
    const err = (r.body && r.body.error) || { message: "HTTP " + r.status, details: [] };
    let placed = 0;
    for (const d of err.details || []) {
      if (!d || !d.field) continue;
      let path = String(d.field).replace(/\[\d+\]/g, "");
      let target = null;
      while (path && !target) {
        target = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`) ||
                 form.querySelector(`[data-field="${CSS.escape(path)}"] .field-error`);
        if (!target) path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
      }
      if (!target) continue;
      const msg = d.message || d.reason || (d.id ? "unknown id " + d.id : err.message);
      target.textContent = target.textContent ? target.textContent + "; " + msg : msg;
      const field = target.closest(".field");
      if (field) field.classList.add("has-error");
      placed++;
    }
    statusBox.textContent = placed ? "Please fix the highlighted fields." : err.message;
    statusBox.className = "form-status error";
    const first = form.querySelector(".has-error input, .has-error select, .has-error textarea");
    if (first) first.focus();
  }
  function ok(statusBox, text) { statusBox.textContent = text; statusBox.className = "form-status ok"; }
  const csv = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

  // ------------------------------------------------------------------ data
  async function loadAll() {
    const [stores, fences, offers] = await Promise.all([
      GP.all(key, "/v1/stores"), GP.all(key, "/v1/geofences"), GP.all(key, "/v1/offers")]);
    for (const r of [stores, fences, offers]) {
      if (r.status === 401 || r.status === 403) return r.status;
      if (r.status !== 200) throw new Error(GP.errorMessage(r));
    }
    state.stores = stores.items;
    state.fences = fences.items;
    state.offers = offers.items;
    return 200;
  }
  const storeName = (id) => (state.stores.find((s) => s.id === id) || {}).name || "";

  // ------------------------------------------------------------------ map
  function initMap() {
    map = GP.makeMap($("map"));
    window.geopushMap = map;  // for tests and the curious
    fenceLayers = L.featureGroup().addTo(map);
    storeLayers = L.featureGroup().addTo(map);
    map.pm.setGlobalOptions({ snappable: false, continueDrawing: false });
    map.on("pm:create", (e) => {
      stopDrawing();
      state.drawn = e.layer;
      e.layer.addTo(map);
      openFenceForm(null, e.layer);
    });
    map.on("click", (e) => {
      if (!state.placingStore) return;
      $("s-lat").value = e.latlng.lat.toFixed(6);
      $("s-lon").value = e.latlng.lng.toFixed(6);
    });
  }
  function drawMap(fit) {
    fenceLayers.clearLayers();
    storeLayers.clearLayers();
    for (const f of state.fences) {
      const layer = GP.geometryLayer(f.geometry, {
        color: f.enabled ? "#1d4ed8" : "#6b7280", weight: 2, fillOpacity: 0.15,
        dashArray: f.enabled ? null : "5 5", pmIgnore: false });
      layer.bindTooltip(GP.tip(f.name + (f.enabled ? "" : " (disabled)")));
      layer.on("click", () => openFenceForm(f, layer));
      layer.fenceId = f.id;
      fenceLayers.addLayer(layer);
    }
    for (const s of state.stores) {
      L.circleMarker([s.location.lat, s.location.lon], { radius: 5, color: "#b45309",
        fillColor: "#f59e0b", fillOpacity: 1, weight: 2, pmIgnore: true })
        .bindTooltip(GP.tip(s.name)).addTo(storeLayers);
    }
    if (fit) fitAll();
  }
  function fitAll() {
    const b = L.featureGroup([...fenceLayers.getLayers(), ...storeLayers.getLayers()]);
    if (b.getLayers().length) map.fitBounds(b.getBounds(), { padding: [30, 30], maxZoom: 16 });
  }
  function startDrawing(shape) {
    closeFenceForm();
    map.pm.enableDraw(shape, { templineStyle: { color: "#1d4ed8" },
                               pathOptions: { color: "#1d4ed8" } });
    $("draw-cancel").disabled = false;
    $("draw-hint").textContent = shape === "Circle"
      ? "Click the centre, then click again at the edge."
      : "Click each corner; click the first corner to close.";
  }
  function stopDrawing() {
    map.pm.disableDraw();
    $("draw-cancel").disabled = true;
    $("draw-hint").textContent = "";
  }
  $("draw-circle").addEventListener("click", () => startDrawing("Circle"));
  $("draw-polygon").addEventListener("click", () => startDrawing("Polygon"));
  $("draw-cancel").addEventListener("click", stopDrawing);
  $("fit").addEventListener("click", fitAll);

  function storeOptions(select, selected, blank) {
    select.replaceChildren(el("option", { value: "" }, blank));
    for (const s of state.stores) {
      select.append(el("option", { value: s.id, selected: s.id === selected }, s.name));
    }
  }
  function describeShape(g) {
    if (g.type === "Circle") return `Circle of ${Math.round(g.radius_m)} m`;
    const n = g.type === "Polygon" ? g.coordinates[0].length - 1 : g.coordinates.length;
    return g.type === "Polygon" ? `Polygon of ${n} corners` : `MultiPolygon of ${n} parts`;
  }
  function openFenceForm(fence, layer) {
    const form = $("fence-form");
    clearErrors(form);
    $("fence-status").textContent = "";
    state.selectedFence = fence ? { fence, layer } : null;
    $("fence-title").textContent = fence ? "Geofence" : "New geofence";
    $("f-name").value = fence ? fence.name : "";
    storeOptions($("f-store"), fence ? fence.store_id : null, "(no store)");
    $("f-dwell").value = fence ? fence.dwell_s : "";
    $("f-enabled").checked = fence ? fence.enabled : true;
    $("f-shape").textContent = describeShape(GP.layerGeometry(layer));
    $("f-delete").classList.toggle("hidden", !fence);
    $("f-edit-shape").classList.toggle("hidden", !fence);
    form.classList.remove("hidden");
    document.querySelectorAll("#fence-list li").forEach((li) =>
      li.classList.toggle("selected", !!fence && li.dataset.id === fence.id));
    $("f-name").focus();
  }
  function closeFenceForm() {
    if (state.drawn) { state.drawn.remove(); state.drawn = null; }
    if (state.selectedFence && state.selectedFence.layer.pm) state.selectedFence.layer.pm.disable();
    state.selectedFence = null;
    $("fence-form").classList.add("hidden");
  }
  $("f-cancel").addEventListener("click", () => { closeFenceForm(); drawMap(false); });
  $("f-edit-shape").addEventListener("click", () => {
    const sel = state.selectedFence;
    if (!sel) return;
    sel.layer.pm.enable({ allowSelfIntersection: false });
    sel.layer.on("pm:edit", () => { $("f-shape").textContent =
      describeShape(GP.layerGeometry(sel.layer)) + " (edited, not saved)"; });
    $("fence-status").textContent = "Drag the handles, then save.";
    $("fence-status").className = "form-status";
  });
  $("fence-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = $("fence-form");
    clearErrors(form);
    const body = { name: $("f-name").value.trim(), store_id: $("f-store").value || null,
                   enabled: $("f-enabled").checked };
    if ($("f-dwell").value !== "") body.dwell_s = Number($("f-dwell").value);
    const sel = state.selectedFence;
    let r;
    if (sel) {
      const g = GP.layerGeometry(sel.layer);
      if (JSON.stringify(g) !== JSON.stringify(GP.layerGeometry(
        GP.geometryLayer(sel.fence.geometry, {})))) body.geometry = g;
      r = await call("PATCH", "/v1/geofences/" + sel.fence.id, body);
    } else {
      body.geometry = GP.layerGeometry(state.drawn);
      r = await call("POST", "/v1/geofences", body);
    }
    if (r.status !== 200 && r.status !== 201) return showErrors(form, $("fence-status"), r);
    if (state.drawn) { state.drawn.remove(); state.drawn = null; }
    if (sel && sel.layer.pm) sel.layer.pm.disable();
    await reload();
    const saved = state.fences.find((f) => f.id === r.body.id);
    setStatus("geofence saved", false);
    const layer = fenceLayers.getLayers().find((l) => l.fenceId === r.body.id);
    if (saved && layer) openFenceForm(saved, layer);
    ok($("fence-status"), `Saved “${r.body.name}” (${Math.round(r.body.area_m2).toLocaleString("en")} m²).`);
  });
  $("f-delete").addEventListener("click", async () => {
    const sel = state.selectedFence;
    if (!sel || !confirm(`Delete geofence “${sel.fence.name}”?`)) return;
    const r = await call("DELETE", "/v1/geofences/" + sel.fence.id);
    if (r.status !== 204) return showErrors($("fence-form"), $("fence-status"), r);
    state.selectedFence = null;
    closeFenceForm();
    await reload();
    setStatus("geofence deleted", false);
  });

  function renderFenceList() {
    $("fence-count").textContent = "(" + state.fences.length + ")";
    $("fence-list").replaceChildren(...state.fences.map((f) => {
      const toggle = el("input", { type: "checkbox", checked: f.enabled,
                                   "aria-label": "enabled: " + f.name });
      toggle.addEventListener("change", async () => {
        const r = await call("PATCH", "/v1/geofences/" + f.id, { enabled: toggle.checked });
        if (r.status !== 200) { toggle.checked = !toggle.checked;
                                return setStatus("error: " + GP.errorMessage(r), true); }
        setStatus(`${f.name}: ${toggle.checked ? "enabled" : "disabled"}`, false);
        await reload();
      });
      const open = el("button", { type: "button", class: "link" }, f.name);
      open.addEventListener("click", () => {
        const layer = fenceLayers.getLayers().find((l) => l.fenceId === f.id);
        if (layer) { map.fitBounds(layer.getBounds(), { maxZoom: 16 }); openFenceForm(f, layer); }
      });
      return el("li", { "data-id": f.id }, toggle, open,
                el("span", { class: "pill " + (f.enabled ? "on" : "off") },
                   f.enabled ? "on" : "off"));
    }));
  }

  // ------------------------------------------------------------------ stores
  function openStoreForm(store) {
    const form = $("store-form");
    clearErrors(form);
    $("store-status").textContent = "";
    form.dataset.id = store ? store.id : "";
    $("s-ext").value = store ? store.external_id : "";
    $("s-name").value = store ? store.name : "";
    $("s-tz").value = store ? store.timezone : "";
    $("s-lat").value = store ? store.location.lat : "";
    $("s-lon").value = store ? store.location.lon : "";
    $("s-cats").value = store && store.categories ? store.categories.join(", ") : "";
    $("s-hours").value = store && store.opening_hours ? JSON.stringify(store.opening_hours) : "";
    form.classList.remove("hidden");
    state.placingStore = true;
    $("s-ext").focus();
  }
  function closeStoreForm() { $("store-form").classList.add("hidden"); state.placingStore = false; }
  $("store-new").addEventListener("click", () => openStoreForm(null));
  $("s-cancel").addEventListener("click", closeStoreForm);
  $("store-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = $("store-form");
    clearErrors(form);
    const body = { external_id: $("s-ext").value.trim(), name: $("s-name").value.trim(),
                   timezone: $("s-tz").value.trim(),
                   location: { lat: $("s-lat").value === "" ? null : Number($("s-lat").value),
                               lon: $("s-lon").value === "" ? null : Number($("s-lon").value) },
                   categories: csv($("s-cats").value) };
    const hours = $("s-hours").value.trim();
    if (hours) {
      try { body.opening_hours = JSON.parse(hours); } catch (e) {
        return showErrors(form, $("store-status"), { status: 400, body: { error: {
          message: "invalid", details: [{ field: "opening_hours", message: "not valid JSON" }] } } });
      }
    } else {
      body.opening_hours = null;
    }
    const id = form.dataset.id;
    const r = id ? await call("PATCH", "/v1/stores/" + id, body)
                 : await call("POST", "/v1/stores", body);
    if (r.status !== 200 && r.status !== 201) return showErrors(form, $("store-status"), r);
    ok($("store-status"), `Saved store “${r.body.name}”.`);
    form.dataset.id = r.body.id;
    await reload();
  });
  function renderStoreList() {
    $("store-count").textContent = "(" + state.stores.length + ")";
    $("store-list").replaceChildren(...state.stores.map((s) => {
      const open = el("button", { type: "button", class: "link" }, s.name);
      open.addEventListener("click", () => {
        map.setView([s.location.lat, s.location.lon], Math.max(map.getZoom(), 15));
        openStoreForm(s);
      });
      return el("li", { "data-id": s.id }, open, el("span", { class: "muted" }, s.timezone));
    }));
  }

  // ------------------------------------------------------------------ offers list
  function renderOfferList() {
    const rows = state.offers.map((o) => {
      const toggle = el("button", { type: "button", class: "secondary small",
                                    "data-toggle": o.id },
                        o.status === "active" ? "Pause" : "Resume");
      toggle.addEventListener("click", async () => {
        const status = o.status === "active" ? "paused" : "active";
        const r = await call("PATCH", "/v1/offers/" + o.id, { status });
        if (r.status !== 200) return setStatus("error: " + GP.errorMessage(r), true);
        setStatus(`${o.name || "offer"}: ${status}`, false);
        await reload();
      });
      const edit = el("button", { type: "button", class: "secondary small" }, "Edit");
      edit.addEventListener("click", () => openOfferForm(o));
      const results = el("button", { type: "button", class: "secondary small" }, "Results");
      results.addEventListener("click", () => { $("r-offer").value = o.id; selectTab("results"); });
      const targets = o.store_ids.length + o.geofence_ids.length;
      return [o.name || o.id.slice(0, 8), o.trigger,
              el("span", { class: "pill " + o.status }, o.status),
              o.segments.length ? o.segments.join(", ") : "all", num(o.priority),
              o.control_pct + " %", num(targets), el("span", { class: "buttons" },
                                                      toggle, edit, results)];
    });
    $("offer-list").replaceChildren(table(
      ["name", "trigger", "status", "segments", "priority", "control", "targets", ""],
      rows, [4, 5, 6]));
  }

  // ------------------------------------------------------------------ composer
  function checkList(box, items, selected, name) {
    box.replaceChildren(...items.map(([value, label]) => el("label", {},
      el("input", { type: "checkbox", name, value, checked: selected.includes(value) }),
      " " + label)));
  }
  const checked = (box) => [...box.querySelectorAll("input:checked")].map((i) => i.value);
  function addTranslation(locale, title, body) {
    const row = el("div", { class: "translation", "data-field": "message.translations." + locale });
    const loc = el("input", { value: locale, "aria-label": "locale", class: "t-locale",
                              size: 6 });
    const t = el("input", { value: title || "", "aria-label": "title (" + locale + ")",
                            class: "t-title", maxlength: 200 });
    const b = el("textarea", { rows: 2, "aria-label": "body (" + locale + ")", class: "t-body",
                               maxlength: 1000 });
    b.value = body || "";
    const rm = el("button", { type: "button", class: "danger small",
                              "aria-label": "remove " + locale }, "×");
    rm.addEventListener("click", () => { row.remove(); preview(); });
    const wrap = (cls, input, field) => el("div", { class: "field " + cls,
      "data-field": field }, input, el("div", { class: "field-error" }));
    row.append(wrap("", loc, "message.translations." + locale),
               wrap("", t, "message.translations." + locale + ".title"),
               wrap("", b, "message.translations." + locale + ".body"), rm);
    loc.addEventListener("input", () => {
      const l = loc.value.trim();
      row.dataset.field = "message.translations." + l;
      row.children[0].dataset.field = "message.translations." + l;
      row.children[1].dataset.field = "message.translations." + l + ".title";
      row.children[2].dataset.field = "message.translations." + l + ".body";
      t.setAttribute("aria-label", "title (" + l + ")");
      b.setAttribute("aria-label", "body (" + l + ")");
    });
    $("o-translations").append(row);
  }
  $("o-add-locale").addEventListener("click", () => { addTranslation("", "", "");
    $("o-translations").lastElementChild.querySelector("input").focus(); });

  function toLocalInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  }
  const fromLocalInput = (v) => v ? new Date(v).toISOString() : null;

  function openOfferForm(offer, preset) {
    const o = offer || Object.assign({ trigger: "enter", status: "active", store_ids: [],
      geofence_ids: [], segments: [], category: null, audience: null, cooldown_s: 86400,
      max_sends: null, priority: 0, control_pct: 0, ttl_s: 900, deeplink: null,
      starts_at: null, ends_at: null, daily_window: null, name: "",
      message: { default_locale: "en", translations: { en: { title: "", body: "" } } } },
      preset || {});
    state.editingOffer = offer ? offer.id : null;
    const form = $("offer-form");
    clearErrors(form);
    $("offer-status").textContent = "";
    $("offer-title").textContent = offer ? "Edit offer" : "New offer";
    $("o-name").value = o.name || "";
    $("o-trigger").value = o.trigger;
    $("o-status").value = o.status;
    checkList($("o-stores"), state.stores.map((s) => [s.id, s.name]), o.store_ids, "store");
    checkList($("o-fences"), state.fences.map((f) => [f.id, f.name]), o.geofence_ids, "fence");
    checkList($("o-segments"), SEGMENTS.map((s) => [s, s]), o.segments, "segment");
    $("o-levels").value = (o.levels || []).join(", ");
    $("o-category").value = o.category || "";
    $("o-deeplink").value = o.deeplink || "";
    const aud = o.audience;
    const mode = !aud ? "all" : aud.recommended ? "recommended" : "purchases";
    form.querySelector(`input[name="o-aud"][value="${mode}"]`).checked = true;
    $("o-bought").value = aud && aud.bought_any ? aud.bought_any.join(", ") : "";
    $("o-notbought").value = aud && aud.not_bought ? aud.not_bought.join(", ") : "";
    $("o-boughtall").value = aud && aud.bought_all ? aud.bought_all.join(", ") : "";
    $("o-default-locale").value = o.message.default_locale || "en";
    $("o-translations").replaceChildren();
    for (const [loc, tr] of Object.entries(o.message.translations || {})) {
      addTranslation(loc, tr.title, tr.body);
    }
    $("o-starts").value = toLocalInput(o.starts_at);
    $("o-ends").value = toLocalInput(o.ends_at);
    $("o-win-start").value = o.daily_window ? o.daily_window.start : "";
    $("o-win-end").value = o.daily_window ? o.daily_window.end.replace("24:00", "00:00") : "";
    $("o-cooldown").value = o.cooldown_s;
    $("o-max").value = o.max_sends === null || o.max_sends === undefined ? "" : o.max_sends;
    $("o-priority").value = o.priority;
    $("o-control").value = o.control_pct;
    $("o-ttl").value = o.ttl_s;
    storeOptions($("p-store"), o.store_ids[0] || (state.stores[0] || {}).id, "(no store)");
    form.classList.remove("hidden");
    audienceMode();
    preview();
    scheduleForesight();
    selectTab("offers");
    $("o-name").focus();
  }
  function closeOfferForm() { $("offer-form").classList.add("hidden"); state.editingOffer = null; }
  $("offer-new").addEventListener("click", () => openOfferForm(null));
  $("o-cancel").addEventListener("click", closeOfferForm);
  function audienceMode() {
    const mode = $("offer-form").querySelector('input[name="o-aud"]:checked').value;
    $("o-aud-purchases").classList.toggle("hidden", mode !== "purchases");
  }
  $("offer-form").querySelectorAll('input[name="o-aud"]').forEach(
    (r) => r.addEventListener("change", audienceMode));

  function composedMessage() {
    const translations = {};
    for (const row of $("o-translations").children) {
      const loc = row.querySelector(".t-locale").value.trim();
      translations[loc] = { title: row.querySelector(".t-title").value,
                            body: row.querySelector(".t-body").value };
    }
    return { default_locale: $("o-default-locale").value.trim(), translations };
  }
  function composedOffer() {
    const intOrNull = (id) => $(id).value === "" ? null : Number($(id).value);
    const mode = $("offer-form").querySelector('input[name="o-aud"]:checked').value;
    let audience = null;
    if (mode === "purchases") {
      audience = { bought_any: csv($("o-bought").value), not_bought: csv($("o-notbought").value) };
      const all = csv($("o-boughtall").value);
      if (all.length) audience.bought_all = all;
    } else if (mode === "recommended") {
      audience = { recommended: true };
    }
    const ws = $("o-win-start").value, we = $("o-win-end").value;
    const body = {
      name: $("o-name").value.trim() || null,
      trigger: $("o-trigger").value,
      status: $("o-status").value,
      store_ids: checked($("o-stores")),
      geofence_ids: checked($("o-fences")),
      segments: checked($("o-segments")),
      category: $("o-category").value.trim() || null,
      audience,
      message: composedMessage(),
      starts_at: fromLocalInput($("o-starts").value),
      ends_at: fromLocalInput($("o-ends").value),
      daily_window: ws || we ? { start: ws, end: we } : null,
      cooldown_s: intOrNull("o-cooldown"),
      max_sends: intOrNull("o-max"),
      priority: intOrNull("o-priority"),
      control_pct: intOrNull("o-control"),
      ttl_s: intOrNull("o-ttl"),
      deeplink: $("o-deeplink").value.trim() || null,
    };
    if (levelsSupported()) body.levels = csv($("o-levels").value);
    for (const k of ["cooldown_s", "priority", "control_pct", "ttl_s"]) {
      if (body[k] === null) delete body[k];  // the API's default
    }
    return body;
  }
  $("offer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = $("offer-form");
    clearErrors(form);
    const body = composedOffer();
    const id = state.editingOffer;
    const r = id ? await call("PATCH", "/v1/offers/" + id, body)
                 : await call("POST", "/v1/offers", body);
    if (r.status !== 200 && r.status !== 201) return showErrors(form, $("offer-status"), r);
    state.editingOffer = r.body.id;
    $("offer-title").textContent = "Edit offer";
    ok($("offer-status"), `Saved “${r.body.name || "offer"}” (${r.body.status}).`);
    await reload();
  });

  // The same rules as geopush.campaigns.templates: locale lookup, then fill().
  function fill(text, values) {
    let out = "";
    let pos = 0;
    const re = /\{(first_name|store_name)\}/g;
    let m;
    while ((m = re.exec(text)) !== null) {
      out += text.slice(pos, m.index);
      pos = m.index + m[0].length;
      const value = (values[m[1]] || "").trim();
      if (value) { out += value; continue; }
      const after = pos < text.length ? text[pos] : "";
      const alnum = /[\p{L}\p{N}]/u.test(after);
      if (out.endsWith(" ") && (after === " " || !alnum)) {
        if (after === " ") pos += 1; else out = out.slice(0, -1);
      } else if ((!out || /\s$/.test(out)) && after === " ") {
        pos += 1;
      }
    }
    return out + text.slice(pos);
  }
  function preview() {
    const msg = composedMessage();
    const values = { first_name: $("p-first").value, store_name: storeName($("p-store").value) };
    const out = $("p-out");
    out.replaceChildren();
    for (const [loc, tr] of Object.entries(msg.translations)) {
      out.append(el("div", { class: "notif", "data-locale": loc },
        el("div", { class: "loc" }, loc + (loc === msg.default_locale ? " (default)" : "")),
        el("div", { class: "t" }, fill(tr.title, values)),
        el("div", { class: "b" }, fill(tr.body, values))));
    }
    if (!out.children.length) out.append(el("div", { class: "empty" }, "no translation yet"));
  }
  $("offer-form").addEventListener("input", (ev) => {
    if (ev.target.closest("#o-translations") || ["o-default-locale", "p-first", "p-store"]
      .includes(ev.target.id)) preview();
  });
  $("p-store").addEventListener("change", preview);
  $("p-customer").addEventListener("change", async () => {
    const id = $("p-customer").value.trim();
    if (!id) return;
    const r = await call("GET", "/v1/customers/" + encodeURIComponent(id));
    $("p-first").value = r.status === 200 ? (r.body.first_name || "") : "";
    if (r.status !== 200) setStatus("no customer " + id, true);
    preview();
  });

  // ------------------------------------------------------------------ foresight
  // SPEC 16: the offer as composed, replayed over the last days, debounced as the marketer
  // types; a newer edit aborts the request in flight (the server stops its replay too).
  const REASON_LABEL = { quiet_hours: "held by quiet hours", daily_cap: "held by the daily cap",
    cooldown: "in cooldown", lower_priority: "beaten by another offer",
    no_push_consent: "without push consent", segment_mismatch: "other segments" };
  let foresightTimer = null;
  let foresightAbort = null;
  function scheduleForesight() {
    clearTimeout(foresightTimer);
    foresightTimer = setTimeout(runForesight, 600);
  }
  async function runForesight() {
    if ($("offer-form").classList.contains("hidden")) return;
    if (foresightAbort) foresightAbort.abort();
    const abort = new AbortController();
    foresightAbort = abort;
    const offer = composedOffer();
    if (state.editingOffer) offer.id = state.editingOffer;
    const days = Number($("f-days").value);
    const summary = $("f-summary");
    const untitled = Object.values(offer.message.translations).some((t) => !t.title || !t.body);
    if (!offer.store_ids.length && !offer.geofence_ids.length || untitled) {
      // Not an offer yet: the answer would be a 400, so say what is missing instead.
      if (foresightAbort) foresightAbort.abort();
      foresightAbort = null;
      summary.classList.remove("busy");
      summary.textContent = untitled ? "write the message to see what it would have done"
        : "pick a store or geofence to see what the offer would have done";
      $("f-bars").replaceChildren();
      return;
    }
    summary.classList.add("busy");
    summary.textContent = "replaying the last " + days + " days…";
    let resp;
    try {
      resp = await fetch("/v1/offers/preview", { method: "POST", signal: abort.signal,
        cache: "no-store", headers: { "Authorization": "Bearer " + key.get(),
                                      "Content-Type": "application/json" },
        body: JSON.stringify({ offer, days }) });
    } catch (e) {
      return;  // aborted by a newer edit, or the network: the next edit tries again
    }
    const body = await resp.json().catch(() => null);
    if (abort !== foresightAbort) return;
    foresightAbort = null;
    summary.classList.remove("busy");
    if (resp.status !== 200) {
      summary.textContent = "no preview: " + GP.errorMessage({ status: resp.status, body });
      $("f-bars").replaceChildren();
      return;
    }
    showForesight(body, days);
  }
  function showForesight(p, days) {
    const held = Object.entries(p.suppressed).sort((a, b) => b[1] - a[1]);
    const parts = [num(p.customers) + " customers", num(p.would_send) + " sends"];
    if (p.control) parts.push(num(p.control) + " held out as control");
    for (const [reason, n] of held.slice(0, 2)) {
      parts.push(num(n) + " " + (REASON_LABEL[reason] || reason.replaceAll("_", " ")));
    }
    $("f-summary").textContent = `last ${days} day${days === 1 ? "" : "s"}: ` + parts.join(", ")
      + (held.length > 2 ? "…" : "");
    const rows = [["would_send", p.would_send], ["control", p.control], ...held];
    const max = Math.max(1, ...rows.map((r) => r[1]));
    $("f-bars").replaceChildren(...rows.filter((r) => r[1] > 0 || r[0] === "would_send").map(
      ([reason, n]) => el("div", { class: "f-bar-row", "data-reason": reason },
        el("span", {}, reason.replaceAll("_", " ")),
        el("div", { class: "f-bar", style: `width:${Math.max(0.5, 100 * n / max)}%` }),
        el("span", { class: "num" }, num(n)))));
  }
  $("offer-form").addEventListener("input", scheduleForesight);
  $("offer-form").addEventListener("change", scheduleForesight);
  $("f-test").addEventListener("click", async () => {
    const out = $("f-test-status");
    const device = $("f-device").value.trim();
    if (!state.editingOffer) {
      out.textContent = "save the offer first: a test sends the saved message";
      return;
    }
    const r = await call("POST", `/v1/offers/${state.editingOffer}/test`, { device_id: device });
    out.textContent = r.status === 200
      ? (r.body.sent ? `test sent: “${r.body.title}”` : "FCM refused it: " + r.body.error)
      : GP.errorMessage(r);
  });

  // ------------------------------------------------------------------ results
  // Offers target loyalty levels once this server runs the loyalty program.
  const levelsSupported = () => hasRoute("GET", "/v1/devices/me/loyalty");
  function funnelRows(st) {
    const steps = [["triggered", st.triggered], ["control", st.control], ["queued", st.queued],
                   ["sent", st.sent], ["opened", st.opened], ["redeemed", st.redeemed]];
    const max = Math.max(1, st.triggered, st.queued);
    return el("div", { "aria-label": "funnel" }, el("h3", {}, "Funnel"), ...steps.map(
      ([label, n]) => el("div", { class: "funnel-row", "data-step": label },
        el("span", {}, label),
        el("div", { class: "funnel-bar", style: `width:${Math.max(0.5, 100 * n / max)}%` }),
        el("span", { class: "num", "data-count": label }, num(n)))));
  }
  async function loadResults() {
    const sel = $("r-offer");
    const current = sel.value;
    sel.replaceChildren(...state.offers.map((o) => el("option", { value: o.id,
      selected: o.id === current }, (o.name || o.id.slice(0, 8)) + " (" + o.status + ")")));
    if (!sel.value && state.offers.length) sel.value = state.offers[0].id;
    await Promise.all([offerResults(sel.value), segmentResults(), basketResults(),
                       loyaltyResults(), valueResults()]);
  }
  $("r-offer").addEventListener("change", () => offerResults($("r-offer").value));
  async function offerResults(id) {
    if (!id) {
      $("r-funnel").replaceChildren(el("div", { class: "empty" }, "no offer yet"));
      return;
    }
    const [s, d] = await Promise.all([call("GET", `/v1/offers/${id}/stats`),
                                      call("GET", `/v1/offers/${id}/stats/daily?days=14`)]);
    if (s.status !== 200) {
      $("r-funnel").replaceChildren(el("div", { class: "na" }, GP.errorMessage(s)));
      return;
    }
    const st = s.body;
    $("r-funnel").replaceChildren(funnelRows(st));
    const ended = Object.entries(st.failed).map(([k, v]) => ["failed: " + k, num(v)])
      .concat(Object.entries(st.cancelled || {}).map(([k, v]) => ["cancelled: " + k, num(v)]));
    $("r-suppressed").replaceChildren(el("h3", {}, "Not sent, by reason"), table(["reason", "count"],
      Object.entries(st.suppressed).sort((a, b) => b[1] - a[1])
        .map(([k, v]) => ["suppressed: " + k, num(v)]).concat(ended), [1]));
    const c = st.conversion;
    const rate = (g) => g.customers ? pct(g.converted, g.customers) : "–";
    $("r-conversion").replaceChildren(el("h3", {}, `Conversion within ${c.window_days} days`),
      table(["group", "customers", "converted", "rate"], [
        ["treatment", num(c.treatment.customers), num(c.treatment.converted), rate(c.treatment)],
        ["control", num(c.control.customers), num(c.control.converted), rate(c.control)]],
        [1, 2, 3]),
      el("p", { "data-lift": "" }, "Lift: ", el("strong", {},
        c.lift === null ? "not measurable yet (needs control customers who converted)"
          : (c.lift >= 0 ? "+" : "") + (100 * c.lift).toFixed(1) + " %")));
    const lv = st.levers;
    if (lv) {
      const fig = (v, digits) => v === null || v === undefined ? "–" : v.toFixed(digits);
      const share = (v) => v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %";
      $("r-levers").replaceChildren(el("h3", {}, `The three levers within ${lv.window_days} days`),
        table(["group", "customers", "visits per customer", "average basket", "retained"], [
          ["treatment", num(lv.treatment.customers), fig(lv.treatment.visits_per_customer, 2),
           fig(lv.treatment.average_basket, 2), share(lv.treatment.retained)],
          ["control", num(lv.control.customers), fig(lv.control.visits_per_customer, 2),
           fig(lv.control.average_basket, 2), share(lv.control.retained)],
          ["treatment ÷ control", "", fig(lv.ratio.visits_per_customer, 2),
           fig(lv.ratio.average_basket, 2), fig(lv.ratio.retained, 2)]], [1, 2, 3, 4]));
    }
    if (d.status === 200) {
      const xs = d.body.days.map((day) => Date.parse(day + "T12:00:00Z") / 1000);
      chart($("r-daily"), "Per day: sends, opens, redemptions", xs,
            [{ label: "sent", values: d.body.sent }, { label: "opened", values: d.body.opened },
             { label: "redeemed", values: d.body.redeemed }], { height: 190 });
    }
  }
  async function valueResults() {
    if (!hasRoute("GET", "/v1/insights/value")) return;
    const r = await call("GET", "/v1/insights/value?by=" + $("v-by").value);
    if (r.status !== 200) {
      $("r-value").replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    const f = (v) => v === null ? "–" : v.toFixed(2);
    $("r-value").replaceChildren(r.body.items.length ? table(
      ["group", "customers", "purchases / month", "average basket", "months", "value"],
      r.body.items.map((i) => [i.name || i.group, num(i.customers), f(i.frequency_per_month),
                               f(i.average_basket), f(i.relationship_months), f(i.value)]),
      [1, 2, 3, 4, 5]) : el("div", { class: "empty" }, "no transactions yet"));
  }
  $("v-by").addEventListener("change", valueResults);
  $("c-lookup").addEventListener("change", async () => {
    const id = $("c-lookup").value.trim();
    if (!id) return;
    const r = await call("GET", "/v1/customers/" + encodeURIComponent(id));
    if (r.status !== 200) {
      $("c-profile").replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    const c = r.body;
    const p = c.preferences || {};
    const q = p.quiet_hours;
    $("c-profile").replaceChildren(table(["", ""], [
      ["name", c.first_name || "–"], ["segment", c.segment],
      ["level", c.loyalty && c.loyalty.level ? c.loyalty.level : "–"],
      ["recommended", (c.recommended_categories || []).join(", ") || "–"],
      ["interests", p.interests ? p.interests.join(", ") || "none" : "all"],
      ["weekly maximum", p.max_per_week === null || p.max_per_week === undefined
        ? "–" : String(p.max_per_week)],
      ["quiet hours", q ? q.start + "–" + q.end : "the global ones"]], []));
  });
  async function segmentResults() {
    const r = await call("GET", "/v1/segments");
    if (r.status !== 200) {
      $("r-segments").replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    const segs = r.body.segments;
    const max = Math.max(1, ...Object.values(segs));
    $("r-segments").replaceChildren(...Object.entries(segs).map(([k, v]) =>
      el("div", { class: "funnel-row", "data-segment": k }, el("span", {}, k),
         el("div", { class: "segbar", style: `width:${Math.max(0.5, 100 * v / max)}%` }),
         el("span", { class: "num" }, num(v)))),
      el("p", { class: "muted small-text" }, "computed " +
         (r.body.computed_at ? new Date(r.body.computed_at).toLocaleString() : "never")));
  }
  $("seg-recompute").addEventListener("click", async () => {
    const r = await call("POST", "/v1/segments/recompute");
    if (r.status !== 200) return setStatus("error: " + GP.errorMessage(r), true);
    await segmentResults();
  });
  async function basketResults() {
    const box = $("r-basket");
    if (!hasRoute("GET", "/v1/insights/basket")) {
      box.replaceChildren(el("div", { class: "na" }, "Basket analysis is not available on this server."));
      return;
    }
    const r = await call("GET", "/v1/insights/basket?level=category");
    if (r.status !== 200) {
      box.replaceChildren(el("div", { class: "na" }, GP.errorMessage(r)));
      return;
    }
    const rules = r.body.rules.slice(0, 25);
    box.replaceChildren(el("p", { class: "muted small-text" }, num(r.body.baskets) + " baskets"),
      table(["if bought", "then also", "support", "confidence", "lift", ""], rules.map((rule) => {
        const b = el("button", { type: "button", class: "secondary small" },
                     "Create a cross-selling offer");
        b.addEventListener("click", () => crossSell(rule));
        return [rule.antecedent.join(" + "), rule.consequent.join(" + "),
                pct(rule.support, 1), pct(rule.confidence, 1), rule.lift.toFixed(2), b];
      }), [2, 3, 4]));
  }
  function crossSell(rule) {
    const target = rule.consequent.join(", ");
    openOfferForm(null, {
      name: `Cross-sell: ${rule.antecedent.join(" + ")} → ${target}`, trigger: "exit",
      category: rule.consequent.length === 1 ? rule.consequent[0] : null,
      // SPEC 12: those who bought every antecedent and not the consequent.
      audience: rule.antecedent.length > 1
        ? { bought_any: [], bought_all: rule.antecedent, not_bought: rule.consequent }
        : { bought_any: rule.antecedent, not_bought: rule.consequent },
      store_ids: state.stores.map((s) => s.id), control_pct: 10,
      message: { default_locale: "en", translations: { en: {
        title: "{first_name}, try our " + target,
        body: "Before you go: " + target + " at {store_name}, just for you." } } },
    });
  }
  async function loyaltyResults() {
    const box = $("r-loyalty");
    const hasSummary = hasRoute("GET", "/v1/loyalty/summary");
    if (!hasSummary && !hasRoute("GET", "/v1/challenges")) {
      box.replaceChildren(el("div", { class: "na" }, "Loyalty is not available on this server."));
      return;
    }
    const parts = [];
    let challenges = null;
    if (hasSummary) {
      const r = await call("GET", "/v1/loyalty/summary?days=30");
      if (r.status === 200) {
        const s = r.body;
        parts.push(el("div", { class: "cards" },
          ...[["Points earned", s.earned], ["Points redeemed", s.redeemed],
              ["Check-ins", s.checkins]].map(([label, v]) => el("div", { class: "card" },
            el("div", { class: "label" }, label), el("div", { class: "value" }, num(v)))),
        ), el("p", { class: "muted small-text" }, `last ${s.days} days`));
        parts.push(el("h3", {}, "Members by level"), table(["level", "members"],
          Object.entries(s.members_by_level || {}).map(([k, v]) => [k, num(v)]), [1]));
        parts.push(el("h3", {}, "Badges earned"), table(["badge", "earned"],
          Object.entries(s.badges || {}).map(([k, v]) => [k.replace(/_/g, " "), num(v)]), [1]));
        challenges = s.challenges || null;
      }
    }
    if (challenges === null && hasRoute("GET", "/v1/challenges")) {
      const r = await call("GET", "/v1/challenges");
      challenges = r.status === 200 ? (r.body.items || []) : [];
    }
    parts.push(el("h3", {}, "Challenges"), table(["name", "kind", "target", "completed", "ends"],
      (challenges || []).map((c) => [c.name, c.kind, num(c.target),
        c.completed === undefined ? "–" : num(c.completed),
        c.ends_at ? new Date(c.ends_at).toLocaleDateString() : "–"]), [2, 3]));
    box.replaceChildren(...parts);
  }

  // ------------------------------------------------------------------ start
  async function reload() {
    const status = await loadAll();
    if (status !== 200) return status;
    drawMap(false);
    renderFenceList();
    renderStoreList();
    renderOfferList();
    return 200;
  }
  async function start() {
    if (!key.get()) return showKeyForm("enter a marketer key to start");
    setStatus("loading…", false);
    let status;
    try { status = await loadAll(); } catch (e) {
      return setStatus("cannot reach geopush: " + e.message, true);
    }
    if (status !== 200) {
      key.forget();
      return showKeyForm("that key was refused; enter a marketer key");
    }
    $("key-box").classList.add("hidden");
    for (const id of ["main", "tabs", "forget"]) $(id).classList.remove("hidden");
    if (!map) initMap();
    drawMap(true);
    renderFenceList();
    renderStoreList();
    renderOfferList();
    $("tz-list").replaceChildren(...TIMEZONES.map((z) => el("option", { value: z })));
    $("o-levels-box").classList.toggle("hidden", !levelsSupported());
    $("o-aud-rec-label").classList.toggle("hidden", !hasRoute("GET", "/v1/insights/basket"));
    if (hasRoute("POST", "/v1/challenges")) {
      $("o-trigger").append(el("option", {}, "reward"));
    }
    const tab = (location.hash || "#map").slice(1);
    selectTab(TABS.includes(tab) ? tab : "map");
    setStatus(`${state.stores.length} stores, ${state.fences.length} geofences, ` +
              `${state.offers.length} offers`, false);
    document.body.dataset.loaded = "1";
  }
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("key").value.trim();
    $("key").value = "";
    if (v) { key.set(v); start(); }
  });
  $("forget").addEventListener("click", () => { key.forget(); showKeyForm("key forgotten"); });
  start();
})();
