// The usage view: tokens and requests per API key over time (GET /admin/usage, per-minute buckets read from the store)
// and the live engine figures (GET /admin/stats). Both need the admin key when keys are on.

import { getJSON, keys } from "./api.js";
import { stackedBars } from "./chart.js";
import { $, errorBox, fmtDecimal, fmtInt, fmtPercent, h } from "./dom.js";

const REFRESH_MS = 5000;
const METRICS = {
  total_tokens: { title: "Tokens", unit: "tokens", of: (m) => m.prompt_tokens + m.completion_tokens },
  prompt_tokens: { title: "Prompt tokens", unit: "prompt tokens", of: (m) => m.prompt_tokens },
  completion_tokens: { title: "Completion tokens", unit: "completion tokens", of: (m) => m.completion_tokens },
  requests: { title: "Requests", unit: "requests", of: (m) => m.requests },
};

/** Bucket width for a range: about 60-100 bars whatever the range. */
export function bucketSeconds(rangeMinutes) {
  if (rangeMinutes <= 60) return 60;
  if (rangeMinutes <= 360) return 300;
  if (rangeMinutes <= 1440) return 900;
  return 7200;
}

function sum(minutes) {
  const out = { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0 };
  for (const m of minutes) for (const name of Object.keys(out)) out[name] += m[name] || 0;
  out.total_tokens = out.prompt_tokens + out.completion_tokens;
  return out;
}

