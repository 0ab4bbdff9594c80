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
document.body.dataset.ready = "true";
