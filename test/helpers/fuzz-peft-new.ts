/**
 * The surface fuzzer's `peft-new` world (fuzz-surfaces.ts draws it): PEFT adapter folders
 * (adapter_config.json + adapter_model.safetensors with PEFT's key names) of the methods added
 * after 0.18 — BEFT, Super-Tuning (sparse, and "Supra" with its LoRA pair), TinyLoRA, PVeRA,
 * UniLoRA (saved indices) — and BD-LoRA (`use_bdlora` in a LoraConfig), on a Qwen2-style layer
 * (q, k, v with biases, o without). Some cases carry a config value or tensor the README says is
 * refused (a rank or size the tensors do not have, lora_alpha without r, an index past the weight or
 * past theta_d, BEFT on a layer without a bias, nblocks that do not fit, a plain module under
 * match_strict); the fuzzer's json edits change configs further.
 *
 * The truth is PEFT's merge in float64, written from its layer code (tuners/<method>/layer.py):
 *   BEFT          b += w·beft_bias
 *   Super-Tuning  W.flatten().scatter_add_(indices, values); W += (lora_alpha / r)·B·A (lora_alpha None: 2r)
 *   TinyLoRA      W += w·B·(Σ_i v_i·P_i)·A, the rank min(r, out, in)
 *   PVeRA         W += w·(λ_b ⊙ B[:out, :r])·(λ_d[:r] ⊙ A[:r, :in])
 *   UniLoRA       W += w·(θ[I_B] ⊙ S_B)·(θ[I_A] ⊙ S_A)
 *   BD-LoRA       W += w·(α/r)·B·A with A = block_diag of lora_A's N row chunks (bd_a) or
 *                 B = block_diag of lora_B's N row chunks (bd_b)
 * (all times the user weight w).
 */
import fc from 'fast-check';
import { seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { convertRest, OUT_DTYPE, pastDtype, type Decoded, type ExpectedMerge, type OutDtype, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

type Method = 'BEFT' | 'SUPERTUNING' | 'SUPRA' | 'TINYLORA' | 'PVERA' | 'UNILORA' | 'BDLORA';
const METHODS: Method[] = ['BEFT', 'SUPERTUNING', 'SUPRA', 'TINYLORA', 'PVERA', 'UNILORA', 'BDLORA'];

const L = 'model.layers.0.self_attn';
/** Qwen2's attention: q, k, v with biases, o without; (out, in), none square. */
const LAYERS: Record<string, [number, number]> = { q_proj: [8, 6], k_proj: [4, 6], v_proj: [4, 6], o_proj: [6, 8] };
const BIASED = new Set(['q_proj', 'k_proj', 'v_proj']);
const saved = (m: string, p: string) => `base_model.model.${L}.${m}.${p}`;
const baseKey = (m: string) => `/${L}.${m}.weight`;

const common = (peftType: string, targets: string[], fields: object) => ({
  peft_type: peftType, task_type: 'CAUSAL_LM', base_model_name_or_path: 'Qwen/Qwen2.5-0.5B', peft_version: '0.19.1', revision: null, auto_mapping: null,
  inference_mode: true, target_modules: targets, modules_to_save: null, ...fields,
});

type Hostile = { field: string; value: unknown } | { tensor: 'index past' | 'beft on o_proj' | 'plain under strict' };

/**
 * The truth under `--dtype`: merged values rounded once to it (refused past it), every other float
 * tensor of the base (`names` in component `component`) rounded once to it.
 */
function withDtype(d: Decoded, component: string, names: string[], merged: Map<string, ExpectedMerge>, outDtype: OutDtype | undefined): Truth {
  if (!outDtype) return { kind: 'expected', merged };
  const refused = pastDtype(merged, outDtype) ?? convertRest(d, names, (n) => `${component}/${n}`, () => false, merged, outDtype);
  if (refused) return refused;
  // A base tensor already holding NaN or Inf is converted as it is (the truth's values must be finite).
  if ([...merged.values()].some((e) => e.exact && e.values.some((x) => !Number.isFinite(x)))) return { kind: 'unknown', why: 'a base tensor holding NaN or Inf converted' };
  return { kind: 'expected', merged };
}

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, t) => Math.max(m, Math.abs(t)), 0);
const isPosInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
const invalid = (why: string): Truth => ({ kind: 'invalid', why });
const unknown = (why: string): Truth => ({ kind: 'unknown', why });

