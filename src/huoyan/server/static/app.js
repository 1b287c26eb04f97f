// Huoyan dashboard: each page is a server-rendered shell; this script fills it from the REST API.
// Text from records is put into the page with textContent only (never as HTML).
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

// The page's language and its messages (huoyan.server.i18n): t("English text {name}", {name}).
const LANG = document.documentElement.lang || "en";
const MESSAGES = JSON.parse((document.getElementById("messages") || {}).textContent || "{}");
function t(text, values = {}) {
  return (MESSAGES[text] || text).replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
}

async function api(path, options = {}) {
  const opts = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
  if (opts.json !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, opts);
  if (res.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error(t("not logged in"));
  }
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(describe(detail));
  }
  return res.status === 204 ? null : res.json();
}

// An API error in words: a validation error lists each field and what is wrong with it.
function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const field = (d.loc || []).filter((x) => x !== "body").join(".");
      return `${field ? field + ": " : ""}${String(d.msg || "").replace(/^Value error, /, "")}`;
    }).join("; ");
  }
  return JSON.stringify(detail);
}

// Show a message in a page's error element (cleared by an empty one).
function say(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = {
  time: (iso) => (iso ? new Date(iso).toLocaleString(LANG) : "—"),
  // Numbers in the page's language (its decimal sign); no grouping, so columns line up as before.
  num: (x, d = 3) => (x === null || x === undefined ? "—"
    : Number(x).toLocaleString(LANG, { minimumFractionDigits: d, maximumFractionDigits: d, useGrouping: false })),
  verdict: (v) => el("span", { class: "verdict " + v }, v),
};

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))));
}

function definitions(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "—")]));
}

function reviewLabel(r) {
  if (!r) return "";
  const what = { defect: t("defect"), false_alarm: t("false alarm"), good: t("good"), missed_defect: t("missed defect") }[r.outcome];
  const fixed = (r.regions || []).map((x) => `#${x.index + 1} → ${x.label}`).join(", ");
  return `${what}${r.label ? " (" + r.label + ")" : ""}${fixed ? " · " + fixed : ""} · ${r.reviewer}`;
}

// Each station's product's defect types (empty: any type is taken), asked once per page.
const defectTypeCache = {};
function defectTypesOf(station) {
  if (!(station in defectTypeCache)) {
    defectTypeCache[station] = api(`/api/stations/${encodeURIComponent(station)}/defect-types`)
      .then((d) => d.types).catch(() => []);
  }
  return defectTypeCache[station];
}

// Review buttons for one inspection; `done` runs after a review is stored. `regionLabels`,
// if given, returns the regions whose label the reviewer corrected.
function reviewButtons(rec, done, regionLabels) {
  // A refused review (a type not in the product's list, a lost connection) is said beside the buttons.
  const error = el("span", { class: "error review-error", role: "alert", hidden: true });
  const send = async (outcome, label) => {
    const regions = outcome === "defect" && regionLabels ? regionLabels() : [];
    try {
      await api(`/api/inspections/${rec.id}/reviews`, {
        method: "POST", json: { outcome, label: label || null, regions },
      });
    } catch (e) { say(error, e.message); return; }
    say(error, "");
    done(outcome);
  };
  if (rec.verdict === "NG") {
    // The product's catalogue of defect types, when it keeps one: picked from a list, not typed.
    let label = el("input", { placeholder: t("defect type"), "aria-label": t("defect type"), size: 12, class: "label-input" });
    defectTypesOf(rec.station_id).then((types) => {
      if (!types.length) return;
      const pick = el("select", { class: "label-input", "aria-label": t("defect type") },
        el("option", { value: "" }, t("defect type…")), ...types.map((x) => el("option", { value: x }, x)));
      label.replaceWith(pick);
      label = pick;
    });
    return [
      el("button", { type: "button", class: "confirm", onclick: () => send("defect", label.value) }, t("Confirm defect")),
      label,
      el("button", { type: "button", class: "false-alarm", onclick: () => send("false_alarm") }, t("False alarm")),
      error,
    ];
  }
  if (rec.verdict === "OK") {
    return [
      el("button", { type: "button", class: "good", onclick: () => send("good") }, t("Good")),
      el("button", { type: "button", class: "missed", onclick: () => send("missed_defect") }, t("Missed defect")),
      error,
    ];
  }
  return [];
}

// -- pages -----------------------------------------------------------------------------------

const pages = {};

pages.login = () => {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const res = await fetch("/api/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
    });
    if (res.ok) location.href = document.body.dataset.next || "/";
    else document.getElementById("login-error").textContent = t("Wrong user or password.");
  });
};

pages.stations = async () => {
  const tbody = document.querySelector("#stations tbody");
  const refresh = async () => {
    const stations = await api("/api/stations");
    fillRows(tbody, stations.map((s) => [
      el("a", { href: `/stations/${encodeURIComponent(s.station_id)}` }, s.station_id), s.product,
      t(s.running ? (s.paused ? "paused" : "running") : "stopped"), `${s.recipe_id} v${s.recipe_version}`,
      s.model_version ? `v${s.model_version}` : "—", s.counts.OK || 0, s.counts.NG || 0, s.counts.ERROR || 0,
      fmt.num(s.parts_per_second, 1), Object.keys(s.alarms).join(", "),
    ]));
  };
  await refresh();
  setInterval(refresh, 2000);
};

