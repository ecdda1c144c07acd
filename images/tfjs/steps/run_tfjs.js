// Run a TF.js layers or graph model in the pure-JavaScript runtime, for verification.
//
//   node run_tfjs.js --format tfjs_layers_model|tfjs_graph_model --input DIR/model.json --out OUT
//                    (--plan JSON | --inputs inputs.json)
// The protocol of every verification runner (images/shared/common.py verification_run): as the reference it makes
// the plan's inputs (distributions, the user's .npy/.npz samples), runs them, and runs them again moved by one
// float32 rounding step (the noise floor); as the result it runs the reference's inputs. Arrays are JSON
// ({name: {shape, dtype, b64}}, samples on axis 0): inputs, outputs, logits, perturbed, perturbed_logits.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

const EX_DATAERR = 65;

function reject(message) {
  process.stderr.write(`ERROR: ${message}\n`);
  process.exit(EX_DATAERR);
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) args[argv[i].replace(/^--/, '').replace(/-/g, '_')] = argv[++i];
  return args;
}

// Load model.json and its weight shards from disk, refusing paths outside the model's folder.
function fileHandler(modelJsonPath) {
  const dir = path.dirname(path.resolve(modelJsonPath));
  return {
    load: async () => {
      let doc;
      try { doc = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8')); } catch (e) {
        reject(`${modelJsonPath}: not valid JSON (${e.message})`);
      }
      const specs = [];
      const buffers = [];
      for (const group of doc.weightsManifest || []) {
        for (const p of group.paths) {
          const file = path.resolve(dir, p);
          if (!file.startsWith(dir + path.sep)) reject(`${modelJsonPath}: weight path '${p}' points outside the model folder`);
          if (!fs.existsSync(file)) reject(`${modelJsonPath}: weight shard '${p}' is missing`);
          buffers.push(fs.readFileSync(file));
        }
        specs.push(...group.weights);
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: doc.modelTopology, format: doc.format, generatedBy: doc.generatedBy,
        convertedBy: doc.convertedBy, signature: doc.signature, userDefinedMetadata: doc.userDefinedMetadata,
        modelInitializer: doc.modelInitializer, weightSpecs: specs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
      };
    },
  };
}

// A small seeded generator (mulberry32) for reproducible inputs.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// -- array files: JSON {name: {shape, dtype, b64}} (see images/shared/verify_io.py), .npy and .npz ----------
const TYPED = {float32: Float32Array, int32: Int32Array, bool: Uint8Array, uint8: Uint8Array, int8: Int8Array};

function toEntry(values, shape, dtype) {
  const Typed = TYPED[dtype] || Float32Array;
  const typed = values instanceof Typed ? values : Typed.from(values, v => Number(v));
  return {shape, dtype, b64: Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString('base64')};
}

function fromEntry(e) {
  if (e.data) return {shape: e.shape, dtype: e.dtype || 'float32', values: Float32Array.from(e.data)};
  const buf = Buffer.from(e.b64, 'base64');
  const Typed = TYPED[e.dtype] || Float32Array;
  const copy = new Uint8Array(buf).buffer;
  return {shape: e.shape, dtype: e.dtype, values: new Typed(copy)};
}

function readJsonArrays(file) {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const out = {};
  for (const [k, v] of Object.entries(doc)) out[k] = fromEntry(v);
  return out;
}

function writeJsonArrays(file, arrays) {
  const doc = {};
  for (const [k, a] of Object.entries(arrays)) doc[k] = toEntry(a.values, a.shape, a.dtype);
  fs.writeFileSync(file, JSON.stringify(doc));
}

