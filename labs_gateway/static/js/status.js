// The status view: which cores answer (GET /ready, no key needed) and what the models are
// (GET /v1/models: device, dtype, context, serving path under each model's `labs`).

import { getJSON } from "./api.js";
import { $, errorBox, fmtCount, fmtInt, h } from "./dom.js";

const REFRESH_MS = 10000;
const LOADING_REFRESH_MS = 1000;
const STATE_CLASS = { ready: "ok", loading: "warn", not_loaded: "", failed: "bad" };

function pill(text, cls = "") {
  return h(`span.pill${cls ? `.${cls}` : ""}`, { text });
}

/** GET /ready: {status, cores}; a 503 is an answer too (nothing ready). */
export async function readiness() {
  const { status, body } = await getJSON("/ready", { accept: [503] });
  return { ready: status === 200, ...body };
}

export class StatusView {
  constructor() {
    this.els = {
      pill: $("#ready-pill"), summary: $("#status-summary"), refresh: $("#status-refresh"), error: $("#status-error"),
      cores: $("#cores"), models: $("#models-table"), modelsError: $("#models-error"), baseUrl: $("#base-url"),
    };
    this.timer = 0;
    this.fastTimer = 0;
    this.loading = false;
    this.els.refresh.addEventListener("click", () => this.refresh());
    this.els.baseUrl.textContent = `${location.origin}/v1`;
    window.addEventListener("labs:keys", () => { if (this.timer) this.refresh(); });
  }

  show() {
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    clearInterval(this.fastTimer);  // while a model loads, its phase moves on every second or two
    this.fastTimer = setInterval(() => { if (this.loading) this.loadModels(); }, LOADING_REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    clearInterval(this.fastTimer);
    this.timer = 0;
  }

  async refresh() {
    await Promise.all([this.loadReady(), this.loadModels()]);
  }

  async loadReady() {
    try {
      const ready = await readiness();
      this.els.error.replaceChildren();
      const up = ready.cores.filter((c) => c.ready).length;
      this.els.pill.replaceWith(this.els.pill = pill(ready.ready ? "Ready" : "Not ready", ready.ready ? "ok" : "bad"));
      this.els.pill.id = "ready-pill";
      this.els.summary.textContent = `${up} of ${ready.cores.length} core${ready.cores.length === 1 ? "" : "s"} ready`;
      this.els.cores.replaceChildren(...ready.cores.map((core) => this.coreCard(core)));
    } catch (error) {
      this.els.pill.replaceWith(this.els.pill = pill("Unreachable", "bad"));
      this.els.pill.id = "ready-pill";
      this.els.summary.textContent = "";
      this.els.cores.replaceChildren();
      this.els.error.replaceChildren(errorBox(error, "Could not check readiness:"));
    }
  }

  coreCard(core) {
    const state = !core.reachable ? pill("unreachable", "bad") : !core.serving ? pill("not serving", "warn")
      : core.ready ? pill("ready", "ok") : pill("starting", "warn");
    const card = h("div.card.core", { "data-address": core.address },
      h("div.core-head", {}, h("code", { text: core.address }), state));
    if (core.error) card.append(h("div.alert.error", { text: core.error }));
    if (core.models?.length) {
      card.append(h("ul.core-models", {}, core.models.map((m) => h("li", {},
        h("span", { text: m.id }), h("span.badge", { text: m.kind }),
        m.is_default ? h("span.badge", { text: "default" }) : null,
        pill(m.state.replace("_", " "), STATE_CLASS[m.state] ?? "")))));
    }
    return card;
  }

  async loadModels() {
    const body = this.els.models.tBodies[0];
    try {
      const { body: list } = await getJSON("/v1/models");
      this.els.modelsError.replaceChildren();
      const rows = (list.data || []).map((m) => {
        const x = m.labs || {};
        const kind = x.kind === "embedding" && x.embedding_dimensions ? `embedding (${x.embedding_dimensions} d)`
          : x.reasoning ? `${x.kind} (thinking)` : x.kind || "–";
        return h("tr", { "data-model": m.id }, h("td", {}, h("strong", { text: m.id }), x.is_default ? " " : "",
          x.is_default ? h("span.badge", { text: "default" }) : null),
        h("td", { text: kind }), h("td", {}, pill((x.state || "unknown").replace("_", " "), STATE_CLASS[x.state] ?? ""),
          x.loading_phase ? h("span.muted", { text: ` ${x.loading_phase}` }) : null),
        h("td", { text: x.device || "–" }), h("td", { text: x.dtype || "–" }),
        h("td.num", { text: x.context_length ? fmtInt(x.context_length) : "–" }),
        h("td.num", { text: fmtCount(x.parameter_count) }), h("td", { text: x.serving_path || "–" }),
        h("td", { text: x.architecture || "–" }), h("td.wrap", { text: x.error ? `${x.source} (${x.error})` : x.source || "–" }));
      });
      body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td.empty", { colspan: 10, text: "No models." }))]));
      this.loading = (list.data || []).some((m) => m.labs?.state === "loading");
    } catch (error) {
      body.replaceChildren();
      this.els.modelsError.replaceChildren(errorBox(error, "Could not list the models:"));
    }
  }
}