pages.live = () => {
  const station = document.body.dataset.station;
  const recent = document.getElementById("recent");
  const times = [], rates = [];
  const chart = document.getElementById("ng-chart");
  const plot = window.Plotly;
  if (plot) {
    plot.newPlot(chart, [{ x: times, y: rates, mode: "lines", name: t("NG rate"), line: { color: "#c0392b" } }], {
      title: { text: t("NG rate (last 100 parts)"), font: { size: 13 } }, margin: { l: 40, r: 10, t: 30, b: 30 },
      yaxis: { range: [0, 1], tickformat: ".0%" }, height: 220,
    }, { displayModeBar: false, responsive: true });
  }
  const setStatus = (s) => {
    document.getElementById("count-ok").textContent = s.counts.OK || 0;
    document.getElementById("count-ng").textContent = s.counts.NG || 0;
    document.getElementById("count-error").textContent = s.counts.ERROR || 0;
    document.getElementById("rate").textContent = fmt.num(s.parts_per_second, 1);
    const state = document.getElementById("state");
    const key = s.running ? (s.paused ? "paused" : "running") : "stopped";
    state.textContent = t(key);
    state.className = "pill " + key;
    document.getElementById("alarms").replaceChildren(
      ...Object.entries(s.alarms).map(([k, m]) => el("div", { class: "alarm" }, `${k}: ${m}`)));
  };
  const showPart = (p) => {
    const verdict = document.getElementById("verdict");
    verdict.textContent = p.verdict;
    verdict.className = "verdict " + p.verdict;
    document.getElementById("part").textContent = t("part {name} · #{seq}", { name: p.part_id || p.source_name, seq: p.seq ?? "—" });
    const img = document.getElementById("preview");
    if (p.preview) img.src = p.preview;
    definitions(document.getElementById("details"), [
      [t("score / threshold"), fmt.num(p.normalised_score, 2)], [t("regions"), p.regions.length],
      [t("largest region"), p.regions.length ? `${Math.max(...p.regions.map((g) => g.area_px))} px` : "—"],
      [t("recipe"), p.recipe], [t("latency"), `${p.latency_ms} ms`], [t("error"), p.error],
    ]);
    recent.prepend(el("li", { class: "recent-part", "data-key": p.key }, fmt.verdict(p.verdict), " ",
      p.part_id || p.source_name));
    while (recent.children.length > 15) recent.lastChild.remove();
    times.push(new Date(p.decided_at));
    rates.push(p.ng_rate);
    if (times.length > 300) { times.shift(); rates.shift(); }
    // New arrays each time: plotly.react skips data it sees as unchanged (same array objects).
    if (plot) plot.react(chart, [{ x: times.slice(), y: rates.slice(), mode: "lines", line: { color: "#c0392b" } }],
      chart.layout);
  };
  const base = `/api/stations/${encodeURIComponent(station)}`;
  // The shift panel: counts from the records, kept current between reads by the parts seen.
  let shift = null;
  const showShift = () => {
    if (!shift) return;
    const c = shift.counts;
    document.getElementById("shift-name").textContent = shift.shift;
    document.getElementById("shift-ok").textContent = c.OK;
    document.getElementById("shift-ng").textContent = c.NG;
    document.getElementById("shift-error").textContent = c.ERROR;
    const total = c.OK + c.NG + c.ERROR;
    document.getElementById("shift-yield").textContent = total ? `${(100 * c.OK / total).toFixed(1)}%` : "—";
    document.getElementById("shift-since").textContent = shift.reset_by
      ? t("since {time}, reset by {who}", { time: fmt.time(shift.since), who: shift.reset_by })
      : t("since the shift began, {time}", { time: fmt.time(shift.since) });
  };
  const loadShift = async () => { shift = await api(`${base}/shift`); showShift(); };
  document.getElementById("shift-reset").addEventListener("click", async () => {
    const error = document.getElementById("shift-error");
    const reason = prompt(t("Reset the shift counters of {station} for every screen?", { station }) + "\n\n" + t("Why? (kept in the audit trail)"));
    if (reason === null) return;
    try {
      shift = await api(`${base}/shift/reset`, { method: "POST", json: { reason: reason.trim() || null } });
      showShift();
      say(error, "");
    } catch (e) { say(error, e.message); }
  });
  // Raised alarms wait here until someone acknowledges them, with a comment.
  const loadAlarms = async () => {
    const events = await api(`/api/events?station=${encodeURIComponent(station)}&severity=alarm&limit=50`);
    const open = events.filter((a) => a.active && !a.acknowledged_by);
    document.getElementById("alarm-list").hidden = !open.length;
    document.getElementById("open-alarms").replaceChildren(...open.map((a) => el("li", { "data-id": a.id },
      el("span", {}, `${fmt.time(a.at)} · ${a.kind}: ${a.message}`),
      el("button", { type: "button", class: "ack", onclick: async () => {
        const comment = prompt(t("Acknowledge \"{message}\"?", { message: a.message }) + "\n\n" + t("What was done? (kept with the alarm)"));
        if (comment === null) return;
        const error = document.getElementById("alarm-error");
        try {
          await api(`/api/events/${a.id}/ack`, { method: "POST", json: { comment: comment.trim() || t("seen") } });
          say(error, "");
        } catch (e) { say(error, e.message); }
        loadAlarms();
      } }, t("Acknowledge")))));
  };
  // The last NG part stays on screen; the strip shows the recent ones, each a link to its record.
  const loadStrip = async () => {
    const page = await api(`/api/inspections?station=${encodeURIComponent(station)}&verdict=NG&limit=8`);
    document.getElementById("ng-strip").replaceChildren(...page.items.map((r) => el("li", {},
      el("a", { href: `/records/${r.id}`, title: `${r.part_id || r.source_name} · ${fmt.time(r.decided_at)}` },
        el("img", { src: `/api/inspections/${r.id}/overlay?max_side=240`, alt: t("NG part {name}", { name: r.part_id || r.source_name }) })))));
    const last = document.getElementById("last-ng");
    if (page.items.length && last.hidden) {  // before any NG is seen live: the newest stored one
      const r = page.items[0];
      last.src = `/api/inspections/${r.id}/overlay?max_side=768`;
      showLastNg(r.part_id || r.source_name, r.decided_at);
    }
  };
  const showLastNg = (name, at) => {
    document.getElementById("last-ng").hidden = false;
    document.getElementById("no-ng").hidden = true;
    document.getElementById("last-ng-part").textContent = `${name} · ${fmt.time(at)}`;
  };
  let stripTimer = null;
  const source = new EventSource(`${base}/live`);
  source.addEventListener("status", (e) => setStatus(JSON.parse(e.data)));
  source.addEventListener("part", (e) => {
    const p = JSON.parse(e.data);
    showPart(p);
    if (shift && p.verdict in shift.counts) { shift.counts[p.verdict] += 1; showShift(); }
    if (p.verdict === "NG") {
      if (p.preview) document.getElementById("last-ng").src = p.preview;
      showLastNg(p.part_id || p.source_name, p.decided_at);
      clearTimeout(stripTimer);
      stripTimer = setTimeout(loadStrip, 1500);  // once the record is stored; at most one read per burst
    }
  });
  source.addEventListener("alarm", (e) => {
    const a = JSON.parse(e.data);
    if (a.active && a.severity === "alarm") {
      document.getElementById("alarms").prepend(el("div", { class: "alarm" }, `${a.kind}: ${a.message}`));
    }
    setTimeout(loadAlarms, 500);
  });
  source.onerror = () => { document.getElementById("state").textContent = t("reconnecting"); };
  loadShift();
  loadAlarms();
  loadStrip();
  setInterval(loadShift, 15000);  // parts counted between reads are replaced by the records' own count
  setInterval(loadAlarms, 15000);
};

