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

  // ---- protocol name mapping
  function bindMappings() {
    document.querySelectorAll("form.js-mapping").forEach(function (form) {
      var row = form.closest("[data-mapping-row]");
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        post(window.location.pathname, new FormData(form), form).then(function (data) {
          var state = row && row.querySelector("[data-state]");
          if (state) {
            state.textContent = data.standard_name ? "mapped" : "unmapped";
            state.className = "badge " + (data.standard_name ? "badge-ok" : "badge-warn");
          }
          if (data.standard_name_id) {
            var sel = form.querySelector("select");
            if (!sel.querySelector("option[value='" + data.standard_name_id + "']")) {
              var o = document.createElement("option"); o.value = data.standard_name_id; o.textContent = data.standard_name; sel.appendChild(o);
            }
            sel.value = String(data.standard_name_id);
            form.querySelector("input[name=new_standard_name]").value = "";
          }
          var acc = row && row.querySelector(".js-accept"); if (acc) { acc.remove(); }
        }).catch(function (err) { alert("Could not save: " + err.message); });
      });
    });
    document.querySelectorAll(".js-accept").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var row = btn.closest("[data-mapping-row]");
        var form = row.querySelector("form.js-mapping");
        form.querySelector("select").value = btn.getAttribute("data-suggestion");
        form.requestSubmit();
      });
    });
  }

  // ---- charts (Chart.js, vendored)
  var PALETTE = ["#0b5cad", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#c92a2a", "#5c7cfa", "#495057", "#74b816"];
  function data(id) { var el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; }
  function fmtDay(iso) { return iso ? iso.slice(0, 10) : ""; }

  var TREND_LABEL = { n: "Procedures per week", kap: "Mean KAP per procedure (Gy·cm²)", kar: "Mean Ka,r per procedure (Gy)",
    ft: "Mean fluoroscopy time per procedure (s)", dlp: "Mean DLP per procedure (mGy·cm)" };

  function trendsChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    function datasets(q) {
      return d.devices.map(function (dev, i) {
        var byWeek = {}; dev.points.forEach(function (p) { byWeek[p.week] = p; });
        return { label: dev.name, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
          tension: 0, spanGaps: true, pointRadius: 2,
          data: d.weeks.map(function (w) { var p = byWeek[w]; return p ? (q === "n" ? p.n : p[q]) : (q === "n" ? 0 : null); }) };
      });
    }
    var chart = new Chart(canvas, {
      type: "line", data: { labels: d.weeks.map(function (w) { return "w/c " + w; }), datasets: datasets("n") },
      options: { maintainAspectRatio: false, animation: false, interaction: { mode: "nearest", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } }, title: { display: true, text: TREND_LABEL.n } },
        scales: { y: { beginAtZero: true } } }
    });
    var sw = document.querySelector("[data-trend-switch]");
    if (sw) {
      sw.addEventListener("click", function (ev) {
        var b = ev.target.closest("[data-q]"); if (!b) { return; }
        sw.querySelectorAll("[data-q]").forEach(function (x) { x.classList.toggle("active", x === b); });
        var q = b.getAttribute("data-q");
        chart.data.datasets = datasets(q);
        chart.options.plugins.title.text = TREND_LABEL[q];
        chart.update();
      });
    }
  }

  function historyChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    var labels = d.map(function (p) { return p.label; });
    new Chart(canvas, {
      data: { labels: labels, datasets: [
        { type: "bar", label: "KAP (Gy·cm²)", data: d.map(function (p) { return p.kap; }), backgroundColor: "#5b9bd5", yAxisID: "y" },
        { type: "bar", label: "DLP (mGy·cm)", data: d.map(function (p) { return p.dlp; }), backgroundColor: "#f59f00", yAxisID: "y2" },
        { type: "line", label: "Ka,r (Gy)", data: d.map(function (p) { return p.kar; }), borderColor: "#c92a2a", backgroundColor: "#c92a2a", yAxisID: "y3", showLine: false, pointRadius: 4 }
      ] },
      options: { maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { title: function (items) { var p = d[items[0].dataIndex]; return p.label + " · " + p.modality + " " + (p.desc || ""); } } } },
        scales: { y: { position: "left", beginAtZero: true, title: { display: true, text: "KAP Gy·cm²" } },
          y2: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "DLP mGy·cm" } },
          y3: { display: false, beginAtZero: true } } }
    });
  }

  function eventsChart(canvas) {
    var d = data(canvas.getAttribute("data-source"));
    if (!d || !window.Chart) { return; }
    var isCT = d.some(function (e) { return e.dlp !== null; });
    var cum = 0;
    var labels = d.map(function (e, i) { return e.t ? e.t.slice(11, 19) : String(i + 1); });
    var per = d.map(function (e) { return isCT ? e.dlp : e.kap; });
    var cumul = per.map(function (v) { cum += (v || 0); return cum; });
    new Chart(canvas, {
      data: { labels: labels, datasets: [
        { type: "bar", label: isCT ? "DLP per event (mGy·cm)" : "KAP per event (Gy·cm²)", data: per,
          backgroundColor: d.map(function (e) { return e.type === "fluoroscopy" ? "#9ec5ea" : (e.plane === "B" ? "#f59f00" : "#0b5cad"); }), yAxisID: "y" },
        { type: "line", label: "cumulative", data: cumul, borderColor: "#c92a2a", pointRadius: 0, yAxisID: "y2", tension: .1 }
      ] },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true }, y2: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } }
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

  // ---- histograms on the protocol audit page
  var histChart = null;
  function bindHistograms() {
    var dlg = document.getElementById("hist-dialog");
    var urlEl = document.querySelector("[data-dist-url]");
    if (!dlg || !urlEl) { return; }
    document.querySelectorAll("[data-hist]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var u = urlEl.getAttribute("data-dist-url") + "&quantity=" + encodeURIComponent(btn.dataset.quantity) +
          "&device_id=" + encodeURIComponent(btn.dataset.device) + "&std=" + encodeURIComponent(btn.dataset.std);
        fetch(u, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (res) {
          var v = res.values.slice().sort(function (a, b) { return a - b; });
          dlg.querySelector("[data-hist-title]").textContent = btn.dataset.title;
          dlg.querySelector("[data-hist-note]").textContent = v.length + " procedures";
          var bins = Math.max(5, Math.min(40, Math.ceil(Math.sqrt(v.length))));
          var lo = v[0] || 0, hi = v[v.length - 1] || 1, w = (hi - lo) / bins || 1;
          var counts = new Array(bins).fill(0);
          v.forEach(function (x) { counts[Math.min(bins - 1, Math.floor((x - lo) / w))] += 1; });
          var labels = counts.map(function (_, i) { return (lo + i * w).toPrecision(3) + "–" + (lo + (i + 1) * w).toPrecision(3); });
          if (histChart) { histChart.destroy(); }
          dlg.showModal();
          histChart = new Chart(document.getElementById("hist-chart"), {
            type: "bar", data: { labels: labels, datasets: [{ label: "procedures", data: counts, backgroundColor: "#5b9bd5", barPercentage: 1, categoryPercentage: 1 }] },
            options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } }
          });
        });
      });
    });
  }

  function meters() {
    document.querySelectorAll(".meter[data-fraction]").forEach(function (m) {
      var f = parseFloat(m.getAttribute("data-fraction")) || 0;
      m.querySelector(".meter-fill").style.width = Math.min(100, f * 100) + "%";
      if (f >= 1) { m.classList.add("meter-alert"); } else if (f >= 0.5) { m.classList.add("meter-warn"); }
    });
  }

  ready(function () {
    bindAlertActions();
    bindReprocess();
    bindMappings();
    bindHistograms();
    meters();
    var charts = { trends: trendsChart, history: historyChart, events: eventsChart, staff: staffChart };
    document.querySelectorAll("canvas[data-chart]").forEach(function (c) {
      var fn = charts[c.getAttribute("data-chart")];
      if (fn) { try { fn(c); } catch (e) { if (window.console) { console.error(e); } } }
    });
  });
})();
