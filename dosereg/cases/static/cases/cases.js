/* the RSO's worklist: "all on page" selects every open case of the page for the bulk acknowledgement */
document.addEventListener("change", function (e) {
  if (e.target.matches("[data-check-all-cases]")) {
    document.querySelectorAll('input[name="ids"][form="bulk-ack"]').forEach(function (c) { c.checked = e.target.checked; });
  }
});