function parseNpy(buf, source) {
  if (buf.slice(0, 6).toString('latin1') !== '\x93NUMPY') reject(`${source}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.slice(start, start + hlen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !shape || /'fortran_order':\s*True/.test(header)) reject(`${source}: unsupported .npy header`);
  const dims = shape[1].split(',').map(s => s.trim()).filter(Boolean).map(Number);
  const raw = new Uint8Array(buf.slice(start + hlen)).buffer;
  const kinds = {'<f4': [Float32Array, 'float32'], '<f8': [Float64Array, 'float32'], '<i4': [Int32Array, 'int32'],
                 '<i8': [BigInt64Array, 'int32'], '|u1': [Uint8Array, 'int32'], '|i1': [Int8Array, 'int32'],
                 '|b1': [Uint8Array, 'bool']};
  const kind = kinds[descr[1]];
  if (!kind) reject(`${source}: unsupported dtype ${descr[1]}`);
  const values = new kind[0](raw);
  return {shape: dims, dtype: kind[1], values: kind[1] === 'float32' ? Float32Array.from(values) :
    Int32Array.from(values, v => Number(v))};
}

// np.savez writes a zip of .npy members (stored; np.savez_compressed: deflated)
function parseNpz(buf, source) {
  const zlib = require('zlib');
  const out = {};
  let at = 0;
  while (at + 30 <= buf.length && buf.readUInt32LE(at) === 0x04034b50) {
    const method = buf.readUInt16LE(at + 8);
    let size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extraLen = buf.readUInt16LE(at + 28);
    const name = buf.slice(at + 30, at + 30 + nameLen).toString('utf8');
    const dataAt = at + 30 + nameLen + extraLen;
    if (size === 0xFFFFFFFF) {  // zip64: the sizes sit in the extra field
      size = Number(buf.readBigUInt64LE(at + 30 + nameLen + 4 + 8));
    }
    const data = buf.slice(dataAt, dataAt + size);
    out[name.replace(/\.npy$/, '')] = parseNpy(method === 8 ? zlib.inflateRawSync(data) : data, source);
    at = dataAt + size;
  }
  if (!Object.keys(out).length) reject(`${source}: not a readable .npz file`);
  return out;
}

function loadGiven(file) {
  if (fs.statSync(file).isDirectory()) {
    const files = fs.readdirSync(file).filter(f => f.endsWith('.npy')).sort();
    if (!files.length) reject(`${file}: holds no .npy files`);
    const parts = files.map(f => parseNpy(fs.readFileSync(path.join(file, f)), path.join(file, f)));
    const size = parts[0].values.length;
    const values = new Float32Array(size * parts.length);
    parts.forEach((p, i) => values.set(p.values, i * size));
    return [{shape: [parts.length, ...parts[0].shape], dtype: parts[0].dtype, values}];
  }
  if (file.endsWith('.json')) return readJsonArrays(file);
  const buf = fs.readFileSync(file);
  return file.endsWith('.npz') ? parseNpz(buf, file) : [parseNpy(buf, file)];
}

// -- the input plan ------------------------------------------------------------------------------------
function concrete(spec) {
  return spec.shape.map((d, i) => (d === null || d === -1) ? (i === 0 ? 1 : 16) : d);
}

function sameDims(a, b) { return a.length === b.length && a.every((d, i) => d === b[i]); }

// [K, ...shape] from a user's array: samples on axis 0, or one sample with or without its batch axis
function asSamples(spec, arr, source) {
  const want = concrete(spec);
  const s = arr.shape;
  let count = null;
  if (s.length === want.length + 1 && sameDims(s.slice(1), want)) count = s[0];
  else if (sameDims(s, want)) count = 1;
  else if (s.length === want.length && want[0] === 1 && sameDims(s.slice(1), want.slice(1))) count = s[0];
  else if (s.length === want.length - 1 && want[0] === 1 && sameDims(s, want.slice(1))) count = 1;
  if (count === null) reject(`${source}: array of shape [${s}] does not fit input '${spec.name}' of shape [${want}]`);
  const size = want.reduce((a, b) => a * b, 1);
  count = Math.min(count, MAX_GIVEN);
  return {count, values: arr.values.slice(0, count * size)};
}

const MAX_GIVEN = 32;
const DTYPE_RANGES = {bool: [0, 2]};

function draw(spec, dist, next, count) {
  const shape = concrete(spec);
  const size = count * shape.reduce((a, b) => a * b, 1);
  const values = spec.dtype === 'float32' ? new Float32Array(size) : new Int32Array(size);
  const [lo, hi] = spec.intRange || DTYPE_RANGES[spec.dtype] || [0, 10];
  const pixels = dist.when === 'pixels' && !spec.pixels;
  for (let i = 0; i < size; i++) {
    if (spec.dtype !== 'float32') { values[i] = lo + Math.floor(next() * (hi - lo)); continue; }
    if (dist.kind === 'normal' && !pixels) {
      const u = Math.max(next(), 1e-12), v = next();  // Box-Muller
      values[i] = (dist.mean || 0) + (dist.std === undefined ? 1 : dist.std) * Math.sqrt(-2 * Math.log(u)) *
        Math.cos(2 * Math.PI * v);
    } else {
      const low = pixels ? -1 : (dist.low === undefined ? -1 : dist.low);
      const high = pixels ? 1 : (dist.high === undefined ? 1 : dist.high);
      values[i] = low + (high - low) * next();
    }
  }
  return values;
}

// the plan's batches: {name: {shape [K, ...], dtype, values}} and the groups saying which samples are which
function makeBatches(specs, plan) {
  const parts = [];
  const groups = [];
  let start = 0;
  for (const g of plan.given || []) {
    const data = loadGiven(g.file);
    const arrays = Array.isArray(data) ? data : (specs.every(s => s.name in data) ? specs.map(s => data[s.name]) :
      Object.values(data));
    if (arrays.length !== specs.length) reject(`${g.file}: holds ${arrays.length} array(s) but the model has ${specs.length} input(s)`);
    const samples = specs.map((s, i) => asSamples(s, arrays[i], g.file));
    const count = Math.min(...samples.map(x => x.count));
    parts.push(samples.map(x => x.values));
    groups.push({name: g.name, kind: 'given', file: path.basename(g.file), start, count, judged: g.judged !== false});
    start += count;
  }
  (plan.distributions || []).forEach((dist, i) => {
    if (dist.when === 'pixels' && !specs.some(s => s.pixels)) return;
    const count = plan.samples || 8;
    const next = rng(((plan.seed || 0) * 1000003 + i * 7919) >>> 0);
    parts.push(specs.map(s => draw(s, dist, next, count)));
    const group = Object.assign({}, dist, {start, count, judged: dist.judged !== false});
    groups.push(group);
    start += count;
  });
  const batches = {};
  specs.forEach((s, j) => {
    const Typed = s.dtype === 'float32' ? Float32Array : Int32Array;
    const total = parts.reduce((a, p) => a + p[j].length, 0);
    const values = new Typed(total);
    let at = 0;
    for (const p of parts) { values.set(p[j], at); at += p[j].length; }
    batches[s.name] = {shape: [start, ...concrete(s)], dtype: s.dtype === 'float32' ? 'float32' : 'int32', values};
  });
  return {batches, groups};
}

// every float moved by one float32 rounding step, up or down at random: the noise-floor run of this runtime
function ulpPerturbed(batches, seed) {
  const next = rng((seed * 31 + 9973) >>> 0);
  const out = {};
  for (const [k, b] of Object.entries(batches)) {
    if (b.dtype !== 'float32') { out[k] = b; continue; }
    const values = Float32Array.from(b.values);
    const bits = new Int32Array(values.buffer);
    for (let i = 0; i < values.length; i++) {
      if (values[i] === 0) continue;
      bits[i] += next() < 0.5 ? -1 : 1;  // the neighbouring float of the same sign
    }
    out[k] = {shape: b.shape, dtype: b.dtype, values};
  }
  return out;
}

// A graph model's chosen inputs and outputs (--input_names / --output_names; op or tensor spelling), else the ones
// TF.js takes (its signature, or its Placeholders and the nodes nothing consumes).
const nodeName = n => String(n).replace(/^\^/, '').replace(/:\d+$/, '');
const chosen = value => (value ? String(value).split(',').filter(Boolean).map(nodeName) : null);

function graphInputs(model, args) {
  const names = chosen(args.input_names);
  if (!names) return model.inputs;
  return names.map(n => model.inputs.find(t => nodeName(t.name) === n)
    || reject(`${args.input}: '${n}' is not an input of the graph in TF.js (inputs: ${model.inputs.map(t => nodeName(t.name)).join(', ')})`));
}

function graphOutputNames(model, args) {
  return chosen(args.output_names) || model.outputs.map(t => t.name.replace(/:0$/, ''));
}

function specsOf(model, format, args) {
  if (format === 'tfjs_layers_model') {
    // a TF.js Sequential reports no inputNames: its input tensors are named after their InputLayer
    const names = model.inputNames && model.inputNames.length ? model.inputNames : model.inputs.map(t => t.name.split('/')[0]);
    const ranges = {};
    for (const layer of model.layers) {  // an Embedding fed by a model input takes its vocabulary as range
      if (layer.getClassName() !== 'Embedding' || !layer.inboundNodes.length) continue;
      const source = layer.inboundNodes[0].inboundLayers[0];
      if (source && names.includes(source.name)) ranges[source.name] = [0, layer.inputDim];
    }
    return model.inputs.map((t, i) => ({name: names[i], shape: t.shape, dtype: t.dtype, intRange: ranges[names[i]]}));
  }
  const ranges = gatherRanges(model, args);
  return graphInputs(model, args).map(t => {
    const name = t.name.replace(/:0$/, '');
    return {name, shape: t.shape, dtype: t.dtype, intRange: ranges[nodeName(name)]};
  });
}

// A graph model's integer inputs that index a table (GatherV2 on axis 0 of a constant, as a Keras Embedding becomes),
// through Cast or Identity: their valid range is the table's first dimension, as for a layers model's Embedding.
const INDEX_PASS = ['Cast', 'Identity'];

function gatherRanges(model, args) {
  const doc = JSON.parse(fs.readFileSync(args.input, 'utf8'));
  const nodes = {};
  for (const n of (doc.modelTopology && doc.modelTopology.node) || []) nodes[n.name] = n;
  const weights = model.weights || {};
  const scalar = name => (weights[name] && weights[name][0].size === 1 ? weights[name][0].dataSync()[0] : null);
  const ranges = {};
  for (const n of Object.values(nodes)) {
    if (!['GatherV2', 'Gather'].includes(n.op) || !n.input || n.input.length < 2) continue;
    const table = weights[nodeName(n.input[0])];
    const axis = n.op === 'Gather' ? 0 : scalar(nodeName(n.input[2] || ''));
    const batchDims = Number(((n.attr || {}).batch_dims || {}).i || 0);
    if (!table || axis !== 0 || batchDims !== 0) continue;
    let src = nodes[nodeName(n.input[1])];
    while (src && INDEX_PASS.includes(src.op) && src.input && src.input.length) src = nodes[nodeName(src.input[0])];
    if (!src || src.op !== 'Placeholder') continue;
    const size = table[0].shape[0];
    ranges[src.name] = [0, Math.min(size, ranges[src.name] ? ranges[src.name][1] : size)];
  }
  return ranges;
}

const ACTIVATIONS = ['Softmax', 'Sigmoid', 'ArgMax', 'LogSoftmax'];
const PASS_THROUGH = ['Identity', 'Reshape', 'Squeeze'];

// The logits of a model's outputs: the tensors feeding their final softmax/sigmoid/argmax.
// Graph models: node names found by walking modelTopology; layers models: output layers with a softmax or
// sigmoid activation, run once more with that activation made linear.
function logitPlan(model, format, doc, args) {
  const plan = {ops: {}, nodes: [], layers: []};
  if (format === 'tfjs_graph_model') {
    const nodes = {};
    for (const n of (doc.modelTopology && doc.modelTopology.node) || []) nodes[n.name] = n;
    const clean = s => s.replace(/^\^/, '').replace(/:\d+$/, '');
    graphOutputNames(model, args).forEach((name, i) => {
      let node = nodes[clean(name)];
      while (node && PASS_THROUGH.includes(node.op) && node.input && node.input.length) node = nodes[clean(node.input[0])];
      if (node && ACTIVATIONS.includes(node.op) && node.input && node.input.length) {
        plan.ops[i] = node.op;
        plan.nodes.push({index: i, name: clean(node.input[0])});
      }
    });
  } else {
    outputLayersOf(model).forEach((layer, i) => {
      const act = layer.activation && layer.activation.getClassName ? layer.activation.getClassName() : '';
      if (['softmax', 'sigmoid'].includes(String(act).toLowerCase())) {
        plan.ops[i] = act;
        plan.layers.push({index: i, layer});
      }
    });
  }
  return plan;
}

// A layers model's outputs by layer name, as Keras names them. A TF.js Sequential keeps its layers in an inner model
// and reports no outputNames (nor outputLayers): its output tensor is named LAYER/LAYER.
function layerOutputNames(model) {
  return model.outputNames && model.outputNames.length ? model.outputNames : model.outputs.map(t => t.name.split('/')[0]);
}

function outputLayersOf(model) {
  return model.outputLayers && model.outputLayers.length ? model.outputLayers
    : layerOutputNames(model).map(name => model.getLayer(name));
}

function tensorsOf(specs, batches, i) {
  return specs.map(s => {
    const b = batches[s.name];
    const shape = b.shape.slice(1);
    const size = shape.reduce((a, c) => a * c, 1);
    return tf.tensor(b.values.slice(i * size, (i + 1) * size), shape, s.dtype === 'int32' ? 'int32' : 'float32');
  });
}

async function runAll(model, format, specs, batches, plan, args) {
  const count = batches[specs[0].name].shape[0];
  const names = format === 'tfjs_layers_model' ? layerOutputNames(model) : graphOutputNames(model, args);
  const collected = names.map(() => []);
  const logits = {};
  let shapes = null;
  let logitShapes = {};
  let asyncReason = null;
  const linear = plan.layers.length ? tf.layers.dense({units: 1, activation: 'linear'}).activation : null;
  for (let i = 0; i < count; i++) {
    const tensors = tensorsOf(specs, batches, i);
    let outs;
    let extra = [];
    if (format === 'tfjs_layers_model') {
      outs = model.predict(tensors.length === 1 ? tensors[0] : tensors);
      outs = Array.isArray(outs) ? outs : [outs];
      if (plan.layers.length) {
        const saved = plan.layers.map(p => p.layer.activation);
        plan.layers.forEach(p => { p.layer.activation = linear; });
        try {
          let raw = model.predict(tensors.length === 1 ? tensors[0] : tensors);
          raw = Array.isArray(raw) ? raw : [raw];
          extra = plan.layers.map(p => raw[p.index]);
        } finally {
          plan.layers.forEach((p, j) => { p.layer.activation = saved[j]; });
        }
      }
    } else {
      const feed = {};
      specs.forEach((s, j) => { feed[s.name] = tensors[j]; });
      const wanted = names.concat(plan.nodes.map(n => n.name));
      // the call TF.js users make first: execute() (what predict() does); executeAsync() only where the graph
      // has dynamic ops, and then run.json says so
      let all;
      try {
        all = model.execute(feed, wanted);
      } catch (e) {
        if (!/executeAsync/.test(String(e.message || e))) throw e;
        asyncReason = asyncReason || String(e.message || e).split('\n')[0];
        all = await model.executeAsync(feed, wanted);
      }
      const list = Array.isArray(all) ? all : [all];
      outs = list.slice(0, names.length);
      extra = list.slice(names.length);
    }
    shapes = outs.map(o => o.shape);
    for (let j = 0; j < outs.length; j++) collected[j].push(await outs[j].data());
    const targets = format === 'tfjs_layers_model' ? plan.layers : plan.nodes;
    for (let j = 0; j < extra.length; j++) {
      const name = names[targets[j].index];
      (logits[name] = logits[name] || []).push(await extra[j].data());
      logitShapes[name] = extra[j].shape;
    }
    tf.dispose(tensors);
  }
  const pack = (parts, shape) => {
    const size = parts.length ? parts[0].length : 0;
    const values = new Float32Array(size * parts.length);
    parts.forEach((p, k) => values.set(p, k * size));
    return {shape: [parts.length, ...shape], dtype: 'float32', values};
  };
  const outputs = {};
  names.forEach((n, j) => { outputs[n] = pack(collected[j], shapes ? shapes[j] : []); });
  const logitArrays = {};
  for (const [n, parts] of Object.entries(logits)) logitArrays[n] = pack(parts, logitShapes[n]);
  const execution = format === 'tfjs_layers_model' ? 'predict'
    : (asyncReason ? `executeAsync (execute() refused: ${asyncReason})` : 'execute');
  return {outputs, logits: logitArrays, names, execution};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const handler = fileHandler(args.input);
  let model;
  try {
    model = args.format === 'tfjs_layers_model' ? await tf.loadLayersModel(handler) : await tf.loadGraphModel(handler);
  } catch (e) {
    reject(`${args.input}: cannot load as a TF.js ${args.format} (${e.message.split('\n')[0]})`);
  }
  const doc = JSON.parse(fs.readFileSync(args.input, 'utf8'));
  const specs = specsOf(model, args.format, args);
  const reference = args.plan !== undefined;
  let batches;
  let groups = null;
  if (reference) {
    const plan = fs.existsSync(args.plan) ? JSON.parse(fs.readFileSync(args.plan, 'utf8')) : JSON.parse(args.plan);
    ({batches, groups} = makeBatches(specs, plan));
    writeJsonArrays(path.join(args.out, 'inputs.json'), batches);
  } else {
    const given = readJsonArrays(args.inputs);
    const names = Object.keys(given);
    const byName = specs.every(s => names.includes(s.name));
    if (!byName && names.length !== specs.length) {
      reject(`${args.inputs}: holds ${names.length} array(s) but the model has ${specs.length} input(s)`);
    }
    batches = {};
    specs.forEach((s, i) => { batches[s.name] = given[byName ? s.name : names[i]]; });
  }
  const plan = logitPlan(model, args.format, doc, args);
  const run = await runAll(model, args.format, specs, batches, plan, args);
  writeJsonArrays(path.join(args.out, 'outputs.json'), run.outputs);
  if (Object.keys(run.logits).length) writeJsonArrays(path.join(args.out, 'logits.json'), run.logits);
  const info = {
    inputs: specs.map(s => ({name: s.name, shape: s.shape, dtype: s.dtype})),
    samples: batches[specs[0].name].shape[0],
    outputs: Object.entries(run.outputs).map(([n, o]) => ({name: n, shape: o.shape.slice(1), dtype: o.dtype})),
    logits: Object.fromEntries(Object.entries(plan.ops).map(([i, op]) => [run.names[i], op])),
    runtime: {tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version},
    execution: run.execution,
  };
  if (reference) {
    const perturbed = await runAll(model, args.format, specs, ulpPerturbed(batches, 0), plan, args);
    writeJsonArrays(path.join(args.out, 'perturbed.json'), perturbed.outputs);
    if (Object.keys(perturbed.logits).length) {
      writeJsonArrays(path.join(args.out, 'perturbed_logits.json'), perturbed.logits);
    }
    Object.assign(info, {groups, perturbation: 'inputs moved by one float32 rounding step',
      input_specs: specs.map(s => ({name: s.name, shape: concrete(s), dtype: s.dtype, int_range: s.intRange || null}))});
  }
  fs.writeFileSync(path.join(args.out, 'run.json'), JSON.stringify(info, null, 2));
  fs.writeFileSync(path.join(args.out, 'step.json'), JSON.stringify({
    artifacts: ['outputs.json'], versions: {tfjs: tf.version.tfjs, node: process.version}, info}, null, 2));
}

main().catch(e => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