pages.records = async () => {
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#records tbody");
  const limit = 50;
  let offset = 0;
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  const load = async () => {
    const q = new URLSearchParams({ limit, offset });
    for (const [k, v] of new FormData(form)) {
      if (!v) continue;
      q.set(k, k === "since" || k === "until" ? new Date(v).toISOString() : v);
    }
    // The filters live in the page's address too: a view can be bookmarked and shared.
    const shown = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v && !(k === "sort" && v === "-time")) shown.set(k, v);  // the default
    history.replaceState(null, "", shown.toString() ? `?${shown}` : location.pathname);
    const filters = new URLSearchParams(q);
    filters.delete("limit");
    filters.delete("offset");
    document.getElementById("export-csv").href = `/api/inspections/export?${filters}`;
    filters.set("format", "xlsx");
    document.getElementById("export-xlsx").href = `/api/inspections/export?${filters}`;
    const page = await api("/api/inspections?" + q);
    fillRows(tbody, page.items.map((r) => [
      el("input", { type: "checkbox", class: "pick", value: r.id, "data-verdict": r.verdict,
        "aria-label": t("select {name}", { name: r.part_id || r.source_name }) }),
      el("a", { href: `/records/${r.id}` }, fmt.time(r.arrived_at)), r.station_id, r.part_id || r.source_name,
      fmt.verdict(r.verdict), fmt.num(r.normalised_score, 2), `${r.recipe_id} v${r.recipe_version}`,
      r.regions.length, el("span", { class: "review" }, reviewLabel(r.review)),
    ]));
    document.getElementById("page-info").textContent =
      page.total ? t("{first}–{last} of {total}", { first: offset + 1, last: offset + page.items.length, total: page.total }) : t("no records");
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = offset + limit >= page.total;
    const c = page.counts;
    document.getElementById("totals").textContent = page.total
      ? t(page.total === 1 ? "{total} record: {ok} OK · {ng} NG · {error} ERROR · yield {yield}%" : "{total} records: {ok} OK · {ng} NG · {error} ERROR · yield {yield}%",
        { total: page.total, ok: c.OK, ng: c.NG, error: c.ERROR, yield: (100 * c.OK / page.total).toFixed(1) })
      : "";
    const sort = form.elements.sort.value;
    for (const th of document.querySelectorAll("#records th[data-sort]")) {
      const key = th.dataset.sort;
      th.setAttribute("aria-sort", sort === key ? "ascending" : sort === `-${key}` ? "descending" : "none");
    }
  };
  // Many parts, one outcome (a batch of false alarms from one cause): each reviewed on its own.
  document.getElementById("pick-all").addEventListener("change", (ev) => {
    for (const box of tbody.querySelectorAll("input.pick")) box.checked = ev.target.checked;
  });
  const bulk = document.getElementById("bulk-review");
  bulk.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = document.getElementById("bulk-result");
    const ids = [...tbody.querySelectorAll("input.pick:checked")].map((b) => Number(b.value));
    if (!ids.length) { say(result, t("Select the parts to review first.")); return; }
    const form = new FormData(bulk);
    try {
      const out = await api("/api/reviews/bulk", { method: "POST", json: {
        inspection_ids: ids, outcome: form.get("outcome"), label: form.get("label") || null } });
      say(result, t("Reviewed {n} parts.", { n: out.reviewed.length }) + (out.refused.length
        ? " " + t("Refused {n}: {reasons}", { n: out.refused.length, reasons: out.refused.map((x) => x.reason).join("; ") })
        : ""));
      document.getElementById("pick-all").checked = false;
    } catch (e) { say(result, e.message); }
    load();
  });
  // A column's header sorts by it; a second click turns the order round. The order is in the address too.
  for (const th of document.querySelectorAll("#records th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      form.elements.sort.value = form.elements.sort.value === `-${key}` ? key : `-${key}`;
      offset = 0;
      load();
    });
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; load(); });
  document.getElementById("prev").onclick = () => { offset = Math.max(0, offset - limit); load(); };
  document.getElementById("next").onclick = () => { offset += limit; load(); };
  await load();
};

