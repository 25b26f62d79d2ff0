// The face pipeline of toolchain.runtime in JavaScript, arithmetic for arithmetic: no network, no
// DOM. Each function names the Python it reproduces; the browser parity test
// (tests/test_local_page.py) holds the page to the Python pipeline on real photos.
//
// Images are {width, height, data: Uint8Array of RGB}. Nets are async functions taking
// {data: Float32Array, dims: [n, h, w, 3]} and returning their outputs in the order of
// toolchain.runtime.mtcnn.detector.NET_OUTPUTS.

export const INPUT_SIZE = 160;
export const LANDMARKS = ['left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right'];
// toolchain.core.crop.ALIGN_TEMPLATE
export const ALIGN_TEMPLATE = [
  [0.2752, 0.3842], [0.7248, 0.3842], [0.5000, 0.5898], [0.2972, 0.7451], [0.7028, 0.7451],
];
const MIN_SIZE = 12;
const DEFAULT_MAX_SIDE = 480;
const THRESHOLDS = [0.6, 0.7, 0.8];
const f32 = Math.fround;

// Python's round(): half to even.
export function roundHalfEven(v) {
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

// ---- Pillow resampling (libImaging/Resample.c, 8 bits per channel) ----

const PRECISION_BITS = 32 - 8 - 2;
const FILTERS = {
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bilinear: { support: 1.0, f: (x) => { const a = Math.abs(x); return a < 1.0 ? 1.0 - a : 0.0; } },
};

function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.f((x + xmin - center + 0.5) * ss);
      weights[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? weights[x] / ww : weights[x];
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS)
                                            : 0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kk, bounds, ksize };
}

function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// Image.resize((width, height), filter) of an RGB image.
export function pillowResize(image, width, height, filterName) {
  const filter = FILTERS[filterName];
  let src = image;
  if (width !== src.width) {
    const { kk, bounds, ksize } = coefficients(src.width, width, filter);
    const out = new Uint8Array(width * src.height * 3);
    for (let y = 0; y < src.height; y++) {
      const row = y * src.width * 3;
      for (let xx = 0; xx < width; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
        for (let c = 0; c < 3; c++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < xmax; x++) {
            ss += src.data[row + (x + xmin) * 3 + c] * kk[xx * ksize + x];
          }
          out[(y * width + xx) * 3 + c] = clip8(ss);
        }
      }
    }
    src = { width, height: src.height, data: out };
  }
  if (height !== src.height) {
    const { kk, bounds, ksize } = coefficients(src.height, height, filter);
    const out = new Uint8Array(src.width * height * 3);
    for (let yy = 0; yy < height; yy++) {
      const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
      for (let xx = 0; xx < src.width; xx++) {
        for (let c = 0; c < 3; c++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let y = 0; y < ymax; y++) {
            ss += src.data[((y + ymin) * src.width + xx) * 3 + c] * kk[yy * ksize + y];
          }
          out[(yy * src.width + xx) * 3 + c] = clip8(ss);
        }
      }
    }
    src = { width: src.width, height, data: out };
  }
  return src === image ? { width, height, data: image.data.slice() } : src;
}

// ---- MTCNN pyramid (toolchain.runtime.mtcnn.pyramid) ----

export function detectionPlan(width, height, minFace = 20, factor = 0.709,
                              maxSide = DEFAULT_MAX_SIDE) {
  const minDim = Math.min(width, height);
  const count = roundHalfEven(-((Math.log(minDim / MIN_SIZE) / Math.log(factor)) + 1));
  const scales = [];
  for (let k = 0; k < count; k++) scales.push((MIN_SIZE / minFace) * Math.pow(factor, k));
  const longer = Math.max(width, height);
  if (maxSide === null || longer <= maxSide) return { size: [width, height], scales, reduced: false };
  const ratio = maxSide / longer;
  return {
    size: [Math.max(1, roundHalfEven(width * ratio)), Math.max(1, roundHalfEven(height * ratio))],
    scales: scales.filter((s) => s <= ratio),
    reduced: true,
  };
}

function summedAreaTable(image) {
  const { width: w, height: h, data } = image;
  const t = new Float64Array((h + 1) * (w + 1) * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const i = ((y + 1) * (w + 1) + x + 1) * 3 + c;
        t[i] = data[(y * w + x) * 3 + c] + t[i - 3] + t[i - (w + 1) * 3] - t[i - (w + 2) * 3];
      }
    }
  }
  return { t, w, h };
}

