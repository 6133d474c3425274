// The book's interactive figures (facnnbook.interactive: the explorer and the morph).
//
// A figure is a <div class="facnn-interactive"> holding its controls (elements with a
// data-facnn name), a plot <div class="facnn-plot"> and its data as JSON in
// <script type="application/json" class="facnn-data">: {view, src, fig, data}, where view
// names one of VIEWS below, src is the local path of plotly.js, fig the plotly figure with
// 1-pixel placeholder traces, and data the arrays (uint8 and 8-bit maps, base64). This
// script draws each figure with plotly.js and redraws it on its controls.
//
// facnnbook.interactive inlines this file after each figure, so a notebook opened in
// Jupyter (where the book's _static folder is not served) draws it too; the functions are
// defined once per page, and each run starts the figures not started yet.
(function () {
  "use strict";
  if (window.facnnInteractive) { window.facnnInteractive.start(); return; }

  // plotly.js from a local path, loaded once per page whatever the number of figures
  function loadPlotly(src, done, fail) {
    if (window.Plotly) { done(); return; }
    var s = document.getElementById("facnn-plotly-js");
    if (!s) {
      s = document.createElement("script");
      s.id = "facnn-plotly-js";
      s.src = src;
      // with require.js on the page (ipywidgets) plotly.js would register as an AMD module
      // instead of setting window.Plotly: hide define() while it loads
      var amd = window.define;
      if (amd && amd.amd) { window.define = undefined; }
      s.addEventListener("load", function () { if (amd) { window.define = amd; } });
      s.addEventListener("error", function () { if (amd) { window.define = amd; } });
      document.head.appendChild(s);
    }
    s.addEventListener("load", done);
    s.addEventListener("error", fail);
  }

  function bytes(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { a[i] = s.charCodeAt(i); }
    return a;
  }

  function rgb(a, k, H, W) {          // image k of a uint8 (..., 3, H, W) buffer
    var z = [], o = k * 3 * H * W, P = H * W;
    for (var y = 0; y < H; y++) {
      var row = [];
      for (var x = 0; x < W; x++) {
        var p = o + y * W + x;
        row.push([a[p], a[p + P], a[p + 2 * P]]);
      }
      z.push(row);
    }
    return z;
  }

  function map(m, k, H, W) {           // map k of a quantised stack, lo + q (hi - lo) / 255
    var lo = m.lo[k], hi = m.hi[k], s = (hi - lo) / 255, z = [], o = k * H * W;
    for (var y = 0; y < H; y++) {
      var row = [];
      for (var x = 0; x < W; x++) { row.push(lo + m.bytes[o + y * W + x] * s); }
      z.push(row);
    }
    return {z: z, lo: lo, hi: hi > lo ? hi : lo + 1e-6};
  }

  // each view: decode(D) once, then update(D, f) on every change of a control, where
  // f.div is the plot, f.value(name) a control's value, f.text(name, s) sets a label
  var VIEWS = {
    // image, class, layer, removal fraction and order (facnnbook.interactive.explorer_html);
    // traces: 0, 1 image + class map; 2, 3 image + Grad-CAM; 4 the image after removal
    explorer: {
      decode: function (D) {
        D.images = bytes(D.images); D.removed = bytes(D.removed);
        D.cm.bytes = bytes(D.cm.q); D.gc.bytes = bytes(D.gc.q);
      },
      update: function (D, f) {
        var i = f.value("image"), c = f.value("class"), l = f.value("layer");
        var fr = f.value("fraction"), o = f.value("order");
        if (c < 0) { c = D.labels[i]; }
        var H = D.H, W = D.W, img = rgb(D.images, i, H, W);
        var cm = map(D.cm, (i * D.L + l) * D.C + c, H, W), gc = map(D.gc, i * D.C + c, H, W);
        var k = (i * D.orders.length + o) * D.F + fr;
        var pct = Math.round(100 * D.fractions[fr]) + " %";
        f.text("layer-text", D.layers[l]);
        f.text("fraction-text", pct);
        Plotly.restyle(f.div, {z: [img, img, rgb(D.removed, k, H, W)]}, [0, 2, 4]);
        Plotly.restyle(f.div, {z: [cm.z, gc.z], zmin: [cm.lo, gc.lo], zmax: [cm.hi, gc.hi]}, [1, 3]);
        Plotly.relayout(f.div, {
          "annotations[0].text": "class map: " + D.names[c] + "<br>layer " + D.layers[l],
          "annotations[1].text": "Grad-CAM: " + D.names[c] + "<br>layer " + D.N,
          "annotations[2].text": pct + " removed (" + D.orders[o].toUpperCase() +
            ")<br>predicted: " + D.names[D.rpred[k]] + " (p=" + D.rprob[k].toFixed(2) + ")"});
      }
    },
    // one slider over the layers (facnnbook.interactive.morph_html); traces 2k, 2k+1:
    // image and map of panel k (row r, image i: k = r n + i; row 1 Grad-CAM when given)
    morph: {
      decode: function (D) {
        D.images = bytes(D.images); D.cm.bytes = bytes(D.cm.q);
        if (D.gc) { D.gc.bytes = bytes(D.gc.q); }
      },
      update: function (D, f) {
        var l = f.value("layer"), H = D.H, W = D.W, z = [], lo = [], hi = [], idx = [], ann = {};
        f.text("layer-text", D.layers[l]);
        for (var r = 0; r < D.rows; r++) {
          var m = r === 0 ? D.cm : D.gc;
          for (var i = 0; i < D.n; i++) {
            var k = r * D.n + i, mk = map(m, i * D.L + l, H, W);
            z.push(mk.z); lo.push(mk.lo); hi.push(mk.hi); idx.push(2 * k + 1);
            var rt = D.corr ? "r = " + D.corr[i * D.L + l].toFixed(2) : "";
            ann["annotations[" + k + "].text"] = r === 0 ?
              D.names[i] + (D.rows === 1 && D.corr ? "<br>" + rt : "") :
              "Grad-CAM" + (D.corr ? ", " + rt : "");
          }
        }
        if (!D.drawn) {   // the images do not change with the layer
          var imgs = [], iidx = [];
          for (var r2 = 0; r2 < D.rows; r2++) {
            for (var j = 0; j < D.n; j++) {
              imgs.push(rgb(D.images, j, H, W));
              iidx.push(2 * (r2 * D.n + j));
            }
          }
          Plotly.restyle(f.div, {z: imgs}, iidx);
          D.drawn = true;
        }
        Plotly.restyle(f.div, {z: z, zmin: lo, zmax: hi}, idx);
        Plotly.relayout(f.div, ann);
      }
    }
  };

  function draw(root) {
    var spec = JSON.parse(root.querySelector("script.facnn-data").textContent);
    var view = VIEWS[spec.view], D = spec.data, div = root.querySelector(".facnn-plot");
    function ctl(name) { return root.querySelector('[data-facnn="' + name + '"]'); }
    var f = {
      div: div,
      value: function (name) { return +ctl(name).value; },
      text: function (name, s) { var e = ctl(name); if (e) { e.textContent = s; } }
    };
    view.decode(D);
    function update() { view.update(D, f); }
    loadPlotly(spec.src, function () {
      Plotly.newPlot(div, spec.fig.data, spec.fig.layout,
                     {responsive: true, displayModeBar: false}).then(update);
      root.querySelectorAll("select, input").forEach(function (e) {
        e.addEventListener("input", update);
      });
    }, function () {
      div.textContent = "plotly.js did not load from " + spec.src + " (this figure needs it).";
    });
  }

  function start() {
    document.querySelectorAll(".facnn-interactive:not([data-facnn-started])").forEach(
      function (root) {
        root.setAttribute("data-facnn-started", "");
        draw(root);
      });
  }

  window.facnnInteractive = {start: start, views: VIEWS};
  start();
})();
