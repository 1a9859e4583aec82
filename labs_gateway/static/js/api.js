// Talking to the gateway: keys typed by the user (sessionStorage only), the OpenAI error object
// turned into a readable ApiError, and chat completions streamed over the same SSE endpoint that
// every OpenAI client uses.

import { sseData } from "./sse.js";

const API_KEY = "labs.apiKey";
const ADMIN_KEY = "labs.adminKey";

function stored(name) {
  try { return sessionStorage.getItem(name) || ""; } catch { return ""; }
}

function store(name, value) {
  try {
    if (value) sessionStorage.setItem(name, value); else sessionStorage.removeItem(name);
  } catch { /* storage disabled: the key lives for this page only */ }
  window.dispatchEvent(new CustomEvent("labs:keys"));
}

export const keys = {
  get api() { return stored(API_KEY); },
  set api(value) { store(API_KEY, value.trim()); },
  get admin() { return stored(ADMIN_KEY); },
  set admin(value) { store(ADMIN_KEY, value.trim()); },
};

/** An error the user can read: the gateway's message, with status and code for context. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, type = null, param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.type = type;
    this.param = param;
  }

  /** A hint for the errors a user can fix from this page. */
  get hint() {
    if (this.status === 401) return "Check the key (API key button, top right; admin key on the Usage page).";
    if (this.status === 403) return "This key may not do that.";
    if (this.status === 429) return "Too many requests or streams for this key; wait a moment and retry.";
    if (this.status === 503) return "The core is not ready; see the Status page.";
    if (this.status === 0) return "Is the gateway running? Check the Status page.";
    return "";
  }
}

function fromErrorObject(error, status) {
  const e = error || {};
  return new ApiError(e.message || `HTTP ${status}`, { status, code: e.code, type: e.type, param: e.param });
}

/** The ApiError for a failed response: the OpenAI error object's message when there is one. */
export async function errorFrom(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && body.error) return fromErrorObject(body.error, response.status);
  } catch { /* not JSON */ }
  const detail = text.trim().slice(0, 300);
  return new ApiError(`HTTP ${response.status} ${response.statusText}${detail ? `: ${detail}` : ""}`,
    { status: response.status });
}

function headers(key, extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function send(path, init) {
  try {
    return await fetch(path, { cache: "no-store", credentials: "same-origin", ...init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`Cannot reach the gateway (${error.message})`, { status: 0 });
  }
}

/**
 * GET a JSON document. `admin` sends the admin key instead of the API key. Statuses listed in
 * `accept` (e.g. /ready's 503) are answers, not errors.
 */
export async function getJSON(path, { admin = false, signal, accept = [] } = {}) {
  const response = await send(path, { headers: headers(admin ? keys.admin : keys.api), signal });
  if (!response.ok && !accept.includes(response.status)) throw await errorFrom(response);
  try {
    return { status: response.status, body: await response.json() };
  } catch {
    throw new ApiError(`${path} did not answer JSON`, { status: response.status });
  }
}

/** An admin API call (POST / PATCH / DELETE with a JSON body) with the admin key; the JSON answer. */
export async function adminCall(method, path, body) {
  const init = { method, headers: headers(keys.admin, body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const response = await send(path, init);
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/**
 * POST /v1/chat/completions with stream:true; yields each chunk object. An error event in the
 * stream (the gateway sends one when the core fails mid-answer) is thrown as an ApiError.
 */
export async function* streamChat(body, { signal } = {}) {
  const response = await send("/v1/chat/completions", {
    method: "POST",
    headers: headers(keys.api, { "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw await errorFrom(response);
  for await (const data of sseData(response.body, signal)) {
    if (data === "[DONE]") return;
    let chunk;
    try { chunk = JSON.parse(data); } catch { throw new ApiError(`Unreadable stream event: ${data.slice(0, 200)}`); }
    if (chunk.error) throw fromErrorObject(chunk.error, response.status);
    yield chunk;
  }
}