function footprintEdges(nIn, nOut) {
  const scale = f32(f32(nIn) / f32(nOut));
  const whole = new Int32Array(nOut + 1);
  const frac = new Float64Array(nOut + 1);
  for (let k = 0; k <= nOut; k++) {
    const edge = Math.min(f32(k * scale), nIn);
    whole[k] = Math.min(Math.floor(edge), nIn - 1);
    frac[k] = edge - whole[k];
  }
  return { whole, frac, scale };
}

// area_resize: TensorFlow's ResizeArea read off the summed-area table, then normalized.
function areaLevel(table, height, width) {
  const rows = footprintEdges(table.h, height);
  const cols = footprintEdges(table.w, width);
  const W1 = table.w + 1;
  const edge = new Float64Array((height + 1) * W1 * 3);
  for (let r = 0; r <= height; r++) {
    const a = rows.whole[r] * W1 * 3, b = (rows.whole[r] + 1) * W1 * 3;
    for (let i = 0; i < W1 * 3; i++) {
      edge[r * W1 * 3 + i] = (table.t[b + i] - table.t[a + i]) * rows.frac[r] + table.t[a + i];
    }
  }
  const inv = 1.0 / (rows.scale * cols.scale);
  const out = new Float32Array(height * width * 3);
  const left = new Float64Array((width + 1) * 3);
  for (let r = 0; r < height; r++) {
    for (let k = 0; k <= width; k++) {
      for (let c = 0; c < 3; c++) {
        const i0 = (r * W1 + cols.whole[k]) * 3 + c, i1 = ((r + 1) * W1 + cols.whole[k]) * 3 + c;
        const l = edge[i1] - edge[i0];
        const rr = edge[i1 + 3] - edge[i0 + 3];
        left[k * 3 + c] = l + (rr - l) * cols.frac[k];
      }
    }
    for (let k = 0; k < width; k++) {
      for (let c = 0; c < 3; c++) {
        const v = (left[(k + 1) * 3 + c] - left[k * 3 + c]) * inv;
        out[(r * width + k) * 3 + c] = f32((v - 127.5) / 128.0);
      }
    }
  }
  return out;
}

function normalizeUint8(data) {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = (data[i] - 127.5) / 128.0;
  return out;
}

// ---- MTCNN stages (toolchain.runtime.mtcnn.stages) ----

function sortByScore(boxes) {
  // np.argsort(score)[::-1]: descending, later rows first among equal scores.
  return boxes.map((b, i) => [b, i]).sort((p, q) => (q[0][4] - p[0][4]) || (q[1] - p[1]))
    .map((p) => p[0]);
}

function nms(boxes, threshold, method = 'union') {
  const n = boxes.length;
  const area = boxes.map((b) => (b[2] - b[0]) * (b[3] - b[1]));
  const suppressed = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (suppressed[j]) continue;
      const iw = Math.max(0, Math.min(boxes[i][2], boxes[j][2]) - Math.max(boxes[i][0], boxes[j][0]));
      const ih = Math.max(0, Math.min(boxes[i][3], boxes[j][3]) - Math.max(boxes[i][1], boxes[j][1]));
      const inter = iw * ih;
      const den = method === 'union' ? area[i] + area[j] - inter : Math.min(area[i], area[j]);
      if (inter / den > threshold) suppressed[j] = 1;
    }
  }
  return boxes.filter((_, k) => !suppressed[k]);
}

function square(boxes) {
  return boxes.map((b) => {
    const w = b[2] - b[0], h = b[3] - b[1], side = Math.max(w, h);
    const out = b.slice();
    out[0] = b[0] + w * 0.5 - side * 0.5;
    out[1] = b[1] + h * 0.5 - side * 0.5;
    out[2] = out[0] + side;
    out[3] = out[1] + side;
    return out;
  });
}

function regress(boxes, reg) {
  return boxes.map((b, i) => {
    const w = b[2] - b[0] + 1, h = b[3] - b[1] + 1;
    const out = b.slice();
    out[0] += reg[i * 4] * w;
    out[1] += reg[i * 4 + 1] * h;
    out[2] += reg[i * 4 + 2] * w;
    out[3] += reg[i * 4 + 3] * h;
    return out;
  });
}

