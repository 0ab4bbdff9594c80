// The issue page: the live agent terminal (stored chunks replayed, then streamed), plan review,
// spawn / cancel, comments.
import { api, toast } from "./app.js";

const root = document.querySelector("[data-issue]");
const issueId = root.dataset.issue;
const term = document.getElementById("terminal");

// ANSI escape sequences (colours, cursor moves) are dropped before showing output.
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007]*(\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;

function appendTerminal(content) {
  const atBottom = term.scrollHeight - term.scrollTop - term.clientHeight < 40;
  for (const raw of content.replace(ANSI, "").split("\n")) {
    if (raw === "") continue;
    const line = document.createElement("div");
    if (raw.startsWith("[TOOL]")) line.className = "tool";
    else if (raw.startsWith("[RESULT]")) line.className = "result";
    else if (raw.startsWith("[COMPLETED]")) line.className = "done";
    line.textContent = raw;
    term.appendChild(line);
  }
  if (atBottom) term.scrollTop = term.scrollHeight;
}

function appendActivity(a) {
  const list = document.getElementById("timeline");
  if (!list || document.querySelector(`#timeline li[data-activity="${a.id}"]`)) return;
  const li = document.createElement("li");
  li.dataset.activity = a.id;
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `${new Date(a.created_at || a.timestamp || Date.now()).toLocaleString()} · ${a.type || "activity"}`;
  const body = document.createElement("div");
  body.textContent = a.content || "";
  li.append(when, body);
  list.prepend(li);
}

const live = document.getElementById("live");
const source = new EventSource(`/api/issues/${issueId}/activity/stream`);
source.onopen = () => { live.textContent = "● live"; };
source.onerror = () => { live.textContent = "○ reconnecting"; };
source.onmessage = (e) => {
  let ev;
  try { ev = JSON.parse(e.data); } catch { return; }
  if (ev.type === "terminal_output" && ev.data) appendTerminal(ev.data.content || "");
  else if (ev.type === "activity" && ev.data) appendActivity(ev.data);
  else if (ev.type === "activity" && ev.activity) appendActivity(ev.activity);
};

async function act(button, fn) {
  button.disabled = true;
  try {
    await fn();
  } catch (err) {
    toast(err.message);
    button.disabled = false;
    return;
  }
  location.reload();
}

for (const b of document.querySelectorAll("[data-spawn]")) {
  b.addEventListener("click", () => act(b, async () => {
    const ctx = document.getElementById("spawn-context").value.trim();
    const body = { type: b.dataset.spawn };
    if (ctx) body.additional_context = ctx;
    const r = await api("POST", `/api/issues/${issueId}/spawn`, body);
    toast(r && r.message ? r.message : "spawn requested", true);
  }));
}
document.getElementById("cancel-run")?.addEventListener("click", (e) =>
  act(e.target, () => api("POST", `/api/issues/${issueId}/spawn/cancel`, {})));

document.getElementById("approve-plan")?.addEventListener("click", (e) =>
  act(e.target, () => api("POST", `/api/issues/${issueId}/plan`, {
    action: "approve",
    auto_spawn: document.getElementById("auto-implement").checked,
  })));
document.getElementById("reject-plan")?.addEventListener("click", (e) => {
  const feedback = document.getElementById("plan-feedback").value.trim();
  if (!feedback) {
    toast("Rejecting a plan needs feedback for the agent.");
    document.getElementById("plan-feedback").focus();
    return;
  }
  act(e.target, () => api("POST", `/api/issues/${issueId}/plan`, { action: "reject", feedback }));
});

document.getElementById("comment-form")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = document.getElementById("comment-body").value.trim();
  if (!text) return;
  act(e.submitter || e.target, () => api("POST", "/api/comments", { issueId, body: text }));
});
document.body.dataset.ready = "true";
