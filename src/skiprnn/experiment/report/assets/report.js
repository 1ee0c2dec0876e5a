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