/** A (rows, cols) product of (rows, r) and (r, cols) with the sum of |terms|, for the tolerance. */
function product(b: (i: number, k: number) => number, a: (k: number, j: number) => number, rows: number, r: number, cols: number) {
  const d = new Float64Array(rows * cols), abs = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    let s = 0, t = 0;
    for (let k = 0; k < r; k++) { const x = b(i, k) * a(k, j); s += x; t += Math.abs(x); }
    d[i * cols + j] = s; abs[i * cols + j] = t;
  }
  return { d, abs };
}

/** The drawn world: a method, the modules it targets, maybe one refusal. */
export const peftNewWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    method: fc.constantFrom(...METHODS), seed: fc.integer(), wDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'),
    aDtype: fc.constantFrom<FixtureDType>('F32', 'BF16'), two: fc.boolean(), rPick: fc.nat(3), alpha: fc.constantFrom<number | null>(null, 1, 3, 8, -2),
    hostilePick: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.nat() }),
  })
  .map(({ method, seed, wDtype, aDtype, two, rPick, alpha, hostilePick }) => {
    const rand = seededRandom(seed);
    const vals = (n: number, scale = 0.5) => Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
    const int = (n: number) => Math.floor(rand() * n);
    const targets = method === 'BDLORA' ? (two ? ['q_proj', 'o_proj', 'v_proj'] : ['q_proj', 'o_proj']) : two ? ['q_proj', 'v_proj'] : ['q_proj'];
    const adapter: FixtureTensor[] = [];
    let config: Record<string, unknown>;
    let reads: string[] = [];
    const hostiles: Hostile[] = [];
    // Per-method parameters the truth checks against.
    const r = 1 + rPick % 2 + (method === 'TINYLORA' ? rPick : 0);
    const nblocks = 2 + (rPick % 2);
    const bdR = nblocks * (1 + (rPick >> 1));
    const u = 1 + int(3);
    const thetaLen = 4 + int(12);
    const outMax = Math.max(...targets.map((m) => LAYERS[m][0])), inMax = Math.max(...targets.map((m) => LAYERS[m][1]));
    switch (method) {
      case 'BEFT':
        config = common('BEFT', targets, { init_weights: true });
        for (const m of targets) adapter.push({ name: saved(m, 'beft_bias'), dtype: aDtype, shape: [1, LAYERS[m][0]], data: vals(LAYERS[m][0]) });
        hostiles.push({ tensor: 'beft on o_proj' });
        break;
      case 'SUPERTUNING': case 'SUPRA': {
        const supra = method === 'SUPRA';
        config = common('SUPERTUNING', targets, { sparsity: 0.99, select_top: true, r: supra ? r : null, lora_alpha: supra ? alpha : null, lora_dropout: 0.0, init_weights: true, save_precomputed_indices: true });
        reads = ['r', 'lora_alpha'];
        for (const m of targets) {
          const [o, i] = LAYERS[m], n = 1 + int(5);
          const at = Array.from({ length: n }, () => int(o * i));
          adapter.push({ name: saved(m, 'supertuning_values'), dtype: aDtype, shape: [n], data: vals(n) }, { name: saved(m, 'supertuning_indices'), dtype: rand() < 0.5 ? 'I32' : 'I64', shape: [n], data: at });
          if (supra) adapter.push({ name: saved(m, 'supertuning_lora_A.weight'), dtype: aDtype, shape: [r, i], data: vals(r * i) }, { name: saved(m, 'supertuning_lora_B.weight'), dtype: aDtype, shape: [o, r], data: vals(o * r) });
        }
        hostiles.push({ tensor: 'index past' }, { field: 'r', value: supra ? r + 1 : 2 }, { field: 'r', value: supra ? null : 1 }, { field: 'lora_alpha', value: 4 }, { field: 'r', value: '2' });
        break;
      }
      case 'TINYLORA': {
        config = common('TINYLORA', targets, {
          r, u, weight_tying: 1.0, projection_seed: 42, save_projection: true, init_v_bound: 0.02, tinylora_dropout: 0.0, fan_in_fan_out: false, bias: 'none',
          init_weights: true, layers_to_transform: null, layers_pattern: null,
        });
        reads = ['r', 'u'];
        for (const m of targets) {
          const [o, i] = LAYERS[m], k = Math.min(r, o, i);
          adapter.push(
            { name: saved(m, 'tinylora_A'), dtype: aDtype, shape: [k, i], data: vals(k * i) }, { name: saved(m, 'tinylora_B'), dtype: aDtype, shape: [o, k], data: vals(o * k) },
            { name: saved(m, 'tinylora_P'), dtype: 'F32', shape: [u, k, k], data: vals(u * k * k) },
          );
        }
        adapter.push({ name: 'base_model.tinylora_v.0', dtype: 'F32', shape: [u], data: vals(u) });
        hostiles.push({ field: 'u', value: u + 1 }, { field: 'r', value: r + 1 }, { field: 'r', value: 0 }, { field: 'u', value: 'x' });
        break;
      }
      case 'PVERA':
        config = common('PVERA', targets, {
          r, projection_prng_key: 0, save_projection: true, pvera_dropout: 0.0, d_initial: 0.1, fan_in_fan_out: false, bias: 'none', init_weights: true,
          layers_to_transform: null, layers_pattern: null, sample_at_inference: false, generator_seed: null,
        });
        reads = ['r'];
        adapter.push({ name: 'base_model.pvera_A', dtype: 'F32', shape: [2 * r, inMax], data: vals(2 * r * inMax) }, { name: 'base_model.pvera_B', dtype: 'F32', shape: [outMax, r], data: vals(outMax * r) });
        for (const m of targets) adapter.push({ name: saved(m, 'pvera_lambda_b'), dtype: aDtype, shape: [LAYERS[m][0]], data: vals(LAYERS[m][0]) }, { name: saved(m, 'pvera_lambda_d'), dtype: aDtype, shape: [2 * r], data: vals(2 * r) });
        hostiles.push({ field: 'r', value: r + 1 }, { field: 'r', value: null });
        break;
      case 'UNILORA':
        config = common('UNILORA', targets, {
          r, proj_seed: 42, theta_d_length: thetaLen, unilora_dropout: 0.0, fan_in_fan_out: false, bias: 'none', init_theta_d_bound: 0.02, init_weights: true,
          save_indices: true, layers_to_transform: null, layers_pattern: null,
        });
        reads = ['r', 'theta_d_length'];
        for (const m of targets) {
          const [o, i] = LAYERS[m];
          adapter.push(
            { name: saved(m, 'unilora_indices_A'), dtype: 'I64', shape: [r, i], data: Array.from({ length: r * i }, () => int(thetaLen)) },
            { name: saved(m, 'unilora_indices_B'), dtype: 'I64', shape: [o, r], data: Array.from({ length: o * r }, () => int(thetaLen)) },
            { name: saved(m, 'unilora_scales_A'), dtype: aDtype, shape: [r, i], data: vals(r * i) }, { name: saved(m, 'unilora_scales_B'), dtype: aDtype, shape: [o, r], data: vals(o * r) },
          );
        }
        adapter.push({ name: 'base_model.unilora_theta_d', dtype: 'F32', shape: [thetaLen], data: vals(thetaLen) });
        hostiles.push({ tensor: 'index past' }, { field: 'theta_d_length', value: thetaLen + 1 }, { field: 'r', value: r + 1 });
        break;
      case 'BDLORA': {
        const bd = { target_modules_bd_a: ['q_proj'], target_modules_bd_b: ['o_proj'], nblocks, match_strict: !two };
        config = common('LORA', targets, {
          r: bdR, exclude_modules: null, lora_alpha: alpha ?? 8, lora_dropout: 0.05, fan_in_fan_out: false, bias: 'none', use_rslora: rand() < 0.3, init_lora_weights: true,
          layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, use_dora: false, lora_bias: false, target_parameters: null, use_bdlora: bd,
        });
        reads = ['r', 'lora_alpha', 'use_rslora', 'use_bdlora'];
        for (const m of targets) {
          const [o, i] = LAYERS[m];
          const aCols = m === 'q_proj' ? i / nblocks : i, bCols = m === 'o_proj' ? bdR / nblocks : bdR;
          adapter.push({ name: saved(m, 'lora_A.weight'), dtype: aDtype, shape: [bdR, aCols], data: vals(bdR * aCols) }, { name: saved(m, 'lora_B.weight'), dtype: aDtype, shape: [o, bCols], data: vals(o * bCols) });
        }
        hostiles.push({ field: 'nblocks', value: 5 - nblocks }, { field: 'nblocks', value: 1 }, { field: 'r', value: bdR + nblocks });
        if (two) hostiles.push({ tensor: 'plain under strict' });
        break;
      }
    }
    const hostile = hostilePick === null ? null : hostiles[hostilePick % hostiles.length];
    if (hostile && 'field' in hostile) {
      if (hostile.field === 'nblocks' || hostile.field === 'match_strict') (config.use_bdlora as Record<string, unknown>)[hostile.field] = hostile.value;
      else config[hostile.field] = hostile.value;
    } else if (hostile?.tensor === 'index past') {
      const t = adapter.find((x) => x.dtype === 'I32' || x.dtype === 'I64')!;
      const data = Array.from(t.data as number[]);
      data[int(data.length)] = method === 'UNILORA' ? thetaLen : 8 * 6;
      t.data = data;
    } else if (hostile?.tensor === 'beft on o_proj') {
      config.target_modules = [...targets, 'o_proj'];
      adapter.push({ name: saved('o_proj', 'beft_bias'), dtype: aDtype, shape: [1, 6], data: vals(6) });
    } else if (hostile?.tensor === 'plain under strict') (config.use_bdlora as Record<string, unknown>).match_strict = true;

    const base: FixtureTensor[] = [];
    for (const [m, [o, i]] of Object.entries(LAYERS)) {
      base.push({ name: `${L}.${m}.weight`, dtype: wDtype, shape: [o, i], data: vals(o * i, 1) });
      if (BIASED.has(m)) base.push({ name: `${L}.${m}.bias`, dtype: wDtype, shape: [o], data: vals(o, 1) });
    }
    base.push({ name: 'model.layers.0.input_layernorm.weight', dtype: wDtype, shape: [6], data: vals(6, 1) });
    const files: Record<string, SpecFile> = {
      'adapter/adapter_config.json': { kind: 'json', value: config },
      'adapter/adapter_model.safetensors': { kind: 'safetensors', tensors: adapter },
      'base.safetensors': { kind: 'safetensors', tensors: base, metadata: { format: 'pt' } },
    };
    const hostileName = hostile ? ('field' in hostile ? `${hostile.field} ${JSON.stringify(hostile.value)}` : hostile.tensor) : '';
    return {
      name: `PEFT ${method === 'BDLORA' ? 'BD-LoRA' : method === 'SUPRA' ? 'Super-Tuning with r (Supra)' : method} folder${hostileName ? ` (${hostileName})` : ''}`,
      files, base: 'base.safetensors', adapter: 'adapter', out: 'merged.safetensors', refusalsChecked: true, outDtypes: ['bf16', 'f16', 'f32'], configReads: reads,
      truth: (d: Decoded, w: number, outDtype?: OutDtype): Truth => {
        let cfg: Record<string, unknown>;
        try {
          cfg = JSON.parse(d.json.get('adapter/adapter_config.json')!) as Record<string, unknown>;
        } catch {
          return unknown('adapter_config.json is not JSON');
        }
        if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) return unknown('adapter_config.json is no object');
        try {
          JSON.stringify(cfg);
        } catch {
          return unknown('adapter_config.json nests too deep to compare');
        }
        const tensorOf = (name: string) => d.tensors.get(`adapter/${name}`);
        const deltas = new Map<string, { d: Float64Array; abs: Float64Array }>();
        const add = (key: string, d0: Float64Array, abs: Float64Array, s: number) => {
          const cur = deltas.get(key) ?? { d: new Float64Array(d0.length), abs: new Float64Array(d0.length) };
          for (let i = 0; i < d0.length; i++) { cur.d[i] += s * d0[i]; cur.abs[i] += Math.abs(s) * abs[i]; }
          deltas.set(key, cur);
        };
        const mods = (config.target_modules as string[]);
        switch (method) {
          case 'BEFT':
            for (const m of mods) {
              if (!BIASED.has(m)) return invalid(`beft_bias on ${m}, which has no bias (PEFT's merge raises)`);
              const t = tensorOf(saved(m, 'beft_bias'))!;
              add(`/${L}.${m}.bias`, t.values, t.values.map(Math.abs), w);
            }
            break;
          case 'SUPERTUNING': case 'SUPRA': {
            const cr = cfg.r, ca = cfg.lora_alpha;
            if (cr !== null && cr !== undefined && !isPosInt(cr)) return invalid(`r ${JSON.stringify(cr)}`);
            if (ca !== null && ca !== undefined && (typeof ca !== 'number' || !Number.isFinite(ca))) return invalid(`lora_alpha ${JSON.stringify(ca)}`);
            const hasR = isPosInt(cr);
            if (!hasR && typeof ca === 'number') return invalid('lora_alpha set but r is not (SupertuningConfig refuses)');
            if (hasR !== (method === 'SUPRA')) return invalid(hasR ? 'r set but no supertuning_lora_A' : 'supertuning_lora_A but no r');
            for (const m of mods) {
              const [o, i] = LAYERS[m];
              const x = tensorOf(saved(m, 'supertuning_values'))!, at = tensorOf(saved(m, 'supertuning_indices'))!;
              const sparse = new Float64Array(o * i), abs = new Float64Array(o * i);
              for (let k = 0; k < at.values.length; k++) {
                const p = at.values[k];
                if (!(Number.isSafeInteger(p) && p >= 0 && p < o * i)) return invalid(`supertuning_indices entry ${p} outside ${o} × ${i}`);
                sparse[p] += x.values[k]; abs[p] += Math.abs(x.values[k]);
              }
              const unit = sparse.slice();
              if (hasR) {
                const A = tensorOf(saved(m, 'supertuning_lora_A.weight'))!, B = tensorOf(saved(m, 'supertuning_lora_B.weight'))!;
                if (A.shape[0] !== cr) return invalid(`the pair's rank ${A.shape[0]}, the config's r ${cr}`);
                const alphaV = typeof ca === 'number' ? ca : 2 * cr;
                const p = product((a, k) => B.values[a * cr + k], (k, b) => A.values[k * i + b], o, cr, i);
                for (let e = 0; e < unit.length; e++) { unit[e] += (alphaV / cr) * p.d[e]; abs[e] += Math.abs(alphaV / cr) * p.abs[e]; }
              }
              // ΔW formed in float64 and handed to the engine in f32 (README, Super-Tuning row), times the user weight.
              add(baseKey(m), unit.map(Math.fround), abs, w);
            }
            break;
          }
          case 'TINYLORA': {
            const cr = cfg.r, cu = cfg.u;
            if (!isPosInt(cr) || !isPosInt(cu)) return invalid(`r ${JSON.stringify(cr)}, u ${JSON.stringify(cu)}`);
            const v = tensorOf('base_model.tinylora_v.0')!;
            if (cu !== v.values.length) return invalid(`u ${cu}, v of ${v.values.length}`);
            for (const m of mods) {
              const [o, i] = LAYERS[m], k = Math.min(cr, o, i);
              const A = tensorOf(saved(m, 'tinylora_A'))!, B = tensorOf(saved(m, 'tinylora_B'))!, P = tensorOf(saved(m, 'tinylora_P'))!;
              if (A.shape[0] !== k) return invalid(`rank ${A.shape[0]}, the config gives ${k}`);
              const R = new Float64Array(k * k);
              for (let s = 0; s < cu; s++) for (let j = 0; j < k * k; j++) R[j] += v.values[s] * P.values[s * k * k + j];
              // R·A (k, in) formed in float64 and handed to the engine in f32 (README, TinyLoRA row), then B·(R·A).
              const RA = new Float64Array(k * i);
              for (let c = 0; c < k; c++) for (let b = 0; b < i; b++) {
                let acc = 0;
                for (let j = 0; j < k; j++) acc += R[c * k + j] * A.values[j * i + b];
                RA[c * i + b] = Math.fround(acc);
              }
              const p = product((a, c) => B.values[a * k + c], (c, b) => RA[c * i + b], o, k, i);
              // The tolerance's terms: |B|·|v|·|P|·|A| bounded by the product of the maxima.
              const bound = k * k * cu * maxAbs(B.values) * maxAbs(v.values) * maxAbs(P.values) * maxAbs(A.values);
              add(baseKey(m), p.d, p.abs.map(() => bound), w);
            }
            break;
          }
          case 'PVERA': {
            const cr = cfg.r;
            if (!isPosInt(cr)) return invalid(`r ${JSON.stringify(cr)}`);
            const A = tensorOf('base_model.pvera_A')!, B = tensorOf('base_model.pvera_B')!;
            if (B.shape[1] !== cr || A.shape[0] !== 2 * cr) return invalid(`saved rank ${B.shape[1]}, the config's r ${cr}`);
            for (const m of mods) {
              const [o, i] = LAYERS[m];
              const lb = tensorOf(saved(m, 'pvera_lambda_b'))!, ld = tensorOf(saved(m, 'pvera_lambda_d'))!;
              const p = product((a, c) => lb.values[a] * B.values[a * cr + c], (c, b) => ld.values[c] * A.values[c * inMax + b], o, cr, i);
              add(baseKey(m), p.d, p.abs, w);
            }
            break;
          }
          case 'UNILORA': {
            const cr = cfg.r, cl = cfg.theta_d_length;
            if (!isPosInt(cr) || !isPosInt(cl)) return invalid(`r ${JSON.stringify(cr)}, theta_d_length ${JSON.stringify(cl)}`);
            const theta = tensorOf('base_model.unilora_theta_d')!;
            if (cl !== theta.values.length || cr !== r) return invalid(`r ${cr}, theta_d_length ${cl}: the tensors have ${r} and ${theta.values.length}`);
            for (const m of mods) {
              const [o, i] = LAYERS[m];
              const ia = tensorOf(saved(m, 'unilora_indices_A'))!, ib = tensorOf(saved(m, 'unilora_indices_B'))!;
              const sa = tensorOf(saved(m, 'unilora_scales_A'))!, sb = tensorOf(saved(m, 'unilora_scales_B'))!;
              for (const x of [...ia.values, ...ib.values]) if (!(Number.isSafeInteger(x) && x >= 0 && x < cl)) return invalid(`unilora index ${x} outside theta_d's ${cl}`);
              // Each entry of A and B formed in float32, as PEFT forms it (README, UniLoRA row).
              const p = product((a, c) => Math.fround(theta.values[ib.values[a * r + c]] * sb.values[a * r + c]), (c, b) => Math.fround(theta.values[ia.values[c * i + b]] * sa.values[c * i + b]), o, r, i);
              add(baseKey(m), p.d, p.abs, w);
            }
            break;
          }
          case 'BDLORA': {
            const cr = cfg.r, ca = cfg.lora_alpha, rs = cfg.use_rslora, bd = cfg.use_bdlora;
            if (!isPosInt(cr)) return typeof cr === 'number' || typeof cr === 'string' || cr === null ? invalid(`r ${JSON.stringify(cr)}`) : unknown(`r ${JSON.stringify(cr)}`);
            if (typeof ca !== 'number' || !Number.isFinite(ca)) return unknown(`lora_alpha ${JSON.stringify(ca)}`);
            if (rs !== undefined && rs !== null && typeof rs !== 'boolean') return unknown(`use_rslora ${JSON.stringify(rs)}`);
            if (bd === null || (typeof bd === 'object' && !Array.isArray(bd) && Object.keys(bd).length === 0)) return invalid('no use_bdlora: the saved block-diagonal factors do not fit a plain LoRA');
            if (typeof bd !== 'object' || Array.isArray(bd)) return unknown(`use_bdlora ${JSON.stringify(bd)}`);
            const b = bd as Record<string, unknown>;
            if (JSON.stringify(b.target_modules_bd_a) !== '["q_proj"]' || JSON.stringify(b.target_modules_bd_b) !== '["o_proj"]' || Object.keys(b).length !== 4) return unknown('use_bdlora targets changed');
            if (typeof b.match_strict !== 'boolean') return unknown(`match_strict ${JSON.stringify(b.match_strict)}`);
            if (b.nblocks !== nblocks) return typeof b.nblocks === 'number' || typeof b.nblocks === 'string' || b.nblocks === null ? invalid(`nblocks ${JSON.stringify(b.nblocks)}: the factors are saved for ${nblocks}`) : unknown(`nblocks ${JSON.stringify(b.nblocks)}`);
            if (b.match_strict && mods.includes('v_proj')) return invalid('v_proj matches neither bd_a nor bd_b under match_strict');
            if (cr !== bdR) return invalid(`r ${cr}, the factors' rank ${bdR}`);
            const s = ca / (rs ? Math.sqrt(cr) : cr);
            for (const m of mods) {
              const [o, i] = LAYERS[m];
              const A = tensorOf(saved(m, 'lora_A.weight'))!, B = tensorOf(saved(m, 'lora_B.weight'))!;
              // block_diag of N row chunks: entry (row, col) nonzero where row's block = col's block.
              const aAt = (k: number, j: number) => {
                if (m !== 'q_proj') return A.values[k * i + j];
                const w0 = i / nblocks;
                return Math.floor(k / (bdR / nblocks)) === Math.floor(j / w0) ? A.values[k * w0 + (j % w0)] : 0;
              };
              const bAt = (a: number, k: number) => {
                if (m !== 'o_proj') return B.values[a * bdR + k];
                const w0 = bdR / nblocks;
                return Math.floor(a / (o / nblocks)) === Math.floor(k / w0) ? B.values[a * w0 + (k % w0)] : 0;
              };
              const p = product(bAt, aAt, o, bdR, i);
              add(baseKey(m), p.d, p.abs, w * s);
            }
            break;
          }
        }
        const merged = new Map<string, ExpectedMerge>();
        for (const [key, { d: dd, abs }] of deltas) {
          const t = d.tensors.get(key)!;
          merged.set(key, { values: t.values.map((x, k) => x + dd[k]), magnitude: maxAbs(t.values) + maxAbs(abs), ...(outDtype ? { dtype: OUT_DTYPE[outDtype] } : {}) });
        }
        return withDtype(d, '', base.map((t) => t.name), merged, outDtype);
      },
    } satisfies SurfaceWorld;
  });
