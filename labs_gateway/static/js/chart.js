// A stacked bar chart in SVG, written for the usage page (one bar per time bucket, one colour per
// API key). Hand-written rather than vendored: it is ~100 lines, and colours come from CSS
// classes (.c0 … .c7), so no inline style is needed under the page's CSP.

import { fmtClock, fmtInt, h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 240;
const MARGIN = { left: 52, right: 10, top: 12, bottom: 26 };

function svg(tag, attrs = {}, text = null) {
  const element = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (text !== null) element.textContent = text;
  return element;
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

/** A round upper bound for the axis: 1, 2, 2.5 or 5 times a power of ten, at or above `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/**
 * Draw into `container`. `times`: bucket start times (unix s); `series`: [{name, cls, values}],
 * values aligned with `times`; `unit`: what a value counts, for the tooltips.
 */
export function stackedBars(container, { times, series, unit, empty = "Nothing to show yet." }) {
  const totals = times.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const top = Math.max(0, ...totals);
  if (!times.length || top === 0) {
    container.replaceChildren(h("div.chart-empty", { text: empty }));
    return;
  }
  const width = Math.max(280, Math.floor(container.clientWidth || 640));
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const max = niceMax(top);
  const y = (value) => MARGIN.top + plotH - (value / max) * plotH;
  const root = svg("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": `${unit} per time bucket by key` });

  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (max * tick) / 4;
    const at = y(value);
    root.append(svg("line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: at, y2: at }));
    root.append(svg("text", { class: "axis", x: MARGIN.left - 8, y: at + 4, "text-anchor": "end" }, compact.format(value)));
  }

  const slot = plotW / times.length;
  const gap = slot > 8 ? Math.min(4, slot * 0.2) : slot > 3 ? 1 : 0;
  const labelEvery = Math.max(1, Math.ceil(times.length / Math.max(2, Math.floor(plotW / 70))));
  times.forEach((time, i) => {
    const x = MARGIN.left + i * slot + gap / 2;
    let base = 0;
    for (const s of series) {
      const value = s.values[i] || 0;
      if (!value) continue;
      const rect = svg("rect", {
        class: `bar ${s.cls}`, x: x.toFixed(2), width: Math.max(0.5, slot - gap).toFixed(2),
        y: y(base + value).toFixed(2), height: Math.max(0.5, y(base) - y(base + value)).toFixed(2),
      });
      rect.append(svg("title", {}, `${fmtClock(time)} · ${s.name}: ${fmtInt(value)} ${unit}`));
      root.append(rect);
      base += value;
    }
    if (i % labelEvery === 0) {
      const centre = x + (slot - gap) / 2;
      const anchor = centre > width - MARGIN.right - 28 ? "end" : centre < MARGIN.left + 28 ? "start" : "middle";
      const at = anchor === "end" ? width - MARGIN.right : anchor === "start" ? MARGIN.left : centre;
      root.append(svg("text", { class: "axis", x: at.toFixed(2), y: HEIGHT - 8, "text-anchor": anchor }, fmtClock(time)));
    }
  });
  container.replaceChildren(root);
}
