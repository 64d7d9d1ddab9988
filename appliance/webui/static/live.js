// Live numbers for the dashboard and sessions pages: poll a small JSON endpoint.
// The pages work without this file; it only keeps the figures moving and draws the graph.
"use strict";
(function () {
  const root = document.getElementById("live");
  if (!root) { return; }
  const url = root.dataset.url;
  const period = Math.max(1, Number(root.dataset.poll || "2")) * 1000;

  function pick(data, path) {
    return path.split(".").reduce((o, k) => (o == null ? o : o[k]), data);
  }

  // Every text comes formatted by the server in the page's language (issue 21): the
  // script writes it as it is and has no words of its own ("n/a" too is the page's).
  function setText(data) {
    root.querySelectorAll("[data-live]").forEach((el) => {
      const value = pick(data, el.dataset.live);
      el.textContent = value == null ? root.dataset.na : String(value);
    });
  }

  function updateRows(data) {
    // Rows are rendered by the server (they carry forms with CSRF tokens); when the set of
    // sessions changes, reload the page instead of building rows here.
    root.querySelectorAll("[data-live-table=sessions]").forEach((body) => {
      const shown = Array.from(body.querySelectorAll("tr[data-id]")).map((r) => r.dataset.id);
      const now = data.sessions.map((s) => String(s.id));
      if (shown.join(",") !== now.join(",")) {
        window.location.reload();
        return;
      }
      data.sessions.forEach((s) => {
        const row = body.querySelector(`tr[data-id="${s.id}"]`);
        row.querySelectorAll("[data-field]").forEach((cell) => {
          cell.textContent = String(s[cell.dataset.field]);
        });
      });
    });
  }

  function drawGraph(data) {
    const svg = document.getElementById("graph");
    if (!svg) { return; }
    const points = data.history;
    const width = 600, height = 160;
    const peak = Math.max(1, data.peak);
    const start = data.now - data.window;
    const xy = (t, v) =>
      `${(((t - start) / data.window) * width).toFixed(1)},${(height - (v / peak) * (height - 10)).toFixed(1)}`;
    document.getElementById("series-tx").setAttribute("points", points.map((p) => xy(p[0], p[2])).join(" "));
    document.getElementById("series-rx").setAttribute("points", points.map((p) => xy(p[0], p[1])).join(" "));
  }

  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) { return; }
      const data = await response.json();
      setText(data);
      updateRows(data);
      drawGraph(data);
      root.dataset.updated = String(data.now);
    } catch (err) {
      // The device may be restarting; try again on the next tick.
    }
  }

  tick();
  window.setInterval(tick, period);
}());
