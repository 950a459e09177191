/**
 * PEFT GLoRA (tuners/glora, PEFT ≥ 0.20; not LyCORIS's GLoRA, ./glora.ts): a plain nn.Linear's
 * `W' = W + W ⊙ A + B` and `b' = b + b ⊙ D + E + W·C`, as GloraLayer.merge computes both from the
 * original W and b. Each of A, B (config `config_A_B`) is `lora` (`glora_A.Xd` (out, r) ·
 * `glora_A.Xu` (r, in)), `vector` (`glora_A.X` (out, 1), one value per output row, broadcast over
 * the inputs), `constant` (`glora_A.X` (1)) or `none` (the zero buffer `glora_A.zeros` (out, in)
 * PEFT saves). The bias path (C: `config_C`, D and E: `config_D_E`) exists only where the layer has
 * a bias: trained values (`glora_C.Xd` (in, r) · `glora_C.Xu` (r, 1) or `glora_C.X` (in, 1),
 * `glora_D.X` and `glora_E.X` (out) or (1)) make the module's `gloraBias`, which the plan merges into
 * the base bias, b + s·(b ⊙ D + E + W·C) with W the base's weight (gloraBiasPath); its zero buffers
 * (a layer without a bias, or `none`) change nothing and are checked to hold zeros. With config_A_B
 * `none` the weight is left as it is and only the bias changes.
 * The weight part merges as pieces on V (the weight as it stands): `W ⊙ A` as the Hadamard map
 * V += s·V ⊙ (Xd·Xu) or the row scaling V ⊙= 1 + s·a, then `B` as a product added, B = Xd·Xu or
 * b·1ᵀ (a column of ones times the vector or constant). PEFT has no weight for GLoRA: a user weight
 * s scales the added part, `W + s·(W ⊙ A + B)`.
 */
import { fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { readFloat } from '../read-float.js';
import { MergeError } from '../../errors.js';
import type { ModulePiece } from './algorithm.js';
import type { Role } from '../key-forms.js';
import type { SafetensorsFile, TensorEntry } from '../safetensors-types.js';
import type { AdapterModule } from '../adapter.js';
import type { MergeErrorCode } from '../../errors.js';

/** `config_A_B` and `config_C`/`config_D_E` values, in the order peft-methods.ts encodes them as options. */
export const GLORA_FORMS = ['lora', 'vector', 'constant', 'none'] as const;

const WEIGHT_ROLES = ['glora_A_Xd', 'glora_A_Xu', 'glora_A_X', 'glora_A_zeros', 'glora_B_Xd', 'glora_B_Xu', 'glora_B_X', 'glora_B_zeros'] as const;
const BIAS_TRAINED = ['glora_C_Xd', 'glora_C_Xu', 'glora_C_X', 'glora_D_X', 'glora_E_X'] as const;
const BIAS_ZEROS = ['glora_C_zeros', 'glora_D_zeros', 'glora_E_zeros'] as const;
export const PEFT_GLORA_ROLES: readonly Role[] = [...WEIGHT_ROLES, ...BIAS_TRAINED, ...BIAS_ZEROS];

/** A role's tensor name as PEFT saves it (`glora_A_Xd` → `glora_A.Xd`). */
const saved = (role: string) => role.replace(/^(glora_[A-E])_/, '$1.');

export const peftGlora: Algorithm = {
  name: 'peft-glora',
  title: 'GLoRA (PEFT)',
  defines: PEFT_GLORA_ROLES,
  roles: PEFT_GLORA_ROLES,

  build(tensors, context) {
    const o = context.options;
    if (!o || o.glora_config !== true || typeof o.r !== 'number' || typeof o.glora_A_B !== 'number') {
      context.report('UNSUPPORTED_FORMAT', 'has PEFT GLoRA tensors (glora_A, glora_B) outside a PEFT folder with its adapter_config.json');
      return null;
    }
    const trained = BIAS_TRAINED.filter((role) => tensors.has(role));
    const form = GLORA_FORMS[o.glora_A_B];
    const r = o.r;
    const t = (role: string) => tensors.get(role as Role);
    // What each of A and B must hold under config_A_B, as GloraLayer.update_layer builds them.
    const expected: Record<typeof form, string[]> = { lora: ['Xd', 'Xu'], vector: ['X'], constant: ['X'], none: [] };
    for (const side of ['A', 'B']) {
      const present = ['Xd', 'Xu', 'X', 'zeros'].filter((p) => t(`glora_${side}_${p}`));
      const want = expected[form];
      const extra = present.filter((p) => !want.includes(p) && !(form === 'none' && p === 'zeros'));
      const missing = want.filter((p) => !present.includes(p));
      if (extra.length > 0 || missing.length > 0) {
        const name = (p: string) => `glora_${side}.${p}`;
        context.report('BAD_CONFIG', `config_A_B is "${form}", which saves ${want.length > 0 ? want.map(name).join(' and ') : `only the zero buffer ${name('zeros')}`}, but the file ${missing.length > 0 ? `lacks ${missing.map(name).join(' and ')}` : `has ${extra.map(name).join(' and ')}`}`);
        return null;
      }
    }
    let out = -1, inF = -1;
    const fits = (cond: boolean, what: string): boolean => {
      if (!cond) context.report('SHAPE_MISMATCH', what);
      return cond;
    };
    if (form === 'lora') {
      for (const side of ['A', 'B']) {
        const xd = t(`glora_${side}_Xd`)!, xu = t(`glora_${side}_Xu`)!;
        const ok = xd.shape.length === 2 && xu.shape.length === 2 && xd.shape[1] === xu.shape[0];
        if (!fits(ok, `glora_${side}.Xd ${fmtShape(xd.shape)} and glora_${side}.Xu ${fmtShape(xu.shape)} are not (out, r) and (r, in)`)) return null;
        if (xd.shape[1] !== r) {
          context.report('BAD_CONFIG', `glora_${side}.Xd ${fmtShape(xd.shape)} has rank ${xd.shape[1]} but the config's r is ${r}`);
          return null;
        }
        if (out !== -1 && (xd.shape[0] !== out || xu.shape[1] !== inF)) {
          context.report('SHAPE_MISMATCH', `glora_A (${out}, ${inF}) and glora_B (${xd.shape[0]}, ${xu.shape[1]}) are not the same layer's shape`);
          return null;
        }
        out = xd.shape[0];
        inF = xu.shape[1];
      }
    } else if (form === 'vector' || form === 'constant') {
      for (const side of ['A', 'B']) {
        const x = t(`glora_${side}_X`)!;
        const ok = form === 'vector' ? x.shape.length === 2 && x.shape[1] === 1 : x.shape.length === 1 && x.shape[0] === 1;
        if (!fits(ok, `glora_${side}.X ${fmtShape(x.shape)} is not ${form === 'vector' ? '(out, 1), one value per output row' : '(1), one value'} as config_A_B "${form}" saves it`)) return null;
        if (form === 'vector') {
          if (out !== -1 && x.shape[0] !== out) {
            context.report('SHAPE_MISMATCH', `glora_A.X and glora_B.X have ${out} and ${x.shape[0]} rows`);
            return null;
          }
          out = x.shape[0];
        }
      }
    } else if (trained.length === 0) {
      context.report('UNSUPPORTED_FORMAT', 'has config_A_B "none" and no trained bias path, so it changes nothing; leave it out of the merge');
      return null;
    }
    const biasPath = trained.length > 0 ? checkBiasPath(tensors, o, r, context.report) : undefined;
    if (biasPath === null) return null;
    if (biasPath && form !== 'none' && biasPath.out !== -1 && out !== -1 && biasPath.out !== out) {
      context.report('SHAPE_MISMATCH', `the GLoRA bias path's D and E have ${biasPath.out} values, the weight's A and B ${out} rows`);
      return null;
    }
    if (biasPath && form !== 'lora' && inF === -1) inF = biasPath.inF;
    if (biasPath && biasPath.inF !== -1 && biasPath.inF !== inF) {
      context.report('SHAPE_MISMATCH', `the GLoRA bias path's C has ${biasPath.inF} rows, the layer's inputs are ${inF}`);
      return null;
    }
    if (biasPath && out === -1) out = biasPath.out;
    // The zero buffers: (out, in) for A and B under "none", (in, 1) for C, (out) for D and E.
    const zeros: Record<string, TensorEntry> = {};
    for (const role of [...BIAS_ZEROS, 'glora_A_zeros', 'glora_B_zeros']) {
      const z = t(role);
      if (z) zeros[role] = z;
    }
    const bias: Record<string, TensorEntry> = {};
    for (const role of trained) bias[role] = t(role)!;
    return {
      ...moduleBasics(context),
      algorithm: peftGlora.name,
      kind: 'linear',
      // A vector or constant leaves the inputs (and a constant the outputs too) to the base.
      deltaShape: [out, inF],
      rank: form === 'lora' ? r : 1,
      alpha: 1,
      scale: 1,
      tensors: form === 'lora'
        ? { ad: t('glora_A_Xd')!, au: t('glora_A_Xu')!, bd: t('glora_B_Xd')!, bu: t('glora_B_Xu')!, ...zeros, ...bias }
        : form === 'none' ? { ...zeros, ...bias } : { a: t('glora_A_X')!, b: t('glora_B_X')!, ...zeros, ...bias },
      // W ⊙ A reads W: a map of the weight as it stands, on the (out, in) weight of an nn.Linear.
      update: form === 'none' ? { kind: 'none' } : { kind: 'transform', cost: form === 'lora' ? 2 * r + 2 : 3 },
      fanInFanOut: false,
      options: o,
      ...(trained.length > 0 ? { gloraBias: t(trained[0])! } : {}),
    };
  },

  async load(file, module, delta) {
    const t = module.tensors;
    await checkZeros(file, module);
    if (module.update.kind === 'none') return [];
    if (t.ad) {
      return [
        { kind: 'hadamard', a: await readFloat(file, t.au), b: await readFloat(file, t.ad), rank: t.ad.shape[1] },
        { kind: 'low-rank', a: await readFloat(file, t.bu), b: await readFloat(file, t.bd), rank: t.bd.shape[1] },
      ];
    }
    const out = delta?.out ?? module.deltaShape[0], inF = delta?.in ?? module.deltaShape[1];
    if (!(out > 0 && inF > 0)) throw new MergeError('PLAN_INVALID', `${file.source.name}: module "${module.key}": GLoRA's layer shape is not known`);
    const column = (x: Float32Array) => (x.length === 1 ? new Float32Array(out).fill(x[0]) : x);
    const pieces: ModulePiece[] = [
      { kind: 'scale', axis: 'out', w: f32Bytes(column(await readValues(file, t.a))) },
      { kind: 'low-rank', a: f32Bytes(new Float32Array(inF).fill(1)), b: f32Bytes(column(await readValues(file, t.b))), rank: 1 },
    ];
    return pieces;
  },
};

/** The zero buffers PEFT saves for the paths a layer does not train hold zeros. */
async function checkZeros(file: SafetensorsFile, module: AdapterModule): Promise<void> {
  for (const [role, z] of Object.entries(module.tensors)) {
    if (!role.endsWith('_zeros')) continue;
    const values = await readValues(file, z);
    const at = values.findIndex((v) => v !== 0);
    if (at >= 0) {
      throw new MergeError('UNSUPPORTED_FORMAT', `${file.source.name}: module "${module.key}": "${z.name}" holds ${values[at]} at element ${at}; PEFT creates it as zeros and never trains it, so this file was not saved by PEFT's GLoRA`);
    }
  }
}

/**
 * The bias path's tensors against config_C and config_D_E, as GloraLayer.update_layer builds them on a
 * layer with a bias: C `lora` (glora_C.Xd (in, r) · glora_C.Xu (r, 1)) or `vector` (glora_C.X (in, 1)),
 * else the zero buffer glora_C.zeros (in, 1); D and E `vector` (X (out)) or `constant` (X (1)), else
 * zero buffers (out). Its (out, in), -1 where the tensors leave a side open; null after reporting.
 */
function checkBiasPath(
  tensors: ReadonlyMap<Role, TensorEntry>, o: Readonly<Record<string, number | boolean>>, r: number,
  report: (code: MergeErrorCode, message: string) => void,
): { out: number; inF: number } | null {
  const c = GLORA_FORMS[o.glora_C as number] ?? 'lora';
  const de = GLORA_FORMS[o.glora_D_E as number] ?? 'constant';
  const has = (role: string) => tensors.get(role as Role);
  const want: string[] = [...(c === 'lora' ? ['glora_C_Xd', 'glora_C_Xu'] : c === 'vector' ? ['glora_C_X'] : []), ...(de === 'vector' || de === 'constant' ? ['glora_D_X', 'glora_E_X'] : [])];
  const present = BIAS_TRAINED.filter((role) => has(role));
  const extra = present.filter((role) => !want.includes(role));
  const missing = want.filter((role) => !has(role) && !(role.startsWith('glora_C') ? has('glora_C_zeros') : has(role.replace('_X', '_zeros'))));
  if (extra.length > 0 || missing.length > 0) {
    report('BAD_CONFIG', `config_C is "${c}" and config_D_E "${de}", but the file ${missing.length > 0 ? `lacks ${missing.map(saved).join(' and ')}` : `has ${extra.map(saved).join(' and ')}`}`);
    return null;
  }
  let inF = -1, out = -1;
  const xd = has('glora_C_Xd'), xu = has('glora_C_Xu'), cx = has('glora_C_X') ?? has('glora_C_zeros');
  if (xd && xu) {
    if (xd.shape.length !== 2 || xu.shape.length !== 2 || xd.shape[1] !== xu.shape[0] || xu.shape[1] !== 1 || xd.shape[1] !== r) {
      report('SHAPE_MISMATCH', `glora_C.Xd ${fmtShape(xd.shape)} and glora_C.Xu ${fmtShape(xu.shape)} are not (in, r) and (r, 1) with r = ${r}`);
      return null;
    }
    inF = xd.shape[0];
  } else if (cx) {
    if (cx.shape.length !== 2 || cx.shape[1] !== 1) {
      report('SHAPE_MISMATCH', `${cx.name} ${fmtShape(cx.shape)} is not (in, 1)`);
      return null;
    }
    inF = cx.shape[0];
  }
  for (const side of ['D', 'E']) {
    const x = has(`glora_${side}_X`);
    if (!x) continue;
    const ok = de === 'vector' ? x.shape.length === 1 && x.shape[0] >= 1 : x.shape.length === 1 && x.shape[0] === 1;
    if (!ok) {
      report('SHAPE_MISMATCH', `glora_${side}.X ${fmtShape(x.shape)} is not ${de === 'vector' ? '(out), one value per output' : '(1), one value'} as config_D_E "${de}" saves it`);
      return null;
    }
    if (de === 'vector') {
      if (out !== -1 && x.shape[0] !== out) {
        report('SHAPE_MISMATCH', `glora_D.X and glora_E.X have ${out} and ${x.shape[0]} values`);
        return null;
      }
      out = x.shape[0];
    }
  }
  return { out, inF };
}

/**
 * The bias path's values for a layer of `out` outputs and weight W (out × in, row-major, as
 * stored): D and E per output, and E + W·C, in float64 (C = Xd·Xu or X; absent paths zero).
 */
export async function gloraBiasPath(file: SafetensorsFile, module: AdapterModule, out: number, weight: ArrayLike<number>): Promise<{ d: Float64Array; added: Float64Array }> {
  const t = module.tensors;
  const perOutput = async (entry: TensorEntry | undefined) => {
    const v = entry ? await readValues(file, entry) : new Float32Array(0);
    return Float64Array.from({ length: out }, (_, i) => (v.length === 0 ? 0 : v.length === 1 ? v[0] : v[i]));
  };
  const d = await perOutput(t.glora_D_X);
  const added = await perOutput(t.glora_E_X);
  let c: Float64Array | undefined;
  if (t.glora_C_Xd && t.glora_C_Xu) {
    const xd = await readValues(file, t.glora_C_Xd), xu = await readValues(file, t.glora_C_Xu);
    const r = t.glora_C_Xu.shape[0];
    c = Float64Array.from({ length: t.glora_C_Xd.shape[0] }, (_, i) => {
      let sum = 0;
      for (let k = 0; k < r; k++) sum += xd[i * r + k] * xu[k];
      return sum;
    });
  } else if (t.glora_C_X) {
    c = Float64Array.from(await readValues(file, t.glora_C_X));
  }
  if (c) {
    const inF = c.length;
    if (weight.length !== out * inF) throw new MergeError('SHAPE_MISMATCH', `${file.source.name}: module "${module.key}": the GLoRA bias path's C has ${inF} rows, the weight holds ${weight.length / out} inputs`);
    for (let o = 0; o < out; o++) {
      let sum = 0;
      for (let i = 0; i < inF; i++) sum += weight[o * inF + i] * c[i];
      added[o] += sum;
    }
  }
  return { d, added };
}
