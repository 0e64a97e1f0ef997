// cnnlab serve: the page. Plain JavaScript, no libraries, nothing fetched from elsewhere.
// The server sends each layer's maps as one 8-bit grayscale PNG (an atlas of tiles) and the
// scale that maps bytes back to values; this script colours the bytes with a lookup table
// from /api/colormaps and lays the tiles out as thumbnails.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const S = {
    runs: [], run: null, result: null, lut: {}, seq: 0,
    layers: new Map(),     // layer index -> {row, section, canvas, gray, width, height, key, cols, cell}
    heat: null,            // {canvas, alpha} drawn over the input
    box: null,             // receptive-field box {top, left, height, width} in input pixels
    drawn: false,          // something on the drawing canvas
    inspector: null,       // {index, channel, unit}
  };
  const MAP_TILE = 48;     // CSS pixels of a thumbnail's longer side
  const GAP = 3;

  // --- small helpers ----------------------------------------------------------------------
  async function api(path, options) {
    const response = await fetch(path, options);
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
    return body;
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  const fmtInt = (n) => Number(n).toLocaleString("en-US");
  function fmtBig(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
    if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
    return String(n);
  }
  function fmtNum(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 10000)) return v.toExponential(2);
    return v.toFixed(a >= 100 ? 1 : 3);
  }
  function showError(message) {
    const line = $("error-line");
    line.hidden = !message;
    line.textContent = message || "";
  }
  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`could not load ${url}`));
      img.src = url;
    });
  }
  function grayOf(img) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
    const gray = new Uint8Array(c.width * c.height);
    for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];
    return { gray, width: c.width, height: c.height };
  }
  function lutFor(name) {
    return S.lut[name] || S.lut.viridis;
  }
  // Colour a gray patch (x0, y0, w, h of an atlas) into a new canvas of w x h.
  function colourTile(atlas, x0, y0, w, h, lut, validUnits) {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d");
    const out = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = 4 * (y * w + x);
        if (validUnits !== undefined && y * w + x >= validUnits) { out.data[o + 3] = 0; continue; }
        const v = atlas.gray[(y0 + y) * atlas.width + x0 + x];
        out.data[o] = lut[3 * v]; out.data[o + 1] = lut[3 * v + 1]; out.data[o + 2] = lut[3 * v + 2]; out.data[o + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
    return c;
  }
  function scaleBar(scale, unitsLabel) {
    const wrap = el("span", { class: "scale" });
    const bar = el("canvas", { width: 128, height: 10, class: "scale-bar", "aria-hidden": "true" });
    const ctx = bar.getContext("2d");
    const lut = lutFor(scale.colormap);
    for (let x = 0; x < 128; x++) {
      const v = Math.round((x / 127) * 255);
      ctx.fillStyle = `rgb(${lut[3 * v]},${lut[3 * v + 1]},${lut[3 * v + 2]})`;
      ctx.fillRect(x, 0, 1, 10);
    }
    const mid = scale.diverging ? " 0 " : " ";
    wrap.append(el("span", { text: fmtNum(scale.lo) }), bar,
      el("span", { text: fmtNum(scale.hi) }),
      el("span", { class: "dim", text: ` ${scale.colormap}${scale.diverging ? ", centred on 0" : ""}${unitsLabel ? ", " + unitsLabel : ""}` }));
    if (mid.trim()) bar.title = "white = 0";
    return wrap;
  }

  // --- runs --------------------------------------------------------------------------------
  async function init() {
    const [tables, list] = await Promise.all([api("/api/colormaps"), api("/api/runs")]);
    for (const [name, hex] of Object.entries(tables)) {
      const lut = new Uint8Array(768);
      for (let i = 0; i < 768; i++) lut[i] = parseInt(hex.substr(2 * i, 2), 16);
      S.lut[name] = lut;
    }
    S.runs = list.runs;
    const select = $("run-select");
    for (const r of S.runs) {
      const what = r.weights ? `${r.model} with weights ${r.weights}` : `${r.model} on ${r.data}`;
      select.append(el("option", { value: r.id, text: `${r.id} (${what})` }));
    }
    select.addEventListener("change", () => loadRun(select.value));
    const wanted = new URLSearchParams(location.hash.slice(1)).get("run");
    const first = S.runs.find((r) => r.id === wanted) || S.runs[0];
    if (!first) { showError("no runs are served"); return; }
    select.value = first.id;
    await loadRun(first.id);
  }

  async function loadRun(id) {
    document.body.dataset.state = "loading";
    showError("");
    let info;
    try {
      info = await api(`/api/runs/${encodeURIComponent(id)}`);
    } catch (e) { showError(e.message); document.body.dataset.state = "error"; return; }
    S.run = info; S.result = null;
    history.replaceState(null, "", `#run=${encodeURIComponent(id)}`);
    const err = info.test_top1_err === null || info.test_top1_err === undefined ? "" :
      ` · test error ${(100 * info.test_top1_err).toFixed(2)}% after ${info.epochs} epoch(s)`;
    // A model served with --weights has no run folder: say whose weights, and where its test images come from.
    const where = info.weights ? `with weights ${info.weights}${info.data ? `, test images from ${info.data}` : ""}` : `on ${info.data}`;
    $("run-meta").textContent = `${info.model} (${info.paper || info.family}) ${where}: ${info.classes.length} classes, ` +
      `input ${info.input_size.join("x")}${info.pad ? ` (${info.image_size.join("x")} padded by ${info.pad})` : ""}, ` +
      `${fmtInt(info.params)} parameters, ${fmtBig(info.macs)}MACs${err}`;
    $("ink-label").hidden = info.digit_like;
    $("draw-hint").textContent = info.digit_like
      ? "Draw a digit. It is prepared as MNIST's were (box scaled to 20x20, centred by centre of mass); bars update after each stroke."
      : "Draw something; it is resized to the network's input. Bars update after each stroke.";
    const explain = $("explain-class");
    explain.replaceChildren(el("option", { value: "top", text: "top class" }));
    info.classes.forEach((c, i) => explain.append(el("option", { value: String(i), text: `${i}: ${c}` })));
    renderTable(info);
    renderFilters(info);
    buildLayers(info);
    clearDrawing();
    const samples = info.samples !== false;  // false: a model with --weights and no --data
    $("random-button").hidden = !samples;
    if (samples) await predictSample();
    else document.body.dataset.state = "ready";
  }

  function renderTable(info) {
    const body = $("layer-table").querySelector("tbody");
    body.replaceChildren();
    for (const row of info.layers) {
      const tr = el("tr", {},
        el("td", { class: "num", text: String(row.index) }),
        el("td", { text: row.name }),
        el("td", { text: row.type }),
        el("td", { text: row.output_shape ? row.output_shape.join("x") : "–" }),
        el("td", { class: "num", text: fmtInt(row.params) }),
        el("td", { class: "num", text: fmtBig(row.macs) }),
        el("td", { class: "num", text: row.receptive_field || "–" }));
      if (row.maps) {
        tr.classList.add("link");
        tr.title = "show this layer's maps";
        tr.addEventListener("click", () => S.layers.get(row.index).section.scrollIntoView({ behavior: "smooth" }));
      }
      body.append(tr);
    }
  }

  function renderFilters(info) {
    const box = $("filters");
    box.hidden = !info.filters;
    if (!info.filters) return;
    const [k, c, kh, kw] = info.filters.shape;
    $("filters-caption").textContent = `${info.filters.layer}: ${k} kernels of ${c}x${kh}x${kw}` +
      `${c === 3 ? " in colour" : c === 1 ? "" : " (mean over input channels)"}, each scaled to its own min..max`;
    const img = $("filters-img");
    img.src = `/api/runs/${encodeURIComponent(info.id)}/filters.png`;
    img.onload = () => {
      // about 40 CSS pixels a kernel, never wider than the panel
      const zoom = Math.max(1, Math.min(Math.floor(40 / kw), Math.floor((box.clientWidth || 320) / img.naturalWidth)));
      img.style.width = `${img.naturalWidth * zoom}px`;
    };
  }

  // --- layers ------------------------------------------------------------------------------
  // Layers near the viewport are drawn; the others when scrolled to (big models have hundreds).
  const near = new Set();
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const index = Number(entry.target.dataset.index);
      if (entry.isIntersecting) { near.add(index); renderLayer(index); } else near.delete(index);
    }
  }, { rootMargin: "600px 0px" });

  function buildLayers(info) {
    const holder = $("layers");
    observer.disconnect();
    near.clear();
    holder.replaceChildren();
    S.layers.clear();
    for (const row of info.layers) {
      if (!row.maps) continue;
      const what = row.layout === "vector" ? `${fmtInt(row.units || row.grid[0] * row.grid[1])} units`
        : `${row.channels} map${row.channels === 1 ? "" : "s"} of ${row.grid.join("x")}`;
      const canvas = el("canvas", { class: "layer-canvas", width: 10, height: 10, "data-index": String(row.index),
        "aria-label": `${row.name}: ${what}` });
      const scaleLine = el("div", { class: "layer-scale" });
      const section = el("section", { class: "layer", "data-index": String(row.index) },
        el("h3", {}, `${row.index}. ${row.name} `, el("span", { class: "dim", text: `${row.type} · ${what}` +
          (row.receptive_field ? ` · field ${row.receptive_field}` : "") })),
        row.note ? el("p", { class: "dim note", text: row.note }) : "",
        scaleLine, canvas);
      canvas.addEventListener("click", (ev) => onLayerClick(row.index, ev));
      holder.append(section);
      S.layers.set(row.index, { row, section, canvas, scaleLine, key: null, gray: null });
      observer.observe(section);
    }
  }

  async function renderLayer(index) {
    const L = S.layers.get(index);
    const res = S.result;
    if (!L || !res || L.key === res.key || L.loading === res.key) return;
    const meta = res.layers.find((l) => l.index === index);
    if (!meta) return;
    L.loading = res.key;
    let img;
    try { img = await loadImage(meta.url); } catch (e) { L.loading = null; return; }
    if (S.result !== res) { L.loading = null; return; }  // a newer input arrived meanwhile
    L.atlas = grayOf(img);
    L.meta = meta;
    L.key = res.key;
    L.loading = null;
    layoutLayer(L);
    L.canvas.dataset.key = res.key;
    const downs = meta.atlas.downsample > 1 ? `maps shown at 1/${meta.atlas.downsample} resolution` : "";
    L.scaleLine.replaceChildren(scaleBar(meta.scale, downs));
    if (S.inspector && S.inspector.index === index) drawInspectorMap();
  }

  function layoutLayer(L) {
    const meta = L.meta;
    if (!meta || !L.atlas) return;
    const { channels, cols, tile } = meta.atlas;
    const [th, tw] = tile;
    const vector = L.row.layout === "vector";
    const available = Math.max(120, L.section.clientWidth - 8);
    let cell;
    if (vector) cell = Math.max(3, Math.min(24, Math.floor(Math.min(available, 480) / tw)));
    else cell = Math.max(tw, th) >= MAP_TILE ? MAP_TILE / Math.max(tw, th) : Math.max(1, Math.round(MAP_TILE / Math.max(tw, th)));
    const dw = Math.max(1, Math.round(tw * cell)), dh = Math.max(1, Math.round(th * cell));
    const perRow = Math.max(1, Math.min(channels, Math.floor((available + GAP) / (dw + GAP))));
    const rows = Math.ceil(channels / perRow);
    const canvas = L.canvas;
    canvas.width = perRow * (dw + GAP) - GAP;
    canvas.height = rows * (dh + GAP) - GAP;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const lut = lutFor(meta.scale.colormap);
    for (let ch = 0; ch < channels; ch++) {
      const ax = (ch % cols) * tw, ay = Math.floor(ch / cols) * th;
      const tileCanvas = colourTile(L.atlas, ax, ay, tw, th, lut, vector ? L.row.units : undefined);
      const x = (ch % perRow) * (dw + GAP), y = Math.floor(ch / perRow) * (dh + GAP);
      ctx.drawImage(tileCanvas, x, y, dw, dh);
    }
    L.layout = { perRow, dw, dh };
  }

  function onLayerClick(index, ev) {
    const L = S.layers.get(index);
    if (!L || !L.layout) return;
    const rect = L.canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) * (L.canvas.width / rect.width);
    const y = (ev.clientY - rect.top) * (L.canvas.height / rect.height);
    const { perRow, dw, dh } = L.layout;
    const col = Math.floor(x / (dw + GAP)), row = Math.floor(y / (dh + GAP));
    const channel = row * perRow + col;
    if (col >= perRow || channel >= L.meta.atlas.channels) return;
    openInspector(index, channel);
  }

  // --- inspector: one map, one unit ----------------------------------------------------------
  function openInspector(index, channel) {
    S.inspector = { index, channel, unit: null };
    const L = S.layers.get(index);
    $("inspector-title").textContent = L.row.layout === "vector" ? `${L.row.name}: ${fmtInt(L.row.units)} units`
      : `${L.row.name}, channel ${channel} (${L.row.grid.join("x")})`;
    const s = L.meta.scale;
    $("inspector-scale").textContent = `colour scale ${fmtNum(s.lo)} .. ${fmtNum(s.hi)} (${s.colormap}${s.diverging ? ", white = 0" : ""}), shared by the layer's maps`;
    $("unit-detail").replaceChildren();
    $("field-line").textContent = "";
    $("inspector").hidden = false;
    drawInspectorMap();
    drawFieldInput();
  }

  function closeInspector() {
    $("inspector").hidden = true;
    S.inspector = null;
    S.box = null;
    drawOverlay();
  }

  function drawInspectorMap() {
    const I = S.inspector;
    if (!I) return;
    const L = S.layers.get(I.index);
    const { cols, tile } = L.meta.atlas;
    const [th, tw] = tile;
    const canvas = $("map-canvas");
    const cell = Math.max(1, Math.floor(280 / Math.max(th, tw)));
    canvas.width = tw * cell; canvas.height = th * cell;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const ax = (I.channel % cols) * tw, ay = Math.floor(I.channel / cols) * th;
    const vector = L.row.layout === "vector";
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(colourTile(L.atlas, ax, ay, tw, th, lutFor(L.meta.scale.colormap), vector ? L.row.units : undefined),
      0, 0, canvas.width, canvas.height);
    if (cell >= 10) {
      ctx.strokeStyle = "rgba(128,128,128,0.35)";
      ctx.lineWidth = 1;
      for (let i = 1; i < tw; i++) { ctx.beginPath(); ctx.moveTo(i * cell + 0.5, 0); ctx.lineTo(i * cell + 0.5, canvas.height); ctx.stroke(); }
      for (let i = 1; i < th; i++) { ctx.beginPath(); ctx.moveTo(0, i * cell + 0.5); ctx.lineTo(canvas.width, i * cell + 0.5); ctx.stroke(); }
    }
    if (I.unit) {
      ctx.strokeStyle = "#ff2d95"; ctx.lineWidth = Math.max(2, cell / 5);
      ctx.strokeRect(I.unit.c * cell + 1, I.unit.r * cell + 1, cell - 2, cell - 2);
    }
    I.cell = cell;
  }

  function drawFieldInput() {
    const canvas = $("field-input");
    const src = $("input-canvas");
    canvas.width = 280; canvas.height = Math.round(280 * src.height / src.width);
    $("field-overlay").width = canvas.width; $("field-overlay").height = canvas.height;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(src, 0, 0, canvas.width, canvas.height);
    drawBox($("field-overlay"), true);
  }

  async function onMapClick(ev) {
    const I = S.inspector;
    if (!I || !S.result) return;
    const L = S.layers.get(I.index);
    const canvas = $("map-canvas");
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((ev.clientX - rect.left) * canvas.width / rect.width / I.cell);
    const r = Math.floor((ev.clientY - rect.top) * canvas.height / rect.height / I.cell);
    const [th, tw] = L.meta.atlas.tile;
    if (r < 0 || c < 0 || r >= th || c >= tw) return;
    if (L.row.layout === "vector" && r * tw + c >= L.row.units) return;
    I.unit = { r, c };
    drawInspectorMap();
    const f = L.meta.atlas.downsample;
    const q = new URLSearchParams({ layer: I.index, channel: I.channel, row: r * f, col: c * f });
    let unit;
    try { unit = await api(`${S.result.unit_url}?${q}`); } catch (e) { $("field-line").textContent = e.message; return; }
    S.box = unit.field;
    drawOverlay();
    drawBox($("field-overlay"), true);
    $("field-line").textContent = `receptive field: ${unit.field.text}`;
    renderUnit(unit, L);
  }

  function numberGrid(values, scaleMax, showNumbers) {
    const table = el("table", { class: "grid" });
    for (const row of values) {
      const tr = el("tr");
      for (const v of row) {
        const t = Math.max(-1, Math.min(1, v / (scaleMax || 1)));
        const bg = t >= 0 ? `rgba(214,96,77,${t.toFixed(3)})` : `rgba(67,147,195,${(-t).toFixed(3)})`;
        const td = el("td", { text: showNumbers ? v.toFixed(2) : "", title: v.toFixed(4) });
        td.style.background = bg;
        tr.append(td);
      }
      table.append(tr);
    }
    return table;
  }

  function renderUnit(unit, L) {
    const box = $("unit-detail");
    const index = L.row.layout === "vector" ? ` (unit ${unit.row * L.row.grid[1] + unit.col})` : ` at row ${unit.row}, column ${unit.col}`;
    box.replaceChildren(el("p", {}, el("strong", { text: `value ${fmtNum(unit.value)}` }), index));
    const conv = unit.conv;
    if (!conv) return;
    const [kh, kw] = conv.kernel_size;
    const numbers = kh * kw <= 25;
    box.append(el("p", { class: "meta", text:
      `This convolution (kernel ${kh}x${kw}, stride ${conv.stride.join("x")}, padding ${conv.padding.join("x")}` +
      `${conv.groups > 1 ? `, ${conv.groups} groups` : ""}) multiplies the ${conv.input_channels.length}-channel input window ` +
      `starting at (${conv.window_top_left.join(", ")}) by the kernel, element by element, and adds everything up.` }));
    const list = el("div", { class: "dots" });
    for (const s of conv.shown) {
      const wMax = Math.max(...s.window.flat().map(Math.abs), 1e-6);
      const kMax = Math.max(...s.kernel.flat().map(Math.abs), 1e-6);
      list.append(el("div", { class: "dot" },
        el("div", { class: "dim", text: `input channel ${s.channel}` }),
        el("div", { class: "dot-row" }, numberGrid(s.window, wMax, numbers), el("span", { class: "op", text: "⊙" }),
          numberGrid(s.kernel, kMax, numbers), el("span", { class: "op", text: `Σ = ${fmtNum(s.sum)}` }))));
    }
    box.append(list);
    const n = conv.partial_sums.length;
    const rest = n - conv.shown.length;
    const restSum = conv.partial_sums.reduce((a, b) => a + b, 0) - conv.shown.reduce((a, s) => a + s.sum, 0);
    box.append(el("p", { class: "equation", text:
      `${conv.shown.map((s) => fmtNum(s.sum)).join(" + ")}` +
      `${rest > 0 ? ` + ${fmtNum(restSum)} (the other ${rest} channels)` : ""} + bias ${fmtNum(conv.bias)} = ${fmtNum(conv.total)}` +
      `   (the layer computed ${fmtNum(conv.actual)})` }));
  }

  // --- input, overlays ---------------------------------------------------------------------
  function drawBox(canvas, withInput) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const b = S.box;
    const [, h, w] = S.result ? S.result.input.shape : [1, 1, 1];
    if (!b) return;
    const sx = canvas.width / w, sy = canvas.height / h;
    const x0 = Math.max(0, b.left), y0 = Math.max(0, b.top);
    const x1 = Math.min(w, b.left + b.width), y1 = Math.min(h, b.top + b.height);
    ctx.fillStyle = "rgba(255,45,149,0.12)";
    ctx.fillRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
    ctx.strokeStyle = "#ff2d95";
    ctx.lineWidth = 2;
    ctx.strokeRect(x0 * sx + 1, y0 * sy + 1, Math.max(1, (x1 - x0) * sx - 2), Math.max(1, (y1 - y0) * sy - 2));
  }

  function drawOverlay() {
    const canvas = $("overlay-canvas");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (S.heat) {
      ctx.globalAlpha = S.heat.alpha;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(S.heat.canvas, 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = 1;
    }
    const boxCanvas = document.createElement("canvas");
    boxCanvas.width = canvas.width; boxCanvas.height = canvas.height;
    drawBox(boxCanvas, false);
    ctx.drawImage(boxCanvas, 0, 0);
  }

  async function showInput(res) {
    const img = await loadImage(res.input.url);
    const canvas = $("input-canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.getContext("2d").drawImage(img, 0, 0);
    const overlay = $("overlay-canvas");
    const zoom = Math.max(1, Math.ceil(448 / img.naturalWidth));
    overlay.width = img.naturalWidth * zoom; overlay.height = img.naturalHeight * zoom;
    $("seen-size").textContent = `${res.input.shape.join("x")}`;
  }

  function renderTop(res) {
    const list = $("top5");
    list.replaceChildren();
    const truth = res.source.kind === "sample" ? res.source.label_index : null;
    for (const t of res.top) {
      const pct = (100 * t.p).toFixed(1);
      const li = el("li", { "data-class": t.class, "data-index": String(t.index) },
        el("span", { class: "cls", text: t.class }),
        el("span", { class: "bar" }, el("span", { class: "fill" })),
        el("span", { class: "pct", text: `${pct}%` }));
      li.querySelector(".fill").style.width = `${Math.max(0.5, 100 * t.p)}%`;
      if (truth === t.index) li.classList.add("truth");
      list.append(li);
    }
  }

  function renderSource(res) {
    const s = res.source;
    let text;
    document.body.dataset.sample = s.kind === "sample" ? String(s.index) : "";
    if (s.kind === "sample") {
      const ok = res.top[0].index === s.label_index;
      text = `test image #${s.index}: true label ${s.label} (${ok ? "predicted correctly" : "predicted " + res.top[0].class})`;
    } else if (s.kind === "drawing") text = "your drawing";
    else text = `uploaded ${s.format} of ${s.original_size.join("x")}`;
    if (s.notes && s.notes.length) text += ` · ${s.notes.join("; ")}`;
    $("source-line").textContent = text;
  }

  async function predict(body, query) {
    const seq = ++S.seq;
    showError("");
    document.body.dataset.state = "busy";
    let res;
    try {
      res = await api(`/api/runs/${encodeURIComponent(S.run.id)}/predict${query || ""}`, { method: "POST", body });
    } catch (e) {
      if (seq === S.seq) { showError(e.message); document.body.dataset.state = "error"; }
      return;
    }
    if (seq !== S.seq) return;  // a later request was sent: its answer wins
    S.result = res;
    S.heat = null; S.box = null;
    $("why-scale").hidden = true;
    renderTop(res);
    renderSource(res);
    await showInput(res);
    drawOverlay();
    if (seq !== S.seq) return;
    for (const index of near) renderLayer(index);
    if (S.inspector) closeInspector();
    document.body.dataset.key = res.key;
    document.body.dataset.top1 = res.top[0].class;
    document.body.dataset.state = "ready";
  }

  function predictSample() {
    const form = new FormData();
    form.append("sample", "random");
    return predict(form);
  }

  // --- drawing -----------------------------------------------------------------------------
  const draw = $("draw-canvas");
  const pen = draw.getContext("2d");
  let stroke = null;
  function clearDrawing() {
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, draw.width, draw.height);
    S.drawn = false;
  }
  function penAt(ev) {
    const r = draw.getBoundingClientRect();
    return [(ev.clientX - r.left) * draw.width / r.width, (ev.clientY - r.top) * draw.height / r.height];
  }
  draw.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    draw.setPointerCapture(ev.pointerId);
    stroke = penAt(ev);
    pen.strokeStyle = pen.fillStyle = S.run && !S.run.digit_like ? $("ink-color").value : "#fff";
    pen.lineWidth = 18; pen.lineCap = "round"; pen.lineJoin = "round";
    pen.beginPath(); pen.arc(stroke[0], stroke[1], 9, 0, 2 * Math.PI); pen.fill();
    S.drawn = true;
  });
  draw.addEventListener("pointermove", (ev) => {
    if (!stroke) return;
    const p = penAt(ev);
    pen.beginPath(); pen.moveTo(stroke[0], stroke[1]); pen.lineTo(p[0], p[1]); pen.stroke();
    stroke = p;
  });
  function endStroke() {
    if (!stroke) return;
    stroke = null;
    sendDrawing();
  }
  draw.addEventListener("pointerup", endStroke);
  draw.addEventListener("pointercancel", endStroke);
  function sendDrawing() {
    if (!S.drawn || !S.run) return;
    draw.toBlob((blob) => {
      const form = new FormData();
      form.append("image", blob, "drawing.png");
      form.append("kind", "drawing");
      predict(form);
    }, "image/png");
  }
  $("clear-button").addEventListener("click", clearDrawing);

  // --- upload and tabs ---------------------------------------------------------------------
  function sendFile(file) {
    if (!file) return;
    const form = new FormData();
    form.append("image", file, file.name || "upload");
    predict(form);
  }
  $("file-input").addEventListener("change", (ev) => sendFile(ev.target.files[0]));
  const drop = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); sendFile(ev.dataTransfer.files[0]); });
  document.querySelectorAll("[data-tab]").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll("[data-tab]").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
    $("draw-pane").hidden = tab.dataset.tab !== "draw";
    $("upload-pane").hidden = tab.dataset.tab !== "upload";
  }));
  $("random-button").addEventListener("click", predictSample);

  // --- why: Grad-CAM and occlusion ------------------------------------------------------------
  function explainTarget() {
    const v = $("explain-class").value;
    return v === "top" ? "top" : v;
  }
  // A heat map whose opacity follows its strength, so the input shows through where it is weak.
  async function heatLayer(url, scale) {
    const img = await loadImage(url);
    const atlas = grayOf(img);
    const tile = colourTile(atlas, 0, 0, atlas.width, atlas.height, lutFor(scale.colormap));
    const ctx = tile.getContext("2d");
    const px = ctx.getImageData(0, 0, tile.width, tile.height);
    for (let i = 0; i < atlas.gray.length; i++) {
      const v = atlas.gray[i];
      const strength = scale.diverging ? Math.abs(v - 127.5) / 127.5 : v / 255;
      px.data[4 * i + 3] = Math.round(40 + 200 * strength);
    }
    ctx.putImageData(px, 0, 0);
    return tile;
  }
  $("gradcam-button").addEventListener("click", async () => {
    if (!S.result) return;
    const res = S.result;
    try {
      const g = await api(`${res.gradcam_url}?target=${explainTarget()}`);
      if (S.result !== res) return;
      S.heat = { canvas: await heatLayer(g.url, g.scale), alpha: 0.9 };
      drawOverlay();
      const line = $("why-scale");
      line.hidden = false;
      line.replaceChildren(el("span", { text: `${g.description} for class ${g.class}: ` }), scaleBar(g.scale, "relative evidence"));
    } catch (e) { showError(e.message); }
  });
  $("occlusion-button").addEventListener("click", async () => {
    if (!S.result) return;
    const res = S.result;
    const bar = $("occlusion-progress");
    try {
      let job = await api(`${res.occlusion_url}?target=${explainTarget()}`, { method: "POST" });
      bar.hidden = false; bar.value = 0;
      while (job.state === "running") {
        await new Promise((r) => setTimeout(r, 250));
        job = await api(job.status_url);
        bar.max = job.total || 1; bar.value = job.done;
      }
      bar.hidden = true;
      if (job.state === "error") throw new Error(job.error);
      if (S.result !== res) return;
      S.heat = { canvas: await heatLayer(job.url, job.scale), alpha: 0.9 };
      drawOverlay();
      const line = $("why-scale");
      line.hidden = false;
      line.replaceChildren(el("span", { text: `${job.description} for class ${job.class}: ` }),
        scaleBar(job.scale, "drop in probability when covered"));
    } catch (e) { bar.hidden = true; showError(e.message); }
  });
  $("overlay-off").addEventListener("click", () => { S.heat = null; $("why-scale").hidden = true; drawOverlay(); });

  // --- inspector events, resizing ------------------------------------------------------------
  $("map-canvas").addEventListener("click", onMapClick);
  $("inspector-close").addEventListener("click", closeInspector);
  $("inspector").addEventListener("click", (ev) => { if (ev.target.id === "inspector") closeInspector(); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && S.inspector) closeInspector(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { for (const L of S.layers.values()) if (L.key) layoutLayer(L); }, 150);
  });

  init().catch((e) => { showError(e.message); document.body.dataset.state = "error"; });
})();
