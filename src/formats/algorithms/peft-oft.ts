/**
 * PEFT OFT (tuners/oft, the `oft_R` format): each module stores its skew-symmetric blocks' upper
 * triangles, (blocks or 1 when block_share, b(b−1)/2). The merge rotates W's input axis:
 * W' = (R·Wᵀ)ᵀ with R block-diagonal (a conv's in·kh·kw flattened); an embedding's
 * `oft_embedding_R` rotates its vectors, W' = W·R. Each block comes from PEFT's
 * Cayley form (`use_cayley_neumann`, `num_cayley_neumann_terms`), after COFT's projection when
 * `coft` is set; files from PEFT 0.16–0.17 (a config without peft_version ≥ 0.18) with that
 * PEFT's Neumann series. PEFT has no weight for OFT: a user weight s ≠ 1 merges I + s·(R − I).
 */
import { MergeError } from '../../errors.js';
import { coftProject, peftOftRotation, skewFromUpper } from '../../algorithms/math/oft.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { onetrainerOft } from './onetrainer-oft.js';

export const peftOft: Algorithm = {
  name: 'peft-oft',
  title: 'OFT (PEFT)',
  defines: ['oft_R', 'oft_embedding_R'],
  // scaled_oft: OneTrainer's Scaled OFT marker, read for files outside a PEFT folder (./onetrainer-oft.ts).
  roles: ['oft_R', 'oft_embedding_R', 'scaled_oft'],
  scalars: ['scaled_oft'],

  build(tensors, context) {
    // Embeddings (PEFT ≥ 0.19) keep theirs in `oft_embedding_R`, rotating each embedding vector.
    const embedding = tensors.has('oft_embedding_R');
    const weight = tensors.get('oft_R') ?? tensors.get('oft_embedding_R')!;
    if (tensors.has('oft_R') && embedding) {
      context.report('UNSUPPORTED_FORMAT', 'has both oft_R and oft_embedding_R');
      return null;
    }
    // A module under other names than PEFT's own (base_model.model.…) is OneTrainer's OFT (OFT_2).
    if (!context.key.startsWith('base_model.model.')) return onetrainerOft.build(tensors, context);
    const options = context.options;
    if (!options) {
      // PEFT's own state dict without its config: coft, eps, block_share and the Cayley form are unknown.
      context.report('UNSUPPORTED_FORMAT', 'has PEFT OFT tensors (oft_R) outside a PEFT folder with its adapter_config.json, which holds the settings the rotation is formed with (coft, eps, block_share, use_cayley_neumann); put the file back beside its adapter_config.json');
      return null;
    }
    if (tensors.has('scaled_oft')) {
      context.report('UNSUPPORTED_FORMAT', 'has oft_R.scaled_oft, OneTrainer\'s Scaled OFT marker, which PEFT does not write or read');
      return null;
    }
    const [rows, n] = weight.shape;
    const b = (1 + Math.sqrt(1 + 8 * n)) / 2;
    if (weight.shape.length !== 2 || !Number.isInteger(b) || b < 2) {
      context.report('SHAPE_MISMATCH', `oft_R ${fmtShape(weight.shape)} does not hold b(b−1)/2 values per block`);
      return null;
    }
    const shared = options.block_share === true;
    if (shared && rows !== 1) {
      context.report('SHAPE_MISMATCH', `oft_R ${fmtShape(weight.shape)} with block_share should have one row`);
      return null;
    }
    return {
      ...moduleBasics(context),
      algorithm: peftOft.name,
      kind: embedding ? 'embedding' : 'linear',
      // Outputs, and with shared blocks the inputs too, are whatever the base has; an embedding's
      // rotated axis is its vectors' (ΔW's outputs), its inputs the vocabulary.
      deltaShape: embedding ? [shared ? -1 : rows * b, -1] : [-1, shared ? -1 : rows * b],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { weight },
      // PEFT sizes a conv's rotation for in·kh² inputs and views the weight so when it merges, which
      // holds only for a square kernel (shared blocks would otherwise fit any kernel).
      update: { kind: 'transform', cost: b, block: b, ...(embedding ? { anyLayout: true } : { squareKernel: true, splitRows: true }) },
      fanInFanOut: false,
      options,
    };
  },

  async load(file, module, delta) {
    const { weight } = module.tensors;
    const [rows, n] = weight.shape;
    const b = (1 + Math.sqrt(1 + 8 * n)) / 2;
    const embedding = module.kind === 'embedding';
    // The rotated axis: a layer's inputs, an embedding's vectors.
    const inF = (embedding ? delta?.out : delta?.in) ?? rows * b;
    if (inF % b !== 0) throw new MergeError('SHAPE_MISMATCH', `OFT module "${module.name}": blocks of ${b} do not divide the layer's ${inF} ${embedding ? 'embedding dims' : 'inputs'}`);
    const blocks = inF / b;
    const vec = await readValues(file, weight);
    let q: Float64Array = new Float64Array(rows * b * b);
    for (let k = 0; k < rows; k++) q.set(skewFromUpper(vec.subarray(k * n, (k + 1) * n), b), k * b * b);
    const o = module.options ?? {};
    if (o.coft === true) q = coftProject(q, b, rows, typeof o.eps === 'number' ? o.eps : 6e-5);
    const neumann = o.use_cayley_neumann !== false;
    const terms = typeof o.num_cayley_neumann_terms === 'number' ? o.num_cayley_neumann_terms : 5;
    const deltaBlocks = new Float32Array(blocks * b * b);
    for (let k = 0; k < blocks; k++) {
      const src = rows === 1 ? 0 : k;
      const r = peftOftRotation(q.subarray(src * b * b, (src + 1) * b * b), b, neumann, terms, o.older_neumann_series === true);
      // W' = (R·Wᵀ)ᵀ maps each input vector by R; an embedding's merge W' = W·R maps each vector by Rᵀ.
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < b; j++) deltaBlocks[k * b * b + i * b + j] = (embedding ? r[j * b + i] : r[i * b + j]) - (i === j ? 1 : 0);
      }
    }
    return [{ kind: 'rotate', axis: embedding ? 'out' : 'in', blockSize: b, delta: f32Bytes(deltaBlocks) }];
  },
};
