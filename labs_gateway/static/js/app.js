// Entry point: the four views behind hash routes (#chat, #usage, #keys, #status), the API key popover
// and the readiness dot in the top bar.

import { keys } from "./api.js";
import { ChatView } from "./chat.js";
import { $ } from "./dom.js";
import { icon } from "./icons.js";
import { KeysView } from "./keys.js";
import { readiness, StatusView } from "./status.js";
import { UsageView } from "./usage.js";

const HEALTH_MS = 15000;

function keyPopover() {
  const button = $("#key-button");
  const panel = $("#key-panel");
  const input = $("#api-key");
  const label = () => {
    button.querySelector(".wide-only").textContent = keys.api ? "Key set" : "API key";
    button.classList.toggle("set", Boolean(keys.api));
    button.title = keys.api ? "An API key is set for this tab" : "Set the API key (when the gateway needs one)";
  };
  const open = (yes) => {
    panel.hidden = !yes;
    button.setAttribute("aria-expanded", String(yes));
    if (yes) { input.value = keys.api; input.focus(); }
  };
  button.addEventListener("click", () => open(panel.hidden));
  panel.addEventListener("submit", (event) => {
    event.preventDefault();
    keys.api = input.value;
    open(false);
  });
  $("#api-key-clear").addEventListener("click", () => { keys.api = ""; input.value = ""; open(false); });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !panel.hidden) open(false); });
  document.addEventListener("click", (event) => {
    if (!panel.hidden && !panel.contains(event.target) && !button.contains(event.target)) open(false);
  });
  window.addEventListener("labs:keys", label);
  label();
}

async function checkHealth() {
  const badge = $("#health");
  const text = badge.querySelector(".health-text");
  try {
    const ready = await readiness();
    badge.classList.toggle("ok", ready.ready);
    badge.classList.toggle("bad", !ready.ready);
    text.textContent = ready.ready ? "Ready" : "Not ready";
    badge.title = ready.ready ? "A core is serving the default chat model" : "No core is ready: see Status";
  } catch (error) {
    badge.classList.remove("ok");
    badge.classList.add("bad");
    text.textContent = "Offline";
    badge.title = error.message;
  }
}

function main() {
  $("#toggle-sidebar").append(icon("menu"));
  const views = { chat: new ChatView(), usage: new UsageView(), keys: new KeysView(), status: new StatusView() };
  let current = null;
  const route = () => {
    const name = location.hash.slice(1) in views ? location.hash.slice(1) : "chat";
    if (name === current) return;
    if (current) views[current].hide();
    current = name;
    for (const section of document.querySelectorAll("main > .view")) section.hidden = section.dataset.view !== name;
    for (const link of document.querySelectorAll(".tabs a")) {
      link.classList.toggle("active", link.dataset.view === name);
      if (link.dataset.view === name) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    document.title = `labs · ${name[0].toUpperCase()}${name.slice(1)}`;
    views[name].show();
  };
  window.addEventListener("hashchange", route);
  keyPopover();
  route();
  checkHealth();
  setInterval(checkHealth, HEALTH_MS);
}

main();
