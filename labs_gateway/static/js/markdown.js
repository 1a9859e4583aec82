// Finished replies rendered as markdown. Model output is untrusted: raw HTML in it is shown as
// text (marked's html renderer escapes it), images become plain links (no third-party requests),
// and DOMPurify cleans the result anyway before it reaches the page. Code blocks get Prism
// highlighting and a Copy button.

import { Marked } from "../vendor/marked.esm.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHTML = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html(token) {
      return escapeHTML(token.text ?? token.raw ?? "");
    },
    image(token) {
      const label = escapeHTML(token.text || token.title || "image");
      return `<a href="${escapeHTML(token.href)}">[${label}]</a>`;
    },
  },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "img", "video", "audio", "iframe"],
  FORBID_ATTR: ["style", "id", "name"],
};

/** Sanitised HTML for a markdown text. */
export function renderHTML(text) {
  const html = marked.parse(text || "");
  if (!window.DOMPurify) throw new Error("DOMPurify did not load: refusing to render markdown");
  return window.DOMPurify.sanitize(html, PURIFY);
}

/** Replace the element's content with the rendered markdown. */
export function renderInto(element, text) {
  element.innerHTML = renderHTML(text);
  element.classList.add("md");
  for (const link of element.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  for (const code of element.querySelectorAll("pre > code")) decorate(code);
}

function languageOf(code) {
  const match = /(?:^|\s)language-([\w+#-]+)/.exec(code.className);
  return match ? match[1].toLowerCase() : "";
}

function decorate(code) {
  const pre = code.parentElement;
  const language = languageOf(code);
  const box = document.createElement("div");
  box.className = "code";
  const head = document.createElement("div");
  head.className = "code-head";
  const name = document.createElement("span");
  name.textContent = language || "text";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.addEventListener("click", () => copyText(code.textContent, copy));
  head.append(name, copy);
  pre.replaceWith(box);
  box.append(head, pre);
  const prism = window.Prism;
  if (prism && language && prism.languages[language]) {
    code.className = `language-${language}`;
    prism.highlightElement(code);
  }
}

/** Copy to the clipboard, with a fallback where the Clipboard API is missing; the button says how it went. */
export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // No clipboard API outside secure contexts (plain http on a LAN address): select and copy.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    try { ok = document.execCommand("copy"); } catch { ok = false; }
    area.remove();
  }
  button.textContent = ok ? "Copied" : "Copy failed";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}
