// The quality page: control charts of a station's records with their rule violations,
// capability, the score-drift view and the station's alarms (acknowledged with a comment).
// Loaded after app.js, whose helpers (api, el, fmt, say, fillRows) it uses.
"use strict";

const CHART_NAMES = {
  p: t("fraction NG (p)"), np: t("number NG (np)"), "laney-p": t("fraction NG (Laney p′)"), c: t("defects (c)"),
  u: t("defects per part (u)"), i: t("individual values"), mr: t("moving range"), xbar: t("subgroup mean (X̄)"),
  r: t("subgroup range (R)"), s: t("subgroup SD (S)"), ewma: "EWMA", cusum: t("CUSUM (C+ and −C−)"),
};

// One series of a report, drawn with its limits; a violated point is red, its rules on hover.
function controlChart(div, labels, series, violations) {
  const plot = window.Plotly;
  if (!plot) return;
  const x = labels;
  const flagged = new Map();
  for (const v of violations.filter((v) => v.chart === series.chart)) {
    flagged.set(v.point, [...(flagged.get(v.point) || []), `${v.rule}: ${v.text}`]);
  }
  const excluded = new Set(series.excluded);
  const traces = [
    { x, y: series.statistic, name: CHART_NAMES[series.chart] || series.chart, mode: "lines+markers",
      line: { color: "#34495e", width: 1 }, marker: { size: 5, color: "#34495e" } },
    { x, y: series.center, name: "centre", mode: "lines", line: { color: "#27ae60", dash: "dash", width: 1 } },
    { x, y: series.ucl, name: "UCL", mode: "lines", line: { color: "#c0392b", dash: "dot", width: 1, shape: "hv" } },
    { x, y: series.lcl, name: "LCL", mode: "lines", line: { color: "#c0392b", dash: "dot", width: 1, shape: "hv" } },
  ];
  if (series.lower_statistic) {
    traces.push({ x, y: series.lower_statistic, name: "−C−", mode: "lines+markers",
      line: { color: "#7f8c8d", width: 1 }, marker: { size: 4 } });
  }
  const bad = [...flagged.keys()];
  traces.push({
    x: bad.map((i) => x[i]), y: bad.map((i) => series.statistic[i]), name: "rule violated", mode: "markers",
    marker: { size: 11, color: "#c0392b", symbol: "circle-open", line: { width: 2 } },
    text: bad.map((i) => flagged.get(i).join("<br>")), hovertemplate: "%{x}<br>%{text}<extra></extra>",
  });
  const out = [...excluded];
  traces.push({
    x: out.map((i) => x[i]), y: out.map((i) => series.statistic[i]), name: "excluded (Phase I)", mode: "markers",
    marker: { size: 9, color: "#bdc3c7", symbol: "x" },
  });
  plot.react(div, traces, {
    title: { text: CHART_NAMES[series.chart] || series.chart, font: { size: 13 } }, height: 300,
    margin: { l: 60, r: 10, t: 30, b: 60 }, xaxis: { type: "category", automargin: true }, showlegend: false,
  }, { displayModeBar: false, responsive: true });
}

function limitsText(limits, points) {
  if (limits.version) {
    return t("Phase II: frozen limits version {version}, frozen by {who} on {time} from {points} points.",
      { version: limits.version, who: limits.frozen_by, time: fmt.time(limits.frozen_at), points: limits.points });
  }
  return t("Phase I: limits estimated from {used} of {points} points on this page.", { used: limits.points, points });
}

function capabilityRows(cap) {
  const row = (name, x) => (x ? [name, fmt.num(x.value, 3), `${fmt.num(x.low, 3)} – ${fmt.num(x.high, 3)}`] : null);
  return [row("Cp", cap.cp), row("Cpk", cap.cpk), row("Pp", cap.pp), row("Ppk", cap.ppk)].filter(Boolean);
}

