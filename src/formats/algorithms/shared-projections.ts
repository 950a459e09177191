/**
 * Loading VeRA-style modules (VeRA, PEFT PVeRA): per module λ_b (out) and λ_d, over one pair of
 * projections A (rows, in_max) and B (out_max, r) that the whole adapter shares and each layer
 * slices to its size. An adapter saved with save_projection: false holds neither: PEFT draws them
 * again from projection_prng_key when it loads the adapter, A then B from one generator, with
 * in_max the widest input of the layers it wraps; so are they drawn here (RegeneratedProjections).
 */
import { MergeError } from '../../errors.js';
import { veraFactors } from '../../algorithms/math/low-rank-forms.js';
import type { Matrix } from '../../algorithms/math/matrix.js';
import { TorchCpuGenerator } from '../../algorithms/math/torch-cpu-random.js';
import { peftKaimingUniform } from '../../algorithms/math/torch-kaiming.js';
import type { AdapterModule } from '../adapter.js';
import type { DeltaDims, ModuleUpdate } from './algorithm.js';
import type { SafetensorsFile } from '../safetensors-types.js';
import { lowRankPiece, readMatrix, readValues } from './factor-io.js';

/**
 * ΔW = (λ_b ⊙ B[:out, :]) · (λ_d[:r] ⊙ A[:r, :in]) with r = B's columns, as one low-rank piece. The
 * layer's inputs are the first `in` of A's columns (the base says how many, through `delta`). Only
 * A's and λ_d's first r rows are read into the product: VeRA has no more, PVeRA's second half is the
 * log-variance it samples from while training, which its merge leaves out. `title` and `aRole` name
 * the method and its A in the error.
 */
export async function sharedProjectionPiece(file: SafetensorsFile, module: AdapterModule, delta: DeltaDims | undefined, title: string, aRole: string): Promise<ModuleUpdate> {
  const { lb, ld, a, b } = module.tensors;
  const p = module.projections;
  const out = lb.shape[0], r = p ? p.r : b.shape[1];
  let full: Matrix, sharedB: Matrix;
  if (p) {
    ({ a: full, b: sharedB } = regenerated(p, module, delta, title, out));
  } else {
    full = await readMatrix(file, a);
    sharedB = await readMatrix(file, b);
  }
  const inF = delta?.in ?? full.cols;
  if (inF > full.cols) throw new MergeError('SHAPE_MISMATCH', `${title} module "${module.name}": the layer has ${inF} inputs, ${aRole} only ${full.cols} columns`);
  const head = { rows: r, cols: full.cols, data: full.data.subarray(0, r * full.cols) };
  return [lowRankPiece(veraFactors(head, sharedB, await readValues(file, lb), (await readValues(file, ld)).subarray(0, r), out, inF))];
}

/**
 * The projections of an adapter saved without them, as PEFT draws them when it loads it
 * (VeraModel._init_vera_A_vera_B, PVeraModel's alike): `torch.Generator("cpu").manual_seed(seed)`,
 * then A (rows, inMax) and B (outMax, r) by kaiming-uniform (algorithms/math/torch-kaiming.ts), each
 * row-major. Every module of the adapter holds the same object; the plan sets `inMax` to the widest
 * input among them once each has found its base tensor (0 until then).
 */
export interface RegeneratedProjections {
  /** projection_prng_key's low 32 bits, all torch's CPU generator keeps of it. */
  seed: number;
  /** The config's r: B's columns. */
  r: number;
  /** A's rows: r for VeRA, 2r for PVeRA (mean and log-variance). */
  rows: number;
  /** PEFT's linear_in_dim: the widest input of the wrapped layers, from the base (0: not known yet). */
  inMax: number;
  /** How many modules share it (the plan checks each found its layer before inMax is trusted). */
  modules: number;
  /** What A and B are called, for messages (`vera_A and vera_B`). */
  names: string;
}

/** A and B's first `outRows` rows, drawn once per adapter and width. */
const drawn = new WeakMap<RegeneratedProjections, { inMax: number; a: Matrix; b: Matrix }>();

function regenerated(p: RegeneratedProjections, module: AdapterModule, delta: DeltaDims | undefined, title: string, outRows: number): { a: Matrix; b: Matrix } {
  if (!delta || p.inMax === 0) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${title} module "${module.name}": the adapter was saved without ${p.names} (save_projection: false), which PEFT draws again at the width of the widest layer it wraps; only a merge into the base model tells that width`);
  }
  let d = drawn.get(p);
  if (!d || d.inMax !== p.inMax || d.b.rows < outRows) {
    const generator = new TorchCpuGenerator(p.seed);
    const a = peftKaimingUniform(generator, p.rows, p.inMax);
    // B's rows follow A's draws in order; the first outRows are all a layer reads, whatever out_max is.
    const rows = Math.max(outRows, d?.inMax === p.inMax ? d.b.rows : 0);
    const b = peftKaimingUniform(generator, rows, p.r);
    d = { inMax: p.inMax, a: { rows: p.rows, cols: p.inMax, data: a }, b: { rows, cols: p.r, data: b } };
    drawn.set(p, d);
  }
  return d;
}
