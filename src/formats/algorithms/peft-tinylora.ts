/**
 * PEFT TinyLoRA (tuners/tinylora): `tinylora_A` (r, in) and `tinylora_B` (out, r), the base
 * weight's truncated SVD factors (√S shared between them) taken when the adapter was created and
 * saved with it (persistent buffers, which PEFT loads over the ones it recomputes), `tinylora_P`
 * (u, r, r) random projections (saved under save_projection, PEFT's default), and a trained vector
 * v (u) shared by a group of modules, saved once as `base_model.tinylora_v.<group>`. PEFT's
 * get_delta_weight:  ΔW = B · (Σ_i v_i · P_i) · A,  transposed for a Conv1D (fan_in_fan_out); an
 * Embedding's (num_embeddings, dim) weight takes the same ΔW. Nothing reads W as it stands, so it
 * is merged as the rank-r product of B and R·A, R·A formed in float64.
 */
import { fmtShape, unscaledLowRankModule, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';

export const peftTinylora: Algorithm = {
  name: 'peft-tinylora',
  title: 'TinyLoRA (PEFT)',
  defines: ['tinylora_A', 'tinylora_B', 'tinylora_P'],
  roles: ['tinylora_A', 'tinylora_B', 'tinylora_P', 'tinylora_v'],

  build(tensors, context) {
    const o = context.options;
    if (!o || o.tinylora_config !== true) {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT TinyLoRA tensors outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const a = tensors.get('tinylora_A'), b = tensors.get('tinylora_B'), p = tensors.get('tinylora_P'), v = tensors.get('tinylora_v');
    if (!a || !b) {
      context.report('UNSUPPORTED_FORMAT', `needs tinylora_A and tinylora_B (the base weight's SVD factors PEFT saves with the adapter); ${a ? 'tinylora_B' : 'tinylora_A'} is missing`);
      return null;
    }
    if (!p) {
      context.report('UNSUPPORTED_FORMAT', 'has no tinylora_P (saved with save_projection: false): PEFT regenerates these projections from projection_seed with torch.normal, whose values this tool cannot reproduce bit for bit');
      return null;
    }
    if (!v) {
      context.report('UNSUPPORTED_FORMAT', 'has no shared base_model.tinylora_v vector to scale its projections with');
      return null;
    }
    const r = a.shape[0], inF = a.shape[1], out = b.shape[0], u = v.shape[0];
    if (a.shape.length !== 2 || b.shape.length !== 2 || b.shape[1] !== r || v.shape.length !== 1 || p.shape.length !== 3 || p.shape[0] !== u || p.shape[1] !== r || p.shape[2] !== r) {
      context.report('SHAPE_MISMATCH', `tinylora_A ${fmtShape(a.shape)}, tinylora_B ${fmtShape(b.shape)}, tinylora_P ${fmtShape(p.shape)} and tinylora_v ${fmtShape(v.shape)} do not fit together (expected (r, in), (out, r), (u, r, r) and (u))`);
      return null;
    }
    // update_layer keeps min(r, out, in) singular directions; u sizes v and P.
    const keptR = Math.min(o.r as number, out, inF);
    if (r !== keptR || u !== o.u) {
      context.report('BAD_CONFIG', `has rank ${r} and u ${u}, but the config (r ${o.r}, u ${o.u}) gives rank ${keptR} on this (${out}, ${inF}) layer and u ${o.u}`);
      return null;
    }
    return unscaledLowRankModule(context, peftTinylora.name, [out, inF], r, { a, b, p, v });
  },

  async load(file, module) {
    const { a, b, p, v } = module.tensors;
    const [r, inF] = a.shape;
    const u = v.shape[0];
    const [av, bv, pv, vv] = await Promise.all([readValues(file, a), readValues(file, b), readValues(file, p), readValues(file, v)]);
    // R = Σ_i v_i P_i (r × r), then R·A, in float64.
    const rm = new Float64Array(r * r);
    for (let i = 0; i < u; i++) for (let j = 0; j < r * r; j++) rm[j] += vv[i] * pv[i * r * r + j];
    const ra = new Float32Array(r * inF);
    for (let j = 0; j < r; j++) {
      for (let c = 0; c < inF; c++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += rm[j * r + k] * av[k * inF + c];
        ra[j * inF + c] = s;
      }
    }
    return [{ kind: 'low-rank', a: f32Bytes(ra), b: f32Bytes(Float32Array.from(bv)), rank: r }];
  },
};