pages.quality = async () => {
  const form = document.getElementById("quality-pick");
  const station = document.body.dataset.station;
  const error = document.querySelector(".quality-error");
  const params = new URLSearchParams(location.search);
  for (const name of ["metric", "chart", "by", "hours", "rules"]) {
    if (params.get(name)) form.elements[name].value = params.get(name);
  }
  form.elements.estimate.checked = params.get("estimate") === "1";
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = form.elements;
    const s = f.station.value.trim();
    const q = new URLSearchParams({ metric: f.metric.value.trim(), chart: f.chart.value, by: f.by.value,
      hours: f.hours.value, rules: f.rules.value });
    if (f.estimate.checked) q.set("estimate", "1");
    if (s) location.href = `/quality/${encodeURIComponent(s)}?${q}`;
  });
  if (!station) { say(error, t("Choose a station.")); return; }
  const f = form.elements;
  const since = () => new Date(Date.now() - Number(f.hours.value) * 3600e3).toISOString();
  // Phase I: points the engineer leaves out of the limits (clicked on the chart), kept in the URL.
  const excluded = new Set((params.get("exclude") || "").split(",").filter(Boolean).map(Number));
  const chartQuery = () => {
    const q = new URLSearchParams({ station, metric: f.metric.value.trim(), chart: f.chart.value,
      by: f.by.value, since: since(), rules: f.rules.value, estimate: f.estimate.checked ? "true" : "false" });
    for (const i of excluded) q.append("exclude", i);
    return q;
  };

  const showChart = async () => {
    const main = document.getElementById("chart-main"), second = document.getElementById("chart-second");
    try {
      const r = await api(`/api/quality/charts?${chartQuery()}`);
      say(error, "");
      controlChart(main, r.labels, r.charts[0], r.violations);
      if (r.charts[1]) controlChart(second, r.labels, r.charts[1], r.violations);
      else { second.replaceChildren(); }
      document.getElementById("limits-note").textContent = limitsText(r.charts[0].limits, r.labels.length);
      fillRows(document.querySelector("#violations tbody"), r.violations.map((v) => [
        CHART_NAMES[v.chart] || v.chart, v.label, v.rule, v.text]));
      const capSection = document.getElementById("capability-section");
      capSection.hidden = !r.capability;
      if (r.capability) {
        const c = r.capability;
        fillRows(document.querySelector("#capability tbody"), capabilityRows(c));
        document.getElementById("capability-note").textContent =
          t("n {n}, mean {mean}, σ within {within}, overall {overall}; spec {lsl} to {usl}; expected {ppm} ppm out of spec.", {
            n: c.n, mean: fmt.num(c.mean, 4), within: fmt.num(c.sigma_within, 4), overall: fmt.num(c.sigma_overall, 4),
            lsl: c.lsl ?? "—", usl: c.usl ?? "—", ppm: fmt.num(c.ppm_expected_overall, 0) });
      }
      const reportForm = document.getElementById("report-pick");
      if ((f.by.value === "shift" || f.by.value === "lot") && r.labels.length && !reportForm.elements.period.value) {
        reportForm.elements.kind.value = f.by.value;
        reportForm.elements.period.value = r.labels[r.labels.length - 1];
      }
      const freeze = document.getElementById("freeze");
      if (freeze) freeze.hidden = !f.estimate.checked;
      if (f.estimate.checked && !main.dataset.clicks) {
        main.dataset.clicks = "yes";
        main.on("plotly_click", (ev) => {
          const i = ev.points[0].pointIndex;
          if (ev.points[0].curveNumber !== 0) return;
          if (excluded.has(i)) excluded.delete(i); else excluded.add(i);
          const u = new URL(location.href);
          u.searchParams.set("exclude", [...excluded].join(","));
          history.replaceState(null, "", u);
          showChart();
        });
      }
    } catch (e) {
      say(error, e.message);
      main.replaceChildren(); second.replaceChildren();
    }
  };

  const showDrift = async () => {
    const note = document.getElementById("drift-note");
    try {
      const d = await api(`/api/quality/drift?${new URLSearchParams({ station })}`);
      note.replaceChildren(
        el("span", { class: `pill drift-${d.level}` }, t(d.level)), " ",
        t(d.reference === "calibration"
          ? "{recent} OK scores against the model's calibration ({size} good parts)"
          : "{recent} OK scores against the first {size} OK scores here", { recent: d.recent, size: d.reference_size }) +
        `: PSI ${fmt.num(d.psi, 3)}, KS ${fmt.num(d.ks_statistic, 3)} (p ${Number(d.ks_p_value).toPrecision(2)})` +
        (d.alarm ? t("; the EWMA is outside its limits.") : "."));
      controlChart(document.getElementById("drift-chart"), d.chart.statistic.map((_, i) => `${i + 1}`),
        { ...d.chart, chart: "ewma" }, []);
    } catch (e) {
      note.textContent = e.message;
    }
  };

  const showAlarms = async () => {
    const events = await api(`/api/events?${new URLSearchParams({ station, limit: 50 })}`);
    const ackError = document.querySelector(".ack-error");
    fillRows(document.querySelector("#alarms tbody"), events.map((e) => {
      let ack = "";
      if (e.acknowledged_by) ack = `${e.acknowledged_by}, ${fmt.time(e.acknowledged_at)}: ${e.ack_comment}`;
      else if (e.severity === "alarm" && e.active) {
        ack = el("button", { type: "button", class: "ack", onclick: async () => {
          const comment = prompt(t("Acknowledge “{message}”: what was seen and done?", { message: e.message }));
          if (comment === null) return;
          try {
            await api(`/api/events/${e.id}/ack`, { method: "POST", json: { comment } });
            say(ackError, "");
            showAlarms();
          } catch (err) { say(ackError, err.message); }
        } }, t("Acknowledge"));
      }
      return [fmt.time(e.at), el("span", { class: `severity ${e.severity}` }, e.kind), e.message, ack];
    }));
  };

  document.getElementById("report-pick").addEventListener("submit", (e) => {
    e.preventDefault();
    const r = e.target.elements;
    const q = new URLSearchParams({ station, [r.kind.value]: r.period.value.trim(), format: e.submitter.value });
    location.href = `/api/quality/report?${q}`;
  });
  const freeze = document.getElementById("freeze");
  if (freeze) {
    freeze.onclick = async () => {
      const note = prompt(t("Freeze these limits for Phase II: why (the audit trail keeps it)?"));
      if (note === null) return;
      try {
        const limits = await api("/api/quality/limits", { method: "POST", json: {
          station, metric: f.metric.value.trim(), chart: f.chart.value, by: f.by.value, since: since(), note,
          exclude: [...excluded] } });
        say(error, "");
        document.getElementById("limits-note").textContent =
          t("Froze version {version}.", { version: limits.version }) + " " + limitsText(limits, limits.points);
      } catch (e) { say(error, e.message); }
    };
  }
  await Promise.all([showChart(), showDrift(), showAlarms()]);
  setInterval(() => { showChart(); showDrift(); showAlarms(); }, 30000);
};
