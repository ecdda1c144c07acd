// Run a TF.js layers or graph model in the pure-JavaScript runtime, for verification.
//
//   node run_tfjs.js --format tfjs_layers_model|tfjs_graph_model --input DIR/model.json --out OUT
//                    (--inputs inputs.json | --make-inputs [--seed N])
// Inputs and outputs are JSON ({name: {shape, dtype, data}}), written beside step.json and run.json.
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
  const args = {seed: '0'};
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    if (key === 'make_inputs') { args.make_inputs = true; continue; }
    args[key] = argv[++i];
  }
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

function specsOf(model, format) {
  if (format === 'tfjs_layers_model') {
    return model.inputs.map((t, i) => ({name: model.inputNames ? model.inputNames[i] : t.name, shape: t.shape, dtype: t.dtype}));
  }
  return model.inputs.map(t => ({name: t.name.replace(/:0$/, ''), shape: t.shape, dtype: t.dtype}));
}

function makeInputs(specs, seed) {
  const next = rng(seed);
  const feeds = {};
  for (const s of specs) {
    const shape = s.shape.map((d, i) => (d === null || d === -1) ? (i === 0 ? 1 : 16) : d);
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Array(size);
    for (let i = 0; i < size; i++) data[i] = s.dtype === 'int32' ? Math.floor(next() * 10) : next() * 2 - 1;
    feeds[s.name] = {shape, dtype: s.dtype === 'int32' ? 'int32' : 'float32', data};
  }
  return feeds;
}

function matchInputs(specs, given, source) {
  const names = Object.keys(given);
  const byName = specs.every(s => names.includes(s.name));
  if (!byName && names.length !== specs.length) {
    reject(`${source}: holds ${names.length} array(s) but the model has ${specs.length} input(s)`);
  }
  return specs.map((s, i) => {
    const g = byName ? given[s.name] : given[names[i]];
    return tf.tensor(g.data, g.shape, s.dtype === 'int32' ? 'int32' : 'float32');
  });
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
  const specs = specsOf(model, args.format);
  let given;
  if (args.make_inputs) {
    given = makeInputs(specs, parseInt(args.seed, 10));
    fs.writeFileSync(path.join(args.out, 'inputs.json'), JSON.stringify(given));
  } else {
    given = JSON.parse(fs.readFileSync(args.inputs, 'utf8'));
  }
  const tensors = matchInputs(specs, given, args.inputs || 'generated inputs');
  let outs;
  let names;
  if (args.format === 'tfjs_layers_model') {
    outs = model.predict(tensors.length === 1 ? tensors[0] : tensors);
    names = model.outputNames;
  } else {
    const feed = {};
    model.inputs.forEach((t, i) => { feed[t.name] = tensors[i]; });
    outs = await model.executeAsync(feed);
    names = model.outputs.map(t => t.name.replace(/:0$/, ''));
  }
  outs = Array.isArray(outs) ? outs : [outs];
  const outputs = {};
  for (let i = 0; i < outs.length; i++) {
    outputs[names[i]] = {shape: outs[i].shape, dtype: outs[i].dtype, data: Array.from(await outs[i].data())};
  }
  fs.writeFileSync(path.join(args.out, 'outputs.json'), JSON.stringify(outputs));
  const info = {
    inputs: specs.map(s => ({name: s.name, shape: s.shape, dtype: s.dtype, fed_shape: given[s.name] ? given[s.name].shape : null})),
    outputs: Object.entries(outputs).map(([n, o]) => ({name: n, shape: o.shape, dtype: o.dtype})),
    origin: args.make_inputs ? {kind: 'random', seed: parseInt(args.seed, 10), float_range: [-1, 1], generator: 'mulberry32'} : {kind: 'given'},
    runtime: {tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version},
  };
  fs.writeFileSync(path.join(args.out, 'run.json'), JSON.stringify(info, null, 2));
  fs.writeFileSync(path.join(args.out, 'step.json'), JSON.stringify({
    artifacts: ['outputs.json'], versions: {tfjs: tf.version.tfjs, node: process.version}, info}, null, 2));
}

main().catch(e => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
