// netpulse live updates: no framework, no CDN. The server renders every chart; this
// script only swaps in what the server sends.
(function () {
  "use strict";
  const STALE_AFTER_MS = 30000;
  const state = { samples: 0, charts: 0, lastSampleAt: 0, mode: "connecting" };
  window.netpulse = state;

  // Device list: refresh the server-rendered table every few seconds.
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    setInterval(function () {
      fetch(el.getAttribute("data-refresh"), { cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { el.innerHTML = html; })
        .catch(function () {});
    }, 5000);
  });

  const meta = document.querySelector("p.meta[data-device]");
  if (!meta) return;
  const device = meta.getAttribute("data-device");
  const liveEl = document.getElementById("live");
  const freshEl = document.getElementById("freshness");
  const stateEl = document.getElementById("state");
  const healthEl = document.getElementById("health");

  function setMode(mode, text) {
    state.mode = mode;
    liveEl.className = "live-status " + mode;
    liveEl.textContent = text;
  }
  function setBadge(s) {
    stateEl.innerHTML = '<span class="badge ' + s + '">' + s + "</span>";
  }

  const source = new EventSource("/devices/" + encodeURIComponent(device) + "/live" + location.search);
  // The server says what the page's data is: live, paused (the bus is down; charts
  // come from the database every few seconds) or stale (no new sample for a while).
  source.addEventListener("status", function (e) {
    const d = JSON.parse(e.data);
    if (d.mode === "paused") setMode("paused", "live updates paused: showing data from the database");
    else if (d.mode === "stale") setMode("stale", "stale: newest point " + (d.age || "never"));
    else setMode("live", "live");
  });
  source.addEventListener("skipped", function (e) {
    const d = JSON.parse(e.data);
    state.skipped = (state.skipped || 0) + d.missed;
    if (state.mode !== "paused") setMode("live", "live · skipped " + d.missed + " updates to catch up");
  });
  source.addEventListener("samples", function (e) {
    const d = JSON.parse(e.data);
    state.samples += d.count;
    state.lastSampleAt = Date.now();
    if (state.mode !== "paused") setMode("live", "live · " + d.count + " new samples at " + d.newest.substring(11, 19) + " UTC");
  });
  source.addEventListener("chart", function (e) {
    const d = JSON.parse(e.data);
    const old = document.getElementById(d.id);
    if (old) old.outerHTML = d.svg;
    else {
      const fig = document.createElement("figure");
      fig.innerHTML = "<figcaption></figcaption>" + d.svg;
      fig.firstChild.textContent = d.interface;
      document.querySelector(".charts").appendChild(fig);
    }
    state.charts += 1;
  });
  source.addEventListener("latest", function (e) {
    const body = document.getElementById("latest");
    if (body) body.innerHTML = JSON.parse(e.data).html;
  });
  source.addEventListener("freshness", function (e) {
    const d = JSON.parse(e.data);
    freshEl.textContent = "last update " + d.age;
    setBadge(d.state);
    // Server-rendered and escaped there, like the chart and table fragments.
    if (healthEl && typeof d.health === "string") healthEl.innerHTML = d.health;
  });
  source.addEventListener("state", function (e) {
    const d = JSON.parse(e.data);
    setBadge(d.state);
  });
  source.onerror = function () { setMode("paused", "reconnecting…"); };
  setInterval(function () {
    if (state.mode === "live" && state.lastSampleAt && Date.now() - state.lastSampleAt > STALE_AFTER_MS) {
      setMode("stale", "stale: no new data for " + Math.round((Date.now() - state.lastSampleAt) / 1000) + "s");
    }
  }, 5000);
})();
