(function () {
  "use strict";
  var CONFIG = {responsive: true, displaylogo: false, scrollZoom: false,
                toImageButtonOptions: {format: "png", scale: 2}};
  document.body.dataset.plots = "0";
  if (typeof Plotly === "undefined") {
    document.getElementById("plotly-missing").hidden = false;
    document.body.dataset.rendered = "error";
    return;
  }
  var plots = [];
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[data-group]"));
  var shown = {};  // group -> visible, shared by every plot and the table
  boxes.forEach(function (b) { shown[b.dataset.group] = true; });
  function apply() {  // one restyle per plot, whatever the number of groups changed
    plots.forEach(function (div) {
      var idx = [], vis = [];
      div.data.forEach(function (t, i) {
        if (t.legendgroup in shown) { idx.push(i); vis.push(shown[t.legendgroup] ? true : "legendonly"); }
      });
      if (idx.length) Plotly.restyle(div, {visible: vis}, idx);
    });
    boxes.forEach(function (b) { b.checked = shown[b.dataset.group]; });
    document.querySelectorAll("tr[data-group]").forEach(function (tr) {
      tr.classList.toggle("hidden-group", shown[tr.dataset.group] === false);
    });
  }
  function groupOf(ev) {
    var trace = ev.data[ev.curveNumber];
    return trace && trace.legendgroup in shown ? trace.legendgroup : null;
  }
  var done = [];
  document.querySelectorAll('script[type="application/json"][data-plot]').forEach(function (el) {
    var spec = JSON.parse(el.textContent);
    var div = document.getElementById(el.dataset.plot);
    done.push(Plotly.newPlot(div, spec.data, spec.layout, CONFIG));
    plots.push(div);
    div.on("plotly_legendclick", function (ev) {  // hide/show the group in every plot and the table
      var g = groupOf(ev);
      if (g === null) return true;
      shown[g] = !shown[g];
      apply();
      return false;
    });
    div.on("plotly_legenddoubleclick", function (ev) {  // only this group; again: every group
      var g = groupOf(ev);
      if (g === null) return true;
      var alone = Object.keys(shown).every(function (x) { return shown[x] === (x === g); });
      Object.keys(shown).forEach(function (x) { shown[x] = alone || x === g; });
      apply();
      return false;
    });
  });
  boxes.forEach(function (box) {
    box.addEventListener("change", function () { shown[box.dataset.group] = box.checked; apply(); });
  });
  function all(on) { Object.keys(shown).forEach(function (g) { shown[g] = on; }); apply(); }
  // The search box: rows whose words hold every term typed; a group stays in the plots while a run of it matches
  var filter = document.getElementById("filter");
  var count = document.getElementById("filter-count");
  function search() {
    var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var matched = {}, runs = 0, hits = 0;
    document.querySelectorAll("tr[data-search]").forEach(function (tr) {
      var text = tr.dataset.search;
      var hit = terms.every(function (t) { return text.indexOf(t) >= 0; });
      tr.hidden = !hit;
      if (tr.closest("table.runs")) {
        runs += 1;
        if (hit) { hits += 1; matched[tr.dataset.group] = true; }
      }
    });
    count.textContent = terms.length ? hits + " of " + runs + " runs" : "";
    if (terms.length) {
      var details = document.querySelector("table.runs").closest("details");
      if (details) details.open = true;
    }
    Object.keys(shown).forEach(function (g) { shown[g] = !terms.length || !!matched[g]; });
    apply();
  }
  filter.addEventListener("input", search);
  document.getElementById("show-all").addEventListener("click", function () { all(true); });
  document.getElementById("hide-all").addEventListener("click", function () { all(false); });
  Promise.all(done).then(function () {
    document.body.dataset.plots = String(plots.length);
    document.body.dataset.rendered = "ok";
  }, function (err) {
    document.body.dataset.rendered = "error";
    console.error(err);
  });
})();
