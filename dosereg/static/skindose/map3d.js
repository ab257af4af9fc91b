/* Interactive 3D skin-dose map (plotly.js served by dosereg itself; no CDN). */
(function () {
  var el = document.getElementById("skin-3d");
  var data = document.getElementById("skin-cells");
  if (!el || !data || typeof Plotly === "undefined") { return; }
  var c = JSON.parse(data.textContent);
  Plotly.newPlot(el, [{
    type: "scatter3d", mode: "markers", x: c.x_cm, y: c.z_cm,
    z: c.y_cm.map(function (v) { return -v; }),  // PySkinDose's y axis points down
    marker: {size: 3, color: c.dose_gy, colorscale: "Jet", colorbar: {title: {text: "Gy"}}},
    hovertemplate: "%{marker.color:.3g} Gy<extra></extra>"
  }], {
    margin: {l: 0, r: 0, t: 0, b: 0},
    scene: {aspectmode: "data", xaxis: {title: {text: "across (cm)"}}, yaxis: {title: {text: "along the body (cm)"}},
            zaxis: {title: {text: "up (cm)"}}}
  }, {displaylogo: false, responsive: true}).then(function () { el.setAttribute("data-drawn", "1"); });
})();
