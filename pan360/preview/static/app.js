// pan360 preview: plays the 360° video, draws the planned view with the renderer's geometry, edits keyframes.
// Geometry as pan360/geometry.py: output pixel centres -> image-plane rays (1, -a, b) (x forward, y left,
// z up), rotated by Rz(-yaw) Ry(-pitch) Rx(roll) (v360's ypr), composed with the camera's own rotation
// when the path is stabilised; equirect pixel centres x = (lon / 2pi + 1/2) W - 1/2, y = (1/2 - lat / pi) H - 1/2;
// bilinear, wrapping at +-180 degrees, rows clamped.
"use strict";

const $ = (id) => document.getElementById(id);
const D2R = Math.PI / 180;
const video = $("video"), nfov = $("nfov"), equi = $("equi");
const src = document.createElement("canvas");
const heat = document.createElement("canvas");
let S = null, path = null, keys = [], follow = [], camera = null, maps = null, picking = false;
let view = { yaw: 0, pitch: 0, roll: 0, h_fov: 90, v_fov: 58.7 };
let srcData = null, dirty = true, shownTime = -1, frame = 0, scrubbing = false;

function status(text, error) {
  const el = $("status");
  el.textContent = text;
  el.className = error ? "error" : "";
}

function axis(a, deg) {  // right-handed rotation about axis a (0 x, 1 y, 2 z), row-major 3x3
  const c = Math.cos(deg * D2R), s = Math.sin(deg * D2R);
  if (a === 2) return [c, -s, 0, s, c, 0, 0, 0, 1];
  if (a === 1) return [c, 0, s, 0, 1, 0, -s, 0, c];
  return [1, 0, 0, 0, c, -s, 0, s, c];
}
function mul(A, B) {
  const C = new Array(9);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++)
    C[3 * i + j] = A[3 * i] * B[j] + A[3 * i + 1] * B[3 + j] + A[3 * i + 2] * B[6 + j];
  return C;
}
function transpose(A) { return [A[0], A[3], A[6], A[1], A[4], A[7], A[2], A[5], A[8]]; }
function rotation(v) { return mul(mul(axis(2, -v.yaw), axis(1, -v.pitch)), axis(0, v.roll)); }
function cameraRot(i) { return camera ? Array.from(camera.subarray(9 * i, 9 * i + 9)) : null; }
// view (in the path's frame) -> rotation taking view rays to the camera picture's directions
function pictureRotation(v, i) {
  const r = rotation(v), c = cameraRot(i);
  return c ? mul(transpose(c), r) : r;
}
function vecToDir(x, y, z) {
  return [Math.atan2(-y, x) / D2R, Math.atan2(z, Math.hypot(x, y)) / D2R];
}
function dirToVec(yaw, pitch) {
  const cp = Math.cos(pitch * D2R);
  return [cp * Math.cos(yaw * D2R), -cp * Math.sin(yaw * D2R), Math.sin(pitch * D2R)];
}
function vFov(h_fov, w, h) { return 2 * Math.atan(Math.tan(h_fov * D2R / 2) * h / w) / D2R; }

function frameAt(t) {  // the frame shown at time t: the last one starting at or before it
  const ts = S.times;
  let lo = 0, hi = ts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ts[mid] <= t + 1e-4) lo = mid; else hi = mid - 1;
  }
  return lo;
}
function pathView(i) {
  return { yaw: path.yaw[i], pitch: path.pitch[i], roll: path.roll[i], h_fov: path.h_fov[i], v_fov: path.v_fov[i] };
}

function grabSource() {
  if (video.readyState < 2) return false;
  const ctx = src.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, S.eye[0], S.eye[1], 0, 0, src.width, src.height);
  srcData = ctx.getImageData(0, 0, src.width, src.height).data;
  return true;
}

