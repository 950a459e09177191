/**
 * PEFT AdaLoRA (tuners/adalora): an SVD-shaped update per module, `lora_A` (r, in; a conv's
 * in·kh·kw), `lora_E` (r, 1) and `lora_B` (out, r), merged as PEFT's get_delta_weight does:
 * ΔW = B·(A ⊙ E)·scaling / (ranknum + 1e-5). A ⊙ E is formed in f32 as PEFT forms it (each row of
 * A times its singular value, rounded to f32); B times it is the engine's low-rank product.
 *
 * At load PEFT builds every module at `init_r`: ranknum = init_r and scaling = lora_alpha (or
 * init_r when lora_alpha ≤ 0). The saved `rank_pattern` (module → boolean mask over the init_r
 * rows) resizes a module to the mask's count but copies the old ranknum back, so the divisor stays
 * init_r; only a lora_alpha ≤ 0 scaling follows the resize (the kept count). ranknum is an f32
 * tensor and PEFT adds the Python 1e-5 to it in f32: the divisor is fl32(init_r + fl32(1e-5)),
 * and the scale scaling / divisor is applied like LoRA's α/r.
 */
import { MergeError } from '../../errors.js';
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { readFloat } from '../read-float.js';

/** The divisor PEFT's merge uses: the f32 ranknum plus 1e-5, added in f32. */
export function adaloraDivisor(initR: number): number {
  return Math.fround(Math.fround(initR) + Math.fround(1e-5));
}

/**
 * The saved rank_pattern as module path → rows kept. PEFT saves it with the adapter name removed:
 * `model.layers.0.self_attn.q_proj.lora_E` → [true, false, …] (init_r flags).
 */
export function adaloraRankPattern(raw: Record<string, unknown>, configFile: string, initR: number): Map<string, number> {
  const out = new Map<string, number>();
  const v = raw.rank_pattern;
  if (v === undefined || v === null) return out;
  if (typeof v !== 'object' || Array.isArray(v)) throw new MergeError('BAD_CONFIG', `${configFile}: "rank_pattern" must be an object of parameter name → list of true/false`);
  for (const [name, mask] of Object.entries(v as Record<string, unknown>)) {
    const m = /^(.+)\.lora_E(\.[^.]+)?$/.exec(name);
    if (!m || !Array.isArray(mask) || mask.some((x) => typeof x !== 'boolean')) {
      throw new MergeError('BAD_CONFIG', `${configFile}: rank_pattern["${name.slice(0, 80)}"] must name a module's lora_E and give a list of true/false (AdaLoRA's kept singular values)`);
    }
    if (mask.length !== initR) throw new MergeError('BAD_CONFIG', `${configFile}: rank_pattern["${name.slice(0, 80)}"] has ${mask.length} flags but init_r is ${initR}`);
    out.set(m[1], mask.filter(Boolean).length);
  }
  return out;
}

export const peftAdalora: Algorithm = {
  name: 'peft-adalora',
  title: 'AdaLoRA (PEFT)',
  defines: ['lora_E'],
  roles: ['lora_E', 'down', 'up'],

  build(tensors, context) {
    const a = tensors.get('down'), b = tensors.get('up'), e = tensors.get('lora_E');
    const o = context.options;
    if (!o || typeof o.init_r !== 'number' || typeof o.scaling !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT AdaLoRA tensors (lora_E) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    if (!a || !b || !e) {
      context.report('UNSUPPORTED_FORMAT', `needs lora_A, lora_E and lora_B; ${a ? 'lora_B' : 'lora_A'} is missing`);
      return null;
    }
    const r = e.shape[0];
    if (e.shape.length !== 2 || e.shape[1] !== 1 || a.shape.length !== 2 || a.shape[0] !== r || b.shape.length !== 2 || b.shape[1] !== r) {
      context.report('SHAPE_MISMATCH', `lora_A ${fmtShape(a.shape)}, lora_E ${fmtShape(e.shape)} and lora_B ${fmtShape(b.shape)} do not fit together (expected (r, in), (r, 1), (out, r))`);
      return null;
    }
    const kept = typeof o.kept === 'number' ? o.kept : o.init_r;
    if (r !== kept) {
      context.report('BAD_CONFIG', `has ${r} singular values but the config (${typeof o.kept === 'number' ? 'rank_pattern' : 'init_r'}) says ${kept}`);
      return null;
    }
    // Every singular value pruned: PEFT's product is a zero matrix, the weight stays as it is.
    if (r === 0) return null;
    const scale = o.scaling / adaloraDivisor(o.init_r);
    return {
      ...moduleBasics(context),
      algorithm: peftAdalora.name,
      kind: 'linear',
      deltaShape: [b.shape[0], a.shape[1]],
      rank: r,
      alpha: o.scaling,
      scale,
      scaleOrigin: { kind: 'alpha', rule: 'α/init_r', stated: context.alpha !== undefined && context.alpha > 0 },
      tensors: { a, b, e },
      update: { kind: 'low-rank', rank: r },
      fanInFanOut: false,
    };
  },

  async load(file, module) {
    const { a, b, e } = module.tensors;
    const [av, ev] = await Promise.all([readValues(file, a), readValues(file, e)]);
    const inF = a.shape[1];
    const ae = new Float32Array(av.length);
    for (let k = 0; k < module.rank; k++) for (let i = 0; i < inF; i++) ae[k * inF + i] = Math.fround(av[k * inF + i] * ev[k]);
    return [{ kind: 'low-rank', a: f32Bytes(ae), b: await readFloat(file, b), rank: module.rank }];
  },
};
