/* dosereg pages: partial updates (alert actions, mappings, reprocess) and charts. No inline script (CSP). */
(function () {
  "use strict";

  function csrf(form) {
    var el = (form || document).querySelector("input[name=csrfmiddlewaretoken]") || document.querySelector("input[name=csrfmiddlewaretoken]");
    return el ? el.value : "";
  }

  function post(url, body, form) {
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(form), "X-Requested-With": "fetch", "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
        return data;
      });
    });
  }

  function ready(fn) { if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); } }

  // ---- alert actions: acknowledge / follow up / close without a reload
  function bindAlertActions() {
    document.querySelectorAll("form.js-alert-action").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var row = form.closest("[data-alert-row]");
        var buttons = row ? row.querySelectorAll("button") : [];
        buttons.forEach(function (b) { b.disabled = true; });
        post(form.action, new FormData(form), form).then(function (data) {
          var a = data.alert || {};
          if (row) {
            var st = row.querySelector("[data-alert-status]");
            if (st) { st.textContent = (a.status || "").replace("_", " "); st.className = "status status-" + (a.status || ""); }
            row.querySelectorAll("form.js-alert-action").forEach(function (f) {
              var act = f.querySelector("button").getAttribute("data-action");
              var allowed = (a.actions || []).indexOf(act) >= 0;
              f.hidden = !allowed;
              f.querySelector("button").disabled = !allowed;
            });
            row.classList.add("row-updated");
            if (a.status === "closed") { row.remove(); }
          }
          var k = document.querySelector("[data-kpi=alerts]");
          if (k && a.status === "closed") { k.textContent = String(Math.max(0, parseInt(k.textContent, 10) - 1)); }
        }).catch(function (err) {
          buttons.forEach(function (b) { b.disabled = false; });
          alert("Could not update the alert: " + err.message);
        });
      });
    });
  }

  // ---- quarantine reprocess
  function bindReprocess() {
    var form = document.querySelector("form.js-reprocess");
    if (!form) { return; }
    var all = form.querySelector("[data-check-all]");
    if (all) { all.addEventListener("change", function () { form.querySelectorAll("input[name=ids]").forEach(function (c) { c.checked = all.checked; }); }); }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = form.querySelector("[data-reprocess-result]");
      post(form.action, new FormData(form), form).then(function (data) {
        if (out) { out.textContent = data.count + " object(s) sent for re-processing; refresh to see the result."; }
      }).catch(function (err) { if (out) { out.textContent = "Failed: " + err.message; } });
    });
  }

  // ---- charts (Chart.js, vendored)
  var PALETTE = ["#0b5cad", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#c92a2a", "#5c7cfa", "#495057", "#74b816"];
  function data(id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  function fmtDay(iso) { return iso ? iso.slice(0, 10) : ""; }

  var TREND_AXIS = { n: "procedures per week", kap: "mean KAP (Gy·cm²)", kar: "mean Ka,r (Gy)", ft: "mean fluoro time (s)",
    dlp: "mean DLP (mGy·cm)" };
  var TREND_LABEL = { n: "Procedures per week", kap: "Mean KAP per procedure (Gy·cm²)", kar: "Mean Ka,r per procedure (Gy)",
    ft: "Mean fluoroscopy time per procedure (s)", dlp: "Mean DLP per procedure (mGy·cm)" };

  function trendsChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    function datasets(q) {
      return d.devices.map(function (dev, i) {
        var byWeek = {}; dev.points.forEach(function (p) { byWeek[p.week] = p; });
        return { label: dev.name, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
          tension: 0, spanGaps: false, pointRadius: 2,
          data: d.weeks.map(function (w) { var p = byWeek[w]; return p ? (q === "n" ? p.n : p[q]) : (q === "n" ? 0 : null); }) };
      });
    }
    var chart = new Chart(canvas, {
      type: "line", data: { labels: d.weeks.map(function (w) { return "w/c " + w; }), datasets: datasets("n") },
      options: { maintainAspectRatio: false, animation: false, interaction: { mode: "nearest", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, title: { display: true, text: TREND_LABEL.n },
          subtitle: { display: true, text: "a week without procedures is 0 (no mean: a gap in the line)" } },
        scales: { x: { title: { display: true, text: "week commencing (Monday)" } },
          y: { beginAtZero: true, title: { display: true, text: TREND_AXIS.n } } } }
    });
    var sw = document.querySelector("[data-trend-switch]");
    if (sw) {
      sw.addEventListener("click", function (ev) {
        var b = ev.target.closest("[data-q]"); if (!b) { return; }
        sw.querySelectorAll("[data-q]").forEach(function (x) { x.classList.toggle("active", x === b); });
        var q = b.getAttribute("data-q");
        chart.data.datasets = datasets(q);
        chart.options.plugins.title.text = TREND_LABEL[q];
        chart.options.scales.y.title.text = TREND_AXIS[q];
        chart.update();
      });
    }
  }

  // dates on a numeric axis (ms since 1970): exams are spaced by the time between them, no date adapter needed
  function dayLabel(ms) { var d = new Date(ms); return d.toISOString().slice(0, 10); }
  var HISTORY_Q = { kap: ["KAP", "Gy·cm²", "#0b5cad"], kar: ["Ka,r (largest plane)", "Gy", "#c92a2a"], dlp: ["DLP", "mGy·cm", "#e8590c"] };

  function historyChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    var q = canvas.getAttribute("data-q");
    if (!d || !window.Chart || !HISTORY_Q[q]) { return; }
    var pts = d.filter(function (p) { return p.t && p[q] !== null && p[q] !== undefined; });
    var box = canvas.closest(".chart-box");
    if (!pts.length) { if (box) { box.hidden = true; } return; }
    var spec = HISTORY_Q[q];
    var times = d.filter(function (p) { return p.t; }).map(function (p) { return Date.parse(p.t); });
    var lo = Math.min.apply(null, times), hi = Math.max.apply(null, times), pad = Math.max(86400000, (hi - lo) * 0.04);
    new Chart(canvas, {
      type: "scatter",
      data: { datasets: [{ label: spec[0] + " per exam (" + spec[1] + ")", borderColor: spec[2], backgroundColor: spec[2], pointRadius: 4,
        data: pts.map(function (p) { return { x: Date.parse(p.t), y: p[q], p: p }; }) }] },
      options: { maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (item) { var p = item.raw.p; return p.label + " · " + p.modality + " " + (p.desc || "") + ": " + item.raw.y + " " + spec[1]; } } } },
        scales: { x: { type: "linear", min: lo - pad, max: hi + pad, title: { display: true, text: "exam date" },
            ticks: { maxTicksLimit: 6, callback: function (v) { return dayLabel(v); } } },
          y: { beginAtZero: true, title: { display: true, text: spec[0] + " (" + spec[1] + ")" } } } }
    });
  }

  function eventsChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    var isCT = d.some(function (e) { return e.dlp !== null; });
    var unit = isCT ? "mGy·cm" : "Gy·cm²", qname = isCT ? "DLP" : "KAP";
    var cum = 0;
    var labels = d.map(function (e, i) { return e.t ? e.t.slice(11, 19) : String(i + 1); });
    var per = d.map(function (e) { return isCT ? e.dlp : e.kap; });
    var cumul = per.map(function (v) { cum += (v || 0); return cum; });
    var groups = [], byName = {};
    d.forEach(function (e) {
      var name = (e.type_label || "event") + (e.plane === "B" ? " (plane B)" : "");
      if (!(name in byName)) { byName[name] = groups.length; groups.push(name); }
    });
    var datasets = groups.map(function (name, gi) {
      return { type: "bar", label: name + " — " + qname + " per event (" + unit + ")", yAxisID: "y", skipNull: true,
        backgroundColor: PALETTE[gi % PALETTE.length],
        data: d.map(function (e, i) { var n = (e.type_label || "event") + (e.plane === "B" ? " (plane B)" : ""); return n === name ? per[i] : null; }) };
    });
    datasets.push({ type: "line", label: "cumulative " + qname + " (" + unit + ", right axis)", data: cumul, borderColor: "#495057",
      backgroundColor: "#495057", pointRadius: 0, yAxisID: "y2", tension: 0.1 });
    new Chart(canvas, {
      data: { labels: labels, datasets: datasets },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { x: { stacked: true, title: { display: true, text: d.some(function (e) { return e.t; }) ? "event start time (hh:mm:ss)" : "event number" } },
          y: { beginAtZero: true, stacked: true, title: { display: true, text: qname + " per event (" + unit + ")" } },
          y2: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "cumulative " + qname + " (" + unit + ")" } } } }
    });
  }

  // ---- modality home: one plot per quantity, a line per room, every month of the window (0 procedures: a gap)
  function modalityChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    var q = canvas.getAttribute("data-q");
    if (!d || !window.Chart) { return; }
    var meta = d.quantities.filter(function (x) { return x.key === q; })[0];
    var fluoro = q === "fluoro_time_total_s";
    var axis = q === "n" ? "procedures per month" : "median " + meta.label + " (" + (fluoro ? "min" : meta.unit) + ")";
    new Chart(canvas, {
      type: "line",
      data: { labels: d.months, datasets: d.rooms.map(function (r, i) {
        return { label: r.name, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
          spanGaps: false, tension: 0, pointRadius: 3,
          data: q === "n" ? r.counts : r.medians[q].map(function (v) { return v === null ? null : (fluoro ? v / 60 : v); }) }; }) },
      options: { maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { x: { title: { display: true, text: "month" } }, y: { beginAtZero: true, title: { display: true, text: axis }, ticks: q === "n" ? { precision: 0 } : {} } } }
    });
  }

  function staffChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    new Chart(canvas, {
      type: "bar", data: { labels: d.labels, datasets: d.datasets.map(function (ds, i) {
        return { label: ds.label, data: ds.data, backgroundColor: PALETTE[i % PALETTE.length] }; }) },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } }, scales: { y: { beginAtZero: true, title: { display: true, text: "mSv" } } } }
    });
  }

  function meters() {
    document.querySelectorAll(".meter[data-fraction]").forEach(function (m) {
      var f = parseFloat(m.getAttribute("data-fraction")) || 0;
      m.querySelector(".meter-fill").style.width = Math.min(100, f * 100) + "%";
      if (f >= 1) { m.classList.add("meter-alert"); } else if (f >= 0.5) { m.classList.add("meter-warn"); }
    });
  }

  // ---- wide tables: each inside a horizontally scrolling region, reachable by keyboard when it scrolls
  function heading(el) {
    var card = el.closest("section, .card, details");
    var h = card ? card.querySelector("h2, h3, summary") : null;
    return (h ? h.textContent.trim().replace(/\s+/g, " ") : "Table") + " (scrolls sideways)";
  }
  function scrollRegions() {
    document.querySelectorAll("main table").forEach(function (t) {
      if (t.closest(".scroll-x")) { return; }
      var box = document.createElement("div");
      box.className = "scroll-x";
      t.parentNode.insertBefore(box, t);
      box.appendChild(t);
    });
    function update() {
      document.querySelectorAll("main .scroll-x").forEach(function (box) {
        if (box.hasAttribute("data-static-region")) { return; }
        var scrolls = box.scrollWidth > box.clientWidth + 1;
        if (scrolls && !box.hasAttribute("tabindex")) {
          box.setAttribute("tabindex", "0"); box.setAttribute("role", "region");
          if (!box.hasAttribute("aria-label")) { box.setAttribute("aria-label", heading(box)); }
          box.setAttribute("data-js-region", "");
        } else if (!scrolls && box.hasAttribute("data-js-region")) {
          box.removeAttribute("tabindex"); box.removeAttribute("role"); box.removeAttribute("data-js-region");
        }
      });
    }
    document.querySelectorAll("main .scroll-x[tabindex]").forEach(function (b) { b.setAttribute("data-static-region", ""); });
    update();
    var timer = null;
    window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
    document.addEventListener("toggle", update, true);  // a <details> opened
  }

  // ---- study page: show only the events of one type and/or plane (the collapsed ones too)
  function bindEventFilters() {
    var bar = document.querySelector("[data-event-filters]");
    if (!bar) { return; }
    var section = bar.closest("section");
    var out = bar.querySelector("[data-event-count]");
    function apply() {
      var want = {};
      bar.querySelectorAll("[data-event-filter]").forEach(function (s) { want[s.getAttribute("data-event-filter")] = s.value; });
      var rows = section.querySelectorAll("tbody tr[data-type]"), shown = 0, active = !!(want.type || want.plane);
      rows.forEach(function (r) {
        var ok = (!want.type || r.getAttribute("data-type") === want.type) && (!want.plane || r.getAttribute("data-plane") === want.plane);
        r.hidden = !ok; if (ok) { shown += 1; }
      });
      var more = section.querySelector("[data-more-events]");
      if (more && active) { more.open = true; }
      out.textContent = active ? shown + " of " + rows.length + " events shown" : "";
    }
    bar.addEventListener("change", apply);
  }

  ready(function () {
    scrollRegions();
    bindEventFilters();
    bindAlertActions();
    bindReprocess();
    meters();
    var charts = { trends: trendsChart, history: historyChart, events: eventsChart, staff: staffChart, modality: modalityChart };
    document.querySelectorAll("canvas[data-chart]").forEach(function (c) {
      var fn = charts[c.getAttribute("data-chart")];
      if (fn) { try { fn(c); } catch (e) { if (window.console) { console.error(e); } } }
    });
  });
})();
