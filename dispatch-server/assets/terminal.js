// The orchestrator terminal: streams a turn from POST /api/orchestrator (SSE over fetch, so the
// CSRF header rides along), shows text as it arrives, tool calls as lines, proposals as cards
// with Confirm / Cancel; restores the session after a reload; Esc cancels the turn.
import { api, toast } from "./app.js";

const KEY = "dispatch.orchestrator.session";
const log = document.getElementById("term-log");
const form = document.getElementById("term-form");
const prompt = document.getElementById("term-prompt");
const send = document.getElementById("term-send");
const title = document.getElementById("term-title");
const usageEl = document.getElementById("term-usage");
const modelEl = document.getElementById("term-model");

let session = localStorage.getItem(KEY);
let running = null; // AbortController of the turn in flight
const cards = new Map(); // proposal id -> card element

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Markdown as the model writes it — headings, lists, code blocks, **bold**, `code`, links — built
// as DOM nodes (never HTML from the text), once a block of text is complete.
function inline(parent, text) {
  const re = /(\*\*[^*]+\*\*|`[^`]+`|\[[^\]]+\]\((?:https?:\/\/|\/)[^)\s]+\))/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    const t = m[0];
    if (t.startsWith("**")) {
      parent.appendChild(el("strong", "", t.slice(2, -2)));
    } else if (t.startsWith("`")) {
      parent.appendChild(el("code", "", t.slice(1, -1)));
    } else {
      const close = t.indexOf("](");
      const a = el("a", "", t.slice(1, close));
      a.href = t.slice(close + 2, -1);
      a.rel = "noopener noreferrer";
      parent.appendChild(a);
    }
    last = m.index + t.length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function markdown(target, text) {
  target.replaceChildren();
  target.classList.add("md");
  const lines = text.split("\n");
  let list = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      target.appendChild(el("pre", "", code.join("\n")));
      list = null;
      continue;
    }
    const bullet = line.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
    if (bullet) {
      if (!list) list = target.appendChild(el(/^\s*\d/.test(line) ? "ol" : "ul"));
      inline(list.appendChild(el("li")), bullet[1]);
      continue;
    }
    list = null;
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    if (heading) {
      inline(target.appendChild(el("div", "h")), heading[2]);
    } else if (line.trim()) {
      inline(target.appendChild(el("div")), line);
    } else {
      target.appendChild(el("div", "gap"));
    }
  }
}

function add(e) {
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.appendChild(e);
  if (stick) log.scrollTop = log.scrollHeight;
  return e;
}

function scroll() {
  log.scrollTop = log.scrollHeight;
}

function summary(input) {
  if (!input || typeof input !== "object") return "";
  const parts = Object.entries(input)
    .filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  const s = parts.join(", ");
  return s.length > 120 ? `${s.slice(0, 119)}…` : s;
}

function errorOf(result) {
  try {
    const v = typeof result === "string" ? JSON.parse(result) : result;
    return (v && v.error) || "";
  } catch {
    return "";
  }
}

function describe(p) {
  const kinds = {
    prd_investigate: "investigation", prd_implement: "implementation", qa: "QA",
    deep_research: "deep research", auto_triage: "triage", error_fix: "error fix",
  };
  const t = p.target || {};
  const what = t.type === "issue"
    ? `${t.identifier} “${t.title}”`
    : `a new issue “${t.title}” (${t.priority || "P3"})`;
  return `${kinds[p.kind] || p.kind} of ${what}`;
}

function gateText(g) {
  if (!g) return ["", ""];
  if (g.decision === "allow") return ["gates: allowed now", "gate-allow"];
  const code = (g.reason && g.reason.code) || g.decision;
  return [`gates now: ${g.decision} (${code})`, "gate-deny"];
}

function renderCard(p) {
  let card = cards.get(p.id);
  if (!card) {
    card = el("div", "proposal");
    card.dataset.proposal = p.id;
    cards.set(p.id, card);
    add(card);
  }
  card.replaceChildren();
  card.appendChild(el("div", "what", `Proposal: ${describe(p)}`));
  const [gate, gateCls] = gateText(p.gate);
  const meta = el("div", "meta");
  meta.appendChild(el("span", gateCls, gate));
  if (typeof p.estimated_cost_usd === "number") {
    meta.appendChild(document.createTextNode(` · est. $${p.estimated_cost_usd.toFixed(2)}`));
  }
  if (p.status === "pending" && p.expires_at) {
    meta.appendChild(document.createTextNode(` · expires ${new Date(p.expires_at).toLocaleTimeString()}`));
  }
  card.appendChild(meta);
  if (p.status === "pending") {
    card.classList.remove("decided");
    const ok = el("button", "primary", "Confirm");
    ok.type = "button";
    ok.dataset.action = "confirm";
    const no = el("button", "", "Cancel");
    no.type = "button";
    no.dataset.action = "cancel";
    for (const b of [ok, no]) {
      b.addEventListener("click", async () => {
        ok.disabled = no.disabled = true;
        try {
          renderCard(await api("POST", `/api/orchestrator/proposals/${p.id}/${b.dataset.action}`));
        } catch (err) {
          toast(err.message);
          ok.disabled = no.disabled = false;
        }
      });
    }
    card.append(ok, document.createTextNode(" "), no);
  } else {
    card.classList.add("decided");
    const text = p.outcome ? p.outcome.message : p.status;
    card.appendChild(el("div", "outcome", `→ ${text}`)).dataset.status = p.status;
  }
  return card;
}

