// Filtering and sorting for the report's tables. The page reads the same without it.
// Only reads data-* attributes and textContent, and only toggles `hidden`: nothing from a
// connection file is ever parsed as markup here.
(function () {
  "use strict";
  var controls = document.getElementById("controls");
  if (!controls) { return; }
  controls.hidden = false;
  var search = document.getElementById("q");
  var state = document.getElementById("state");
  var provider = document.getElementById("provider");
  var problemsOnly = document.getElementById("problems-only");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tbody tr[data-name]"));

  function apply() {
    var needle = search.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var ok = (!needle || row.getAttribute("data-search").indexOf(needle) !== -1) &&
        (!state.value || row.getAttribute("data-state") === state.value) &&
        (!provider.value || row.getAttribute("data-provider") === provider.value) &&
        (!problemsOnly.checked || row.getAttribute("data-problem") === "1");
      row.hidden = !ok;
      if (ok) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " shown";
  }
  [search, state, provider, problemsOnly].forEach(function (el) {
    el.addEventListener("input", apply);
    el.addEventListener("change", apply);
  });

  document.querySelectorAll("table[data-sortable] th[data-key]").forEach(function (th) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      var table = th.closest("table");
      var body = table.tBodies[0];
      var key = th.getAttribute("data-key");
      var numeric = th.hasAttribute("data-numeric");
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var sorted = Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = a.getAttribute("data-" + key) || "", y = b.getAttribute("data-" + key) || "";
        var order;
        if (numeric) {
          var nx = x === "" ? -Infinity : Number(x), ny = y === "" ? -Infinity : Number(y);
          order = nx < ny ? -1 : nx > ny ? 1 : 0;
        } else {
          order = x.localeCompare(y);
        }
        return descending ? -order : order;
      });
      sorted.forEach(function (row) { body.appendChild(row); });
    });
  });
  apply();
})();
