"""/openapi.json and /docs: a self-contained reference page (no CDN: the machines may be offline)
that renders the OpenAPI document in the browser with a few lines of plain JavaScript."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from labs_gateway import openapi
from labs_gateway.http import JSONResponse
from labs_gateway.state import gateway_of

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labs gateway API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} .muted{color:#5b6773}
section{background:#fff;border:1px solid #dde2e7;border-radius:8px;margin:14px 0;padding:12px 16px}
.m{display:inline-block;min-width:46px;font-weight:700;font-size:12px;padding:2px 6px;border-radius:4px;
color:#fff;text-align:center;margin-right:8px}.get{background:#2f7d4f}.post{background:#2b5fad}
code,pre{font:13px/1.4 ui-monospace,monospace} table{border-collapse:collapse;width:100%;margin:8px 0}
td,th{border-top:1px solid #eceff2;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}
th{color:#5b6773;font-weight:600} .un{color:#a33} summary{cursor:pointer}
</style></head><body><main>
<h1>labs gateway API</h1><div class="muted" id="info">Loading /openapi.json&hellip;</div>
<div id="ops"></div></main>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"})[c]);
let doc;
const deref = s => (s && s.$ref) ? doc.components.schemas[s.$ref.split("/").pop()] : s;
function typeOf(s) {
  s = deref(s) || {};
  if (s["x-unsupported"]) return "unsupported";
  if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  const t = Array.isArray(s.type) ? s.type.join(" | ") : (s.type || "any");
  return s.items ? t.replace("array", "array of " + typeOf(s.items)) : t;
}
function limits(s) {
  s = deref(s) || {}; const out = [];
  for (const k of ["minimum","exclusiveMinimum","maximum","minItems","maxItems","minLength","maxLength"])
    if (s[k] !== undefined) out.push(k + " " + s[k]);
  return out.join(", ");
}
function table(schema) {
  schema = deref(schema); if (!schema || !schema.properties) return "";
  const req = new Set(schema.required || []);
  let rows = "";
  for (const [name, p] of Object.entries(schema.properties)) {
    const s = deref(p), cls = s["x-unsupported"] ? ' class="un"' : "";
    rows += `<tr${cls}><td><code>${esc(name)}</code>${req.has(name) ? " *" : ""}</td><td>${esc(typeOf(s))}</td>` +
            `<td>${esc(s.description || "")} <span class="muted">${esc(limits(s))}</span></td></tr>`;
  }
  return `<table><tr><th>field</th><th>type</th><th>notes</th></tr>${rows}</table>`;
}
fetch("openapi.json").then(r => r.json()).then(d => {
  doc = d;
  document.getElementById("info").textContent = `${d.info.title} ${d.info.version} · ${d.info.description}`;
  let html = "";
  for (const [path, item] of Object.entries(d.paths)) for (const [method, op] of Object.entries(item)) {
    const body = op.requestBody ? op.requestBody.content["application/json"].schema : null;
    const codes = Object.entries(op.responses).map(([c, r]) => `<tr><td>${c}</td><td>${esc(r.description)}</td></tr>`);
    html += `<section><div><span class="m ${method}">${method.toUpperCase()}</span><code>${esc(path)}</code>` +
            ` &nbsp;${esc(op.summary)}</div><p class="muted">${esc(op.description || "")}</p>` +
            (body ? `<details open><summary>Request body</summary>${table(body)}</details>` : "") +
            `<details><summary>Responses</summary><table>${codes.join("")}</table></details></section>`;
  }
  document.getElementById("ops").innerHTML = html;
}).catch(e => { document.getElementById("info").textContent = "Could not load /openapi.json: " + e; });
</script></body></html>
"""


async def openapi_json(request: Request) -> Response:
    gw = gateway_of(request)
    return JSONResponse(openapi.build(await gw.keys.enabled(), bool(gw.keys.admin_key)))


async def docs(request: Request) -> Response:
    return HTMLResponse(PAGE)