function renderView() {
  const w = nfov.width, h = nfov.height, W = src.width, H = src.height;
  const ctx = nfov.getContext("2d");
  const out = ctx.createImageData(w, h), o = out.data;
  if (!srcData) return;
  const M = pictureRotation(view, frame);
  const tx = Math.tan(view.h_fov * D2R / 2), ty = Math.tan(view.v_fov * D2R / 2);
  const ax = W / (2 * Math.PI), bx = 0.5 * W - 0.5, ay = -H / Math.PI, by = 0.5 * H - 0.5;
  let p = 0;
  for (let j = 0; j < h; j++) {
    const b = ty * (1 - (2 * j + 1) / h);
    for (let i = 0; i < w; i++, p += 4) {
      const a = tx * ((2 * i + 1) / w - 1);
      const rx = 1, ry = -a, rz = b;  // not normalised: the angles do not need it
      const x = M[0] * rx + M[1] * ry + M[2] * rz, y = M[3] * rx + M[4] * ry + M[5] * rz, z = M[6] * rx + M[7] * ry + M[8] * rz;
      let sx = Math.atan2(-y, x) * ax + bx;
      let sy = Math.atan2(z, Math.hypot(x, y)) * ay + by;
      sy = sy < 0 ? 0 : sy > H - 1 ? H - 1 : sy;
      const x0 = Math.floor(sx), y0 = Math.floor(sy), fx = sx - x0, fy = sy - y0;
      const xa = ((x0 % W) + W) % W, xb = (xa + 1) % W, ya = y0, yb = Math.min(y0 + 1, H - 1);
      const i00 = 4 * (ya * W + xa), i01 = 4 * (ya * W + xb), i10 = 4 * (yb * W + xa), i11 = 4 * (yb * W + xb);
      for (let c = 0; c < 3; c++) {
        const top = srcData[i00 + c] + (srcData[i01 + c] - srcData[i00 + c]) * fx;
        const bot = srcData[i10 + c] + (srcData[i11 + c] - srcData[i10 + c]) * fx;
        o[p + c] = top + (bot - top) * fy + 0.5;
      }
      o[p + 3] = 255;
    }
  }
  ctx.putImageData(out, 0, 0);
}

function heatColour(v) {  // 0..1 -> rgba: transparent when cold, magenta -> yellow as it heats (stands out on red too)
  const u = Math.min(1, Math.max(0, v));
  return [255, 255 * u, 160 * (1 - u), 230 * Math.min(1, 1.6 * u)];
}

function toEqui(yaw, pitch) {  // a picture direction -> equi canvas coordinates
  return [(yaw / 360 + 0.5) * equi.width, (0.5 - pitch / 180) * equi.height];
}
function polyline(ctx, pts) {  // break the line where it crosses the seam
  ctx.beginPath();
  for (let k = 0; k < pts.length; k++) {
    const [x, y] = pts[k];
    if (k === 0 || Math.abs(x - pts[k - 1][0]) > equi.width / 2) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  }
  ctx.stroke();
}
function toPicture(yaw, pitch, i) {  // a direction in the path's frame -> the camera picture's
  const c = cameraRot(i);
  if (!c) return [yaw, pitch];
  const v = dirToVec(yaw, pitch), ct = transpose(c);
  return vecToDir(ct[0] * v[0] + ct[1] * v[1] + ct[2] * v[2], ct[3] * v[0] + ct[4] * v[1] + ct[5] * v[2],
                  ct[6] * v[0] + ct[7] * v[1] + ct[8] * v[2]);
}

function renderEqui() {
  const ctx = equi.getContext("2d");
  if (srcData) ctx.drawImage(src, 0, 0, equi.width, equi.height);
  if (maps && $("heat").checked) {
    let k = 0, best = Infinity;
    const t = S.times[frame];
    for (let n = 0; n < maps.times.length; n++) { const d = Math.abs(maps.times[n] - t); if (d < best) { best = d; k = n; } }
    const hc = heat.getContext("2d"), img = hc.createImageData(maps.width, maps.height), cells = maps.width * maps.height;
    for (let q = 0; q < cells; q++) {
      const [r, g, b, a] = heatColour(maps.data[k * cells + q] / 255);
      img.data.set([r, g, b, a], 4 * q);
    }
    hc.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(heat, 0, 0, equi.width, equi.height);
  }
  // the planned path, in the picture (each frame's view centre where the picture shows it)
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "rgba(255,255,255,0.55)";
  const pts = [];
  for (let i = 0; i < path.yaw.length; i++) pts.push(toEqui(...toPicture(path.yaw[i], path.pitch[i], i)));
  polyline(ctx, pts);
  // the view's outline
  const M = pictureRotation(view, frame), tx = Math.tan(view.h_fov * D2R / 2), ty = Math.tan(view.v_fov * D2R / 2);
  const edge = [];
  for (let k = 0; k <= 64; k++) {
    const s = k / 16, side = Math.floor(s) % 4, f = s - Math.floor(s);
    const [a, b] = side === 0 ? [-1 + 2 * f, 1] : side === 1 ? [1, 1 - 2 * f] : side === 2 ? [1 - 2 * f, -1] : [-1, -1 + 2 * f];
    const r = [1, -a * tx, b * ty];
    edge.push(toEqui(...vecToDir(M[0] * r[0] + M[1] * r[1] + M[2] * r[2], M[3] * r[0] + M[4] * r[1] + M[5] * r[2],
                                 M[6] * r[0] + M[7] * r[1] + M[8] * r[2])));
  }
  ctx.strokeStyle = "#ffd23f";
  ctx.lineWidth = 2;
  polyline(ctx, edge);
  for (const kf of keys) {
    const i = frameAt(kf.time);
    const [x, y] = toEqui(...toPicture(kf.yaw, kf.pitch, i));
    ctx.fillStyle = i === frame ? "#ff4f4f" : "#4fc3ff";
    ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fill();
  }
}

