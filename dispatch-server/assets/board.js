// The board: drag and drop between columns (the close gate's refusal is shown), view modes,
// paging, and live updates over SSE (the browser reconnects with Last-Event-ID by itself).
import { api, toast } from "./app.js";

const board = document.querySelector(".board");
const closedColumns = new Set([...document.querySelectorAll(".column[data-closed='true']")].map((c) => c.dataset.id));

function cardFor(issue) {
  const card = document.createElement("article");
  card.className = "card";
  card.draggable = true;
  card.dataset.id = issue.id;
  card.dataset.identifier = issue.identifier;
  card.dataset.active = issue.spawn_status === "running" || issue.spawn_status === "pending" ? "true" : "false";
  const id = document.createElement("div");
  id.className = "id";
  id.textContent = issue.identifier;
  const title = document.createElement("a");
  title.className = "title";
  title.href = `/issue/${encodeURIComponent(issue.identifier)}`;
  title.textContent = issue.title;
  const meta = document.createElement("div");
  meta.className = "meta";
  const pill = (text, cls = "") => {
    const s = document.createElement("span");
    s.className = `pill ${cls}`;
    s.textContent = text;
    meta.appendChild(s);
  };
  pill(issue.priority, issue.priority);
  for (const l of issue.labels || []) pill(l.label.name);
  if (issue.agent_status && issue.agent_status !== "idle") pill(`agent: ${issue.agent_status}`);
  if (issue.plan_status && issue.plan_status !== "none") pill(`plan: ${issue.plan_status}`);
  if (issue.cost_usd) pill(`$${Number(issue.cost_usd).toFixed(2)}`);
  card.append(id, title, meta);
  if (issue.blocked_reason) {
    const b = document.createElement("div");
    b.className = "blocked";
    b.textContent = `blocked: ${issue.blocked_reason}`;
    card.appendChild(b);
  }
  return card;
}

function columnCards(columnId) {
  return document.querySelector(`.column[data-id="${columnId}"] .cards`);
}

function place(issue) {
  const existing = document.querySelector(`.card[data-id="${issue.id}"]`);
  const target = columnCards(issue.status_id);
  const card = cardFor(issue);
  if (existing) existing.remove();
  if (target) {
    target.prepend(card);
    card.classList.add("flash");
  }
  counts();
  applyMode();
}

function counts() {
  for (const col of document.querySelectorAll(".column")) {
    col.querySelector(".count").textContent = col.querySelectorAll(".card").length;
  }
}

// Drag and drop.
let dragged = null;
board.addEventListener("dragstart", (e) => {
  const card = e.target.closest(".card");
  if (!card) return;
  dragged = card;
  e.dataTransfer.setData("text/plain", card.dataset.id);
  e.dataTransfer.effectAllowed = "move";
});
board.addEventListener("dragover", (e) => {
  const col = e.target.closest(".column");
  if (!col || !dragged) return;
  e.preventDefault();
  for (const c of document.querySelectorAll(".column.drop")) c.classList.remove("drop");
  col.classList.add("drop");
});
board.addEventListener("dragleave", (e) => {
  const col = e.target.closest(".column");
  if (col && !col.contains(e.relatedTarget)) col.classList.remove("drop");
});
board.addEventListener("drop", async (e) => {
  const col = e.target.closest(".column");
  for (const c of document.querySelectorAll(".column.drop")) c.classList.remove("drop");
  if (!col || !dragged) return;
  e.preventDefault();
  const card = dragged;
  dragged = null;
  const from = card.closest(".column");
  if (from === col) return;
  await moveCard(card, col);
});

export async function moveCard(card, col) {
  const from = card.closest(".column");
  col.querySelector(".cards").prepend(card);
  counts();
  try {
    const issue = await api("PATCH", `/api/issues/${card.dataset.id}`, { statusId: col.dataset.id });
    place(issue);
  } catch (err) {
    from.querySelector(".cards").prepend(card);
    counts();
    toast(`${card.dataset.identifier} cannot move to ${col.dataset.name}: ${err.message}`);
  }
}
window.dispatchMoveCard = (identifier, columnName) => {
  const card = document.querySelector(`.card[data-identifier="${identifier}"]`);
  const col = [...document.querySelectorAll(".column")].find((c) => c.dataset.name === columnName);
  return card && col ? moveCard(card, col) : Promise.reject(new Error("no such card or column"));
};

// View modes: all, active (an agent working or queued), done (closed columns).
let mode = new URLSearchParams(location.search).get("view") || "all";
function applyMode() {
  for (const col of document.querySelectorAll(".column")) {
    const closed = closedColumns.has(col.dataset.id);
    col.hidden = (mode === "done" && !closed) || (mode === "active" && closed);
    for (const card of col.querySelectorAll(".card")) {
      card.hidden = mode === "active" && card.dataset.active !== "true";
    }
  }
  for (const b of document.querySelectorAll(".modes button")) b.classList.toggle("on", b.dataset.mode === mode);
}
for (const b of document.querySelectorAll(".modes button")) {
  b.addEventListener("click", () => {
    mode = b.dataset.mode;
    history.replaceState(null, "", mode === "all" ? "/board" : `/board?view=${mode}`);
    applyMode();
  });
}
applyMode();

// Paging: each column shows its newest cards; "more" loads the next page.
for (const more of document.querySelectorAll("button.more")) {
  more.addEventListener("click", async () => {
    const col = more.closest(".column");
    const cursor = more.dataset.cursor;
    more.disabled = true;
    try {
      const page = await api("GET", `/api/issues?statusId=${col.dataset.id}&limit=50&cursor=${cursor}`);
      for (const issue of page) col.querySelector(".cards").appendChild(cardFor(issue));
      if (page.length < 50) more.remove();
      else more.dataset.cursor = page[page.length - 1].issue_number;
      counts();
      applyMode();
    } catch (err) {
      toast(err.message);
    } finally {
      more.disabled = false;
    }
  });
}

// Live updates.
const live = document.getElementById("live");
const source = new EventSource("/api/board/stream");
source.onopen = () => { live.textContent = "● live"; live.className = "pill ok"; };
source.onerror = () => { live.textContent = "○ reconnecting"; live.className = "pill"; };
source.onmessage = (e) => {
  let ev;
  try { ev = JSON.parse(e.data); } catch { return; }
  if (ev.type === "issue_deleted") {
    document.querySelector(`.card[data-id="${ev.issueId}"]`)?.remove();
    counts();
  } else if (ev.issue) {
    place(ev.issue);
  }
};
document.body.dataset.ready = "true";
