// Face recognition inside the browser: the exported ONNX models on ONNX Runtime Web (WASM, SIMD;
// threads when the page is cross-origin isolated), the pipeline of facenet-core.js, and a gallery
// exported by `facenet gallery export`. Photos and the gallery are read from the user's own files
// and never sent anywhere: the only requests this page makes are for its own scripts and models.

import {
  INPUT_SIZE, cropFace, detectFaces, l2Normalize, matchFace, onnxMetadata, parseCrop, prewhiten,
} from './facenet-core.js';

const MODELS = {
  facenet: 'facenet.onnx', pnet: 'mtcnn_pnet.onnx', rnet: 'mtcnn_rnet.onnx', onet: 'mtcnn_onet.onnx',
};
const FALLBACK_THRESHOLD = 1.1;
const EXPORT_FORMAT = 'facenet-toolchain-gallery';

let ort = null;

async function loadRuntime() {
  ort = await import('./ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, navigator.hardwareConcurrency || 1) : 1;
}

const state = { sessions: null, model: null, gallery: null, timings: {} };
const $ = (id) => document.getElementById(id);

function status(text) {
  $('status').textContent = text;
}

async function loadModels(base) {
  const started = performance.now();
  const bytes = {};
  await Promise.all(Object.entries(MODELS).map(async ([key, name]) => {
    const response = await fetch(new URL(name, base));
    if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
    bytes[key] = new Uint8Array(await response.arrayBuffer());
  }));
  const sessions = {};
  for (const [key, data] of Object.entries(bytes)) {
    sessions[key] = await ort.InferenceSession.create(data, {
      executionProviders: ['wasm'], graphOptimizationLevel: 'all',
    });
  }
  const threshold = Number(onnxMetadata(bytes.facenet, 'default_threshold'));
  state.model = {
    fingerprint: onnxMetadata(bytes.facenet, 'weights_manifest_sha256'),
    threshold: Number.isFinite(threshold) && threshold > 0 ? threshold : FALLBACK_THRESHOLD,
    crop: onnxMetadata(bytes.facenet, 'default_crop') || 'box',
  };
  state.sessions = sessions;
  state.timings.modelLoadMs = performance.now() - started;
  return state.model;
}

function net(session) {
  return async ({ data, dims }) => {
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, dims) };
    const out = await session.run(feeds);
    return session.outputNames.map((name) => out[name]);
  };
}

// Raw FaceNet embeddings (the `embedding` output) of uint8 160x160 RGB crops, `count` of them.
async function embedCrops(pixels, count) {
  const size = INPUT_SIZE * INPUT_SIZE * 3;
  const input = new Float32Array(count * size);
  for (let i = 0; i < count; i++) input.set(prewhiten(pixels.subarray(i * size, (i + 1) * size)), i * size);
  const session = state.sessions.facenet;
  const out = await session.run({
    [session.inputNames[0]]: new ort.Tensor('float32', input, [count, INPUT_SIZE, INPUT_SIZE, 3]),
  });
  return out.embedding.data;
}

