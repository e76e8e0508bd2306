// Backbone console: live refresh of the parts of a page marked data-live.
// Plain JavaScript, no dependencies; every page works without it.
(() => {
  "use strict";
  const main = document.getElementById("main");
  const every = main ? Number(main.dataset.refresh || 0) : 0;
  if (!every) return;
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) return;
    // never replace what the user is typing in
    const active = document.activeElement;
    if (active && active.closest("[data-live]") && active.matches("input, select, textarea")) return;
    busy = true;
    try {
      const answer = await fetch(window.location.href, {
        headers: { "Accept": "text/html" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      for (const old of document.querySelectorAll("[data-live][id]")) {
        const next = fresh.getElementById(old.id);
        if (next && next.innerHTML !== old.innerHTML) old.innerHTML = next.innerHTML;
      }
    } catch (error) {
      // the gateway may be restarting: try again on the next tick
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, every);
})();
