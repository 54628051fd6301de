/*
 * redesdl central dashboard.
 *
 * Polls the central's JSON API (/api/...) every 2 s and shows the registry
 * live: secondaries, files, downloads, replication, statistics and two charts.
 * Plain browser JavaScript, no framework and no build step: the page must work
 * from a central with no internet access.
 *
 * Every value that comes from the API (names of files, clients, secondaries,
 * alert texts) may hold any printable Unicode, so it reaches the page only
 * through textContent or setAttribute, never through innerHTML.
 *
 * The charts are plain SVG polylines drawn here: a few lines over the last
 * five minutes need no charting library, so there is nothing to vendor,
 * license or keep up to date.
 */
"use strict";

const RedesdlDashboard = (() => {
  const POLL_MS = 2000;
  const PAGE = 50;
  const SERIES_SECONDS = 300;
  const SEARCH_DEBOUNCE_MS = 300;
  // At most this many slices of a name search per refresh (each slice examines
  // at most 10,000 names on the central), so a rare name cannot keep it busy.
  const MAX_SEARCH_SLICES = 20;
  const STATS_ROWS = 25;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = [
    "#1f6fb2", "#c0392b", "#2e8b3a", "#8e44ad", "#b35c00",
    "#0f7c86", "#a0306e", "#5b6770", "#7a6a00", "#3949ab",
  ];

  const state = {
    token: "",
    clockSkew: 0, // central time minus our time, in seconds
    lastUpdate: null, // our time (ms) of the last complete refresh
    timer: null,
    round: 0, // the latest poll; an older one still in flight does not reschedule
    failing: false,
    secondaries: { starts: [], after: "", next: null },
    files: { starts: [], after: "", next: null, q: "", seq: 0 },
  };

  /* ---------- small helpers ---------- */

  function $(id) {
    return document.getElementById(id);
  }

  // Build an element: el("td", {class: "num"}, "text", otherNode, ...).
  // Strings become text nodes, so data is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) {
        node.setAttribute(key, String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, String(value));
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function fillBody(table, rows, emptyText, columns) {
    const body = $(table).tBodies[0];
    if (rows.length === 0) {
      body.replaceChildren(el("tr", { class: "empty" },
        el("td", { colspan: columns }, emptyText)));
    } else {
      body.replaceChildren(...rows);
    }
  }

  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function humanBytes(bytes) {
    if (bytes === null || bytes === undefined || !isFinite(bytes)) return "–";
    let value = Number(bytes);
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return `${value.toFixed(digits)} ${UNITS[unit]}`;
  }

  function humanRate(rate) {
    if (rate === null || rate === undefined) return "–";
    return `${humanBytes(rate)}/s`;
  }

  function count(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
  }

  // plural(3, "file") is "3 files"; give the plural of irregular words.
  function plural(n, word, words) {
    return `${count(n)} ${n === 1 ? word : words || `${word}s`}`;
  }

  function centralNow() {
    return Date.now() / 1000 + state.clockSkew;
  }

  function duration(seconds) {
    const s = Math.round(Math.abs(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d`;
  }

  // "12 s ago" for a past central time, "in 8 s" for a future one.
  function relative(t) {
    if (t === null || t === undefined) return "never";
    const delta = centralNow() - t;
    if (Math.abs(delta) < 1) return "just now";
    return delta > 0 ? `${duration(delta)} ago` : `in ${duration(delta)}`;
  }

  // A <time> element: relative text, absolute time as its tooltip.
  function timeCell(t) {
    if (t === null || t === undefined) return el("td", {}, "never");
    const date = new Date(t * 1000);
    return el("td", {}, el("time", {
      datetime: date.toISOString(),
      title: date.toLocaleString(),
      "data-t": t,
    }, relative(t)));
  }

  // Refresh every relative time between polls, so "ago" keeps counting.
  function tickTimes() {
    for (const node of document.querySelectorAll("time[data-t]")) {
      node.textContent = relative(Number(node.dataset.t));
    }
    showStatus();
  }

  /* ---------- talking to the central ---------- */

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function readToken() {
    const match = /(?:^|[#&])token=([^&]*)/.exec(window.location.hash);
    state.token = match ? decodeURIComponent(match[1]) : "";
  }

  async function api(path, params) {
    const url = new URL(`/api/${path}`, window.location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== "" && value !== null && value !== undefined) {
        url.searchParams.set(key, value);
      }
    }
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "unreachable", "the central does not answer");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const code = body && body.error ? body.error : `http-${response.status}`;
      const message = body && body.message ? body.message : response.statusText;
      throw new ApiError(response.status, code, message);
    }
    if (body === null) throw new ApiError(response.status, "bad-json", "the reply is not JSON");
    return body;
  }

  /* ---------- overview ---------- */

  function renderSummary(summary) {
    state.clockSkew = summary.time - Date.now() / 1000;
    setText("sum-up", count(summary.secondaries.up));
    setText("sum-down", count(summary.secondaries.down));
    setText("sum-files", plural(summary.files, "file"));
    setText("sum-bytes", `${humanBytes(summary.bytes)} in total`);
    setText("sum-active", count(summary.downloads.active));
    setText("sum-queued", count(summary.downloads.queued));
    const totals = summary.totals;
    setText("sum-totals",
      `${count(totals.completed)} completed, ${count(totals.failed)} failed, ` +
      `${humanBytes(totals.bytes)} delivered`);
    setText("sum-backlog", count(summary.replication.backlog));
    setText("sum-copying", `${plural(summary.replication.copying, "copy", "copies")} running`);
    const alerts = summary.alerts.map((alert) =>
      el("li", { class: `alert alert-${/^[a-z]+$/.test(alert.level) ? alert.level : "info"}` },
        el("strong", {}, `${alert.level}: `), alert.text));
    if (alerts.length === 0) {
      alerts.push(el("li", { class: "alert alert-ok" }, "No alerts: everything looks fine."));
    }
    $("alerts").replaceChildren(...alerts);
  }

  /* ---------- secondaries ---------- */

  function renderSecondaries(reply) {
    const rows = reply.secondaries.map((s) => el("tr", { "data-name": s.name },
      el("th", { scope: "row" }, s.name),
      el("td", {}, el("span", { class: s.up ? "badge up" : "badge down" }, s.up ? "up" : "down")),
      el("td", { class: "mono" }, s.address || "–"),
      el("td", { class: "num" }, count(s.files)),
      el("td", { class: "num" }, humanBytes(s.served_bytes)),
      el("td", { class: "num" }, s.up ? humanRate(s.rate) : "–"),
      timeCell(s.last_heartbeat),
      el("td", {}, s.link || "–"),
      el("td", { class: "num" }, count(s.boot))));
    fillBody("secondaries-table", rows, "No secondary has registered yet.", 9);
    const pager = state.secondaries;
    pager.next = reply.more && reply.secondaries.length
      ? reply.secondaries[reply.secondaries.length - 1].name : null;
    $("sec-prev").disabled = pager.starts.length === 0;
    $("sec-next").disabled = pager.next === null;
    const first = pager.starts.length * PAGE + 1;
    setText("sec-page", reply.secondaries.length
      ? `${first}–${first + reply.secondaries.length - 1}` : "");
  }

  // The overview's heartbeat and served lines come from the first page.
  function renderSecondaryTotals(reply) {
    const list = reply.secondaries;
    const served = list.reduce((sum, s) => sum + (s.served_bytes || 0), 0);
    const rate = list.reduce((sum, s) => sum + (s.up && s.rate ? s.rate : 0), 0);
    const beats = list.map((s) => s.last_heartbeat).filter((t) => t !== null && t !== undefined);
    const oldestUp = list.filter((s) => s.up && s.last_heartbeat)
      .reduce((min, s) => Math.min(min, s.last_heartbeat), Infinity);
    setText("sum-heartbeat", beats.length === 0 ? "no heartbeat yet"
      : isFinite(oldestUp) ? `every live one heard within ${duration(centralNow() - oldestUp)}`
        : "none heard recently");
    setText("sum-rate", humanRate(rate));
    setText("sum-served", `${humanBytes(served)} served${reply.more ? " (first page)" : ""}`);
  }

  async function loadSecondaries() {
    const reply = await api("secondaries", { after: state.secondaries.after, limit: PAGE });
    renderSecondaries(reply);
    renderSecondaryTotals(reply);
  }

  /* ---------- files ---------- */

  function replicationText(file) {
    if (file.replicated) return el("span", { class: "badge up" }, "on every secondary");
    return el("span", { class: "badge warn" }, "not yet everywhere");
  }

  function renderFiles(files, reply, scanned) {
    const rows = files.map((f) => el("tr", { "data-name": f.name },
      el("th", { scope: "row", class: "name", title: f.name }, f.name),
      el("td", { class: "num" }, humanBytes(f.size)),
      el("td", { class: "num" }, count(f.sources)),
      el("td", {}, replicationText(f)),
      el("td", { class: "num" }, `${count(f.downloads.completed)} ok` +
        (f.downloads.failed ? `, ${count(f.downloads.failed)} failed` : "")),
      el("td", { class: "mono", title: f.sha256 || "" }, (f.sha256 || "").slice(0, 12))));
    const pager = state.files;
    fillBody("files-table", rows, pager.q ? "No file name contains that text." : "No files yet.", 6);
    $("files-prev").disabled = pager.starts.length === 0;
    $("files-next").disabled = pager.next === null;
    const first = pager.starts.length * PAGE + 1;
    const shown = files.length ? `${first}–${first + files.length - 1}` : "none";
    setText("files-page", pager.q
      ? `matches ${shown} · ${count(scanned)} names examined of ${count(reply.total)}`
      : `${shown} of ${count(reply.total)}`);
  }

  // One page of files. With a search, the central examines a bounded slice of
  // names per request, so ask again from next_after until the page is full.
  async function loadFiles() {
    const pager = state.files;
    const seq = ++pager.seq;
    const files = [];
    let after = pager.after;
    let reply = null;
    let scanned = 0;
    for (let slice = 0; slice < MAX_SEARCH_SLICES; slice += 1) {
      reply = await api("files", { after, limit: PAGE - files.length, q: pager.q });
      if (seq !== pager.seq) return; // a newer search or page took over
      files.push(...reply.files);
      scanned += reply.scanned || reply.files.length;
      const last = reply.files.length ? reply.files[reply.files.length - 1].name : after;
      after = reply.next_after || last;
      if (!reply.more || files.length >= PAGE || !pager.q) break;
    }
    pager.next = reply.more ? after : null;
    renderFiles(files, reply, scanned);
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function onSearch() {
    const q = $("files-q").value.trim();
    if (q === state.files.q) return;
    Object.assign(state.files, { q, after: "", starts: [], next: null });
    loadFiles().catch(showError);
  }

  /* ---------- downloads ---------- */

  function progressCell(d) {
    if (d.done === null || d.done === undefined || !d.size) {
      return el("td", { class: "progress-cell" },
        el("progress", { "aria-label": `progress of ${d.file}` }),
        el("span", { class: "pct" }, "starting"));
    }
    const percent = Math.min(100, (100 * d.done) / d.size);
    return el("td", { class: "progress-cell" },
      el("progress", { max: d.size, value: d.done, "aria-label": `progress of ${d.file}` }),
      el("span", { class: "pct", "data-percent": percent.toFixed(1) }, `${percent.toFixed(1)} %`),
      el("span", { class: "small" }, ` ${humanBytes(d.done)} of ${humanBytes(d.size)}`));
  }

  function renderDownloads(reply) {
    fillBody("active-table", reply.active.map((d) =>
      el("tr", { "data-client": d.client, "data-file": d.file },
        el("td", { class: "name", title: d.file }, d.file),
        progressCell(d),
        el("td", { class: "num" }, humanRate(d.rate)),
        el("td", { class: "num" }, count(d.sources)),
        el("td", {}, d.client),
        timeCell(d.since))), "Nothing is downloading.", 6);
    fillBody("queued-table", reply.queued.map((q) =>
      el("tr", { "data-client": q.client, "data-file": q.file },
        el("td", { class: "num" }, count(q.position)),
        el("td", {}, q.client),
        el("td", { class: "name", title: q.file }, q.file),
        timeCell(q.since))), "Nobody is waiting.", 4);
    const hidden = reply.queued_total - reply.queued.length;
    setText("queued-count", `(${count(reply.queued_total)}` +
      (hidden > 0 ? `, first ${count(reply.queued.length)} shown)` : ")"));
    fillBody("recent-table", reply.recent.map((r) =>
      el("tr", { class: r.ok ? "ok" : "failed" },
        timeCell(r.time),
        el("td", {}, r.client),
        el("td", { class: "name", title: r.file }, r.file),
        el("td", {}, el("span", { class: r.ok ? "badge up" : "badge down" },
          r.ok ? "completed" : "failed"), r.ok || !r.reason ? null : ` ${r.reason}`),
        el("td", { class: "num" }, humanBytes(r.bytes)))), "No download has ended yet.", 5);
  }

  /* ---------- replication ---------- */

  function renderReplication(reply) {
    setText("repl-backlog", reply.backlog === 0
      ? "Every secondary holds every file."
      : `${plural(reply.backlog, "copy", "copies")} still to make so every secondary ` +
        "holds every file.");
    fillBody("copies-table", reply.copies.map((c) => el("tr", {},
      el("td", {}, c.secondary),
      el("td", { class: "name", title: c.file }, c.file),
      timeCell(c.since))), "No copy is running.", 3);
    fillBody("failing-table", reply.failing.map((c) => el("tr", {},
      el("td", {}, c.secondary),
      el("td", { class: "name", title: c.file }, c.file),
      timeCell(c.retry_at))), "No copy is failing.", 3);
  }

  /* ---------- statistics: the original's two reports ---------- */

  function renderStats(reply) {
    const perFile = [...reply.per_file].sort((a, b) =>
      b.completed - a.completed || (a.file < b.file ? -1 : 1));
    fillBody("per-file-table", perFile.slice(0, STATS_ROWS).map((f) => el("tr", {},
      el("th", { scope: "row", class: "name", title: f.file }, f.file),
      el("td", { class: "num" }, count(f.completed)),
      el("td", { class: "num" }, count(f.failed)),
      el("td", { class: "num" }, humanBytes(f.bytes)))), "No downloads yet.", 4);
    setText("per-file-note", perFile.length > STATS_ROWS
      ? `The ${STATS_ROWS} most downloaded of ${count(perFile.length)} videos.` : "");
    const perClient = [...reply.per_client].sort((a, b) =>
      b.completed - a.completed || (a.client < b.client ? -1 : 1));
    fillBody("per-client-table", perClient.slice(0, STATS_ROWS).map((c) => el("tr", {},
      el("th", { scope: "row" }, c.client),
      el("td", { class: "num" }, count(c.completed)),
      el("td", { class: "num" }, count(c.failed)),
      el("td", { class: "num" }, humanBytes(c.bytes)),
      el("td", { class: "name", title: c.files.join("\n") }, c.files.length > 5
        ? `${c.files.slice(0, 5).join(", ")} and ${c.files.length - 5} more`
        : c.files.join(", ")))), "No client has downloaded anything yet.", 5);
    setText("per-client-note", perClient.length > STATS_ROWS
      ? `The ${STATS_ROWS} busiest of ${count(perClient.length)} clients.` : "");
  }

  /* ---------- charts ---------- */

  const CHART = { height: 220, left: 70, right: 10, top: 10, bottom: 26 };

  // A round top for the y axis: 1, 2, 2.5 or 5 times a power of ten, in the
  // unit the labels use (KiB/s, MiB/s... for bytes), so labels read "20 MiB/s".
  function niceMax(value, bytes) {
    if (!(value > 0)) return 1;
    let unit = 1;
    while (bytes && value >= 1024 * unit) unit *= 1024;
    const scaled = value / unit;
    const decade = 10 ** Math.floor(Math.log10(scaled));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * decade >= scaled) return step * decade * unit;
    }
    return 10 * decade * unit;
  }

  // Draw lines [{name, values, color, width}] over times; null values break a line.
  function drawChart(id, times, lines, format, bytes) {
    const node = $(id);
    // Draw in the SVG's own pixels, so labels keep their size on a phone.
    const width = Math.max(280, Math.round(node.getBoundingClientRect().width) || 600);
    node.setAttribute("viewBox", `0 0 ${width} ${CHART.height}`);
    const plotW = width - CHART.left - CHART.right;
    const plotH = CHART.height - CHART.top - CHART.bottom;
    const parts = [];
    const t1 = times.length ? times[times.length - 1] : 0;
    const t0 = Math.min(times.length ? times[0] : 0, t1 - 60);
    const all = lines.flatMap((l) => l.values.filter((v) => v !== null && isFinite(v)));
    const top = niceMax(Math.max(0, ...all), bytes);
    const x = (t) => CHART.left + (t1 === t0 ? plotW : ((t - t0) / (t1 - t0)) * plotW);
    const y = (v) => CHART.top + plotH - (v / top) * plotH;

    for (const fraction of [0, 0.5, 1]) {
      const yy = y(top * fraction);
      parts.push(svg("line", { x1: CHART.left, x2: width - CHART.right, y1: yy, y2: yy,
        class: fraction === 0 ? "axis" : "grid" }));
      const label = svg("text", { x: CHART.left - 6, y: yy + 4, "text-anchor": "end", class: "tick" });
      label.textContent = format(top * fraction);
      parts.push(label);
    }
    const span = t1 - t0;
    for (const fraction of [0, 0.5, 1]) {
      const label = svg("text", { x: CHART.left + fraction * plotW, y: CHART.height - 6,
        "text-anchor": fraction === 0 ? "start" : fraction === 1 ? "end" : "middle", class: "tick" });
      label.textContent = fraction === 1 ? "now" : `−${duration(span * (1 - fraction))}`;
      parts.push(label);
    }
    for (const line of lines) {
      let points = [];
      const flush = () => {
        if (points.length) {
          const poly = svg("polyline", { points: points.join(" "), fill: "none",
            stroke: line.color, "stroke-width": line.width || 1.5,
            "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" });
          const title = svg("title", {});
          title.textContent = line.name;
          poly.append(title);
          parts.push(poly);
        }
        points = [];
      };
      line.values.forEach((v, i) => {
        if (v === null || v === undefined || !isFinite(v) || times[i] === undefined) flush();
        else points.push(`${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`);
      });
      flush();
    }
    node.replaceChildren(...parts);
    $(`${id}-legend`).replaceChildren(...lines.map((line) => el("li", {},
      el("span", { class: "swatch", style: `background:${line.color}` }), line.name)));
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i -= 1) {
      if (values[i] !== null && values[i] !== undefined) return values[i];
    }
    return null;
  }

  function renderSeries(series) {
    const times = series.time;
    const names = Object.keys(series.per_secondary).sort();
    const rateLines = [{ name: "all secondaries", values: series.served_rate, color: "#1b1b1b", width: 2.5 },
      ...names.map((name, i) => ({ name, values: series.per_secondary[name],
        color: COLORS[i % COLORS.length] }))];
    drawChart("chart-rate", times, rateLines, (v) => humanRate(v), true);
    const peak = Math.max(0, ...series.served_rate.filter((v) => v !== null));
    setText("chart-rate-desc", `Now ${humanRate(lastValue(series.served_rate))}, ` +
      `peak ${humanRate(peak)} over the last ${duration(SERIES_SECONDS)}.`);
    drawChart("chart-queue", times, [
      { name: "queued", values: series.queue, color: "#c0392b", width: 2 },
      { name: "active", values: series.active, color: "#1f6fb2", width: 2 },
    ], (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)), false);
    setText("chart-queue-desc", `Now ${count(lastValue(series.queue))} queued and ` +
      `${count(lastValue(series.active))} active.`);
  }

  /* ---------- polling and status ---------- */

  function showStatus() {
    const status = $("status");
    if (state.lastUpdate === null) return;
    const age = (Date.now() - state.lastUpdate) / 1000;
    status.textContent = state.failing
      ? `Not updating: last data ${duration(age)} old`
      : `Live · updated ${age < 1 ? "just now" : `${duration(age)} ago`}`;
    status.classList.toggle("stale", state.failing || age > 10);
  }

  function showProblem(text) {
    const box = $("problem");
    box.hidden = text === null;
    box.textContent = text || "";
  }

  function showError(error) {
    state.failing = true;
    if (error.status === 401) {
      showProblem("This dashboard needs its token: open this address followed by " +
        "#token=… with the token from the central's --web-token file, or ask the operator.");
      setText("status", "Not authorized");
    } else if (error.status === 0) {
      showProblem("The central does not answer; retrying every 2 s.");
    } else {
      showProblem(`The central refused a request (${error.code}): ${error.message}`);
    }
    showStatus();
  }

  async function refresh() {
    const summary = await api("summary");
    renderSummary(summary);
    const [downloads, replication, stats, series] = await Promise.all([
      api("downloads"), api("replication"), api("stats"),
      api("series", { seconds: SERIES_SECONDS }),
      loadSecondaries(), loadFiles(),
    ]);
    renderDownloads(downloads);
    renderReplication(replication);
    renderStats(stats);
    renderSeries(series);
    state.failing = false;
    state.lastUpdate = Date.now();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    showProblem(null);
    showStatus();
  }

  // Poll: the next round starts 2 s after this one ends, so slow replies never pile up.
  async function poll() {
    clearTimeout(state.timer);
    const round = ++state.round;
    try {
      await refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
      showError(error instanceof ApiError ? error : new ApiError(-1, "page", String(error)));
    }
    if (round === state.round) state.timer = setTimeout(poll, POLL_MS);
  }

  function pageButtons(prefix, pager, load) {
    $(`${prefix}-next`).addEventListener("click", () => {
      if (pager.next === null) return;
      pager.starts.push(pager.after);
      pager.after = pager.next;
      load().catch(showError);
    });
    $(`${prefix}-prev`).addEventListener("click", () => {
      if (pager.starts.length === 0) return;
      pager.after = pager.starts.pop();
      load().catch(showError);
    });
  }

  function start() {
    readToken();
    window.addEventListener("hashchange", () => {
      readToken();
      poll();
    });
    pageButtons("sec", state.secondaries, loadSecondaries);
    pageButtons("files", state.files, loadFiles);
    $("files-q").addEventListener("input", debounce(onSearch, SEARCH_DEBOUNCE_MS));
    $("files-search").addEventListener("submit", (event) => {
      event.preventDefault();
      onSearch();
    });
    setInterval(tickTimes, 1000);
    poll();
  }

  return { start, humanBytes, relative };
})();

document.addEventListener("DOMContentLoaded", RedesdlDashboard.start);