let redrawMs = 0;
function redraw() {
  const t0 = performance.now();
  renderView();
  renderEqui();
  redrawMs = performance.now() - t0;
  $("viewinfo").textContent = `yaw ${view.yaw.toFixed(1)}°, pitch ${view.pitch.toFixed(1)}°, FOV ${view.h_fov.toFixed(0)}°`;
  $("mode").textContent = $("follow").checked ? "(following the path)" : "(looking around: add a keyframe to keep it)";
  $("time").textContent = `${S.times[frame].toFixed(2)} s`;
  document.body.dataset.frame = String(frame);
  document.body.dataset.rendered = String((+document.body.dataset.rendered || 0) + 1);
}

function loop() {
  if (S) {
    const t = video.currentTime;
    if (t !== shownTime && !video.seeking) {
      if (grabSource()) {
        shownTime = t;
        frame = frameAt(t);
        if ($("follow").checked) view = pathView(frame);
        if (!scrubbing) $("scrub").value = String(Math.round(1000 * t / S.duration));
        dirty = true;
      }
    }
    if (dirty) { dirty = false; redraw(); }
  }
  requestAnimationFrame(loop);
}

function seek(t) {
  video.currentTime = Math.max(0, Math.min(t, S.duration - 1e-3));
  shownTime = -1;
}

function keyTable() {
  const body = $("keytable").querySelector("tbody");
  body.innerHTML = "";
  keys.forEach((kf, n) => {
    const tr = document.createElement("tr");
    if (frameAt(kf.time) === frame) tr.className = "current";
    tr.innerHTML = `<td><a href="#" data-seek="${kf.time}">${kf.time.toFixed(2)}</a></td><td>${kf.yaw.toFixed(1)}</td>` +
      `<td>${kf.pitch.toFixed(1)}</td><td>${kf.h_fov.toFixed(0)}</td><td></td><td><button data-del="${n}">delete</button></td>`;
    const sel = document.createElement("select");
    for (const how of S.interps) sel.add(new Option(how, how, false, how === kf.interp));
    sel.onchange = () => { kf.interp = sel.value; };
    tr.children[4].appendChild(sel);
    body.appendChild(tr);
  });
  body.querySelectorAll("[data-seek]").forEach((a) => { a.onclick = (e) => { e.preventDefault(); seek(+a.dataset.seek); }; });
  body.querySelectorAll("[data-del]").forEach((b) => { b.onclick = () => { keys.splice(+b.dataset.del, 1); keyTable(); dirty = true; }; });
}

function followList() {
  const el = $("followlist");
  el.innerHTML = follow.length ? "following: " : "";
  follow.forEach((f, n) => {
    const b = document.createElement("button");
    b.textContent = `${f.time.toFixed(2)} s (${f.yaw.toFixed(0)}°, ${f.pitch.toFixed(0)}°) ✕`;
    b.title = "stop following this subject";
    b.onclick = () => { follow.splice(n, 1); followList(); };
    el.appendChild(b);
  });
}

function addKey() {
  const t = S.times[frame];
  keys = keys.filter((k) => frameAt(k.time) !== frame);
  keys.push({ time: t, yaw: view.yaw, pitch: view.pitch, h_fov: view.h_fov, interp: $("interp").value });
  keys.sort((a, b) => a.time - b.time);
  keyTable();
  dirty = true;
  status(`keyframe at ${t.toFixed(2)} s (not saved yet)`);
}

async function save() {
  status("re-planning…");
  const res = await fetch("/api/save", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify({ keyframes: keys, follow, fill: $("fill").checked }) });
  let doc;
  try { doc = await res.json(); } catch (e) { status(`save failed (${res.status})`, true); return; }
  if (!res.ok) { status(doc.error || "save failed", true); return; }
  path = doc.path;
  keys = doc.keyframes;
  follow = doc.follow;
  keyTable();
  followList();
  $("follow").checked = true;
  view = pathView(frame);
  dirty = true;
  status(`saved ${doc.saved}` + (doc.notes.length ? ` — ${doc.notes.join("; ")}` : ""));
  document.body.dataset.saved = doc.saved;
}

function wrapYaw(y) { y = ((y + 180) % 360 + 360) % 360 - 180; return y === -180 ? 180 : y; }

