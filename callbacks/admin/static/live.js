// The live view: poll the metric numbers every 2 s and show totals and rates per route.
(function () {
  "use strict";
  var table = document.getElementById("live");
  var status = document.getElementById("live-status");
  var previous = null;
  function cell(row, index, text) { row.cells[index].textContent = String(text); }
  function rowFor(route) {
    var row = table.querySelector('tr[data-route="' + CSS.escape(route) + '"]');
    if (!row) {
      row = table.tBodies[0].insertRow();
      row.dataset.route = route;
      for (var i = 0; i < 8; i++) { row.insertCell(); }
      cell(row, 0, route);
    }
    return row;
  }
  function refresh() {
    fetch(table.dataset.source, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        var now = Date.now();
        Object.keys(data.callbacks).forEach(function (route) {
          var c = data.callbacks[route], row = rowFor(route);
          cell(row, 1, c.accepted); cell(row, 2, c.duplicate); cell(row, 3, c.rejected); cell(row, 4, c.error);
          var before = previous && previous.counts[route];
          if (before) {
            var seconds = (now - previous.at) / 1000;
            cell(row, 5, ((c.accepted - before.accepted) / seconds).toFixed(1));
            cell(row, 6, ((c.rejected - before.rejected) / seconds).toFixed(1));
          }
          var reasons = Object.keys(c.reasons).filter(function (k) { return k !== "duplicate"; })
            .sort(function (a, b) { return c.reasons[b] - c.reasons[a]; }).slice(0, 3)
            .map(function (k) { return k + " " + c.reasons[k]; });
          cell(row, 7, reasons.join(", "));
        });
        if (data.inbox_depth !== null) { document.getElementById("depth").textContent = data.inbox_depth; }
        previous = { at: now, counts: data.callbacks };
        status.textContent = "Updated " + new Date(now).toISOString().slice(11, 19) + " UTC";
      })
      .catch(function (e) { status.textContent = "Could not refresh: " + e.message; });
  }
  refresh();
  setInterval(refresh, 2000);
})();
