// Conversations and preferences in the browser's localStorage: nothing about a chat is kept on
// the gateway. A full storage is reported, not swallowed.

const CONVERSATIONS = "labs.conversations.v1";
const PREFS = "labs.prefs.v1";

export class StorageFull extends Error {}

function read(name, fallback) {
  try {
    const text = localStorage.getItem(name);
    return text ? JSON.parse(text) : fallback;
  } catch {
    return fallback;
  }
}

function write(name, value) {
  try {
    localStorage.setItem(name, JSON.stringify(value));
  } catch (error) {
    throw new StorageFull(`Could not save in this browser (${error.name}): export and delete old conversations.`);
  }
}

export function newId() {
  return (crypto.randomUUID?.() || `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
}

export const prefs = {
  load() {
    return { model: "", temperature: "", maxTokens: "", thinking: true, ...read(PREFS, {}) };
  },
  save(values) {
    write(PREFS, values);
  },
};

/** The conversation list, newest first; each {id, title, created, updated, system, messages}. */
export class Conversations {
  constructor() {
    const items = read(CONVERSATIONS, []);
    this.items = Array.isArray(items) ? items.filter((c) => c && c.id && Array.isArray(c.messages)) : [];
    this.sort();
  }

  sort() {
    this.items.sort((a, b) => (b.updated || 0) - (a.updated || 0));
  }

  get(id) {
    return this.items.find((c) => c.id === id) || null;
  }

  create(system = "") {
    const now = Date.now();
    const conversation = { id: newId(), title: "", created: now, updated: now, system, messages: [] };
    this.items.unshift(conversation);
    return conversation;
  }

  touch(conversation) {
    conversation.updated = Date.now();
    this.sort();
  }

  remove(id) {
    this.items = this.items.filter((c) => c.id !== id);
    this.save();
  }

  save() {
    // Empty conversations are not worth keeping across reloads.
    write(CONVERSATIONS, this.items.filter((c) => c.messages.length));
  }
}

export function titleOf(conversation) {
  if (conversation.title) return conversation.title;
  const first = conversation.messages.find((m) => m.role === "user");
  if (!first) return "New chat";
  const text = first.content.replace(/\s+/g, " ").trim();
  return text.length > 60 ? `${text.slice(0, 57)}…` : text || "New chat";
}

/** Download JSON as a file (an object URL on a temporary link: no server round trip). */
export function downloadJSON(filename, value) {
  const blob = new Blob([JSON.stringify(value, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function exportable(conversations) {
  return { format: "labs.conversations", version: 1, exported_at: new Date().toISOString(), conversations };
}

export function fileSafe(text) {
  return (text || "chat").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "chat";
}
