// The chat view: model picker, settings, conversations (localStorage), streaming replies over
// POST /v1/chat/completions (stream: true), Stop (AbortController: the gateway cancels the gRPC
// call and the core frees the slot), reasoning apart, markdown once a reply ends, per-reply stats.

import { getJSON, streamChat } from "./api.js";
import { $, errorBox, fmtDecimal, fmtInt, fmtMs, fmtWhen, h, toast } from "./dom.js";
import { financeCard } from "./finance.js";
import { copyText, renderInto } from "./markdown.js";
import { Conversations, downloadJSON, exportable, fileSafe, prefs, titleOf } from "./store.js";

const EXAMPLES = [
  "Draft a friendly reply to a customer asking for a delivery update",
  "How much did we spend on software last year?",
  "Write a Python function that checks an IBAN",
];
const FINISH = { stop: "finished", length: "hit max tokens", abort: "aborted by the server" };

/** Reply statistics: time to first token, tokens (exact from usage, else counted chunks), decode rate. */
function replyStats(run, reply) {
  const usage = reply.usage;
  const tokens = usage ? usage.completion_tokens : run.chunks;
  const ttft = run.first === null ? null : run.first - run.start;
  const decodeMs = run.first === null ? 0 : run.last - run.first;
  return {
    ttft_ms: ttft,
    tokens,
    exact: Boolean(usage),
    prompt_tokens: usage ? usage.prompt_tokens : null,
    tok_s: decodeMs > 0 && tokens > 1 ? (tokens - 1) / (decodeMs / 1000) : null,
    total_ms: performance.now() - run.start,
  };
}

export class ChatView {
  constructor() {
    this.els = {
      sidebar: $("#sidebar"), scrim: $("#scrim"), list: $("#conversation-list"), newChat: $("#new-chat"),
      exportAll: $("#export-all"), title: $("#conv-title"), titleInput: $("#conv-title-input"),
      rename: $("#rename-chat"), exportChat: $("#export-chat"), remove: $("#delete-chat"),
      model: $("#model"), toggleSettings: $("#toggle-settings"), settings: $("#settings"),
      system: $("#system-prompt"), temperature: $("#temperature"), maxTokens: $("#max-tokens"),
      thinkingField: $("#thinking-field"), thinking: $("#thinking"), modelInfo: $("#model-info"),
      notice: $("#chat-notice"), messages: $("#messages"), composer: $("#composer"), prompt: $("#prompt"),
      send: $("#send"), stop: $("#stop"), toggleSidebar: $("#toggle-sidebar"),
    };
    this.store = new Conversations();
    this.prefs = prefs.load();
    this.models = [];
    this.modelsLoaded = false;
    this.current = null;
    this.draftSystem = "";
    this.run = null;
    this.views = new WeakMap();
    this.pending = new Set();
    this.frame = 0;
    this.deleteArmed = 0;
    if (matchMedia("(max-width: 760px)").matches) this.els.prompt.placeholder = "Message";
    this.bind();
    this.restorePrefs();
    this.select(this.store.items[0]?.id ?? null);
  }

  // ------------------------------------------------------------ lifecycle

  show() {
    this.els.toggleSidebar.hidden = false;
    if (!this.modelsLoaded) this.loadModels();
    if (matchMedia("(min-width: 761px)").matches) this.els.prompt.focus();
  }

  hide() {
    this.els.toggleSidebar.hidden = true;
    this.openSidebar(false);
  }

