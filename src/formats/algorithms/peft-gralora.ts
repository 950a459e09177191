/**
 * PEFT GraLoRA (tuners/gralora): the layer cut into gralora_k = N blocks of inputs and of outputs,
 * `gralora_A` (N, in/N, r) and `gralora_B` (N, r, out/N), and, with hybrid_r = h > 0, a plain
 * low-rank pair `gralora_A_general.weight` (h, in) and `gralora_B_general.weight` (out, h). PEFT's
 * get_delta_weight gives output block j and input block n the rank-r/N product
 *   ΔW[j·out/N + o, n·in/N + i] = Σ_s gralora_B[j, n·r/N + s, o] · gralora_A[n, i, j·r/N + s]
 * (s < r/N), adds B_general·A_general, and scales the sum by alpha/(r + h). Every term is one
 * product of a column over one output block and a row over one input block, so ΔW is merged as the
 * exact rank N·r + h product of factors that are the stored values put in their places.
 * GraLoRA adapts nn.Linear and GPT-2's Conv1D (fan_in_fan_out) only.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

export const peftGralora: Algorithm = {
  name: 'peft-gralora',
  title: 'GraLoRA (PEFT)',
  defines: ['gralora_A', 'gralora_B'],
  roles: ['gralora_A', 'gralora_B', 'gralora_A_general', 'gralora_B_general'],

  build(tensors, context) {
    const o = context.options;
    if (!o || typeof o.gralora_k !== 'number' || typeof o.hybrid_r !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT GraLoRA tensors (gralora_A, gralora_B) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const a = tensors.get('gralora_A'), b = tensors.get('gralora_B');
    const ag = tensors.get('gralora_A_general'), bg = tensors.get('gralora_B_general');
    if (!a || !b) {
      context.report('UNSUPPORTED_FORMAT', `needs gralora_A and gralora_B; ${a ? 'gralora_B' : 'gralora_A'} is missing`);
      return null;
    }
    const n = o.gralora_k, r = o.r as number, h = o.hybrid_r;
    if (a.shape.length !== 3 || b.shape.length !== 3 || a.shape[0] !== n || b.shape[0] !== n || a.shape[2] !== r || b.shape[1] !== r) {
      context.report('SHAPE_MISMATCH', `gralora_A ${fmtShape(a.shape)} and gralora_B ${fmtShape(b.shape)} are not (gralora_k, in/gralora_k, r) and (gralora_k, r, out/gralora_k) for the config's gralora_k = ${n} and r = ${r}`);
      return null;
    }
    if (r % n !== 0) {
      context.report('BAD_CONFIG', `r = ${r} is not a multiple of gralora_k = ${n}, which PEFT requires`);
      return null;
    }
    const out = n * b.shape[2], inF = n * a.shape[1];
    if (h > 0 ? !ag || !bg : ag || bg) {
      context.report('UNSUPPORTED_FORMAT', h > 0 ? `has hybrid_r = ${h} in the config but not both gralora_A_general.weight and gralora_B_general.weight` : 'has gralora_A_general/gralora_B_general but the config\'s hybrid_r is 0');
      return null;
    }
    if (ag && bg && (ag.shape.length !== 2 || bg.shape.length !== 2 || ag.shape[0] !== h || ag.shape[1] !== inF || bg.shape[0] !== out || bg.shape[1] !== h)) {
      context.report('SHAPE_MISMATCH', `gralora_A_general.weight ${fmtShape(ag.shape)} and gralora_B_general.weight ${fmtShape(bg.shape)} are not (hybrid_r, ${inF}) and (${out}, hybrid_r) for hybrid_r = ${h}`);
      return null;
    }
    const alpha = context.alpha ?? 64;
    const rank = n * r + h;
    return {
      ...moduleBasics(context),
      algorithm: peftGralora.name,
      kind: 'linear',
      deltaShape: [out, inF],
      rank,
      alpha,
      scale: alpha / (r + h),
      scaleOrigin: { kind: 'alpha', rule: 'α/(r + h)', stated: context.alpha !== undefined },
      tensors: { a, b, ...(ag && bg ? { ag, bg } : {}) },
      update: { kind: 'low-rank', rank },
      fanInFanOut: false,
      options: o,
    };
  },

  async load(file, module) {
    const { a, b, ag, bg } = module.tensors;
    const [n, inBlock, r] = a.shape;
    const outBlock = b.shape[2];
    const out = n * outBlock, inF = n * inBlock, sub = r / n, h = ag ? ag.shape[0] : 0;
    const rank = n * r + h;
    const [av, bv] = await Promise.all([readValues(file, a), readValues(file, b)]);
    const fa = new Float32Array(rank * inF), fb = new Float32Array(out * rank);
    // Term t = (n·N + j)·r/N + s: input block n, output block j.
    for (let bn = 0; bn < n; bn++) for (let j = 0; j < n; j++) for (let s = 0; s < sub; s++) {
      const t = (bn * n + j) * sub + s;
      for (let i = 0; i < inBlock; i++) fa[t * inF + bn * inBlock + i] = av[(bn * inBlock + i) * r + j * sub + s];
      for (let o = 0; o < outBlock; o++) fb[(j * outBlock + o) * rank + t] = bv[(j * r + bn * sub + s) * outBlock + o];
    }
    if (ag && bg) {
      const [agv, bgv] = await Promise.all([readValues(file, ag), readValues(file, bg)]);
      fa.set(agv, n * r * inF);
      for (let o = 0; o < out; o++) for (let k = 0; k < h; k++) fb[o * rank + n * r + k] = bgv[o * h + k];
    }
    return [{ kind: 'low-rank', a: f32Bytes(fa), b: f32Bytes(fb), rank }];
  },
};
