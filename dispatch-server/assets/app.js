// Shared by every page: the API helper (session cookie + the CSRF header the server requires on
// cookie-authenticated writes), toasts, keyboard shortcuts, search.
export async function api(method, path, body) {
  const init = { method, headers: { "x-dispatch-csrf": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!res.ok) {
    // The message, and the reason when the server gives one (the close gate's, a gate's).
    const reason = data && data.reason ? `: ${data.reason}` : "";
    const err = new Error(((data && data.error) || `${res.status} ${res.statusText}`) + reason);
    err.status = res.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

let toastTimer = null;
export function toast(message, ok = false) {
  let el = document.getElementById("toast");
  if (!el) {
    el = document.createElement("div");
    el.id = "toast";
    el.setAttribute("role", "status");
    document.body.appendChild(el);
  }
  el.className = ok ? "toast ok" : "toast";
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.remove(), 6000);
}

function typing(e) {
  const t = e.target;
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
}

// "/" opens search; Ctrl/Cmd+` toggles terminal and board.
document.addEventListener("keydown", (e) => {
  if (e.key === "/" && !typing(e)) {
    const dlg = document.getElementById("search");
    if (dlg) {
      e.preventDefault();
      dlg.showModal();
      dlg.querySelector("input").focus();
    }
  } else if (e.key === "`" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    location.href = location.pathname === "/board" ? "/" : "/board";
  }
});

const searchBox = document.querySelector("#search input");
if (searchBox) {
  let pending = null;
  searchBox.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const q = searchBox.value.trim();
      const out = document.getElementById("search-results");
      out.replaceChildren();
      if (!q) return;
      try {
        const hits = await api("GET", `/api/search?q=${encodeURIComponent(q)}`);
        for (const h of (hits.results || hits || []).slice(0, 20)) {
          const issue = h.issue || h;
          const a = document.createElement("a");
          a.href = `/issue/${encodeURIComponent(issue.identifier)}`;
          a.textContent = `${issue.identifier}  ${issue.title}`;
          out.appendChild(a);
        }
      } catch (err) {
        out.textContent = err.message;
      }
    }, 150);
  });
}

// Colours come from data attributes (the CSP allows no inline style).
for (const el of document.querySelectorAll("[data-color]")) {
  el.style.background = el.dataset.color;
}
for (const el of document.querySelectorAll("[data-width]")) {
  el.style.width = `${Number(el.dataset.width) || 0}%`;
}

for (const form of document.querySelectorAll("form[data-logout]")) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    await api("DELETE", "/api/auth").catch(() => {});
    location.href = "/login";
  });
}
document.body.dataset.app = "ready";