export class UsageView {
  constructor() {
    this.els = {
      form: $("#usage-form"), adminKey: $("#admin-key"), range: $("#usage-range"), metric: $("#usage-metric"),
      auto: $("#usage-auto"), updated: $("#usage-updated"), error: $("#usage-error"), chart: $("#usage-chart"),
      chartTitle: $("#chart-title"), legend: $("#chart-legend"), table: $("#usage-table"), tableRange: $("#table-range"),
      engines: $("#engine-table"), inflight: $("#stat-inflight"), running: $("#stat-running"),
      waiting: $("#stat-waiting"), kv: $("#stat-kv"), gen: $("#stat-gen"), prompt: $("#stat-prompt"),
    };
    this.colours = new Map();
    this.timer = 0;
    this.visible = false;
    this.usage = null;
    this.stats = null;
    this.busy = false;
    this.els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveKey();
      this.refresh();
    });
    this.els.adminKey.addEventListener("change", () => { this.saveKey(); this.refresh(); });
    this.els.range.addEventListener("change", () => this.refresh());
    this.els.metric.addEventListener("change", () => this.draw());
    this.els.auto.addEventListener("change", () => this.schedule());
    new ResizeObserver(() => { if (this.visible && this.usage) this.drawChart(); }).observe(this.els.chart);
  }

  show() {
    this.visible = true;
    this.els.adminKey.value = keys.admin;
    this.refresh();
    this.schedule();
  }

  hide() {
    this.visible = false;
    clearInterval(this.timer);
  }

  saveKey() {
    if (this.els.adminKey.value.trim() !== keys.admin) keys.admin = this.els.adminKey.value;
  }

  schedule() {
    clearInterval(this.timer);
    if (this.visible && this.els.auto.checked) this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  colour(name) {
    if (!this.colours.has(name)) this.colours.set(name, `c${this.colours.size % 8}`);
    return this.colours.get(name);
  }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    const range = Number(this.els.range.value);
    this.since = Math.floor(Date.now() / 1000) - range * 60;
    try {
      const [usage, stats] = await Promise.allSettled([
        getJSON(`/admin/usage?since=${this.since - (this.since % 60)}${range > 1440 ? "&bucket=hour" : ""}`, { admin: true }),
        getJSON("/admin/stats", { admin: true }),
      ]);
      const errors = [usage, stats].filter((r) => r.status === "rejected").map((r) => r.reason);
      const messages = new Set();
      this.els.error.replaceChildren(...errors.filter((e) => !messages.has(e.message) && messages.add(e.message))
        .map((e) => errorBox(e, "Could not load usage:")));
      this.els.adminKey.classList.toggle("invalid", errors.some((e) => e.status === 401 || e.status === 403));
      if (usage.status === "fulfilled") this.usage = usage.value.body;
      if (stats.status === "fulfilled") this.stats = stats.value.body;
      if (!errors.length) this.els.updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      this.draw();
    } finally {
      this.busy = false;
    }
  }

  draw() {
    this.drawLive();
    this.drawChart();
    this.drawTable();
    this.drawEngines();
  }

  drawLive() {
    const s = this.stats;
    const engines = (s?.cores || []).flatMap((c) => c.engines || []);
    const total = (name) => engines.reduce((acc, e) => acc + (e[name] || 0), 0);
    const blocks = total("kv_blocks_total");
    this.els.inflight.textContent = s ? fmtInt(s.gateway?.inflight_streams ?? 0) : "–";
    this.els.running.textContent = s ? fmtInt(total("running")) : "–";
    this.els.waiting.textContent = s ? fmtInt(total("waiting")) : "–";
    this.els.kv.textContent = s && blocks ? fmtPercent(total("kv_blocks_used") / blocks) : "–";
    this.els.gen.textContent = s ? fmtDecimal(total("generation_tokens_per_s")) : "–";
    this.els.prompt.textContent = s ? fmtDecimal(total("prompt_tokens_per_s")) : "–";
  }

  keysInRange() {
    const out = [];
    for (const [name, entry] of Object.entries(this.usage?.keys || {})) {
      const minutes = (entry.buckets || []).filter((m) => m.start >= this.since - (this.since % 60));
      out.push({ name, minutes, sums: sum(minutes), totals: entry.totals });
    }
    out.sort((a, b) => b.sums.total_tokens - a.sums.total_tokens || a.name.localeCompare(b.name));
    for (const key of [...out].sort((a, b) => a.name.localeCompare(b.name))) this.colour(key.name);
    return out;
  }

  drawChart() {
    const metric = METRICS[this.els.metric.value];
    const range = Number(this.els.range.value);
    const bucket = bucketSeconds(range);
    this.els.chartTitle.textContent = `${metric.title} per ${bucket === 60 ? "minute" : `${bucket / 60} minutes`}`;
    if (!this.usage) {
      this.els.legend.replaceChildren();
      this.els.chart.replaceChildren(h("div.chart-empty", { text: "No usage data (see the message above)." }));
      return;
    }
    const first = this.since - (this.since % bucket);
    const now = Math.floor(Date.now() / 1000);
    const times = [];
    for (let t = first; t <= now; t += bucket) times.push(t);
    const series = this.keysInRange().map((key) => {
      const values = new Array(times.length).fill(0);
      for (const m of key.minutes) {
        const i = Math.floor((m.start - first) / bucket);
        if (i >= 0 && i < values.length) values[i] += metric.of(m);
      }
      return { name: key.name, cls: this.colour(key.name), values };
    });
    this.els.legend.replaceChildren(...series.map((s) => h("span", {}, h(`span.swatch.${s.cls}`), s.name)));
    stackedBars(this.els.chart, {
      times, series, unit: metric.unit,
      empty: "No requests in this range yet. Send a chat message and they will show here.",
    });
  }

  drawTable() {
    const body = this.els.table.tBodies[0];
    const foot = this.els.table.tFoot;
    const range = this.els.range.selectedOptions[0]?.textContent || "";
    this.els.tableRange.textContent = `last ${range}`;
    const inflight = this.stats?.gateway?.streams_by_key || {};
    const rows = this.keysInRange();
    for (const name of Object.keys(inflight)) {
      if (!rows.some((r) => r.name === name)) rows.push({ name, sums: sum([]) });
    }
    if (!rows.length) {
      body.replaceChildren(h("tr", {}, h("td.empty", { colspan: 8, text: this.usage ? "No usage yet." : "–" })));
      foot.replaceChildren();
      return;
    }
    const all = sum(rows.map((r) => r.sums));
    const cells = (label, s, flight, share) => [
      label, h("td.num", { text: fmtInt(s.requests) }), h("td.num", { text: fmtInt(s.errors) }),
      h("td.num", { text: fmtInt(s.prompt_tokens) }), h("td.num", { text: fmtInt(s.completion_tokens) }),
      h("td.num", { text: fmtInt(s.total_tokens) }), h("td.num", { text: share }),
      h("td.num", { text: fmtInt(flight) })];
    body.replaceChildren(...rows.map((r) => h("tr", { "data-key": r.name }, cells(
      h("td", {}, h("span.key-cell", {}, h(`span.swatch.${this.colour(r.name)}`), r.name)), r.sums, inflight[r.name] || 0,
      all.total_tokens ? fmtPercent(r.sums.total_tokens / all.total_tokens) : "–"))));
    const flying = Object.values(inflight).reduce((a, b) => a + b, 0);
    foot.replaceChildren(h("tr", {}, cells(h("td", { text: "All keys" }), all, flying, all.total_tokens ? "100 %" : "–")));
  }

  drawEngines() {
    const body = this.els.engines.tBodies[0];
    const cores = this.stats?.cores || [];
    const rows = [];
    for (const core of cores) {
      if (core.error) {
        rows.push(h("tr", {}, h("td", {}, h("code", { text: core.address })),
          h("td.wrap", { colspan: 9, class: "danger-text", text: core.error.message || "unreachable" })));
        continue;
      }
      for (const e of core.engines || []) {
        rows.push(h("tr", {}, h("td", {}, h("code", { text: core.address })), h("td", { text: e.model }),
          h("td.num", { text: fmtInt(e.running) }), h("td.num", { text: fmtInt(e.waiting) }),
          h("td.num", { text: e.kv_cache_usage === null || e.kv_cache_usage === undefined ? "–" : `${fmtPercent(e.kv_cache_usage)} of ${fmtInt(e.kv_blocks_total)}` }),
          h("td.num", { text: fmtPercent(e.prefix_cache_hit_rate) }),
          h("td.num", { text: fmtDecimal(e.prompt_tokens_per_s) }), h("td.num", { text: fmtDecimal(e.generation_tokens_per_s) }),
          h("td.num", { text: fmtInt(e.requests_finished) }), h("td.num", { text: fmtInt(e.requests_rejected) })));
      }
    }
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td.empty", { colspan: 10, text: this.stats ? "No engines reported." : "–" }))]));
  }
}