// crop_and_resize: tf.image.crop_and_resize's bilinear sampling with the package's boxes.
function cropAndResize(pixels, width, height, boxes, size, normalize) {
  const out = new Float32Array(boxes.length * size * size * 3);
  const axis = (lo, hi, side) => {
    const extent = f32(side - 1);
    const step = f32(f32(f32(hi - lo) * extent) / f32(size - 1));
    const res = [];
    for (let k = 0; k < size; k++) {
      const pos = f32(f32(lo * extent) + f32(k * step));
      const fl = Math.floor(pos);
      res.push({
        low: Math.min(Math.max(fl, 0), side - 1),
        high: Math.min(Math.max(Math.ceil(pos), 0), side - 1),
        lerp: f32(pos - fl),
        inside: pos >= 0 && pos <= extent,
      });
    }
    return res;
  };
  boxes.forEach((b, n) => {
    const ys = axis(f32(b[1] / height), f32(b[3] / height), height);
    const xs = axis(f32(b[0] / width), f32(b[2] / width), width);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const o = ((n * size + i) * size + j) * 3;
        if (!(ys[i].inside && xs[j].inside)) continue;
        for (let c = 0; c < 3; c++) {
          const px = (y, x) => f32(pixels[(y * width + x) * 3 + c]);
          const tl = px(ys[i].low, xs[j].low), tr = px(ys[i].low, xs[j].high);
          const bl = px(ys[i].high, xs[j].low), br = px(ys[i].high, xs[j].high);
          const upper = f32(tl + f32(f32(tr - tl) * xs[j].lerp));
          const lower = f32(bl + f32(f32(br - bl) * xs[j].lerp));
          let v = f32(upper + f32(f32(lower - upper) * ys[i].lerp));
          if (normalize) v = f32(f32(v - 127.5) / 128.0);
          out[o + c] = v;
        }
      }
    }
  });
  return out;
}

function proposals(reg, prob, h, w, scale, threshold) {
  const boxes = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = prob[(y * w + x) * 2 + 1];
      if (!(p > threshold)) continue;
      const r = (y * w + x) * 4;
      boxes.push([x * 2 + 1 + reg[r] * 11, y * 2 + 1 + reg[r + 1] * 11,
                  x * 2 + 12 + reg[r + 2] * 11, y * 2 + 12 + reg[r + 3] * 11, p]);
    }
  }
  return sortByScore(boxes).map((b) => [b[0] / scale, b[1] / scale, b[2] / scale, b[3] / scale, b[4]]);
}

// MTCNNDetector.detect: {box: [x, y, w, h], confidence, keypoints} per face, most confident first.
export async function detectFaces(image, nets, options = {}) {
  const { width, height } = image;
  const plan = detectionPlan(width, height, options.minFace ?? 20, 0.709,
                             options.maxSide === undefined ? DEFAULT_MAX_SIDE : options.maxSide);
  const source = plan.reduced ? pillowResize(image, plan.size[0], plan.size[1], 'box') : image;
  const table = summedAreaTable(source);
  let perLevel = [];
  for (const scale of plan.scales) {
    const lh = Math.trunc(height * scale), lw = Math.trunc(width * scale);
    if (Math.min(lh, lw) <= 10) continue;
    const level = (lh === source.height && lw === source.width)
      ? normalizeUint8(source.data) : areaLevel(table, lh, lw);
    const [reg, prob] = await nets.pnet({ data: level, dims: [1, lh, lw, 3] });
    const boxes = proposals(reg.data, prob.data, reg.dims[1], reg.dims[2], scale, THRESHOLDS[0]);
    perLevel = perLevel.concat(nms(boxes, 0.5));
  }
  let boxes = perLevel.length ? square(nms(sortByScore(perLevel), 0.7)) : [];
  const raw = plan.reduced;
  const pixels = raw ? image.data : normalizeUint8(image.data);
  if (boxes.length) {
    const patches = cropAndResize(pixels, width, height, boxes, 24, raw);
    const [reg, prob] = await nets.rnet({ data: patches, dims: [boxes.length, 24, 24, 3] });
    boxes = regress(boxes.map((b, i) => [b[0], b[1], b[2], b[3], prob.data[i * 2 + 1]]), reg.data);
    boxes = square(nms(sortByScore(boxes.filter((b) => b[4] > THRESHOLDS[1])), 0.7));
  }
  if (boxes.length) {
    const patches = cropAndResize(pixels, width, height, boxes, 48, raw);
    const [reg, marks, prob] = await nets.onet({ data: patches, dims: [boxes.length, 48, 48, 3] });
    const scored = boxes.map((b, i) => {
      const w = b[2] - b[0] + 1, h = b[3] - b[1] + 1;
      const m = marks.data.subarray(i * 10, i * 10 + 10);
      const xs = [0, 1, 2, 3, 4].map((k) => f32(w * m[k] + b[0] - 1));
      const ys = [0, 1, 2, 3, 4].map((k) => f32(h * m[k + 5] + b[1] - 1));
      return [b[0], b[1], b[2], b[3], prob.data[i * 2 + 1], ...xs, ...ys];
    });
    const regressed = regress(scored, reg.data);
    boxes = nms(sortByScore(regressed.filter((b) => b[4] > THRESHOLDS[2])), 0.7, 'min');
  }
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  return boxes.map((b) => {
    const x1 = clip(b[0], width - 1), y1 = clip(b[1], height - 1);
    const x2 = clip(b[2], width - 1), y2 = clip(b[3], height - 1);
    const keypoints = {};
    LANDMARKS.forEach((name, k) => {
      keypoints[name] = [roundHalfEven(b[5 + k]), roundHalfEven(b[10 + k])];
    });
    return {
      box: [roundHalfEven(x1), roundHalfEven(y1), roundHalfEven(x2 - x1), roundHalfEven(y2 - y1)],
      confidence: b[4],
      keypoints,
    };
  }).sort((a, b) => b.confidence - a.confidence);
}

