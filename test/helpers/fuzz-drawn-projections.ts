/**
 * The surface fuzzer's `peft-drawn-projections` world (a property of its own in
 * fuzz-surfaces.test.ts, so that the other worlds' draws for a seed stay as they were): PEFT VeRA
 * and PVeRA folders saved with `save_projection: false`, holding only each module's λ_b and λ_d.
 * PEFT draws the shared projections again when it loads such a folder
 * (VeraModel._init_vera_A_vera_B; PVeRA alike): torch.Generator("cpu").manual_seed(projection_prng_key),
 * A (rows, in_max) then B (out_max, r) by kaiming-uniform, rows = r (VeRA) or 2r (PVeRA: mean and
 * log-variance), in_max and out_max the widest input and output among the wrapped layers. Drawn
 * here: one to four modules of different in/out widths (odd ones, 1 to 47), r = 1 to 128 (past
 * the layers' widths), projection_prng_key small, past 32 bits, negative, at 2⁵³ − 1; λ in f32,
 * bf16 or f16 over an f32, f16 or bf16 base. Hostile: a module landing on no tensor of the base
 * (refused naming it: the width cannot be told), a key past 2⁵³ or past torch's range (refused),
 * NaN in λ_b or λ_d (refused as a NaN result, except in the half of PVeRA's λ_d that its merge
 * leaves out), a λ_d of another length than the config's r gives.
 *
 * The truth: A and B from the plain MT19937 and kaiming-uniform of torch-draws-plain.ts (not the
 * engine's), then PEFT's merge in float64, W += w·(λ_b ⊙ B[:out, :r])·(λ_d[:r] ⊙ A[:r, :in]).
 */
import fc from 'fast-check';
import { seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { convertRest, OUT_DTYPE, pastDtype, type Decoded, type ExpectedMerge, type OutDtype, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';
import { low32, plainKaiming, plainMt } from './torch-draws-plain.js';

/** Where a module sits, its PEFT target name last. */
const PLACES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const RANKS = [1, 1, 2, 3, 4, 5, 8, 16, 33, 64, 128];
/** projection_prng_key as the JSON text holds it: those PEFT (torch) takes, and those it refuses. */
const KEYS = ['0', '7', '42', '4294967301', '-1', '-1099511627779', '9007199254740991', '-9007199254740991'];
const HOSTILE_KEYS = ['18446744073709551615', '18446744073709551616', '-9223372036854775809', '9007199254740993', '1e3', '2.5'];

type Hostile = 'nowhere' | 'key' | 'nan-lambda-b' | 'nan-lambda-d' | 'lambda-d-length';
const HOSTILES: Hostile[] = ['nowhere', 'key', 'nan-lambda-b', 'nan-lambda-d', 'lambda-d-length'];

const invalid = (why: string, names?: string): Truth => ({ kind: 'invalid', why, ...(names !== undefined ? { names } : {}) });
const unknown = (why: string): Truth => ({ kind: 'unknown', why });
const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, t) => Math.max(m, Math.abs(t)), 0);

/**
 * projection_prng_key from the config's text, as Python's json reads it and torch's manual_seed
 * takes it: an int in [−2⁶³, 2⁶⁴) (its low 32 bits seed the generator), anything else refused
 * (a float: manual_seed expects an int; past the range: RuntimeError).
 */
function keyOf(text: string): { seed: number } | { refused: string } | undefined {
  const m = /"projection_prng_key":(-?[0-9.eE+-]+)/.exec(text);
  if (!m) return undefined;
  if (!/^-?(0|[1-9][0-9]*)$/.test(m[1])) return { refused: `projection_prng_key ${m[1]} is a float` };
  const k = BigInt(m[1]);
  if (k < -(2n ** 63n) || k >= 2n ** 64n) return { refused: `projection_prng_key ${m[1]} is past torch's seed range` };
  return { seed: low32(k) };
}