let turnUsage = null;
function showUsage(u) {
  if (!turnUsage) turnUsage = { in: 0, out: 0, cache: 0 };
  turnUsage.in += u.input_tokens || 0;
  turnUsage.out += u.output_tokens || 0;
  turnUsage.cache += (u.cache_read_input_tokens || 0) + (u.cache_creation_input_tokens || 0);
  if (u.model) modelEl.textContent = u.model;
  usageEl.textContent = `in ${turnUsage.in}${turnUsage.cache ? ` (+${turnUsage.cache} cache)` : ""} · out ${turnUsage.out} tokens`;
}

function restore(data) {
  log.querySelector(".term-hello")?.remove();
  title.textContent = data.title || "session";
  const failed = new Map();
  for (const m of data.messages || []) {
    for (const b of m.content || []) {
      if (b.type === "tool_result") failed.set(b.tool_use_id, b.is_error ? errorOf(b.content) : null);
    }
  }
  for (const m of data.messages || []) {
    for (const b of m.content || []) {
      if (b.type === "text") {
        const e = add(el("div", `msg ${m.role}`, b.text));
        if (m.role === "assistant") markdown(e, b.text);
      } else if (b.type === "tool_use") {
        const err = failed.get(b.id);
        add(el("div", err ? "tool err" : "tool ok", `${b.name}(${summary(b.input)})${err ? `: ${err}` : ""}`));
      }
    }
  }
  for (const p of data.proposals || []) renderCard(p);
  const u = data.usage || {};
  usageEl.textContent = `session: in ${u.input_tokens || 0} · out ${u.output_tokens || 0} tokens`;
  scroll();
}

async function load() {
  if (!session) return;
  try {
    restore(await api("GET", `/api/orchestrator?sessionId=${encodeURIComponent(session)}`));
  } catch (err) {
    if (err.status === 404) {
      localStorage.removeItem(KEY);
      session = null;
    } else {
      toast(err.message);
    }
  }
}

async function turn(message) {
  log.querySelector(".term-hello")?.remove();
  add(el("div", "msg user", message));
  const ctrl = new AbortController();
  running = ctrl;
  send.disabled = true;
  turnUsage = null;
  let text = null; // the assistant element text goes into
  const tools = new Map();
  const body = { message };
  if (session) body.sessionId = session;
  try {
    const res = await fetch("/api/orchestrator", {
      method: "POST",
      headers: { "content-type": "application/json", "x-dispatch-csrf": "1" },
      credentials: "same-origin",
      body: JSON.stringify(body),
      signal: ctrl.signal,
    });
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try { msg = (await res.json()).error || msg; } catch { /* not JSON */ }
      add(el("div", "msg error", msg));
      return;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, end);
        buf = buf.slice(end + 2);
        for (const line of chunk.split("\n")) {
          if (!line.startsWith("data:")) continue;
          let ev;
          try { ev = JSON.parse(line.slice(5).trim()); } catch { continue; }
          const d = ev.data;
          switch (ev.type) {
            case "session_id":
              session = d;
              localStorage.setItem(KEY, d);
              break;
            case "text_delta":
              if (!text) {
                text = add(el("div", "msg assistant cursor", ""));
              }
              text.textContent += d;
              if (log.scrollHeight - log.scrollTop - log.clientHeight < 80) scroll();
              break;
            case "tool_start":
              if (text) { text.classList.remove("cursor"); markdown(text, text.textContent); text = null; }
              tools.set(d.id, add(el("div", "tool run", `${d.name}…`)));
              break;
            case "tool_result": {
              const line = tools.get(d.tool_use_id) || add(el("div", "tool", ""));
              const err = d.is_error ? errorOf(d.result) : "";
              line.className = d.is_error ? "tool err" : "tool ok";
              line.textContent = `${d.name}(${summary(d.input)})${err ? `: ${err}` : ""}`;
              break;
            }
            case "proposal":
              renderCard(d);
              break;
            case "usage":
              showUsage(d);
              break;
            case "error":
              add(el("div", "msg error", d.message || "error"));
              break;
            case "done":
              break;
            default:
              break;
          }
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") {
      add(el("div", "msg note", "[cancelled]"));
    } else {
      add(el("div", "msg error", err.message));
    }
  } finally {
    if (text) {
      text.classList.remove("cursor");
      markdown(text, text.textContent);
    }
    running = null;
    send.disabled = false;
    prompt.focus();
    if (session) {
      api("GET", `/api/orchestrator?sessionId=${encodeURIComponent(session)}`)
        .then((s) => { title.textContent = s.title || "session"; })
        .catch(() => {});
    }
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const message = prompt.value.trim();
  if (!message || running) return;
  prompt.value = "";
  prompt.style.height = "";
  turn(message);
});

prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});
prompt.addEventListener("input", () => {
  prompt.style.height = "";
  prompt.style.height = `${Math.min(prompt.scrollHeight, 200)}px`;
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && running) {
    e.preventDefault();
    running.abort();
  }
});

document.getElementById("term-new").addEventListener("click", () => {
  if (running) running.abort();
  localStorage.removeItem(KEY);
  session = null;
  cards.clear();
  log.replaceChildren();
  title.textContent = "new session";
  usageEl.textContent = "";
  prompt.focus();
});

await load();
prompt.focus();
document.body.dataset.terminal = "ready";