// ---- crops (toolchain.core.crop, toolchain.core.preprocess.crop_face) ----

export function parseCrop(text) {
  const found = /^(?:(align)(?:,|$))?(?:margin=(\d+(?:\.\d+)?)(px|%))?$/.exec(text.trim().toLowerCase());
  if (text.trim().toLowerCase() === 'box') return { align: false, margin: 0, relative: false };
  if (!found) throw new Error(`not a crop spec: ${text}`);
  return { align: Boolean(found[1]), margin: found[2] ? Number(found[2]) : 0, relative: found[3] === '%' };
}

function margins(spec, box) {
  return spec.relative ? [spec.margin / 100 * box[2], spec.margin / 100 * box[3]]
                       : [spec.margin, spec.margin];
}

function cropBox(image, box) {
  const [x, y, w, h] = box;
  const x1 = Math.max(0, roundHalfEven(x)), y1 = Math.max(0, roundHalfEven(y));
  const x2 = Math.min(image.width, roundHalfEven(x + w));
  const y2 = Math.min(image.height, roundHalfEven(y + h));
  if (x2 <= x1 || y2 <= y1) return null;
  const cw = x2 - x1, ch = y2 - y1;
  const data = new Uint8Array(cw * ch * 3);
  for (let r = 0; r < ch; r++) {
    data.set(image.data.subarray(((y1 + r) * image.width + x1) * 3,
                                 ((y1 + r) * image.width + x2) * 3), r * cw * 3);
  }
  return pillowResize({ width: cw, height: ch, data }, INPUT_SIZE, INPUT_SIZE, 'bilinear');
}

// similarity_transform: least squares rotation + uniform scale + translation (Umeyama).
function similarity(src, dst) {
  const n = src.length;
  const mean = (pts, k) => pts.reduce((s, p) => s + p[k], 0) / n;
  const msx = mean(src, 0), msy = mean(src, 1), mdx = mean(dst, 0), mdy = mean(dst, 1);
  let variance = 0, a = 0, b = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i][0] - msx, sy = src[i][1] - msy, dx = dst[i][0] - mdx, dy = dst[i][1] - mdy;
    variance += sx * sx + sy * sy;
    a += sx * dx + sy * dy;
    b += sx * dy - sy * dx;
  }
  if (variance / n <= 1e-12) return null;
  const c = a / variance, s = b / variance;
  return [[c, -s, mdx - (c * msx - s * msy)], [s, c, mdy - (s * msx + c * msy)]];
}