pages.record = async () => {
  const id = document.body.dataset.id;
  const img = document.getElementById("overlay");
  const noImage = document.getElementById("no-image");
  // What a station kept of a part it could not read is no picture: say so, not a broken image.
  img.addEventListener("error", () => {
    img.hidden = true;
    document.getElementById("image-tools").hidden = true;
    noImage.hidden = false;
    noImage.replaceChildren(t("The file kept for this part cannot be shown as an image.") + " ",
      el("a", { href: `/api/inspections/${id}/image` }, t("Download it to see what the station received.")));
  });
  // The kept image with its heat map and boxes, or as the camera took it; fitted or zoomed.
  const zoom = document.getElementById("zoom");
  const fitZoom = () => {
    const z = zoom.value;
    img.style.width = z === "fit" ? "" : `${img.naturalWidth * Number(z)}px`;
    img.style.maxWidth = z === "fit" ? "" : "none";
  };
  zoom.addEventListener("change", fitZoom);
  img.addEventListener("load", fitZoom);
  const view = (raw) => {
    img.src = `/api/inspections/${id}/${raw ? "image" : "overlay"}`;
    document.getElementById("show-raw").setAttribute("aria-pressed", String(raw));
    document.getElementById("show-overlay").setAttribute("aria-pressed", String(!raw));
  };
  document.getElementById("show-raw").onclick = () => view(true);
  document.getElementById("show-overlay").onclick = () => view(false);
  const load = async () => {
    let r;
    try {
      r = await api(`/api/inspections/${id}`);
    } catch (e) {
      document.getElementById("record-main").replaceChildren(
        el("div", { class: "card narrow" }, el("p", { id: "error-detail" }, e.message), el("a", { href: "/records" }, t("Records"))));
      return;
    }
    document.getElementById("title").textContent = r.part_id || r.source_name;
    const v = document.getElementById("verdict");
    v.textContent = r.verdict;
    v.className = "verdict " + r.verdict;
    if (r.evidence.some((e) => e.kind === "image")) {
      if (!img.src) img.src = `/api/inspections/${id}/overlay`;
      document.getElementById("image-tools").hidden = false;
    }
    else {
      img.hidden = true;
      const note = noImage;
      note.hidden = false;
      if (r.measurements.length) {  // a sensor window: its picture is its trend and spectrum
        note.replaceChildren(t("A window of a sensor channel:") + " ",
          el("a", { href: `/sensors/${encodeURIComponent(r.station_id)}` }, t("see its trends and envelope spectrum")));
      }
    }
    if (r.channels.length) {
      document.getElementById("channels-section").hidden = false;
      fillRows(document.querySelector("#channels tbody"), r.channels.map((c) => [
        c.channel, fmt.verdict(c.verdict), fmt.num(c.normalised_score, 3), c.diagnosis || "—", c.error || ""]));
    }
    if (r.measurements.length) {
      document.getElementById("measured-section").hidden = false;
      definitions(document.getElementById("measured"), r.measurements.map((m) =>
        [`${m.name}${m.channel !== "main" ? " (" + m.channel + ")" : ""}`, fmt.num(m.value, 4)]));
    }
    const reference = r.evidence.find((e) => e.kind === "reference");
    if (reference) {
      document.getElementById("reference").src = `/api/inspections/${id}/evidence/${reference.sha256}`;
      document.getElementById("reference-figure").hidden = false;
    }
    definitions(document.getElementById("fields"), [
      [t("station"), r.station_id], [t("part id"), r.part_id], [t("source"), r.source_name],
      [t("score"), fmt.num(r.score, 4)], [t("score / threshold"), fmt.num(r.normalised_score, 3)],
      [t("threshold"), fmt.num(r.threshold, 4)], [t("recipe"), `${r.recipe_id} v${r.recipe_version}`],
      [t("model"), `${r.model_name || ""} ${r.model_version ? "v" + r.model_version : ""} ${(r.model_sha256 || "").slice(0, 12)}`],
      [t("arrived"), fmt.time(r.arrived_at)], [t("latency"), `${fmt.num(r.latency_ms, 1)} ms`], [t("error"), r.error],
      ...(r.diagnosis ? [[t("diagnosis"), r.diagnosis]] : []),
      ...r.rules.map((o) => [`${o.met ? "✔" : "✘"} ${o.rule}`, `${fmt.num(o.value, 3)} / ${fmt.num(o.limit, 3)}`]),
    ]);
    // A named region's type can be corrected when the defect is confirmed.
    const corrected = (r.review && r.review.regions) || [];
    const types = r.regions.map((g, i) => {
      const now = (corrected.find((x) => x.index === i) || {}).label || g.label || "";
      return el("input", { value: now, size: 10, class: "region-label", "data-index": i, "data-was": now, "aria-label": t("type of region {n}", { n: i + 1 }) });
    });
    fillRows(document.querySelector("#regions tbody"), r.regions.map((g, i) => [
      i + 1, g.label ? types[i] : "—", fmt.num(g.confidence, 2),
      g.x, g.y, g.width, g.height, g.area_px, fmt.num(g.area_mm2, 2), fmt.num(g.max_score, 2)]));
    const regionLabels = () => types
      .filter((t) => t.value.trim() && t.value.trim() !== t.dataset.was)
      .map((t) => ({ index: Number(t.dataset.index), label: t.value.trim() }));
    document.getElementById("reviews").replaceChildren(...r.reviews.map((x) =>
      el("li", {}, `${fmt.time(x.at)} · ${reviewLabel(x)}${x.note ? " · " + x.note : ""}`)));
    document.getElementById("review-actions").replaceChildren(...reviewButtons(r, load, regionLabels));
  };
  await load();
};

pages.review = async () => {
  const queue = document.getElementById("queue");
  const station = document.getElementById("review-station");
  const load = async () => {
    const q = new URLSearchParams({ limit: 24 });
    if (station.value) q.set("station", station.value);
    const [page, summary] = await Promise.all([
      api("/api/reviews/queue?" + q), api("/api/reviews/summary" + (station.value ? "?station=" + station.value : "")),
    ]);
    document.getElementById("pending").textContent = t("{n} waiting", { n: summary.pending });
    queue.replaceChildren(...page.items.map((r) => {
      const card = el("div", { class: "card review-item", "data-id": r.id },
        el("a", { href: `/records/${r.id}` }, el("img", { src: `/api/inspections/${r.id}/overlay?max_side=320`,
          alt: t("part") })),
        el("div", {}, fmt.verdict(r.verdict), " ", r.part_id || r.source_name, " · ", fmt.num(r.normalised_score, 2),
          el("small", { class: "station" }, " · " + r.station_id)));
      card.append(el("div", { class: "actions" }, reviewButtons(r, () => { card.remove(); load(); })));
      return card;
    }));
    if (!page.items.length) queue.replaceChildren(el("p", {}, t("Nothing waiting for review.")));
  };
  station.onchange = load;
  await load();
};

