// The fleet panel's kill switch: stored on the server, so it holds for every process.
import { api, toast } from "./app.js";

const button = document.getElementById("kill-switch-toggle");
if (button) {
  button.addEventListener("click", async () => {
    const enable = button.dataset.to === "true";
    if (enable && !confirm("Stop all spawning on every Dispatch process?")) return;
    button.disabled = true;
    try {
      await api("PUT", "/api/spawns/kill-switch", { enabled: enable });
      location.reload();
    } catch (err) {
      toast(err.message);
      button.disabled = false;
    }
  });
}
const cleanup = document.getElementById("cleanup-stale");
if (cleanup) {
  cleanup.addEventListener("click", async () => {
    cleanup.disabled = true;
    try {
      const r = await api("POST", "/api/spawns/cleanup");
      toast(`${r.cleaned} stale run(s) timed out`, true);
      setTimeout(() => location.reload(), 800);
    } catch (err) {
      toast(err.message);
      cleanup.disabled = false;
    }
  });
}
document.body.dataset.ready = "true";
