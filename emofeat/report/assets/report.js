/* emofeat report: draws the page from the JSON in #emofeat-data with uPlot (inlined).
   No network access: everything the page needs is in the file. Text from the data is set
   with textContent, never parsed as HTML. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("emofeat-data").textContent);
  var app = document.getElementById("app");
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  var FIXED01 = { expression: 1, vad: 1, face: 1, coverage: 1 };
  var plots = [];          // the uPlot instances on screen: {id, kind, plot}
  var syncing = false;

  // exposed for tests and for the curious (the browser console)
  window.emofeatReport = { data: DATA, plots: plots, ready: false };

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "cls") node.className = v;
        else node.setAttribute(k, v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function num(v, digits) {
    if (v === null || v === undefined || typeof v !== "number" || !isFinite(v)) return "-";
    return v.toFixed(digits === undefined ? 3 : digits);
  }

  function clock(s) {
    if (s === null || s === undefined || !isFinite(s)) return "-";
    var neg = s < 0; s = Math.abs(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var ss = (sec < 10 ? "0" : "") + sec.toFixed(sec >= 100 ? 0 : 1);
    var out = (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + ss;
    return (neg ? "-" : "") + out;
  }

  function withAlpha(hex, a) {
    var r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16),
        b = parseInt(hex.slice(5, 7), 16);
    return "rgba(" + r + "," + g + "," + b + "," + a + ")";
  }

  function destroyPlots() {
    plots.forEach(function (p) { p.plot.destroy(); });
    plots.length = 0;
  }

  function chartWidth(box) {
    return Math.max(320, (box.clientWidth || app.clientWidth || 900) - 18);
  }

  // min/max band of each series, drawn under the lines (the bucket's range)
  function bandHook(bands) {
    return function (u) {
      var ctx = u.ctx, xs = u.data[0], n = xs.length;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      bands.forEach(function (b, si) {
        if (!b || !u.series[si].show) return;
        ctx.fillStyle = b.fill;
        var i = 0;
        while (i < n) {
          while (i < n && (b.min[i] === null || b.max[i] === null)) i++;
          var j = i;
          while (j < n && b.min[j] !== null && b.max[j] !== null) j++;
          if (j - i > 1) {
            ctx.beginPath();
            for (var t = i; t < j; t++) {
              var px = u.valToPos(xs[t], "x", true), py = u.valToPos(b.max[t], "y", true);
              if (t === i) ctx.moveTo(px, py); else ctx.lineTo(px, py);
            }
            for (var r = j - 1; r >= i; r--) {
              ctx.lineTo(u.valToPos(xs[r], "x", true), u.valToPos(b.min[r], "y", true));
            }
            ctx.closePath();
            ctx.fill();
          }
          i = j;
        }
      });
      ctx.restore();
    };
  }

  function extent(arrays) {
    var lo = Infinity, hi = -Infinity;
    arrays.forEach(function (a) {
      if (!a) return;
      for (var i = 0; i < a.length; i++) {
        var v = a[i];
        if (v !== null && v < lo) lo = v;
        if (v !== null && v > hi) hi = v;
      }
    });
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    var pad = (hi - lo) * 0.04;
    return [lo - pad, hi + pad];
  }

  // x-zoom shared by the charts of one group (drag to zoom, double-click to reset)
  function syncScale(group) {
    return function (u, key) {
      if (key !== "x" || syncing || !window.emofeatReport.ready) return;
      syncing = true;
      var s = u.scales.x;
      plots.forEach(function (p) {
        if (p.plot !== u && p.group === group && p.plot.scales.x) {
          p.plot.setScale("x", { min: s.min, max: s.max });
        }
      });
      syncing = false;
    };
  }

  /* A line chart. spec: {id, kind, title, note, series: [{name, mean, min?, max?, color?,
     dash?, scale?}], x, xLabel, xFormat, yRange, group, steps, height, yValues} */
  function lineChart(box, spec) {
    var holder = el("div", { cls: "chart", "data-chart-id": spec.id, "data-kind": spec.kind });
    holder.appendChild(el("div", { cls: "chart-title", text: spec.title }));
    if (spec.note) holder.appendChild(el("div", { cls: "chart-note", text: spec.note }));
    box.appendChild(holder);
    var bands = [null];
    var series = [{
      label: spec.xLabel || "time",
      value: function (u, v) { return v === null ? "-" : (spec.xFormat || clock)(v); }
    }];
    var data = [spec.x];
    var all = [];
    spec.series.forEach(function (s, i) {
      var color = s.color || PALETTE[i % PALETTE.length];
      var def = {
        label: s.name, stroke: color, width: s.width || 1.3, spanGaps: false,
        points: { show: spec.x.length < 60 }, scale: s.scale || "y",
        value: function (u, v) { return v === null || v === undefined ? "-" : num(v, 3); }
      };
      if (s.dash) def.dash = s.dash;
      if (spec.steps) def.paths = uPlot.paths.stepped({ align: 1 });
      series.push(def);
      data.push(s.mean);
      bands.push(s.min && s.max ? { min: s.min, max: s.max, fill: withAlpha(color, 0.16) } : null);
      if (!s.scale || s.scale === "y") all.push(s.mean, s.min, s.max);
    });
    var yRange = spec.yRange || (FIXED01[spec.kind] ? [-0.02, 1.02] : extent(all));
    var scales = { x: { time: false }, y: { range: function () { return yRange; } } };
    var axes = [
      { values: function (u, vals) { return vals.map(spec.xFormat || clock); } },
      { scale: "y", size: spec.ySize || 56, values: spec.yValues || undefined,
        splits: spec.ySplits || undefined }
    ];
    (spec.extraScales || []).forEach(function (sc) {
      scales[sc.key] = { range: function () { return sc.range; } };
      axes.push({ scale: sc.key, side: 1, size: 56, grid: { show: false },
                  label: sc.label, stroke: sc.color || "#555" });
    });
    var opts = {
      width: chartWidth(holder), height: spec.height || 170,
      cursor: { sync: { key: spec.group || "page" }, drag: { x: true, y: false } },
      scales: scales, axes: axes, series: series,
      legend: { live: true },
      hooks: { drawAxes: [bandHook(bands)], setScale: [syncScale(spec.group || "page")] }
    };
    var plot = new uPlot(opts, data, holder);
    plots.push({ id: spec.id, kind: spec.kind, group: spec.group || "page", plot: plot });
    return plot;
  }

  function heatColor(q) {
    if (q === 255) return [232, 232, 232];
    var t = q / 254 * 2 - 1;  // -1 .. 1 (z = -3 .. 3)
    var a = Math.abs(t);
    if (t < 0) return [Math.round(255 - a * 196), Math.round(255 - a * 150), 255 - Math.round(a * 60)];
    return [255 - Math.round(a * 60), Math.round(255 - a * 190), Math.round(255 - a * 200)];
  }

  function heatmap(box, h, xs) {
    var holder = el("div", { cls: "chart heatmap", "data-chart-id": h.id, "data-kind": "heatmap" });
    holder.appendChild(el("div", { cls: "chart-title", text: "heatmap: " + h.title }));
    holder.appendChild(el("div", {
      cls: "chart-note",
      text: h.labels.length + " of " + h.dims + " columns (highest variance), each as a z-score " +
            "of its bucket means, clipped to \u00b1" + h.clip + "; blue low, red high, grey: no valid frame"
    }));
    var raw = atob(h.data), rows = h.labels.length, cols = h.buckets;
    var canvas = el("canvas", { width: cols, height: rows, "data-rows": rows, "data-cols": cols });
    canvas.style.height = Math.max(90, Math.min(rows * 4, 300)) + "px";
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(Math.max(cols, 1), Math.max(rows, 1));
    for (var r = 0; r < rows; r++) {
      for (var c = 0; c < cols; c++) {
        var q = raw.charCodeAt(r * cols + c), rgb = heatColor(q), o = (r * cols + c) * 4;
        img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
      }
    }
    if (rows && cols) ctx.putImageData(img, 0, 0);
    var readout = el("div", { cls: "heat-readout", text: "point at the map to read a value" });
    canvas.addEventListener("mousemove", function (ev) {
      var rect = canvas.getBoundingClientRect();
      var c = Math.min(cols - 1, Math.floor((ev.clientX - rect.left) / rect.width * cols));
      var r = Math.min(rows - 1, Math.floor((ev.clientY - rect.top) / rect.height * rows));
      if (c < 0 || r < 0) return;
      var q = raw.charCodeAt(r * cols + c);
      var z = q === 255 ? "no valid frame" : "z = " + ((q / 254) * 2 * h.clip - h.clip).toFixed(2);
      readout.textContent = clock(xs[c]) + "  " + h.labels[r] + "  " + z;
    });
    holder.appendChild(canvas);
    holder.appendChild(el("div", { cls: "bar muted mono" },
      el("span", { text: clock(xs[0]) }), el("span", { text: "\u2192" }),
      el("span", { text: clock(xs[xs.length - 1]) })));
    holder.appendChild(readout);
    box.appendChild(holder);
  }

  function table(headers, rows, opts) {
    var t = el("table", opts && opts.cls ? { cls: opts.cls } : null);
    var tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", { text: h })); });
    t.appendChild(el("thead", null, tr));
    var body = el("tbody");
    rows.forEach(function (row) {
      var r = el("tr", row.cls ? { cls: row.cls } : null);
      row.cells.forEach(function (c) {
        if (c && typeof c === "object" && c.node) r.appendChild(c.node);
        else {
          var isNum = typeof c === "number";
          r.appendChild(el("td", { cls: isNum ? "num" : null, text: isNum ? num(c) : (c === null || c === undefined ? "" : c) }));
        }
      });
      body.appendChild(r);
    });
    t.appendChild(body);
    return t;
  }

  function problemList(items, render) {
    if (!items || !items.length) return null;
    var ul = el("ul");
    items.forEach(function (p) { ul.appendChild(el("li", { text: render(p) })); });
    return el("div", { cls: "problems", "data-problems": items.length },
      el("strong", { text: items.length + " problem(s)" }), ul);
  }

  // ---------------------------------------------------------------- store page
  function renderStore() {
    document.title = "emofeat report: " + DATA.path;
    app.appendChild(el("h1", { text: "Feature store " + DATA.path }));
    app.appendChild(el("div", { cls: "muted", text: DATA.inputs_total + " input(s) in the store, " +
      DATA.inputs.length + " shown; " + DATA.runs.length + " extraction run(s); emofeat " +
      DATA.emofeat_version + "; up to " + DATA.max_points + " points per timeline" }));
    var storeProblems = problemList(DATA.problems, function (p) {
      return p.status + ": " + p.input + (p.extractor ? " (" + p.extractor + ")" : "") + ": " + p.message;
    });
    if (storeProblems) {
      app.appendChild(el("h2", { text: "Problems in the latest runs" }));
      app.appendChild(storeProblems);
    }
    if (!DATA.inputs.length) {
      app.appendChild(el("p", { text: "The store holds no input." }));
      return;
    }
    var select = el("select", { id: "input-select", "aria-label": "input" });
    DATA.inputs.forEach(function (inp, i) {
      select.appendChild(el("option", { value: String(i),
        text: inp.key + "  (" + clock(inp.duration) + ", " + inp.items.length + " item(s))" }));
    });
    app.appendChild(el("div", { cls: "bar" }, el("label", { "for": "input-select", text: "Input" }), select,
      el("span", { cls: "muted", text: "drag across a chart to zoom (all charts follow), double-click to reset" })));
    var box = el("section", { id: "input" });
    app.appendChild(box);
    select.addEventListener("change", function () { renderInput(box, DATA.inputs[+select.value]); });
    renderInput(box, DATA.inputs[0]);
  }

  function renderInput(box, inp) {
    window.emofeatReport.ready = false;
    destroyPlots();
    box.textContent = "";
    box.setAttribute("data-input", inp.key);
    box.appendChild(el("h2", { text: inp.key }));
    var facts = inp.frames + " frames, " + clock(inp.duration) +
      (inp.fps ? ", " + num(inp.fps, 2) + " fps" : "") + (inp.media_kind ? " (" + inp.media_kind + ")" : "");
    if (inp.k > 1) facts += "; one point = " + inp.k + " frames (mean, band: min to max)";
    box.appendChild(el("div", { cls: "muted", text: facts }));
    var pl = problemList(inp.problems, function (p) {
      return (p.status || "problem") + (p.extractor ? " (" + p.extractor + ")" : "") + ": " + p.message;
    });
    if (pl) box.appendChild(pl);
    var group = "input:" + inp.key;
    if (inp.charts.length) box.appendChild(el("h3", { text: "Timelines" }));
    inp.charts.forEach(function (ch) {
      lineChart(box, { id: ch.id, kind: ch.kind, title: ch.title, series: ch.series,
                       x: inp.grids[ch.grid].x, group: group });
    });
    var covs = inp.coverage.filter(function (c) { return c.series.length; });
    if (covs.length) box.appendChild(el("h3", { text: "Coverage and masks" }));
    covs.forEach(function (c) {
      var g = inp.grids[c.grid];
      lineChart(box, {
        id: "coverage:" + c.grid, kind: "coverage", group: group,
        title: "share of valid frames per point, per stream" +
          (inp.grids.length > 1 ? " (frame grid of " + g.frames + " frames)" : ""),
        note: "1: every frame of the point is valid; 0: none (masked, no face, no speech, not covered)",
        x: g.x, height: 150,
        series: c.series.map(function (s) { return { name: s.stream, mean: s.valid }; })
      });
    });
    if (inp.heatmaps.length) box.appendChild(el("h3", { text: "Wide streams" }));
    inp.heatmaps.forEach(function (h) { heatmap(box, h, inp.grids[h.grid].heat_x); });
    box.appendChild(el("h3", { text: "Items and provenance" }));
    var rows = [];
    inp.items.forEach(function (it) {
      (it.streams && it.streams.length ? it.streams : [{ name: "-" }]).forEach(function (s, i) {
        rows.push({ cells: [
          i === 0 ? it.extractor : "", s.name,
          s.rows !== undefined ? (s.rows === null ? "?" : s.rows) + " x " + s.dims : it.problem || "",
          s.level || "", s.coverage !== undefined ? (100 * s.coverage).toFixed(1) + "%" : "",
          i === 0 ? (it.extractor_version !== undefined ? String(it.extractor_version) : it.status) : "",
          i === 0 ? (it.license || "") : ""
        ] });
      });
    });
    box.appendChild(table(["extractor", "stream", "rows x dims", "level", "coverage", "version", "licence"], rows));
    inp.items.forEach(function (it) {
      if (it.status !== "complete") return;
      var d = el("details", null, el("summary", { text: "provenance: " + it.extractor }));
      var prov = {};
      ["plugin", "emofeat_version", "created", "source", "source_hash", "model_id", "model_sha256",
       "commercial_use", "alignment"].forEach(function (k) { if (it[k] !== undefined && it[k] !== "") prov[k] = it[k]; });
      prov.settings = it.settings; prov.media = it.media;
      if (it.mask) prov.mask = it.mask;
      if (it.warnings && it.warnings.length) prov.warnings = it.warnings;
      d.appendChild(el("pre", { cls: "mono", text: JSON.stringify(prov, null, 2) }));
      box.appendChild(d);
    });
    window.emofeatReport.ready = true;
  }

  // ---------------------------------------------------------------- run page
  function renderRun() {
    document.title = "emofeat report: " + DATA.path;
    app.appendChild(el("h1", { text: "Run " + DATA.path }));
    var facts = [(DATA.recipe || "?") + " (" + DATA.task + ")", "status " + (DATA.status || "?")];
    if (DATA.best) facts.push("best " + DATA.best + " = " + num(DATA.best_score, 4));
    if (DATA.started) facts.push("started " + DATA.started);
    if (DATA.seconds) facts.push(num(DATA.seconds, 1) + " s");
    app.appendChild(el("div", { cls: "muted", text: facts.join("; ") }));
    if (DATA.argv) app.appendChild(el("div", { cls: "mono muted", text: DATA.argv.join(" ") }));
    var pl = problemList(DATA.problems, function (p) { return p; });
    if (pl) app.appendChild(pl);

    if (DATA.metrics.length) {
      app.appendChild(el("h2", { text: "Validation metrics per model" }));
      var keys = DATA.metric_columns;
      var rows = DATA.metrics.map(function (m) {
        return { cls: m.best ? "best" : null,
                 cells: [m.model + (m.best ? " (best)" : "")].concat(keys.map(function (k) { return m[k]; }))
                   .concat([m.smoothing_window === null || m.smoothing_window === undefined ? "" : String(m.smoothing_window)]) };
      });
      app.appendChild(table(["model"].concat(keys).concat(["smoothing window"]), rows, { cls: "metrics" }));
      app.appendChild(el("div", { cls: "legend-note", text: DATA.task === "VA"
        ? "CCC on the validation split, pooled over every valid frame (raw and after smoothing)"
        : "macro-F1 and accuracy on the validation split, pooled over every valid frame" }));
    }

    if (DATA.task !== "VA" && DATA.classes.length) renderClasses();

    if (DATA.curves.length) {
      app.appendChild(el("h2", { text: "Learning curves" }));
      var grid = el("div", { cls: "grid2" });
      app.appendChild(grid);
      DATA.curves.forEach(function (c) {
        var series = [{ name: "train loss", mean: c.train_loss, color: PALETTE[0] }];
        var devKeys = Object.keys(c.dev);
        var devVals = [];
        devKeys.forEach(function (k, i) {
          series.push({ name: "dev " + k, mean: c.dev[k], color: PALETTE[(i + 1) % PALETTE.length],
                        scale: "score", dash: k === "score" ? null : [4, 3] });
          devVals.push(c.dev[k]);
        });
        var ext = extent(devVals);
        lineChart(grid, {
          id: "curve:" + c.model, kind: "curve", title: "training: " + c.model, group: "curves:" + c.model,
          x: c.epoch, xLabel: "epoch", xFormat: function (v) { return String(v); },
          series: series, height: 200,
          extraScales: [{ key: "score", range: ext, label: "dev" }]
        });
      });
    }

    if (DATA.traces.length) renderTraces();

    if (DATA.per_track.length) {
      app.appendChild(el("h2", { text: "Per validation track" }));
      var models = [];
      DATA.per_track.forEach(function (t) {
        Object.keys(t).forEach(function (k) {
          if (k !== "track" && k !== "frames" && models.indexOf(k) < 0) models.push(k);
        });
      });
      var sub = DATA.task === "VA" ? null : ["accuracy", "f1"];
      var heads = ["track", "frames"];
      models.forEach(function (m) {
        var names = sub || Object.keys((DATA.per_track.find(function (t) { return t[m]; }) || {})[m] || {});
        names.forEach(function (n) { heads.push(m + " " + (DATA.task === "VA" ? "CCC " : "") + n); });
      });
      var trows = DATA.per_track.map(function (t) {
        var cells = [t.track, String(t.frames)];
        models.forEach(function (m) {
          var names = sub || Object.keys((DATA.per_track.find(function (x) { return x[m]; }) || {})[m] || {});
          names.forEach(function (n) { cells.push(t[m] ? t[m][n] : null); });
        });
        return { cells: cells };
      });
      app.appendChild(el("div", { cls: "scroll" }, table(heads, trows, { cls: "per-track" })));
    }

    if (DATA.coverage) {
      app.appendChild(el("h2", { text: "Coverage of the inputs" }));
      var crows = Object.keys(DATA.coverage).map(function (split) {
        var c = DATA.coverage[split] || {};
        return { cells: [split, String(c.tracks), String(c.tracks_covered), String(c.frames),
                         String(c.frames_covered), c.coverage === undefined ? "" : (100 * c.coverage).toFixed(1) + "%",
                         Object.keys(c.missing || {}).join(", ")] };
      });
      app.appendChild(table(["split", "tracks", "with all inputs", "frames", "with all", "coverage", "tracks missing inputs"], crows));
    }
    if (DATA.fusion) {
      app.appendChild(el("details", null, el("summary", { text: "fusion.json" }),
        el("pre", { cls: "mono", text: JSON.stringify(DATA.fusion, null, 2) })));
    }
    if (DATA.config) {
      app.appendChild(el("details", null, el("summary", { text: "config.yaml" }),
        el("pre", { cls: "mono", text: DATA.config })));
    }
    window.emofeatReport.ready = true;
  }

  function renderClasses() {
    app.appendChild(el("h2", { text: "Per-class F1 and confusion" }));
    var withPer = DATA.metrics.filter(function (m) { return m.per_class; });
    if (withPer.length) {
      app.appendChild(table(["model"].concat(DATA.classes),
        withPer.map(function (m) { return { cls: m.best ? "best" : null, cells: [m.model].concat(m.per_class) }; }),
        { cls: "per-class" }));
      app.appendChild(el("div", { cls: "legend-note", text: "per-class F1 from metrics.json (smoothed predictions)" }));
    }
    var models = Object.keys(DATA.confusion);
    if (!models.length) return;
    var select = el("select", { id: "confusion-model", "aria-label": "model" });
    models.forEach(function (m) { select.appendChild(el("option", { value: m, text: m })); });
    if (DATA.best && models.indexOf(DATA.best) >= 0) select.value = DATA.best;
    app.appendChild(el("div", { cls: "bar" }, el("label", { "for": "confusion-model", text: "Model" }), select));
    var box = el("div", { id: "confusion" });
    app.appendChild(box);
    function draw() {
      box.textContent = "";
      var m = select.value, cm = DATA.confusion[m], f1 = DATA.f1_from_predictions[m];
      var t = el("table", { cls: "cm", "data-model": m });
      var head = el("tr", null, el("th", { text: "label \\ predicted" }));
      DATA.classes.forEach(function (c) { head.appendChild(el("th", { text: c })); });
      head.appendChild(el("th", { text: "F1" }));
      t.appendChild(head);
      cm.forEach(function (row, i) {
        var total = row.reduce(function (a, b) { return a + b; }, 0);
        var tr = el("tr", null, el("th", { text: DATA.classes[i] }));
        row.forEach(function (v) {
          var share = total ? v / total : 0;
          var td = el("td", { text: String(v), title: (100 * share).toFixed(1) + "% of the row" });
          td.style.background = "rgba(47,111,219," + (0.05 + 0.85 * share).toFixed(3) + ")";
          if (share > 0.55) td.style.color = "#fff";
          tr.appendChild(td);
        });
        var bar = el("span", { cls: "f1bar" });
        bar.style.width = Math.round(60 * f1[i]) + "px";
        tr.appendChild(el("td", { cls: "num" }, bar, num(f1[i])));
        t.appendChild(tr);
      });
      box.appendChild(t);
      box.appendChild(el("div", { cls: "legend-note", text:
        "counts of validation frames with a valid label, from predictions/ and labels/; cell colour: share of the row" }));
    }
    select.addEventListener("change", draw);
    draw();
  }

  function renderTraces() {
    app.appendChild(el("h2", { text: "Predictions against labels (validation)" }));
    var models = DATA.traced_models;
    var tracks = [];
    DATA.traces.forEach(function (t) { if (tracks.indexOf(t.track) < 0) tracks.push(t.track); });
    var ms = el("select", { id: "trace-model", "aria-label": "model" });
    models.forEach(function (m) { ms.appendChild(el("option", { value: m, text: m })); });
    var ts = el("select", { id: "trace-track", "aria-label": "track" });
    tracks.forEach(function (t) { ts.appendChild(el("option", { value: t, text: t })); });
    app.appendChild(el("div", { cls: "bar" }, el("label", { "for": "trace-model", text: "Model" }), ms,
      el("label", { "for": "trace-track", text: "Track" }), ts));
    var box = el("div", { id: "traces" });
    app.appendChild(box);
    function draw() {
      window.emofeatReport.ready = false;
      for (var i = plots.length - 1; i >= 0; i--) {
        if (plots[i].kind === "trace") { plots[i].plot.destroy(); plots.splice(i, 1); }
      }
      box.textContent = "";
      var tr = DATA.traces.find(function (t) { return t.model === ms.value && t.track === ts.value; });
      if (!tr) { box.appendChild(el("p", { text: "no predictions of this model for this track" })); return; }
      var note = tr.frames + " frames" + (tr.k > 1 ? "; one point = " + tr.k + " frames (" +
        (DATA.task === "VA" ? "mean" : "most frequent class") + ")" : "");
      var frameFmt = function (v) { return String(Math.round(v)); };
      if (DATA.task === "VA") {
        var dims = [];
        tr.series.forEach(function (s) { if (dims.indexOf(s.dim) < 0) dims.push(s.dim); });
        dims.forEach(function (d) {
          var ser = tr.series.filter(function (s) { return s.dim === d; }).map(function (s) {
            return { name: s.what, mean: s.mean, color: s.what === "label" ? "#222222" : "#d62728",
                     width: s.what === "label" ? 1.2 : 1.5 };
          });
          lineChart(box, { id: "trace:" + tr.model + ":" + tr.track + ":" + d, kind: "trace",
            title: d + ": CCC " + num(tr.scores[d], 3), note: note, x: tr.x, xLabel: "frame",
            xFormat: frameFmt, series: ser, group: "trace", yRange: [-1.05, 1.05] });
        });
      } else {
        var ser2 = tr.series.map(function (s) {
          return { name: s.what, mean: s.mean, color: s.what === "label" ? "#222222" : "#d62728" };
        });
        lineChart(box, { id: "trace:" + tr.model + ":" + tr.track + ":class", kind: "trace",
          title: "class: accuracy " + num(tr.scores.accuracy, 3) + ", macro-F1 " + num(tr.scores.f1, 3),
          note: note, x: tr.x, xLabel: "frame", xFormat: frameFmt, series: ser2, group: "trace",
          steps: true, height: 220, yRange: [-0.5, DATA.classes.length - 0.5], ySize: 90,
          ySplits: function () { return DATA.classes.map(function (c, i) { return i; }); },
          yValues: function (u, vals) {
            return vals.map(function (v) { return Number.isInteger(v) ? (DATA.classes[v] || "") : ""; });
          } });
      }
      window.emofeatReport.ready = true;
    }
    ms.addEventListener("change", draw);
    ts.addEventListener("change", draw);
    draw();
  }

  if (DATA.kind === "store") renderStore(); else renderRun();
  window.emofeatReport.ready = true;
  window.addEventListener("resize", function () {
    plots.forEach(function (p) {
      var holder = p.plot.root.parentNode;
      p.plot.setSize({ width: chartWidth(holder), height: p.plot.height });
    });
  });
})();