function metricsCell(m) {
  const one = (x) => (x && x.n ? t("{fa} false alarms, {missed} missed of {n}", { fa: x.false_alarms, missed: x.missed_defects, n: x.n }) +
    (x.image_auroc !== null && x.image_auroc !== undefined ? `, AUROC ${fmt.num(x.image_auroc, 3)}` : "") : "—");
  if (!m || !m.candidate) return "—";
  return el("span", {}, el("span", { class: "metric-active" }, one(m.active)), " → ",
    el("b", { class: "metric-candidate" }, one(m.candidate)),
    m.in_training_set ? " " + t("({n} of them trained on)", { n: m.in_training_set }) : "");
}

pages.models = async () => {
  const state = {};  // per station: its active version, and whether a threshold is set on the line
  const load = async () => {
    for (const section of document.querySelectorAll(".model-station")) {
      const s = section.dataset.station;
      const [versions, jobs, status] = await Promise.all([
        api("/api/models?station=" + encodeURIComponent(s)), api("/api/training-jobs?station=" + encodeURIComponent(s)),
        api("/api/stations/" + encodeURIComponent(s)),
      ]);
      const active = versions.find((v) => v.status === "active");
      state[s] = { status, active };
      section.querySelector(".thr-value").textContent = fmt.num(status.threshold, 4);
      section.querySelector(".thr-source").textContent = status.threshold_set ? t("(set on the line)") : t("(calibrated)");
      // Rolling back needs a parent: the button is not offered without one.
      section.querySelector("button.rollback").hidden = !(active && active.parent_id);
      section.querySelector("button.pause").textContent = status.paused ? t("Resume the station") : t("Pause the station");
      fillRows(section.querySelector(".versions tbody"), versions.map((v) => [
        `v${v.version}`, el("span", { class: "pill " + v.status }, t(v.status)),
        v.parent_id ? "v" + (versions.find((x) => x.id === v.parent_id) || {}).version : "—",
        v.trained_on.source === "package"
          ? t("package {name} v{version} from {publisher}", { name: v.trained_on.package, version: v.trained_on.package_version, publisher: v.trained_on.publisher })
          : t("{n} images ({source})", { n: v.trained_on.images ?? "?", source: v.trained_on.source || "" }), metricsCell(v.metrics),
        t("{time} by {who}", { time: fmt.time(v.created_at), who: v.created_by }),
        v.status === "active" ? "" : el("button", { type: "button", class: "activate", onclick: () => activate(section, v) },
          t("Activate")),
      ]));
      section.querySelector(".jobs").replaceChildren(...jobs.map((j) =>
        el("li", {}, `#${j.id} ${j.status} · ${j.message || ""} · ${fmt.time(j.created_at)} by ${j.requested_by}`)));
    }
    const recipes = await api("/api/recipes");
    fillRows(document.querySelector("#recipes tbody"), recipes.map((r) => [
      r.recipe_id, r.version, r.content_sha256.slice(0, 12), r.active_on.join(", "), fmt.time(r.created_at)]));
    const packages = await api("/api/packages");
    fillRows(document.querySelector("#packages tbody"), packages.map((k) => [k.name, `v${k.version}`, k.publisher,
      k.records ? t("{n} records", { n: k.records.count }) : (k.lineage.kind || t("model")), t("{time} by {who}", { time: fmt.time(k.created_at), who: k.exported_by }),
      fmt.time(k.expires_at)]));
  };
  // A package from another plant: verified by the server before anything is installed.
  const packageForm = document.getElementById("import-package");
  packageForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = document.getElementById("package-error");
    const done = document.getElementById("package-done");
    const file = packageForm.querySelector("input[type=file]").files[0];
    const station = new FormData(packageForm).get("station");
    say(done, "");
    if (!file) { say(error, t("Choose the package archive (.tar, .tar.gz or .zip) first.")); return; }
    try {
      const query = station ? "?station=" + encodeURIComponent(station) : "";
      const out = await api("/api/packages" + query, { method: "POST", body: file,
        headers: { "Content-Type": file.name.endsWith(".zip") ? "application/zip" : "application/x-tar" } });
      const k = out.package;
      say(done, out.model_version
        ? t("Verified and installed {name} v{version} from {publisher}: candidate version v{candidate} of {station}",
          { name: k.name, version: k.version, publisher: k.publisher, candidate: out.model_version.version, station: out.model_version.station_id })
        : t("Verified and installed {name} v{version} from {publisher}.", { name: k.name, version: k.version, publisher: k.publisher }));
      say(error, "");
      packageForm.reset();
    } catch (e) { say(error, e.message); }
    await load();
  });
  const act = async (section, request) => {
    const error = section.querySelector(".action-error");
    try { await request(); say(error, ""); } catch (e) { say(error, e.message); }
    await load();
  };
  // An engineering action is confirmed by giving its reason, which the audit trail keeps.
  const reasonFor = (section, question) => {
    const reason = prompt(`${question}\n\n${t("Why? (kept in the audit trail)")}`);
    if (reason === null) return null;  // cancelled
    if (!reason.trim()) {
      say(section.querySelector(".action-error"), t("Nothing was changed: give a reason."));
      return null;
    }
    return reason.trim();
  };
  const activate = (section, v) => {
    const { status } = state[section.dataset.station] || {};
    // A threshold set on the line is a score of the old model: say that activation drops it.
    const dropped = status && status.threshold_set
      ? " " + t("The threshold set on the line ({threshold}) is dropped: v{version} decides at its own calibrated threshold.",
        { threshold: fmt.num(status.threshold, 4), version: v.version })
      : "";
    const reason = reasonFor(section, t("Activate v{version} on {station}?", { version: v.version, station: section.dataset.station }) + dropped);
    if (reason === null) return;
    act(section, () => api(`/api/models/${v.id}/activate`, { method: "POST", json: { reason } }));
  };
  const typeLoaders = [];
  document.querySelectorAll(".model-station").forEach((section) => {
    const input = section.querySelector(".thr-input");
    const error = section.querySelector(".thr-error");
    const preview = section.querySelector(".thr-preview");
    // Before anything is set: what the typed threshold would have done to the recent parts.
    const previewOf = async (value) => {
      const q = new URLSearchParams({ threshold: value, parts: 500 });
      const r = await api(`/api/stations/${encodeURIComponent(section.dataset.station)}/threshold/preview?${q}`);
      return r.parts
        ? t("Of the last {parts} parts, {then} would be NG instead of {now}: {up} OK would turn NG, {down} NG would turn OK (by score alone; region rules may keep some OK).",
          { parts: r.parts, then: r.ng_then, now: r.ng_now, up: r.ok_to_ng, down: r.ng_to_ok })
        : t("No recent parts of this model to preview on.");
    };
    let previewTimer = null;
    input.addEventListener("input", () => {
      clearTimeout(previewTimer);
      const v = Number(input.value);
      if (!input.value.trim() || !Number.isFinite(v) || v <= 0) { preview.textContent = ""; return; }
      previewTimer = setTimeout(async () => {
        try { preview.textContent = await previewOf(v); } catch (e) { preview.textContent = ""; }
      }, 300);
    });
    const setThreshold = async (value) => {
      const what = value === null ? t("return to the model's calibrated threshold") : t("set the threshold to {value}", { value });
      let effect = "";
      if (value !== null) { try { effect = "\n\n" + await previewOf(value); } catch (e) { /* asked anyway */ } }
      const reason = reasonFor(section, t("On {station}, {what}?", { station: section.dataset.station, what }) + effect);
      if (reason === null) return;
      try {
        await api(`/api/stations/${encodeURIComponent(section.dataset.station)}/threshold`,
          { method: "PUT", json: { threshold: value, reason } });
        say(error, "");
        input.value = "";
        preview.textContent = "";
      } catch (e) { say(error, e.message); }
      load();
    };
    section.querySelector(".thr-set").onclick = () => {
      const v = Number(input.value);
      if (!input.value.trim() || !Number.isFinite(v) || v <= 0) {
        say(error, t("The threshold is a raw score above 0 (a part scoring above it is NG)."));
        return;
      }
      setThreshold(v);
    };
    section.querySelector(".thr-reset").onclick = () => setThreshold(null);
    // The product's defect types, one per line: what reviewers pick from.
    const types = section.querySelector(".types-input");
    const product = () => (state[section.dataset.station] || {}).status?.product;
    const showTypes = async () => {
      if (!product()) return;
      const d = await api(`/api/products/${encodeURIComponent(product())}/defect-types`);
      types.value = d.types.join("\n");
      section.querySelector(".types-product").textContent = product();
    };
    section.querySelector(".types-save").onclick = async () => {
      const error = section.querySelector(".types-error");
      try {
        await api(`/api/products/${encodeURIComponent(product())}/defect-types`, { method: "PUT",
          json: { types: types.value.split("\n").map((x) => x.trim()).filter(Boolean) } });
        say(error, "");
        await showTypes();
      } catch (e) { say(error, e.message); }
    };
    typeLoaders.push(showTypes);
    section.querySelector("button.train").onclick = () => act(section, () =>
      api("/api/training-jobs", { method: "POST", json: { station_id: section.dataset.station } }));
    section.querySelector("button.update").onclick = () => act(section, () =>
      api("/api/training-jobs", { method: "POST", json: { station_id: section.dataset.station, mode: "update" } }));
    section.querySelector("button.pause").onclick = () => {
      const station = section.dataset.station;
      const paused = (state[station] || {}).status?.paused;
      const reason = reasonFor(section, paused ? t("Resume {station}: take parts again?", { station })
        : t("Pause {station}: take no new parts until resumed? Parts in flight are finished and recorded.", { station }));
      if (reason === null) return;
      act(section, () => api(`/api/stations/${encodeURIComponent(station)}/${paused ? "resume" : "pause"}`,
        { method: "POST", json: { reason } }));
    };
    section.querySelector("button.rollback").onclick = () => {
      const reason = reasonFor(section, t("Roll {station} back to the parent of its active version?", { station: section.dataset.station }));
      if (reason === null) return;
      act(section, () => api(`/api/stations/${encodeURIComponent(section.dataset.station)}/rollback`,
        { method: "POST", json: { reason } }));
    };
  });
  await load();
  for (const showTypes of typeLoaders) showTypes();  // once: not redrawn under the engineer's typing
  setInterval(load, 5000);
};

