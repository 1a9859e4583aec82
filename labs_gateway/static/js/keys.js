// The keys view: API keys in the gateway's store through the admin API (/admin/keys): list them,
// create one (its secret is shown here once, never again), change limits, rotate, revoke. Needs the
// admin key (the same one as the Usage page).

import { adminCall, getJSON, keys } from "./api.js";
import { $, errorBox, fmtInt, h, toast } from "./dom.js";

const LIMITS = [["rpm", "rpm"], ["tpm", "tpm"], ["max_streams", "streams"], ["day_tokens", "tok/day"],
  ["month_tokens", "tok/month"]];

function limitsText(key) {
  const parts = LIMITS.filter(([field]) => key[field] !== null && key[field] !== undefined)
    .map(([field, label]) => `${fmtInt(key[field])} ${label}`);
  return parts.join(", ") || "defaults";
}

function dateText(unix) {
  return unix ? new Date(unix * 1000).toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" }) : "never";
}

/** The create form's fields as an /admin/keys body; empty fields are left out. */
export function keyBody(form) {
  const value = (name) => form.elements[name].value.trim();
  const body = { name: value("name") };
  if (value("owner")) body.owner = value("owner");
  if (value("models")) body.models = value("models").split(",").map((m) => m.trim()).filter(Boolean);
  for (const [field] of LIMITS) if (value(field)) body[field] = Number(value(field));
  if (value("expires")) body.expires_at = Math.floor(new Date(`${value("expires")}T23:59:59Z`).getTime() / 1000);
  return body;
}

export class KeysView {
  constructor() {
    this.els = {
      adminForm: $("#keys-admin-form"), adminKey: $("#keys-admin-key"), error: $("#keys-error"),
      form: $("#key-create"), secret: $("#key-secret"), table: $("#keys-table"),
    };
    this.armed = new Map(); // name -> time until which a revoke click is confirmed
    this.els.adminForm.addEventListener("submit", (event) => {
      event.preventDefault();
      keys.admin = this.els.adminKey.value;
      this.refresh();
    });
    this.els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
  }

  show() {
    this.els.adminKey.value = keys.admin;
    this.refresh();
  }

  hide() {
    this.els.secret.replaceChildren(); // a secret is shown once, and not left on a page nobody looks at
  }

  fail(error, what) {
    this.els.error.replaceChildren(errorBox(error, what));
    this.els.adminKey.classList.toggle("invalid", error.status === 401 || error.status === 403);
  }

  async refresh() {
    try {
      const { body } = await getJSON("/admin/keys", { admin: true });
      this.els.error.replaceChildren();
      this.els.adminKey.classList.remove("invalid");
      this.draw(body.data);
    } catch (error) {
      this.fail(error, "Could not list keys:");
      this.draw(null);
    }
  }

  showSecret(key, what) {
    const code = h("code.secret", { text: key.secret });
    const copy = h("button.btn.ghost.small", {
      type: "button", text: "Copy",
      onclick: async () => {
        try { await navigator.clipboard.writeText(key.secret); toast("Copied"); } catch { toast("Select and copy it", "error"); }
      },
    });
    this.els.secret.replaceChildren(h("div.alert.info", { role: "status" },
      h("strong", { text: `Key ${key.name} ${what}.` }), " Its secret, shown only now: ", code, " ", copy,
      h("span.detail", { text: "The gateway keeps only a hash: copy it now, it cannot be shown again." })));
  }

  async create() {
    try {
      const key = await adminCall("POST", "/admin/keys", keyBody(this.els.form));
      this.els.form.reset();
      this.showSecret(key, "created");
      this.refresh();
    } catch (error) {
      this.fail(error, "Could not create the key:");
    }
  }

  async rotate(name) {
    try {
      this.showSecret(await adminCall("POST", `/admin/keys/${encodeURIComponent(name)}/rotate`), "rotated");
      this.refresh();
    } catch (error) {
      this.fail(error, "Could not rotate the key:");
    }
  }

  /** Two clicks: the first arms the button for a few seconds (no blocking confirm dialog). */
  async revoke(name, button) {
    if (Date.now() > (this.armed.get(name) || 0)) {
      this.armed.set(name, Date.now() + 4000);
      button.textContent = "Confirm revoke";
      setTimeout(() => { if (button.isConnected) button.textContent = "Revoke"; }, 4000);
      return;
    }
    this.armed.delete(name);
    try {
      await adminCall("DELETE", `/admin/keys/${encodeURIComponent(name)}`);
      toast(`Key ${name} revoked`);
      this.refresh();
    } catch (error) {
      this.fail(error, "Could not revoke the key:");
    }
  }

  draw(list) {
    const body = this.els.table.tBodies[0];
    if (!list || !list.length) {
      body.replaceChildren(h("tr", {}, h("td.empty", { colspan: 8, text: list ? "No keys yet: the gateway is open to everyone. Create one above." : "–" })));
      return;
    }
    body.replaceChildren(...list.map((key) => {
      const active = key.status === "active";
      const actions = h("td.actions", {},
        active ? h("button.btn.ghost.small", { type: "button", text: "Rotate", onclick: () => this.rotate(key.name) }) : null,
        key.status !== "revoked" ? h("button.btn.ghost.small.danger-text", {
          type: "button", text: "Revoke", onclick: (event) => this.revoke(key.name, event.currentTarget),
        }) : null);
      return h("tr", { "data-key": key.name, class: active ? "" : "muted" },
        h("td", {}, h("strong", { text: key.name })), h("td", { text: key.status }), h("td", { text: key.owner || "–" }),
        h("td", {}, h("code", { text: `${key.prefix}…` })), h("td", { text: key.models.join(", ") || "all" }),
        h("td", { text: limitsText(key) }), h("td", { text: dateText(key.expires_at) }), actions);
    }));
  }
}