export const drawnProjectionsWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    pvera: fc.boolean(),
    seed: fc.integer(),
    count: fc.integer({ min: 1, max: 4 }),
    rPick: fc.nat(RANKS.length - 1),
    keyPick: fc.nat(KEYS.length - 1),
    wDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'),
    lDtype: fc.constantFrom<FixtureDType>('F32', 'F32', 'BF16', 'F16'),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.record({ which: fc.constantFrom(...HOSTILES), pick: fc.nat() }) }),
  })
  .map(({ pvera, seed, count, rPick, keyPick, wDtype, lDtype, hostile }) => {
    const rand = seededRandom(seed);
    const int = (n: number) => Math.floor(rand() * n);
    const vals = (n: number, scale = 0.5) => Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
    const r = RANKS[rPick];
    const rows = pvera ? 2 * r : r;
    const prefix = pvera ? 'pvera' : 'vera';
    // Modules at distinct places (layer 0 or 1), each of its own (out, in), odd widths among them.
    const places = new Set<string>();
    while (places.size < count) places.add(`model.layers.${int(2)}.${PLACES[int(PLACES.length)]}`);
    const modules = [...places].sort().map((path) => ({ path, out: 1 + int(47), in: 1 + int(47) }));
    const targets = [...new Set(modules.map((m) => m.path.split('.').pop()!))].sort();
    const saved = (path: string, role: string) => `base_model.model.${path}.${prefix}_${role}`;
    let keyText = KEYS[keyPick];
    const adapter: FixtureTensor[] = [];
    for (const m of modules) {
      adapter.push({ name: saved(m.path, 'lambda_b'), dtype: lDtype, shape: [m.out], data: vals(m.out, 2) });
      adapter.push({ name: saved(m.path, 'lambda_d'), dtype: lDtype, shape: [rows], data: vals(rows, 2) });
    }
    let hostileName = '';
    if (hostile) {
      const m = modules[hostile.pick % modules.length];
      switch (hostile.which) {
        case 'nowhere': {
          // λ for a layer the base does not have (layer 5): PEFT's widths would not include it.
          const path = `model.layers.5.${PLACES[hostile.pick % PLACES.length]}`;
          adapter.push({ name: saved(path, 'lambda_b'), dtype: lDtype, shape: [9], data: vals(9) }, { name: saved(path, 'lambda_d'), dtype: lDtype, shape: [rows], data: vals(rows) });
          hostileName = `a module on no tensor: ${path}`;
          break;
        }
        case 'key':
          keyText = HOSTILE_KEYS[hostile.pick % HOSTILE_KEYS.length];
          hostileName = `projection_prng_key ${keyText}`;
          break;
        case 'nan-lambda-b': case 'nan-lambda-d': {
          const t = adapter.find((x) => x.name === saved(m.path, hostile.which === 'nan-lambda-b' ? 'lambda_b' : 'lambda_d'))!;
          const data = Array.from(t.data as number[]);
          const at = hostile.pick % data.length;
          data[at] = NaN;
          t.data = data;
          hostileName = `NaN in ${m.path}'s ${hostile.which === 'nan-lambda-b' ? 'λ_b' : 'λ_d'}[${at}]`;
          break;
        }
        case 'lambda-d-length': {
          const t = adapter.find((x) => x.name === saved(m.path, 'lambda_d'))!;
          const n = rows + (hostile.pick % 2 ? 1 : -1);
          if (n >= 1) {
            t.shape = [n];
            t.data = vals(n, 2);
            hostileName = `${m.path}'s λ_d of ${n}`;
          }
          break;
        }
      }
    }
    const config: Record<string, unknown> = {
      peft_type: pvera ? 'PVERA' : 'VERA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', peft_version: pvera ? '0.19.0' : '0.17.1', revision: null,
      auto_mapping: null, inference_mode: true, r, target_modules: targets, projection_prng_key: { rawJson: keyText }, save_projection: false, d_initial: 0.1,
      fan_in_fan_out: false, bias: 'none', modules_to_save: null, init_weights: true, layers_to_transform: null, layers_pattern: null,
      ...(pvera ? { pvera_dropout: 0.0, sample_at_inference: false, generator_seed: null } : { vera_dropout: 0.0 }),
    };
    const base: FixtureTensor[] = modules.map((m) => ({ name: `${m.path}.weight`, dtype: wDtype, shape: [m.out, m.in], data: vals(m.out * m.in, 1) }));
    base.push({ name: 'model.norm.weight', dtype: wDtype, shape: [7], data: vals(7, 1) });
    const files: Record<string, SpecFile> = {
      'adapter/adapter_config.json': { kind: 'json', value: config },
      'adapter/adapter_model.safetensors': { kind: 'safetensors', tensors: adapter },
      'base.safetensors': { kind: 'safetensors', tensors: base, metadata: { format: 'pt' } },
    };
    const shapes = modules.map((m) => `${m.path} ${m.out}×${m.in}`).join(', ');
    const world: SurfaceWorld = {
      name: `PEFT ${pvera ? 'PVeRA' : 'VeRA'} without projections${hostile && hostileName ? ` (${hostile.which})` : ''}`,
      files, base: 'base.safetensors', adapter: 'adapter', out: 'merged.safetensors', refusalsChecked: true, outDtypes: ['bf16', 'f16', 'f32'], configReads: ['projection_prng_key'],
      truth: (d: Decoded, w: number, outDtype?: OutDtype): Truth => {
        const text = d.json.get('adapter/adapter_config.json')!;
        let cfg: Record<string, unknown>;
        try {
          cfg = JSON.parse(text) as Record<string, unknown>;
        } catch {
          return unknown('adapter_config.json is not JSON');
        }
        if (cfg.r !== r) return unknown(`r ${JSON.stringify(cfg.r)}`);
        const key = keyOf(text);
        if (!key) return unknown('projection_prng_key not found in the text');
        if ('refused' in key) return invalid(key.refused, 'projection_prng_key');
        const lambda = (path: string, role: string) => d.tensors.get(`adapter/${saved(path, role)}`);
        // Every module the adapter holds must land on a base tensor: PEFT's widths are those of the layers it wraps.
        const held = [...d.tensors.keys()].filter((k) => k.startsWith('adapter/') && k.endsWith(`${prefix}_lambda_b`)).map((k) => k.slice('adapter/base_model.model.'.length, -`.${prefix}_lambda_b`.length));
        for (const path of held) if (!d.tensors.has(`/${path}.weight`)) return invalid(`${path} lands on no tensor`, path);
        for (const m of modules) {
          const ld = lambda(m.path, 'lambda_d')!;
          if (ld.values.length !== rows) return invalid(`${m.path}: λ_d of ${ld.values.length}, the config's r gives ${rows}`, m.path);
        }
        const inMax = Math.max(...modules.map((m) => m.in)), outMax = Math.max(...modules.map((m) => m.out));
        const next = plainMt(key.seed);
        const A = plainKaiming(next, rows, inMax);
        const B = plainKaiming(next, outMax, r);
        const merged = new Map<string, ExpectedMerge>();
        for (const m of modules) {
          const lb = lambda(m.path, 'lambda_b')!.values, ld = lambda(m.path, 'lambda_d')!.values;
          const W = d.tensors.get(`/${m.path}.weight`)!.values;
          const values = new Float64Array(m.out * m.in);
          let mag = 0;
          for (let o = 0; o < m.out; o++) {
            for (let i = 0; i < m.in; i++) {
              let s = 0, t = 0;
              for (let c = 0; c < r; c++) {
                const x = lb[o] * B[o * r + c] * ld[c] * A[c * inMax + i];
                s += x;
                t += Math.abs(x);
              }
              values[o * m.in + i] = W[o * m.in + i] + w * s;
              mag = Math.max(mag, Math.abs(w) * t);
            }
          }
          merged.set(`/${m.path}.weight`, { values, magnitude: maxAbs(W) + mag, ...(outDtype ? { dtype: OUT_DTYPE[outDtype] } : {}) });
        }
        if (!outDtype) return { kind: 'expected', merged };
        return pastDtype(merged, outDtype) ?? convertRest(d, base.map((t) => t.name), (n) => `/${n}`, () => false, merged, outDtype) ?? { kind: 'expected', merged };
      },
    };
    // What a failing case prints as (the seed and path reproduce it).
    return Object.assign(world, { [fc.toStringMethod]: () => `r ${r}, key ${keyText}, ${shapes}${hostileName ? `; ${hostileName}` : ''}` });
  });

/** Cases of this world alone: no mutations (its hostile files are its own), every command. */
export const drawnProjectionCases = (command: fc.Arbitrary<{ command: 'merge' | 'dry-run' | 'inspect-base' | 'inspect-adapter'; weight: number; dtype?: OutDtype }>) => fc
  .record({ world: drawnProjectionsWorld, command })
  .map(({ world, command: { dtype, ...drawn } }) => ({ world, mutations: [], command: dtype && drawn.command === 'merge' ? { ...drawn, dtype } : drawn }));