pages.admin = async () => {
  const load = async () => {
    const [users, keys, audit, chain] = await Promise.all([
      api("/api/users"), api("/api/api-keys"), api("/api/audit?limit=100"), api("/api/audit/verify")]);
    // A display name (any script) is edited in place and kept when the field is left.
    const nameField = (u) => el("input", { value: u.display_name || "", size: 14, class: "display-name",
      "aria-label": t("display name of {user}", { user: u.username }), onchange: async (ev) => {
        const error = document.getElementById("user-error");
        try {
          await api(`/api/users/${encodeURIComponent(u.username)}`, { method: "PATCH", json: { display_name: ev.target.value } });
          say(error, "");
        } catch (e) { say(error, e.message); }
        load();
      } });
    fillRows(document.querySelector("#users tbody"), users.map((u) => [u.username, nameField(u), t(u.role), u.active ? t("yes") : t("no"),
      fmt.time(u.created_at), el("button", { type: "button", onclick: async () => {
        const error = document.getElementById("user-error");
        try {
          await api(`/api/users/${encodeURIComponent(u.username)}`, { method: "PATCH", json: { active: !u.active } });
          say(error, "");
        } catch (e) { say(error, e.message); }
        load();
      } }, u.active ? t("Disable") : t("Enable"))]));
    fillRows(document.querySelector("#keys tbody"), keys.map((k) => [k.id, k.name, k.username, k.scopes.join(", "),
      k.stations ? k.stations.join(", ") : t("any"), k.prefix + "…",
      fmt.time(k.last_used_at), k.revoked ? t("revoked") : el("button", { type: "button", onclick: async () => {
        await api(`/api/api-keys/${k.id}`, { method: "DELETE" }); load();
      } }, t("Revoke"))]));
    fillRows(document.querySelector("#audit tbody"), audit.map((a) => [fmt.time(a.at), a.actor, a.action, a.target,
      a.outcome, JSON.stringify(a.detail)]));
    const c = document.getElementById("chain");
    c.textContent = chain.intact ? t("chain intact ({n} entries)", { n: chain.entries }) : t("chain broken: {problem}", { problem: chain.problem });
    c.className = "pill " + (chain.intact ? "running" : "stopped");
  };
  // Walking every record takes seconds per hundred thousand: on request, not on each load.
  const chainsForm = document.getElementById("verify-chains");
  chainsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const state = document.getElementById("chains-state");
    const error = document.getElementById("chains-error");
    const station = new FormData(chainsForm).get("station").trim();
    state.textContent = t("verifying…");
    state.className = "pill";
    try {
      const found = await api("/api/audit/chains" + (station ? `?station=${encodeURIComponent(station)}` : ""));
      const rows = [...found.records.map((r) => [t("records"), r]), ...found.reviews.map((r) => [t("reviews"), r])];
      fillRows(document.querySelector("#chains tbody"), rows.map(([kind, r]) => [r.station_id, kind, r.records,
        r.unchained, `${r.head_pos} · ${r.head_sha256.slice(0, 12)}…`, r.intact ? t("intact") : r.problems.join("; ")]));
      state.textContent = found.intact ? t("intact") : t("tampered");
      state.className = "pill " + (found.intact ? "running" : "stopped");
      say(error, "");
    } catch (e) { state.textContent = ""; say(error, e.message); }
  });
  const userForm = document.getElementById("new-user");
  userForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = document.getElementById("user-error");
    try {
      await api("/api/users", { method: "POST", json: Object.fromEntries(new FormData(userForm)) });
      userForm.reset();
      say(error, "");
    } catch (e) { say(error, e.message); }
    load();
  });
  const keyForm = document.getElementById("new-key");
  keyForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(keyForm);
    const body = { username: form.get("username"), name: form.get("name"), scopes: form.getAll("scopes") };
    const stations = form.get("stations").split(/[\s,]+/).filter((s) => s);
    if (stations.length) body.stations = stations;
    const error = document.getElementById("key-error");
    try {
      const made = await api("/api/api-keys", { method: "POST", json: body });
      document.getElementById("new-key-value").textContent = t("key (shown once): {key}", { key: made.key });
      say(error, "");
    } catch (e) { say(error, e.message); }
    load();
  });
  await load();
};