function alignFace(image, box, keypoints, [mx, my]) {
  const points = LANDMARKS.map((name) => [keypoints[name][0] + 0.5, keypoints[name][1] + 0.5]);
  const w = Math.max(box[2], 1), h = Math.max(box[3], 1);
  const shrink = [w / (w + mx), h / (h + my)];
  const template = ALIGN_TEMPLATE.map(([tx, ty]) => [((tx - 0.5) * shrink[0] + 0.5) * INPUT_SIZE,
                                                     ((ty - 0.5) * shrink[1] + 0.5) * INPUT_SIZE]);
  const m = similarity(points, template);
  if (m === null) return null;
  const det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
  const ia = m[1][1] / det, ib = -m[0][1] / det, id = -m[1][0] / det, ie = m[0][0] / det;
  const coeffs = [ia, ib, -(ia * m[0][2] + ib * m[1][2]), id, ie, -(id * m[0][2] + ie * m[1][2])];
  // Pillow's generic affine transform with its bilinear filter (libImaging/Geometry.c).
  const { width: W, height: H, data } = image;
  const out = new Uint8Array(INPUT_SIZE * INPUT_SIZE * 3);
  for (let y = 0; y < INPUT_SIZE; y++) {
    for (let x = 0; x < INPUT_SIZE; x++) {
      let xin = coeffs[0] * (x + 0.5) + coeffs[1] * (y + 0.5) + coeffs[2];
      let yin = coeffs[3] * (x + 0.5) + coeffs[4] * (y + 0.5) + coeffs[5];
      if (xin < 0.0 || xin >= W || yin < 0.0 || yin >= H) continue;
      xin -= 0.5;
      yin -= 0.5;
      const xf = Math.floor(xin), yf = Math.floor(yin);
      const dx = xin - xf, dy = yin - yf;
      const x0 = Math.min(Math.max(xf, 0), W - 1), x1 = Math.min(Math.max(xf + 1, 0), W - 1);
      const y0 = Math.min(Math.max(yf, 0), H - 1);
      const nextRow = yf + 1 >= 0 && yf + 1 < H;
      for (let c = 0; c < 3; c++) {
        const p0 = data[(y0 * W + x0) * 3 + c], p1 = data[(y0 * W + x1) * 3 + c];
        const v1 = p0 + (p1 - p0) * dx;
        let v2 = v1;
        if (nextRow) {
          const q0 = data[((yf + 1) * W + x0) * 3 + c], q1 = data[((yf + 1) * W + x1) * 3 + c];
          v2 = q0 + (q1 - q0) * dx;
        }
        out[(y * INPUT_SIZE + x) * 3 + c] = Math.trunc(v1 + (v2 - v1) * dy);
      }
    }
  }
  return { width: INPUT_SIZE, height: INPUT_SIZE, data: out };
}

// CropSpec.crop: the 160x160 crop of one detected face, or null when it cannot be made.
export function cropFace(image, face, spec) {
  const [mx, my] = margins(spec, face.box);
  if (spec.align) return alignFace(image, face.box, face.keypoints, [mx, my]);
  const [x, y, w, h] = face.box;
  return cropBox(image, [x - mx / 2, y - my / 2, w + mx, h + my]);
}

// prewhiten: (x - mean) / max(std, 1/sqrt(N)) per crop, float32.
export function prewhiten(pixels) {
  const n = pixels.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += pixels[i];
  const mean = f32(sum / n);
  let sq = 0;
  for (let i = 0; i < n; i++) { const d = f32(pixels[i] - mean); sq += d * d; }
  const std = Math.max(f32(Math.sqrt(sq / n)), f32(1.0 / Math.sqrt(f32(n))));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f32(f32(pixels[i] - mean) / std);
  return out;
}

export function l2Normalize(v) {
  let s = 0;
  for (const x of v) s += x * x;
  const norm = Math.sqrt(Math.max(s, 1e-10));
  return Float32Array.from(v, (x) => x / norm);
}

// Gallery.match (nearest): per person the smallest distance; the nearest person first.
export function matchFace(embedding, gallery) {
  const ranked = gallery.people.map((person) => {
    let best = Infinity;
    for (const vector of person.vectors) {
      let s = 0;
      for (let i = 0; i < vector.length; i++) { const d = embedding[i] - vector[i]; s += d * d; }
      best = Math.min(best, Math.sqrt(s));
    }
    return { name: person.name, distance: best };
  }).sort((a, b) => a.distance - b.distance);
  const top = ranked[0];
  const named = top !== undefined && top.distance <= gallery.threshold;
  return { name: named ? top.name : null, distance: top ? top.distance : null, candidates: ranked.slice(0, 3) };
}

// The ONNX metadata_props entry `key` of a model file, read from its tail (protobuf wire format).
export function onnxMetadata(bytes, key) {
  const encoded = new TextEncoder().encode(key);
  const needle = [0x0a, encoded.length, ...encoded, 0x12];
  const start = Math.max(0, bytes.length - (1 << 20));
  for (let i = bytes.length - needle.length; i >= start; i--) {
    let hit = true;
    for (let k = 0; k < needle.length && hit; k++) hit = bytes[i + k] === needle[k];
    if (!hit) continue;
    let p = i + needle.length, length = 0, shift = 0, byte;
    do { byte = bytes[p++]; length |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80);
    return new TextDecoder().decode(bytes.subarray(p, p + length));
  }
  return null;
}
