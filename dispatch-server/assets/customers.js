// The customers pages: create a customer, copy portal links, regenerate a portal token, edit the
// name, colour, logo and Slack channel. Every write goes through the REST API (api() sends the
// CSRF header the server requires on cookie-authenticated writes).
import { api, toast } from "./app.js";

// A slug from a name, as the server derives it: lowercase, other runs of characters become "-".
export function slugify(name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64).replace(/-+$/, "");
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (an insecure origin, a headless browser): select it for Ctrl+C.
    const tmp = document.createElement("textarea");
    tmp.value = text;
    document.body.appendChild(tmp);
    tmp.select();
    try { document.execCommand("copy"); } catch { /* the selection is enough */ }
    tmp.remove();
  }
  button.dataset.copied = text;
  toast("Portal link copied", true);
}

for (const b of document.querySelectorAll("[data-copy]")) {
  b.addEventListener("click", () => copy(b.dataset.copy, b));
}
for (const b of document.querySelectorAll("[data-copy-from]")) {
  b.addEventListener("click", () => copy(document.getElementById(b.dataset.copyFrom).value, b));
}

// Text colours from data attributes (the CSP allows no inline style).
for (const el of document.querySelectorAll("[data-fg]")) {
  el.style.color = el.dataset.fg;
  el.style.borderColor = el.dataset.fg;
}

function blankToNull(v) {
  const t = v.trim();
  return t === "" ? null : t;
}

// --- /customers: the create dialog --------------------------------------------------------------
const dialog = document.getElementById("new-customer");
if (dialog) {
  const form = document.getElementById("new-customer-form");
  const name = document.getElementById("nc-name");
  const slug = document.getElementById("nc-slug");
  const err = document.getElementById("nc-error");
  document.getElementById("new-customer-open").addEventListener("click", () => {
    err.textContent = "";
    dialog.showModal();
    name.focus();
  });
  document.getElementById("new-customer-cancel").addEventListener("click", () => dialog.close());
  name.addEventListener("input", () => { slug.placeholder = slugify(name.value) || "from the name"; });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    const body = {
      name: name.value.trim(),
      slug: blankToNull(slug.value) || slugify(name.value) || null,
      brandColor: document.getElementById("nc-color").value,
      logoUrl: blankToNull(document.getElementById("nc-logo").value),
      slackChannelId: blankToNull(document.getElementById("nc-slack").value),
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const res = await api("POST", "/api/customers", body);
      location.href = `/customers/${encodeURIComponent(res.customer.slug)}`;
    } catch (e2) {
      err.textContent = e2.message;
      button.disabled = false;
    }
  });
}

// --- /customers/{id}: token and settings --------------------------------------------------------
const head = document.getElementById("customer");
if (head) {
  const id = head.dataset.id;
  const regen = document.getElementById("regenerate-token");
  regen.addEventListener("click", async () => {
    if (!confirm("Make a new portal link? The current link stops working at once.")) return;
    regen.disabled = true;
    try {
      const res = await api("POST", `/api/customers/${encodeURIComponent(id)}?action=regenerate-token`);
      const link = document.getElementById("portal-link");
      const url = new URL(link.value);
      url.searchParams.set("token", res.token);
      link.value = url.toString();
      document.getElementById("portal-open").href = url.toString();
      toast("New portal link made; the old one no longer works", true);
    } catch (e) {
      toast(e.message);
    } finally {
      regen.disabled = false;
    }
  });

  const picker = document.getElementById("cs-color-picker");
  const color = document.getElementById("cs-color");
  picker.addEventListener("input", () => { color.value = picker.value; });
  color.addEventListener("input", () => {
    if (/^#[0-9a-fA-F]{6}$/.test(color.value)) picker.value = color.value.toLowerCase();
  });

  const form = document.getElementById("customer-settings");
  const err = document.getElementById("cs-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    const body = {
      name: document.getElementById("cs-name").value.trim(),
      brandColor: blankToNull(color.value),
      logoUrl: blankToNull(document.getElementById("cs-logo").value),
      slackChannelId: blankToNull(document.getElementById("cs-slack").value),
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("PATCH", `/api/customers/${encodeURIComponent(id)}`, body);
      location.reload();
    } catch (e2) {
      err.textContent = e2.message;
      button.disabled = false;
    }
  });
}
document.body.dataset.ready = "true";