// -- sensors: trends of a station's measurements and its latest envelope spectrum ------------------
const FAMILY_COLOURS = {
  outer_race: "#c0392b", inner_race: "#8e44ad", rolling_element: "#d35400", cage: "#16a085",
  unbalance: "#2c3e50", misalignment: "#7f8c8d",
};

function trend(div, title, points, unit, extra = {}) {
  const plot = window.Plotly;
  if (!plot) return;
  const ok = points.filter((x) => x.verdict === "OK"), ng = points.filter((x) => x.verdict !== "OK");
  const trace = (pts, name, colour) => ({
    x: pts.map((x) => new Date(x.at)), y: pts.map((x) => x.value), name, mode: "markers",
    marker: { color: colour, size: 5 },
  });
  plot.react(div, [trace(ok, "OK", "#27ae60"), trace(ng, "NG", "#c0392b")], {
    title: { text: title, font: { size: 13 } }, height: 230, margin: { l: 50, r: 10, t: 30, b: 30 },
    yaxis: { title: { text: unit } }, showlegend: false, ...extra,
  }, { displayModeBar: false, responsive: true });
}

function zoneLines(limits) {
  if (!limits) return {};
  const names = ["A/B", "B/C", "C/D"];
  return {
    shapes: limits.map((y) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y,
      line: { dash: "dot", width: 1, color: "#e67e22" } })),
    annotations: limits.map((y, i) => ({ xref: "paper", x: 1, y, text: names[i], showarrow: false,
      xanchor: "right", yanchor: "bottom", font: { size: 10, color: "#e67e22" } })),
  };
}

function envelopeChart(div, c) {
  const plot = window.Plotly;
  if (!plot || !c.envelope) return;
  const step = c.envelope_hz_step || 1;
  const shapes = [], annotations = [];
  for (const fam of (c.diagnosis ? c.diagnosis.evidence : [])) {
    if (fam.family === "unbalance" || fam.family === "misalignment") continue;  // velocity spectrum lines
    for (const line of fam.lines) {
      shapes.push({ type: "line", x0: line.expected_hz, x1: line.expected_hz, yref: "paper", y0: 0, y1: 1,
        line: { dash: "dot", width: 1, color: FAMILY_COLOURS[fam.family] || "#999" } });
      annotations.push({ x: line.expected_hz, yref: "paper", y: 1, text: line.name, showarrow: false,
        textangle: -90, xanchor: "right", yanchor: "top", font: { size: 9, color: FAMILY_COLOURS[fam.family] } });
    }
  }
  plot.react(div, [{ x: c.envelope.map((_, i) => i * step), y: c.envelope, mode: "lines", name: "envelope",
    line: { color: "#34495e", width: 1 } }], {
    title: { text: t("Squared-envelope spectrum, band {band} Hz", { band: c.band_hz ? c.band_hz.map((x) => Math.round(x)).join("–") : "?" }),
      font: { size: 13 } },
    height: 320, margin: { l: 50, r: 10, t: 30, b: 40 }, xaxis: { title: { text: "Hz" } },
    yaxis: { title: { text: t("modulation") } }, shapes, annotations, showlegend: false,
  }, { displayModeBar: false, responsive: true });
}

