// The facenet page: recognize a photo, recognize the camera live, enroll, list and remove people.
// Every text that comes from the server or a user (person names, messages) is put in the page
// with textContent or drawn on a canvas, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "facenet-token";
const COLORS = { known: "#1f9d55", unknown: "#d64545" };

class ApiFailure extends Error {
  constructor(status, body, retryAfter) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? "http";
    this.details = body?.error?.details ?? [];
    this.retryAfter = retryAfter;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers ?? {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) $("token-form").hidden = false;
    const retry = Number(response.headers.get("Retry-After") ?? "1");
    throw new ApiFailure(response.status, body, retry);
  }
  return body;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function failureText(error) {
  const details = error.details?.length ? ` (${error.details.join("; ")})` : "";
  return `${error.message}${details}`;
}

function imageForm(field, blobs) {
  const form = new FormData();
  for (const [blob, name] of blobs) form.append(field, blob, name);
  return form;
}

function label(face) {
  if (face.name === null) {
    return face.distance === null ? "unknown" : `unknown (${face.distance.toFixed(2)})`;
  }
  return `${face.name} (${face.distance.toFixed(2)})`;
}

// Boxes and labels on a 2D context whose pixels are the image's pixels.
function drawFaces(ctx, faces, scale) {
  const lineWidth = Math.max(2, 3 * scale);
  ctx.font = `${Math.max(14, Math.round(18 * scale))}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of faces) {
    const { x, y, width, height } = face.box;
    const color = face.name === null ? COLORS.unknown : COLORS.known;
    ctx.lineWidth = lineWidth;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, width, height);
    const text = label(face);
    const textWidth = ctx.measureText(text).width + 8;
    const textHeight = parseInt(ctx.font, 10) + 6;
    const top = y > textHeight ? y - textHeight : y + height;
    ctx.fillStyle = color;
    ctx.fillRect(x - lineWidth / 2, top, textWidth, textHeight);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, top + textHeight - 3);
  }
}

function listFaces(list, faces) {
  const items = faces.map((face, index) => {
    const item = document.createElement("li");
    item.className = face.name === null ? "unknown" : "known";
    item.dataset.name = face.name ?? "";
    item.textContent = `face ${index + 1}: ${label(face)}`;
    return item;
  });
  if (!items.length) {
    const none = document.createElement("li");
    none.textContent = "no face found";
    items.push(none);
  }
  list.replaceChildren(...items);
}

// ---- a photo ----------------------------------------------------------------------------------

async function recognizePhoto(file) {
  showMessage("");
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }).catch(() => null);
  let result;
  try {
    result = await api("/v1/recognize", { method: "POST", body: imageForm("image", [[file, file.name]]) });
  } catch (error) {
    showMessage(failureText(error));
    return;
  }
  const canvas = $("photo-canvas");
  canvas.width = result.image.width;
  canvas.height = result.image.height;
  const ctx = canvas.getContext("2d");
  if (bitmap) ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  drawFaces(ctx, result.faces, Math.max(1, canvas.width / 800));
  listFaces($("photo-faces"), result.faces);
  canvas.dataset.faces = String(result.faces.length);
}

function setUpPhoto() {
  const zone = $("drop-zone");
  $("photo-input").addEventListener("change", (event) => {
    const [file] = event.target.files;
    event.target.value = "";
    if (file) recognizePhoto(file);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) recognizePhoto(file);
  });
}

// ---- the camera -------------------------------------------------------------------------------

const live = { stream: null, running: false, frames: 0 };

function frameBlob(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function liveLoop() {
  const video = $("camera-video");
  const overlay = $("camera-overlay");
  while (live.running) {
    const started = performance.now();
    let pause = 0;
    if (video.videoWidth > 0) {
      const blob = await frameBlob(video);
      try {
        const result = await api("/v1/recognize", {
          method: "POST", body: imageForm("image", [[blob, "camera.jpg"]]),
        });
        if (!live.running) break;
        overlay.width = result.image.width;
        overlay.height = result.image.height;
        const ctx = overlay.getContext("2d");
        ctx.clearRect(0, 0, overlay.width, overlay.height);
        drawFaces(ctx, result.faces, Math.max(1, overlay.width / 800));
        listFaces($("live-names"), result.faces);
        live.frames += 1;
        $("camera-status").textContent = `${live.frames} frame(s) recognized`;
      } catch (error) {
        $("camera-status").textContent = failureText(error);
        if (error.status === 503) pause = 1000 * error.retryAfter;
        if (error.status === 401) break;
      }
    }
    const interval = 1000 / Number($("camera-fps").value);
    await sleep(Math.max(pause, interval - (performance.now() - started)));
  }
}

async function startCamera() {
  showMessage("");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    showMessage(`the camera cannot be used: ${error.message}`);
    return;
  }
  $("camera-video").srcObject = live.stream;
  live.running = true;
  $("camera-start").disabled = true;
  $("camera-stop").disabled = false;
  $("enroll-snapshot").disabled = false;
  liveLoop();
}

function stopCamera() {
  live.running = false;
  live.stream?.getTracks().forEach((track) => track.stop());
  live.stream = null;
  $("camera-video").srcObject = null;
  const overlay = $("camera-overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("camera-start").disabled = false;
  $("camera-stop").disabled = true;
  $("enroll-snapshot").disabled = true;
}

// ---- enrolling and people ---------------------------------------------------------------------

async function enroll(blobs) {
  showMessage("");
  const name = $("enroll-name").value.trim();
  if (!name) {
    showMessage("enter the person's name first");
    return;
  }
  const form = imageForm("image", blobs);
  if ($("enroll-largest").checked) form.append("largest", "true");
  const list = $("enroll-result");
  try {
    const result = await api(`/v1/people/${encodeURIComponent(name)}/faces`, {
      method: "POST", body: form,
    });
    list.replaceChildren(...result.results.map((outcome) => {
      const item = document.createElement("li");
      item.textContent = outcome.message ?? `${outcome.file}: ${outcome.status} as ${result.name}`;
      return item;
    }));
    showMessage(`${result.name}: ${result.added} face(s) added`, "info");
  } catch (error) {
    list.replaceChildren();
    showMessage(failureText(error));
  }
  await refreshPeople();
}

async function removePerson(name) {
  if (!window.confirm(`Remove ${name} and all their faces?`)) return;
  try {
    await api(`/v1/people/${encodeURIComponent(name)}`, { method: "DELETE" });
    showMessage(`${name} removed`, "info");
  } catch (error) {
    showMessage(failureText(error));
  }
  await refreshPeople();
}

async function refreshPeople() {
  let result;
  try {
    result = await api("/v1/people");
  } catch (error) {
    showMessage(failureText(error));
    return;
  }
  const rows = result.people.map((person) => {
    const row = document.createElement("tr");
    row.dataset.name = person.name;
    for (const value of [person.name, person.embeddings, person.photos]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Remove";
    button.className = "remove";
    button.addEventListener("click", () => removePerson(person.name));
    const cell = document.createElement("td");
    cell.append(button);
    row.append(cell);
    return row;
  });
  $("people").tBodies[0].replaceChildren(...rows);
  $("status").textContent = `ready: ${result.people.length} people enrolled`;
}

function setUp() {
  setUpPhoto();
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("enroll-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const files = [...$("enroll-files").files];
    if (!files.length) {
      showMessage("choose one or more photos, or use a camera snapshot");
      return;
    }
    enroll(files.map((file) => [file, file.name]));
  });
  $("enroll-snapshot").addEventListener("click", async () => {
    const blob = await frameBlob($("camera-video"));
    enroll([[blob, "snapshot.jpg"]]);
  });
  $("people-refresh").addEventListener("click", refreshPeople);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-form").hidden = true;
    showMessage("");
    refreshPeople();
  });
  refreshPeople();
}

setUp();