async function decode(file) {
  const bitmap = await createImageBitmap(file, {
    imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none',
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d', { colorSpace: 'srgb' });
  context.fillStyle = '#fff';
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const data = new Uint8Array(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i]; data[j + 1] = rgba[i + 1]; data[j + 2] = rgba[i + 2];
  }
  return { image: { width: bitmap.width, height: bitmap.height, data }, bitmap };
}

function loadGallery(doc) {
  if (doc.format !== EXPORT_FORMAT || !Array.isArray(doc.people)) {
    throw new Error('not a `facenet gallery export` file');
  }
  if (state.model.fingerprint && doc.model_fingerprint !== state.model.fingerprint) {
    throw new Error('the gallery holds embeddings of another model: enroll again with this one');
  }
  state.gallery = {
    threshold: doc.threshold ?? state.model.threshold,
    crop: doc.crop || state.model.crop,
    people: doc.people.map((p) => ({ name: p.name, vectors: p.embeddings.map((e) => e.vector) })),
  };
  return state.gallery;
}

// Detect, crop, embed and match every face of a photo; boxes as [x, y, w, h].
async function recognize(image) {
  const t0 = performance.now();
  const nets = { pnet: net(state.sessions.pnet), rnet: net(state.sessions.rnet), onet: net(state.sessions.onet) };
  const found = await detectFaces(image, nets);
  const t1 = performance.now();
  const spec = parseCrop(state.gallery ? state.gallery.crop : state.model.crop);
  const faces = [];
  const crops = [];
  for (const face of found) {
    const crop = cropFace(image, face, spec);
    if (crop === null) continue;
    faces.push(face);
    crops.push(crop.data);
  }
  const size = INPUT_SIZE * INPUT_SIZE * 3;
  const pixels = new Uint8Array(crops.length * size);
  crops.forEach((c, i) => pixels.set(c, i * size));
  const raw = crops.length ? await embedCrops(pixels, crops.length) : new Float32Array();
  const t2 = performance.now();
  const results = faces.map((face, i) => {
    const embedding = l2Normalize(raw.subarray(i * 128, (i + 1) * 128));
    const match = state.gallery ? matchFace(embedding, state.gallery)
                                : { name: null, distance: null, candidates: [] };
    return { box: face.box, confidence: face.confidence, ...match };
  });
  state.timings.last = { detectMs: t1 - t0, embedMs: t2 - t1, faces: faces.length };
  return results;
}

function draw(bitmap, results) {
  const canvas = $('photo-canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  context.lineWidth = Math.max(2, bitmap.width / 300);
  context.font = `${Math.max(14, bitmap.width / 50)}px sans-serif`;
  for (const r of results) {
    context.strokeStyle = r.name ? '#1a7f37' : '#cf222e';
    context.strokeRect(...r.box);
    context.fillStyle = context.strokeStyle;
    context.fillText(r.name ?? 'unknown', r.box[0], Math.max(12, r.box[1] - 4));
  }
}

function list(results) {
  const items = results.map((r, i) => {
    const li = document.createElement('li');
    li.dataset.name = r.name ?? '';
    li.dataset.box = r.box.join(',');
    li.textContent = `face ${i + 1}: ${r.name ?? 'unknown'}` +
      (r.distance === null ? '' : ` (distance ${r.distance.toFixed(3)})`);
    return li;
  });
  $('faces').replaceChildren(...items);
}

async function onPhoto(file) {
  const { image, bitmap } = await decode(file);
  const results = await recognize(image);
  draw(bitmap, results);
  list(results);
  const t = state.timings.last;
  $('timing').textContent = `${t.faces} face(s): detection ${t.detectMs.toFixed(0)} ms, ` +
    `embedding ${t.embedMs.toFixed(0)} ms`;
  document.body.dataset.photos = String(Number(document.body.dataset.photos || 0) + 1);
}

async function main() {
  const params = new URLSearchParams(location.search);
  const base = new URL(params.get('models') || 'models/', location.href);
  try {
    await loadRuntime();
  } catch (error) {
    status('ONNX Runtime Web is missing next to this page (ort/): run `nox -s web` before ' +
           `serving or packaging it (${error.message})`);
    return;
  }
  status('loading the models…');
  try {
    await loadModels(base);
  } catch (error) {
    status(`cannot load the models from ${base}: ${error.message}`);
    return;
  }
  const threads = ort.env.wasm.numThreads;
  status(`ready: models loaded in ${state.timings.modelLoadMs.toFixed(0)} ms ` +
         `(WASM, ${threads} thread${threads === 1 ? '' : 's'}); choose a gallery and a photo`);
  document.body.dataset.ready = 'true';
  $('gallery-input').addEventListener('change', async (event) => {
    const [file] = event.target.files;
    try {
      const gallery = loadGallery(JSON.parse(await file.text()));
      $('gallery-status').textContent = `${gallery.people.length} people, crop ${gallery.crop}, ` +
        `threshold ${gallery.threshold.toFixed(4)}`;
      document.body.dataset.gallery = file.name;
    } catch (error) {
      $('gallery-status').textContent = `${file.name}: ${error.message}`;
    }
  });
  $('photo-input').addEventListener('change', async (event) => {
    const [file] = event.target.files;
    if (!file) return;
    try {
      await onPhoto(file);
    } catch (error) {
      $('timing').textContent = `${file.name}: ${error.message}`;
      document.body.dataset.photos = String(Number(document.body.dataset.photos || 0) + 1);
    }
    event.target.value = '';
  });
}

window.facenetLocal = { state, decode, embedCrops, recognize, loadGallery };
main();
