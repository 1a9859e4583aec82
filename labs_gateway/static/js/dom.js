// Small DOM and formatting helpers shared by the views. Elements are built with textContent, so
// text from the API or the model never becomes markup by accident.

/** h("div.card.stat", {title: "x"}, child, "text") -> element. Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const element = document.createElement(name || "div");
  if (classes.length) element.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "class") element.classList.add(...String(value).split(" ").filter(Boolean));
    else if (key === "text") element.textContent = value;
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1, minimumFractionDigits: 1 });

export function fmtInt(value) {
  return Number.isFinite(value) ? integer.format(value) : "–";
}

export function fmtDecimal(value) {
  return Number.isFinite(value) ? decimal.format(value) : "–";
}

export function fmtPercent(fraction) {
  return Number.isFinite(fraction) ? `${decimal.format(fraction * 100)} %` : "–";
}

/** 3_219_776 -> "3.2 M"; 22_713_216 -> "22.7 M"; 1.2e9 -> "1.2 B". */
export function fmtCount(value) {
  if (!Number.isFinite(value) || value <= 0) return "–";
  for (const [size, unit] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (value >= size) return `${decimal.format(value / size)} ${unit}`;
  }
  return integer.format(value);
}

export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${decimal.format(ms / 1000)} s`;
}

export function fmtClock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function fmtWhen(ms) {
  const date = new Date(ms);
  const today = new Date();
  if (date.toDateString() === today.toDateString()) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleDateString([], { month: "short", day: "numeric" });
}

/** An error box: the API's message, and what the user can do about it. */
export function errorBox(error, prefix = "") {
  const box = h("div.alert.error", { role: "alert" });
  const status = error.status ? ` (HTTP ${error.status}${error.code ? `, ${error.code}` : ""})` : "";
  box.append(h("strong", { text: prefix }), prefix ? " " : "", error.message || String(error), status);
  if (error.hint) box.append(h("span.detail", { text: error.hint }));
  return box;
}

let toastRoot = null;

export function toast(message, kind = "") {
  toastRoot ||= document.getElementById("toasts");
  const item = h(`div.toast${kind ? `.${kind}` : ""}`, { role: kind === "error" ? "alert" : "status", text: message });
  toastRoot.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 6000 : 2500);
}