pages.sensors = async () => {
  const form = document.getElementById("sensor-pick");
  const station = document.body.dataset.station;
  const note = document.getElementById("sensor-note");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const s = form.elements.station.value.trim();
    if (s) location.href = `/sensors/${encodeURIComponent(s)}?limit=${form.elements.limit.value}`;
  });
  if (!station) { note.textContent = t("Choose a station whose records measure a sensor channel."); return; }
  const limit = new URLSearchParams(location.search).get("limit") || "500";
  form.elements.limit.value = limit;
  const q = (name) => `/api/measurements?${new URLSearchParams({ station, name, limit })}`;
  const load = async () => {
    const measured = await api(`/api/measurements/names?station=${encodeURIComponent(station)}`);
    if (!measured.length) { note.textContent = t("No measurements in the records of {station}.", { station }); return; }
    let condition = null;
    try {
      condition = await api(`/api/conditions/latest?station=${encodeURIComponent(station)}`);
    } catch (e) { note.textContent = e.message; }
    const [rms, kurtosis, velocity] = await Promise.all(["rms", "kurtosis", "velocity_rms_mm_s"].map((n) => api(q(n))));
    const scores = await api(`/api/inspections?${new URLSearchParams({ station, limit: Math.min(500, +limit) })}`);
    trend(document.getElementById("trend-rms"), "RMS", rms.points, "g");
    trend(document.getElementById("trend-kurtosis"), t("Kurtosis"), kurtosis.points, "");
    trend(document.getElementById("trend-velocity"), t("Velocity RMS 10–1000 Hz (ISO 20816 zones)"), velocity.points,
      "mm/s", zoneLines(condition && condition.condition.iso_limits));
    trend(document.getElementById("trend-score"), t("Score / threshold"), scores.items.slice().reverse()
      .filter((r) => r.normalised_score !== null)
      .map((r) => ({ at: r.arrived_at, value: r.normalised_score, verdict: r.verdict })), "",
      { shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 1, y1: 1, line: { dash: "dash", color: "#c0392b" } }] });
    if (!condition) return;
    const c = condition.condition;
    definitions(document.getElementById("condition"), [
      [t("window"), el("a", { href: `/records/${condition.inspection_id}` }, condition.source_name)],
      [t("verdict"), fmt.verdict(condition.verdict)], [t("diagnosis"), condition.diagnosis || t("none stands out")],
      [t("velocity RMS"), t("{value} mm/s (zone {zone})", { value: fmt.num(c.velocity_rms_mm_s, 2), zone: c.iso_zone || "—" })],
      [t("kurtosis"), fmt.num(c.measurements && c.measurements.kurtosis, 2)],
    ]);
    envelopeChart(document.getElementById("envelope"), c);
    fillRows(document.querySelector("#families tbody"), (c.diagnosis ? c.diagnosis.evidence : []).map((f) => [
      el("span", { class: f.family === condition.diagnosis ? "diagnosed" : "" }, f.family),
      fmt.num(f.strength_db, 1), fmt.num(f.healthy_db, 1), fmt.num(f.rise_db, 1),
      f.lines.map((l) => `${l.name} ${fmt.num(l.found_hz, 1)} Hz ${fmt.num(l.prominence_db, 1)} dB`).join("; "),
    ]));
  };
  await load();
  setInterval(load, 5000);
};

// Re-inspection runs: each run's verdict table, and the parts whose verdict would change.
pages.reinspections = async () => {
  const error = document.getElementById("runs-error");
  const show = async (run) => {
    const detail = await api(`/api/reinspections/${run.id}`);
    document.getElementById("run").hidden = false;
    document.getElementById("run-name").textContent = t("Run {name}", { name: detail.name });
    fillRows(document.querySelector("#verdict-table tbody"), detail.table.map((row) => [
      row.original ? fmt.verdict(row.original) : t("no record"), fmt.verdict(row.verdict), String(row.parts),
    ]));
    fillRows(document.querySelector("#changed tbody"), detail.changed.map((r) => [
      r.inspection_id ? el("a", { href: `/records/${r.inspection_id}` }, r.source_name) : r.source_name,
      fmt.verdict(r.original_verdict), fmt.num(r.original_score), fmt.verdict(r.verdict), fmt.num(r.score),
      String(r.regions),
    ]));
  };
  try {
    const runs = await api("/api/reinspections");
    fillRows(document.querySelector("#runs tbody"), runs.map((run) => [
      el("button", { type: "button", class: "link", onclick: () => show(run).catch((e) => say(error, e.message)) },
        run.name),
      `${run.model_name} (${run.model_sha256.slice(0, 12)})`, fmt.num(run.threshold, 4),
      run.source.folder || t("records"), `${run.stored} / ${run.total}`, fmt.time(run.created_at),
      run.finished_at ? fmt.time(run.finished_at) : t("not finished"),
    ]));
    say(error, runs.length ? "" : t("No re-inspection runs yet: start one with huoyan batch."));
  } catch (e) { say(error, e.message); }
};

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) logout.onclick = async () => { await api("/api/session", { method: "DELETE" }); location.href = "/login"; };
  // The language is the user's, on every screen they log in to; "" follows the browser.
  const language = document.getElementById("language");
  if (language) language.onchange = async () => {
    await api("/api/me/language", { method: "PUT", json: { language: language.value || null } });
    location.reload();
  };
  const page = pages[document.body.dataset.page];
  if (page) page();
});