function bind() {
  let drag = null;
  nfov.onmousedown = (e) => { drag = { x: e.clientX, y: e.clientY, v: { ...view } }; $("follow").checked = false; nfov.style.cursor = "grabbing"; };
  window.onmouseup = () => { drag = null; nfov.style.cursor = "grab"; };
  window.onmousemove = (e) => {
    if (!drag) return;
    const scale = drag.v.h_fov / nfov.getBoundingClientRect().width;  // degrees per screen pixel
    view = { ...drag.v, yaw: wrapYaw(drag.v.yaw - (e.clientX - drag.x) * scale),
             pitch: Math.max(-90, Math.min(90, drag.v.pitch + (e.clientY - drag.y) * scale)) };
    dirty = true;
  };
  nfov.onwheel = (e) => {
    e.preventDefault();
    const h = Math.max(20, Math.min(150, view.h_fov * Math.exp(e.deltaY * 0.001)));
    view = { ...view, h_fov: h, v_fov: vFov(h, path.width, path.height) };
    $("follow").checked = false;
    dirty = true;
  };
  equi.onclick = (e) => {
    const r = equi.getBoundingClientRect();
    if (picking) {  // follow the subject clicked on, from now on
      const yaw = ((e.clientX - r.left) / r.width - 0.5) * 360, pitch = (0.5 - (e.clientY - r.top) / r.height) * 180;
      const c = cameraRot(frame), v = dirToVec(yaw, pitch);
      const [y2, p2] = c ? vecToDir(c[0] * v[0] + c[1] * v[1] + c[2] * v[2], c[3] * v[0] + c[4] * v[1] + c[5] * v[2],
                                    c[6] * v[0] + c[7] * v[1] + c[8] * v[2]) : [yaw, pitch];
      follow = follow.filter((f) => frameAt(f.time) !== frame);
      follow.push({ time: S.times[frame], yaw: y2, pitch: p2 });
      follow.sort((a, b) => a.time - b.time);
      picking = false;
      $("pick").textContent = "follow a subject…";
      followList();
      status(`following the subject at ${S.times[frame].toFixed(2)} s from here on (save to track it)`);
      dirty = true;
      return;
    }
    const yaw = ((e.clientX - r.left) / r.width - 0.5) * 360, pitch = (0.5 - (e.clientY - r.top) / r.height) * 180;
    // the picture is the camera's: turn the clicked direction into the path's frame
    const c = cameraRot(frame), v = dirToVec(yaw, pitch);
    const [y2, p2] = c ? vecToDir(c[0] * v[0] + c[1] * v[1] + c[2] * v[2], c[3] * v[0] + c[4] * v[1] + c[5] * v[2],
                                  c[6] * v[0] + c[7] * v[1] + c[8] * v[2]) : [yaw, pitch];
    view = { ...view, yaw: y2, pitch: p2 };
    $("follow").checked = false;
    dirty = true;
  };
  $("play").onclick = () => { if (video.paused) video.play(); else video.pause(); };
  video.onplay = () => { $("play").textContent = "pause"; };
  video.onpause = () => { $("play").textContent = "play"; };
  video.onseeked = () => { shownTime = -1; };
  $("scrub").oninput = () => { scrubbing = true; seek(S.duration * $("scrub").value / 1000); };
  $("scrub").onchange = () => { scrubbing = false; };
  $("follow").onchange = () => { if ($("follow").checked) view = pathView(frame); dirty = true; };
  $("heat").onchange = () => { dirty = true; };
  $("addkey").onclick = addKey;
  $("pick").onclick = () => { picking = !picking; $("pick").textContent = picking ? "click the subject in the 360° picture" : "follow a subject…"; };
  $("save").onclick = save;
  for (const how of S.interps) $("interp").add(new Option(how, how));
}

async function start() {
  S = await (await fetch("/api/state")).json();
  path = S.path;
  keys = S.keyframes;
  follow = S.follow;
  if (S.camera) camera = new Float64Array(Uint8Array.from(atob(S.camera), (c) => c.charCodeAt(0)).buffer);
  if (S.maps) {
    maps = { ...S.maps, data: Uint8Array.from(atob(S.maps.data), (c) => c.charCodeAt(0)) };
    heat.width = maps.width; heat.height = maps.height;
  }
  const scale = Math.min(1, 2048 / S.eye[0]);
  src.width = Math.round(S.eye[0] * scale); src.height = Math.round(S.eye[1] * scale);
  const ow = Math.min(640, path.width);  // the view at the output's aspect, at most 640 wide
  nfov.width = ow; nfov.height = Math.round(ow * path.height / path.width);
  equi.height = Math.round(equi.width * S.eye[1] / S.eye[0]);
  $("file").textContent = `${S.file} — ${S.source} saliency, ${S.frame} frame — saves to ${S.save_to}`;
  view = pathView(0);
  bind();
  keyTable();
  followList();
  video.src = "/video";
  video.onerror = () => status("this browser cannot play the video's codec (try a VP9 WebM or H.264 MP4 copy)", true);
  window.pan360 = { get view() { return view; }, get frame() { return frame; }, get keys() { return keys; },
                    get follow() { return follow; },
                    get redrawMs() { return redrawMs; }, seek };
  document.body.dataset.ready = "1";
  requestAnimationFrame(loop);
}

start().catch((e) => status(String(e), true));