  bind() {
    const e = this.els;
    e.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send(e.prompt.value);
    });
    e.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send(e.prompt.value);
      }
    });
    e.prompt.addEventListener("input", () => this.autosize());
    e.stop.addEventListener("click", () => this.stop());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.run && !document.getElementById("view-chat").hidden) {
        event.preventDefault();
        this.stop();
      }
    });
    e.newChat.addEventListener("click", () => this.newChat());
    e.exportAll.addEventListener("click", () => this.exportAll());
    e.rename.addEventListener("click", () => this.startRename());
    e.titleInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); this.finishRename(true); }
      if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); this.finishRename(false); }
    });
    e.titleInput.addEventListener("blur", () => this.finishRename(true));
    e.exportChat.addEventListener("click", () => this.exportCurrent());
    e.remove.addEventListener("click", () => this.deleteCurrent());
    e.toggleSettings.addEventListener("click", () => {
      const open = e.settings.hidden;
      e.settings.hidden = !open;
      e.toggleSettings.setAttribute("aria-expanded", String(open));
    });
    e.model.addEventListener("change", () => { this.savePrefs(); this.describeModel(); });
    for (const input of [e.temperature, e.maxTokens, e.thinking]) input.addEventListener("change", () => this.savePrefs());
    e.system.addEventListener("input", () => {
      if (this.current) this.current.system = e.system.value; else this.draftSystem = e.system.value;
    });
    e.system.addEventListener("change", () => this.save());
    e.toggleSidebar.addEventListener("click", () => this.openSidebar(!e.sidebar.classList.contains("open")));
    e.scrim.addEventListener("click", () => this.openSidebar(false));
    window.addEventListener("labs:keys", () => { this.modelsLoaded = false; if (!$("#view-chat").hidden) this.loadModels(); });
  }

  openSidebar(open) {
    this.els.sidebar.classList.toggle("open", open);
    this.els.scrim.hidden = !open;
    this.els.toggleSidebar.setAttribute("aria-expanded", String(open));
  }

  autosize() {
    const prompt = this.els.prompt;
    prompt.style.height = "auto";
    prompt.style.height = `${Math.min(prompt.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  }

  // ------------------------------------------------------------ models and preferences

  restorePrefs() {
    this.els.temperature.value = this.prefs.temperature;
    this.els.maxTokens.value = this.prefs.maxTokens;
    this.els.thinking.checked = this.prefs.thinking !== false;
  }

  savePrefs() {
    this.prefs = {
      model: this.els.model.value || this.prefs.model, temperature: this.els.temperature.value,
      maxTokens: this.els.maxTokens.value, thinking: this.els.thinking.checked,
    };
    try { prefs.save(this.prefs); } catch (error) { toast(error.message, "error"); }
  }

  async loadModels() {
    const select = this.els.model;
    this.els.notice.replaceChildren();
    try {
      const { body } = await getJSON("/v1/models");
      this.models = (body.data || []).filter((m) => (m.labs?.kind ?? "chat") === "chat");
      this.modelsLoaded = true;
    } catch (error) {
      this.models = [];
      select.replaceChildren(h("option", { value: "", text: "No models" }));
      this.els.notice.append(errorBox(error, "Could not list the models:"));
      this.describeModel();
      return;
    }
    if (!this.models.length) {
      select.replaceChildren(h("option", { value: "", text: "No chat model" }));
      this.els.notice.append(h("div.alert.info", { text: "The cores serve no chat model. See the Status page." }));
      this.describeModel();
      return;
    }
    select.replaceChildren(...this.models.map((m) => h("option", {
      value: m.id, disabled: m.labs && m.labs.ready === false,
      text: m.labs && m.labs.ready === false ? `${m.id} (${m.labs.state})` : m.id,
    })));
    const usable = this.models.filter((m) => m.labs?.ready !== false);
    const wanted = usable.find((m) => m.id === this.prefs.model) || usable.find((m) => m.labs?.is_default) || usable[0];
    if (wanted) select.value = wanted.id;
    this.describeModel();
  }

  selectedModel() {
    return this.models.find((m) => m.id === this.els.model.value) || null;
  }

  describeModel() {
    const model = this.selectedModel();
    const info = model?.labs || {};
    this.els.thinkingField.hidden = !info.reasoning;
    this.els.maxTokens.max = info.context_length || "";
    const parts = [];
    if (info.context_length) parts.push(`context ${fmtInt(info.context_length)} tokens`);
    if (info.dtype || info.device) parts.push([info.dtype, info.device].filter(Boolean).join(" on "));
    if (info.serving_path) parts.push(`${info.serving_path} engine`);
    if (info.reasoning) parts.push("thinking model");
    this.els.modelInfo.textContent = model ? `${model.id}: ${parts.join(" · ")}` : "";
  }

  // ------------------------------------------------------------ conversations

  select(id) {
    if (this.els.titleInput && !this.els.titleInput.hidden) this.finishRename(true);
    this.current = id ? this.store.get(id) : null;
    this.els.system.value = this.current ? this.current.system || "" : this.draftSystem;
    this.renderList();
    this.renderConversation();
  }

  newChat() {
    this.draftSystem = this.current?.system || this.draftSystem;
    this.select(null);
    this.openSidebar(false);
    this.els.prompt.focus();
  }

  save() {
    try { this.store.save(); } catch (error) { toast(error.message, "error"); }
  }

  renderList() {
    const items = this.store.items.filter((c) => c.messages.length);
    if (!items.length) {
      this.els.list.replaceChildren(h("li.empty", { text: "No conversations yet." }));
    } else {
      this.els.list.replaceChildren(...items.map((c) => h("li", {}, h("button", {
        type: "button", class: c === this.current ? "active" : "", "aria-current": c === this.current ? "true" : null,
        "data-id": c.id, onclick: () => { this.select(c.id); this.openSidebar(false); },
      }, h("span.t", { text: titleOf(c) }), h("span.d", { text: `${fmtWhen(c.updated)} · ${c.messages.length} messages` })))));
    }
    const has = Boolean(this.current?.messages.length);
    this.els.title.textContent = this.current ? titleOf(this.current) : "New chat";
    for (const button of [this.els.rename, this.els.exportChat, this.els.remove]) button.disabled = !has;
    this.els.exportAll.disabled = !items.length;
  }

  renderConversation() {
    const box = this.els.messages;
    box.replaceChildren();
    const messages = this.current?.messages || [];
    if (!messages.length) {
      box.append(h("div.empty-state", {},
        h("h2", { text: "What can I help with?" }),
        h("p", { text: "Answers come from the models on your own hardware; nothing leaves this network." }),
        h("div.examples", {}, EXAMPLES.map((text) => h("button", {
          type: "button", text, onclick: () => { this.els.prompt.value = text; this.autosize(); this.els.prompt.focus(); },
        })))));
      return;
    }
    for (const message of messages) box.append(this.messageView(message).root);
    box.scrollTop = box.scrollHeight;
  }

  messageView(message) {
    if (message.role === "user") {
      return { root: h("article.msg.user", {}, h("div.bubble", { text: message.content })) };
    }
    const view = {
      name: h("span.who"), badges: h("span"), reasoningBody: h("div.reasoning-body"), summary: h("summary"),
      body: h("div.msg-body"), extras: h("div"), stats: h("div.msg-stats"),
    };
    view.reasoning = h("details.reasoning", {}, view.summary, view.reasoningBody);
    view.summary.addEventListener("click", () => { view.reasoning.dataset.touched = "1"; });
    view.root = h("article.msg.assistant", {}, h("div.msg-head", {}, view.name, view.badges), view.reasoning,
      view.body, view.extras, view.stats);
    this.views.set(message, view);
    this.fill(message, view);
    return view;
  }

  /** Draw a reply: plain text while it streams, markdown once it has ended. */
  fill(message, view) {
    const streaming = this.run?.reply === message;
    view.name.textContent = message.model || "assistant";
    view.badges.replaceChildren(...[
      message.labs?.source === "finance" ? h("span.badge.finance", { text: "finance data" }) : null,
      message.stopped ? h("span.badge.stopped", { text: "stopped" }) : null].filter(Boolean));

    view.reasoning.hidden = !message.reasoning;
    if (message.reasoning) {
      view.reasoningBody.textContent = message.reasoning;
      view.reasoningBody.classList.toggle("streaming", streaming);
      if (streaming) {
        view.summary.textContent = message.content ? "Reasoning" : "Thinking…";
        if (!message.content && !view.reasoning.dataset.touched) view.reasoning.open = true;
      } else {
        const tokens = message.usage?.completion_tokens_details?.reasoning_tokens;
        view.summary.textContent = tokens ? `Reasoning · ${fmtInt(tokens)} tokens` : "Reasoning";
      }
    }

    view.body.classList.toggle("streaming", streaming);
    view.body.classList.toggle("cursor", streaming);
    if (streaming) {
      view.body.textContent = message.content;
    } else if (message.content) {
      try {
        renderInto(view.body, message.content);
      } catch (error) {
        view.body.textContent = message.content;
        view.body.classList.add("streaming");
        toast(error.message, "error");
      }
    } else {
      view.body.replaceChildren();
    }
    if (!streaming && message.reasoning && !view.reasoning.dataset.touched) view.reasoning.open = false;

    view.extras.replaceChildren();
    if (message.labs?.source === "finance") view.extras.append(financeCard(message.labs));
    for (const call of message.toolCalls || []) if (call) view.extras.append(toolCallCard(call));
    if (message.error) view.extras.append(errorBox(message.error, "The request failed:"));
    this.fillStats(message, view, streaming);
  }

  fillStats(message, view, streaming) {
    view.stats.replaceChildren();
    if (streaming) {
      view.stats.append(h("span", { text: "Generating… Esc or Stop to end" }));
      return;
    }
    const s = message.stats;
    if (s) {
      if (s.ttft_ms != null) view.stats.append(h("span", { title: "time to first token", text: `TTFT ${fmtMs(s.ttft_ms)}` }));
      if (message.labs?.source === "finance" && !s.tokens) {
        view.stats.append(h("span", { class: "tokens", text: "no model tokens" }));
      } else if (s.tokens || s.exact) {
        view.stats.append(h("span", {
          class: "tokens", title: s.exact ? "completion tokens (usage)" : "counted from stream chunks (stopped before usage)",
          text: `${s.exact ? "" : "≈"}${fmtInt(s.tokens)} tokens`,
        }));
      }
      if (s.tok_s) view.stats.append(h("span", { title: "decode rate after the first token", text: `${fmtDecimal(s.tok_s)} tok/s` }));
      if (s.prompt_tokens != null) {
        view.stats.append(h("span", { text: `prompt ${fmtInt(s.prompt_tokens)}` }));
      }
    }
    if (message.stopped) view.stats.append(h("span", { text: "stopped by you" }));
    else if (message.finish) view.stats.append(h("span", { text: FINISH[message.finish] || message.finish }));
    const actions = h("span.act");
    if (message.content) {
      actions.append(h("button", { type: "button", text: "Copy", onclick: (event) => copyText(message.content, event.target) }));
    }
    const messages = this.current?.messages || [];
    if (messages[messages.length - 1] === message && !this.run) {
      actions.append(h("button", { type: "button", text: "Retry", onclick: () => this.retry() }));
    }
    view.stats.append(actions);
  }

  // ------------------------------------------------------------ sending and streaming

  async send(text) {
    text = (text || "").trim();
    if (!text || this.run) return;
    const model = this.els.model.value;
    if (!model) {
      toast(this.modelsLoaded ? "No chat model is ready." : "Models are not loaded yet (see the message above).", "error");
      return;
    }
    let conversation = this.current;
    if (!conversation) {
      conversation = this.store.create(this.els.system.value);
      this.current = conversation;
      this.draftSystem = "";
    }
    conversation.messages.push({ role: "user", content: text, at: Date.now() });
    this.els.prompt.value = "";
    this.autosize();
    await this.generate(conversation, model);
  }

  retry() {
    const conversation = this.current;
    if (!conversation || this.run) return;
    const last = conversation.messages[conversation.messages.length - 1];
    if (last?.role === "assistant") conversation.messages.pop();
    if (!conversation.messages.length) return;
    this.generate(conversation, this.els.model.value || last?.model);
  }

  requestBody(conversation, reply) {
    const messages = [];
    if (conversation.system?.trim()) messages.push({ role: "system", content: conversation.system.trim() });
    for (const message of conversation.messages) {
      if (message === reply) break;
      if (message.role === "assistant" && !message.content) continue; // failed replies are not history
      messages.push({ role: message.role, content: message.content });
    }
    const body = { model: reply.model, messages, stream: true, stream_options: { include_usage: true } };
    const temperature = this.els.temperature.value.trim();
    if (temperature !== "") body.temperature = Number(temperature);
    const maxTokens = this.els.maxTokens.value.trim();
    if (maxTokens !== "") body.max_tokens = Number(maxTokens);
    if (this.selectedModel()?.labs?.reasoning) body.enable_thinking = this.els.thinking.checked;
    return body;
  }

  async generate(conversation, model) {
    const reply = { role: "assistant", content: "", reasoning: "", model, at: Date.now() };
    conversation.messages.push(reply);
    this.store.touch(conversation);
    const run = { reply, conversation, controller: new AbortController(), start: performance.now(), first: null, last: null, chunks: 0 };
    this.run = run;
    this.setRunning(true);
    this.renderList();
    this.renderConversation();
    const body = this.requestBody(conversation, reply);
    try {
      for await (const chunk of streamChat(body, { signal: run.controller.signal })) {
        if (chunk.model) reply.model = chunk.model;
        if (chunk.labs) reply.labs = chunk.labs;
        if (chunk.usage) reply.usage = chunk.usage;
        const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0);
        if (choice) {
          const delta = choice.delta || {};
          for (const part of delta.tool_calls || []) {
            // OpenAI's stream: a call's first part has id and name, later ones append arguments.
            reply.toolCalls ||= [];
            const call = reply.toolCalls[part.index] ||= { id: part.id || "", name: part.function?.name || "", arguments: "" };
            call.arguments += part.function?.arguments || "";
            run.chunks += 1;
          }
          if (delta.content || delta.reasoning_content) {
            reply.content += delta.content || "";
            reply.reasoning += delta.reasoning_content || "";
            run.chunks += 1;
            run.last = performance.now();
            if (run.first === null) run.first = run.last;
          }
          if (choice.finish_reason) reply.finish = choice.finish_reason;
        }
        this.schedule(reply);
      }
    } catch (error) {
      if (error.name === "AbortError") {
        reply.stopped = true;
      } else {
        reply.error = { message: error.message, status: error.status || 0, code: error.code || null, hint: error.hint || "" };
      }
    } finally {
      reply.stats = replyStats(run, reply);
      if (!reply.reasoning) delete reply.reasoning;
      this.run = null;
      this.setRunning(false);
      this.store.touch(conversation);
      this.save();
      this.renderList();
      if (this.current === conversation) this.renderConversation();
    }
  }

  /** Coalesce stream updates into one DOM update per animation frame. */
  schedule(message) {
    this.pending.add(message);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const box = this.els.messages;
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
      for (const item of this.pending) {
        const view = this.views.get(item);
        if (view && view.root.isConnected) this.fill(item, view);
      }
      this.pending.clear();
      if (atBottom) box.scrollTop = box.scrollHeight;
    });
  }

  stop() {
    if (this.run) this.run.controller.abort();
  }

  setRunning(running) {
    this.els.send.hidden = running;
    this.els.stop.hidden = !running;
    document.body.classList.toggle("generating", running);
  }

  // ------------------------------------------------------------ rename, export, delete

  startRename() {
    if (!this.current) return;
    const input = this.els.titleInput;
    input.value = titleOf(this.current);
    input.hidden = false;
    this.els.title.hidden = true;
    input.focus();
    input.select();
  }

  finishRename(keep) {
    const input = this.els.titleInput;
    if (input.hidden) return;
    input.hidden = true;
    this.els.title.hidden = false;
    if (keep && this.current) {
      this.current.title = input.value.trim();
      this.save();
    }
    this.renderList();
  }

  exportCurrent() {
    if (!this.current) return;
    downloadJSON(`labs-chat-${fileSafe(titleOf(this.current))}.json`, exportable([this.current]));
  }

  exportAll() {
    const items = this.store.items.filter((c) => c.messages.length);
    downloadJSON(`labs-chats-${new Date().toISOString().slice(0, 10)}.json`, exportable(items));
  }

  /** Two clicks: the first arms the button for a few seconds (no blocking confirm dialog). */
  deleteCurrent() {
    if (!this.current) return;
    const button = this.els.remove;
    if (Date.now() > this.deleteArmed) {
      this.deleteArmed = Date.now() + 4000;
      button.textContent = "Confirm delete";
      setTimeout(() => { button.textContent = "Delete"; }, 4000);
      return;
    }
    this.deleteArmed = 0;
    button.textContent = "Delete";
    if (this.run?.conversation === this.current) this.stop();
    this.store.remove(this.current.id);
    this.select(this.store.items.find((c) => c.messages.length)?.id ?? null);
    toast("Conversation deleted");
  }
}

/** One tool call: the function's name and its arguments (pretty-printed when they are JSON). */
function toolCallCard(call) {
  let args = call.arguments;
  try {
    args = JSON.stringify(JSON.parse(call.arguments), null, 2);
  } catch {
    // still streaming, or not JSON: show it as it is
  }
  return h("div.tool-call", {}, h("div.tool-call-head", {}, h("span.badge", { text: "tool call" }),
    h("code", { text: call.name }), h("span.muted", { text: call.id })), h("pre", { text: args }));
}
