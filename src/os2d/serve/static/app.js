// The os2d page: pick a photo, detect the catalog's classes, draw the boxes, add classes.
// Plain JS, no build step, no network access beyond this server. Class names are user text:
// they only ever reach the page through textContent / setAttribute, never innerHTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { file: null, url: null, detections: [], classes: [], selection: null, cropping: false };

function message(text, kind = "") {
  const el = $("message");
  el.textContent = text;
  el.className = kind;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    let detail = body && body.detail !== undefined ? body.detail : response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function colour(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h}, 75%, 42%)`;
}

// ---------------------------------------------------------------- catalog
async function refreshHealth() {
  try {
    const h = await api("/health");
    const model = h.model.description || h.model.name;
    $("health").textContent = `${model} · ${h.classes} classes · mode ${h.mode}`;
    const select = $("mode");
    if (select.options.length === 1) {
      for (const m of h.modes) select.add(new Option(m, m));
    }
  } catch (err) {
    $("health").textContent = `server unreachable (${err.message})`;
  }
}

async function refreshClasses() {
  const keep = new Set(selectedClasses() || []);
  state.classes = await api("/classes");
  const list = $("class-list");
  list.replaceChildren();
  for (const c of state.classes) {
    const li = document.createElement("li");
    li.dataset.name = c.name;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = keep.has(c.name);
    box.disabled = $("all-classes").checked;
    box.setAttribute("aria-label", `search ${c.name}`);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(c.name);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.name;
    name.title = `${c.name}: ${c.images} image(s)`;
    const count = document.createElement("span");
    count.className = "muted small";
    count.textContent = `${c.images}`;
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = `delete ${c.name}`;
    del.addEventListener("click", () => deleteClass(c.name));
    li.append(box, swatch, name, count, del);
    list.append(li);
  }
  $("class-count").textContent = `(${state.classes.length})`;
  refreshHealth();
}

function selectedClasses() {
  if ($("all-classes").checked) return null;
  return [...document.querySelectorAll("#class-list li")]
    .filter((li) => li.querySelector("input").checked).map((li) => li.dataset.name);
}

async function deleteClass(name) {
  if (!window.confirm(`Delete class "${name}"?`)) return;
  try {
    await api(`/classes/${encodeURIComponent(name)}`, { method: "DELETE" });
    message(`deleted ${name}`, "ok");
  } catch (err) {
    message(err.message, "error");
  }
  refreshClasses();
}

async function addClass(blobs) {
  const name = $("class-name").value.trim();
  if (!name) { message("type a class name first", "error"); return false; }
  const form = new FormData();
  form.append("name", name);
  for (const [blob, filename] of blobs) form.append("images", blob, filename);
  message(`adding ${name}…`);
  try {
    const c = await api("/classes", { method: "POST", body: form });
    message(`class ${c.name}: ${c.images} image(s)`, "ok");
    await refreshClasses();
    return true;
  } catch (err) {
    message(err.message, "error");
    return false;
  }
}

// ---------------------------------------------------------------- photo
function showPhoto(file) {
  if (!file) return;
  if (state.url) URL.revokeObjectURL(state.url);
  state.file = file;
  state.url = URL.createObjectURL(file);
  state.detections = [];
  state.selection = null;
  const img = $("photo");
  img.onload = () => {
    $("overlay").setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
    $("overlay").setAttribute("preserveAspectRatio", "none");
    render();
  };
  img.src = state.url;
  $("drop").hidden = true;
  $("stage").hidden = false;
  $("change-photo-btn").hidden = false;
  $("detect-btn").disabled = false;
  $("crop-mode-btn").disabled = false;
  $("counts").hidden = true;
  $("timing").textContent = "";
  updateCropButtons();
}

async function detect() {
  if (!state.file) return;
  const form = new FormData();
  form.append("image", state.file, state.file.name || "photo");
  const classes = selectedClasses();
  if (classes !== null) {
    if (!classes.length) { message("pick at least one class (or search all)", "error"); return; }
    form.append("classes", classes.join(","));
  }
  if ($("threshold").value !== "") form.append("threshold", $("threshold").value);
  if ($("mode").value) form.append("mode", $("mode").value);
  $("detect-btn").disabled = true;
  message("detecting…");
  try {
    const result = await api("/detect", { method: "POST", body: form });
    state.detections = result.detections;
    const t = result.timing_ms;
    $("timing").textContent = `${result.detections.length} boxes · ${Math.round(t.compute)} ms (+${Math.round(t.queue)} ms queued)`;
    message("");
    render();
    renderCounts();
  } catch (err) {
    message(err.message, "error");
  } finally {
    $("detect-btn").disabled = false;
  }
}

// ---------------------------------------------------------------- drawing
function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.append(el);
  return el;
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

// One label per box: above its top-left corner if there is room, else inside; moved down
// until it overlaps no label placed before it (higher scores are placed first).
function placeLabel(box, size, placed, height) {
  const spot = { x: box[0], y: box[1] - size.h, w: size.w, h: size.h };
  if (spot.y < 0) spot.y = box[1];
  for (let tries = 0; tries < 20 && placed.some((p) => overlaps(p, spot)); tries++) spot.y += size.h;
  spot.y = Math.min(spot.y, height - size.h);
  placed.push(spot);
  return spot;
}

function render() {
  const img = $("photo");
  const overlay = $("overlay");
  overlay.replaceChildren();
  if (!img.naturalWidth) return;
  const scale = img.naturalWidth / Math.max(1, img.clientWidth); // image px per screen px
  const font = 13 * scale;
  const placed = [];
  const ordered = [...state.detections].sort((a, b) => b.score - a.score);
  for (const d of ordered) {
    const [x1, y1, x2, y2] = d.bbox;
    const g = svg("g", { class: "det", "data-class": d.class }, overlay);
    svg("rect", { class: "box", x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: colour(d.class) }, g);
    const text = `${d.class} ${d.score.toFixed(2)}`;
    const size = { w: (text.length * 0.6 + 0.8) * font, h: 1.35 * font };
    const spot = placeLabel(d.bbox, size, placed, img.naturalHeight);
    svg("rect", { class: "label-bg", x: spot.x, y: spot.y, width: size.w, height: size.h, fill: colour(d.class) }, g);
    const label = svg("text", { class: "label", x: spot.x + 0.4 * font, y: spot.y + 1.0 * font, "font-size": font }, g);
    label.textContent = text;
  }
  if (state.selection) {
    const s = normalised(state.selection);
    svg("rect", { class: "selection", x: s.x, y: s.y, width: s.w, height: s.h }, overlay);
  }
}

function renderCounts() {
  const per = new Map();
  for (const d of state.detections) {
    const e = per.get(d.class) || { count: 0, best: -Infinity };
    e.count += 1;
    e.best = Math.max(e.best, d.score);
    per.set(d.class, e);
  }
  const body = $("counts").querySelector("tbody");
  body.replaceChildren();
  for (const [name, e] of [...per.entries()].sort((a, b) => b[1].count - a[1].count)) {
    const tr = document.createElement("tr");
    tr.dataset.class = name;
    const cell = document.createElement("td");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(name);
    cell.append(swatch, document.createTextNode(name));
    const count = document.createElement("td");
    count.className = "num";
    count.textContent = String(e.count);
    const best = document.createElement("td");
    best.className = "num";
    best.textContent = e.best.toFixed(3);
    tr.append(cell, count, best);
    body.append(tr);
  }
  $("counts").hidden = false;
}

// ---------------------------------------------------------------- rectangle -> class image
function imagePoint(event) {
  const img = $("photo");
  const r = img.getBoundingClientRect();
  const x = (event.clientX - r.left) * img.naturalWidth / r.width;
  const y = (event.clientY - r.top) * img.naturalHeight / r.height;
  return [Math.max(0, Math.min(img.naturalWidth, x)), Math.max(0, Math.min(img.naturalHeight, y))];
}

function normalised(s) {
  return { x: Math.min(s.x0, s.x1), y: Math.min(s.y0, s.y1), w: Math.abs(s.x1 - s.x0), h: Math.abs(s.y1 - s.y0) };
}

function updateCropButtons() {
  $("crop-mode-btn").classList.toggle("active", state.cropping);
  $("overlay").classList.toggle("cropping", state.cropping);
  const s = state.selection && normalised(state.selection);
  $("add-crop-btn").disabled = !(s && s.w >= 4 && s.h >= 4);
}

function cropBlob() {
  const img = $("photo");
  const s = normalised(state.selection);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(s.w);
  canvas.height = Math.round(s.h);
  canvas.getContext("2d").drawImage(img, s.x, s.y, s.w, s.h, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

function setupCropping() {
  const overlay = $("overlay");
  let dragging = false;
  overlay.addEventListener("pointerdown", (event) => {
    if (!state.cropping) return;
    event.preventDefault();
    const [x, y] = imagePoint(event);
    state.selection = { x0: x, y0: y, x1: x, y1: y };
    dragging = true;
    overlay.setPointerCapture(event.pointerId);
  });
  overlay.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    [state.selection.x1, state.selection.y1] = imagePoint(event);
    render();
  });
  overlay.addEventListener("pointerup", () => {
    if (!dragging) return;
    dragging = false;
    render();
    updateCropButtons();
  });
  $("crop-mode-btn").addEventListener("click", () => {
    state.cropping = !state.cropping;
    if (!state.cropping) state.selection = null;
    render();
    updateCropButtons();
    if (state.cropping) message("drag a rectangle around one object, then add it");
  });
  $("add-crop-btn").addEventListener("click", async () => {
    const blob = await cropBlob();
    if (await addClass([[blob, "crop.png"]])) {
      state.selection = null;
      state.cropping = false;
      render();
      updateCropButtons();
    }
  });
}

// ---------------------------------------------------------------- wiring
function setup() {
  const drop = $("drop");
  $("photo-input").addEventListener("change", (e) => showPhoto(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    showPhoto(e.dataTransfer.files[0]);
  });
  $("change-photo-btn").addEventListener("click", () => $("photo-input").click());
  $("detect-btn").addEventListener("click", detect);
  $("all-classes").addEventListener("change", () => {
    for (const box of document.querySelectorAll("#class-list input")) box.disabled = $("all-classes").checked;
  });
  $("packshot-input").addEventListener("change", () => {
    $("add-packshot-btn").disabled = !$("packshot-input").files.length;
  });
  $("add-packshot-btn").addEventListener("click", async () => {
    const files = [...$("packshot-input").files];
    if (await addClass(files.map((f) => [f, f.name]))) {
      $("packshot-input").value = "";
      $("add-packshot-btn").disabled = true;
    }
  });
  window.addEventListener("resize", render);
  setupCropping();
  refreshClasses().catch((err) => message(err.message, "error"));
}

setup();
