// The drawing page: a canvas, Remember, What is this?, and the remembered classes.
// Drawings go to the server as 105x105 PNGs, dark strokes on white, like Omniglot's drawings.
"use strict";
const SIZE = 105;          // Omniglot's drawings are 105 x 105
const STROKE = 3.2;        // pen width in those pixels, about Omniglot's
const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const scale = pad.width / SIZE;
let drawn = false;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.lineWidth = STROKE * scale;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  drawn = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

let last = null;
pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);
  last = point(e);
  ctx.beginPath();
  ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fillStyle = "#000";
  ctx.fill();
  drawn = true;
});
pad.addEventListener("pointermove", (e) => {
  if (!last) return;
  const p = point(e);
  ctx.beginPath();
  ctx.moveTo(last[0], last[1]);
  ctx.lineTo(p[0], p[1]);
  ctx.stroke();
  last = p;
});
for (const end of ["pointerup", "pointercancel", "pointerleave"]) pad.addEventListener(end, () => { last = null; });

function drawingDataUrl() {
  const small = document.createElement("canvas");
  small.width = small.height = SIZE;
  const c = small.getContext("2d");
  c.imageSmoothingEnabled = true;
  c.imageSmoothingQuality = "high";
  c.drawImage(pad, 0, 0, SIZE, SIZE);
  return small.toDataURL("image/png");
}

function headers(json) {
  const h = json ? {"Content-Type": "application/json"} : {};
  const token = document.getElementById("token").value || localStorage.getItem("fewshot-token");
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function call(method, url, body) {
  const response = await fetch(url, {method, headers: headers(body !== undefined),
                                     body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (response.status === 401) {
    document.getElementById("token-row").hidden = false;
  }
  if (!response.ok) throw new Error(data.error || response.statusText);
  const token = document.getElementById("token").value;
  if (token) localStorage.setItem("fewshot-token", token);
  return data;
}

function status(text, isError) {
  const footer = document.getElementById("status");
  footer.textContent = text;
  footer.className = isError ? "error" : "";
}

function fmt(x) { return x === null || x === undefined ? "-" : Number(x).toPrecision(3); }

function showAnswer(r) {
  const box = document.getElementById("answer");
  box.innerHTML = "";
  box.dataset.seen = "0";
  const head = document.createElement("p");
  if (r.known) {
    head.className = "name";
    head.textContent = r.name;
  } else {
    head.className = "unknown";
    head.textContent = "I have not seen this before";
  }
  box.appendChild(head);
  if (r.drawing) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = r.drawing;
    img.width = img.height = 84;
    img.alt = "stored drawing of " + r.top[0].name;
    const cap = document.createElement("figcaption");
    cap.textContent = (r.known ? "stored drawing of " : "nearest: ") + r.top[0].name;
    fig.append(img, cap);
    box.appendChild(fig);
  }
  const figures = document.createElement("p");
  figures.className = "figures";
  let sure = "";
  if (r.calibrated && r.known) sure = r.distance < 0.75 * r.threshold ? " (sure)" : " (close to the threshold)";
  figures.textContent = "distance " + fmt(r.distance) + (r.calibrated ? ", threshold " + fmt(r.threshold) : "") +
    (r.margin !== null ? ", margin to the next class " + fmt(r.margin) : "") + sure;
  box.appendChild(figures);
  if (r.top.length > 1) {
    const others = document.createElement("p");
    others.className = "figures";
    others.textContent = "nearest: " + r.top.map((m) => m.name + " " + fmt(m.distance)).join(", ");
    box.appendChild(others);
  }
  for (const note of r.notes) {
    const n = document.createElement("p");
    n.className = "hint";
    n.textContent = note;
    box.appendChild(n);
  }
}

async function refreshClasses() {
  const data = await call("GET", "/classes?limit=500");
  const grid = document.getElementById("classes");
  grid.innerHTML = "";
  document.getElementById("count").textContent = "(" + data.total + ")";
  for (const c of data.classes) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    if (c.thumbnail) img.src = c.thumbnail;
    img.alt = c.name;
    const cap = document.createElement("figcaption");
    cap.textContent = c.name + (c.examples > 1 ? " (" + c.examples + ")" : "");
    fig.append(img, cap);
    grid.appendChild(fig);
  }
}

document.getElementById("clear").addEventListener("click", clearPad);

document.getElementById("remember").addEventListener("click", async () => {
  const name = document.getElementById("name").value.trim();
  if (!drawn) return status("Draw something first.", true);
  if (!name) return status("Type a name first.", true);
  try {
    const result = await call("POST", "/classes/" + encodeURIComponent(name) + "/examples",
                              {images: [drawingDataUrl()]});
    clearPad();
    await refreshClasses();
    status(result.example_ids.length ? "Remembered " + name + "." :
           "Already stored: " + result.duplicates.map((d) => d["class"]).join(", "));
  } catch (error) { status(error.message, true); }
});

document.getElementById("ask").addEventListener("click", async () => {
  if (!drawn) return status("Draw something first.", true);
  try {
    const data = await call("POST", "/recognise", {images: [drawingDataUrl()], top: 3, drawings: true});
    showAnswer(data.results[0]);
    status("");
  } catch (error) { status(error.message, true); }
});

document.getElementById("upload").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const img = new Image();
  img.onload = () => {
    clearPad();
    ctx.drawImage(img, 0, 0, pad.width, pad.height);
    drawn = true;
    URL.revokeObjectURL(img.src);
    status("Loaded " + file.name + ": press Remember or What is this?");
  };
  img.onerror = () => status(file.name + " is not an image this browser can read.", true);
  img.src = URL.createObjectURL(file);
  e.target.value = "";
});

clearPad();
refreshClasses().catch((error) => status(error.message, true));
