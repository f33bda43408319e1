
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var key = function (row) {
        var cell = row.cells[col], v = cell.dataset.sort || cell.textContent.replace(/\\s/g, "");
        var n = parseFloat(v);
        return isNaN(n) || !/^-?[0-9.]+$/.test(v) ? cell.textContent.toLowerCase() : n;
      };
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
