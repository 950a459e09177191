/**
 * The fuzzer's inputs: small valid worlds (a base model plus a PEFT or kohya adapter, with the real
 * key names and shapes of their layouts), mutations of their bytes, headers, values and configs,
 * and command lines. Everything is built from fast-check values, so a failing case shrinks and
 * reproduces from its seed.
 */
import fc from 'fast-check';
import { ALL_FIXTURE_DTYPES, buildRawSafetensors, buildSafetensors, encodeValues, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { editedText, textEdit, type TextEdit } from './json-text-edits.js';

export type FloatName = 'F32' | 'F16' | 'BF16';

export interface World {
  kind: 'peft' | 'kohya';
  base: FixtureTensor[];
  /** Adapter tensors (PEFT: adapter_model.safetensors; kohya: the one file). */
  adapter: FixtureTensor[];
  /** PEFT config as an object (mutations edit it before it is written). */
  config: Record<string, unknown>;
}

/** A mutation of one input; applied in order. */
export type Mutation =
  | { op: 'flip'; file: 'base' | 'adapter' | 'config'; at: number[] }
  | { op: 'truncate'; file: 'base' | 'adapter' | 'config'; at: number }
  | { op: 'header'; file: 'base' | 'adapter'; tensor: number; edit: HeaderEdit }
  | { op: 'prefix'; file: 'base' | 'adapter'; length: bigint }
  | { op: 'value'; file: 'base' | 'adapter'; tensor: number; index: number; value: number }
  | { op: 'config'; field: string; value: unknown }
  | { op: 'text'; file: 'base' | 'adapter' | 'config'; at: number; edit: TextEdit };

export type HeaderEdit =
  | { field: 'dtype'; value: string }
  | { field: 'shape'; dim: number; value: unknown }
  | { field: 'offsets'; which: 0 | 1; value: unknown }
  | { field: 'name'; value: string }
  | { field: 'delete' }
  | { field: 'duplicate' }
  | { field: 'extra'; value: unknown }
  | { field: 'metadata'; value: unknown };

export interface Command {
  command: 'merge' | 'dry-run' | 'inspect-base' | 'inspect-adapter';
  dtype?: 'f32' | 'f16' | 'bf16';
  weight?: string;
}

export interface FuzzCase {
  world: World;
  mutations: Mutation[];
  command: Command;
}

const floatDtype = fc.constantFrom<FloatName>('F32', 'F16', 'BF16');

/**
 * A value in [-1, 1]: mostly any double (spread over the exponents), sometimes one where a rounding
 * rule decides: a midpoint of the f16, bf16, e4m3 or e5m2 grid (ties go to even), a multiple of
 * half f16's subnormal step (subnormal results and their midpoints), or a power of two (factors
 * whose products land a merged value exactly on a midpoint).
 */
export const roundingValue: fc.Arbitrary<number> = fc.oneof(
  { weight: 4, arbitrary: fc.double({ min: -1, max: 1, noNaN: true }) },
  {
    weight: 1,
    arbitrary: fc.record({ bits: fc.constantFrom(11, 8, 4, 3), m: fc.nat(), e: fc.nat(12), neg: fc.boolean() })
      // (2M + 1) / 2^(bits + 1) with M of `bits` bits: halfway between two neighbours of that precision.
      .map(({ bits, m, e, neg }) => (neg ? -1 : 1) * (2 * (2 ** (bits - 1) + (m % 2 ** (bits - 1))) + 1) * 2 ** (-bits - 1 - e)),
  },
  { weight: 1, arbitrary: fc.integer({ min: -2047, max: 2047 }).map((k) => k * 2 ** -25) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(14), fc.boolean()).map(([k, neg]) => (neg ? -1 : 1) * 2 ** -k) },
);
const values = (n: number) => fc.array(roundingValue, { minLength: n, maxLength: n });

/** A Llama-like base with a PEFT adapter on q_proj and up_proj (out ≠ in, so a transposed read cannot pass). */
const peftWorld: fc.Arbitrary<World> = fc
  .record({
    qDtype: floatDtype, upDtype: floatDtype, normDtype: floatDtype, aDtype: floatDtype, bDtype: floatDtype,
    r: fc.integer({ min: 1, max: 3 }), alpha: fc.constantFrom(1, 2, 4, 8, 16), rslora: fc.boolean(), up: fc.boolean(),
    replaceNorm: fc.boolean(), seed: values(64),
  })
  .map(({ qDtype, upDtype, normDtype, aDtype, bDtype, r, alpha, rslora, up, replaceNorm, seed }) => {
    const v = (n: number, salt: number) => Array.from({ length: n }, (_, i) => seed[(i * 7 + salt) % 64] * (1 + ((i * 13 + salt) % 5) / 7));
    const base: FixtureTensor[] = [
      { name: 'model.layers.0.self_attn.q_proj.weight', dtype: qDtype, shape: [6, 8], data: v(48, 1) },
      { name: 'model.layers.0.mlp.up_proj.weight', dtype: upDtype, shape: [10, 8], data: v(80, 2) },
      { name: 'model.norm.weight', dtype: normDtype, shape: [8], data: v(8, 3) },
      { name: 'model.rotary.inv_freq_ids', dtype: 'I32', shape: [3], data: [1, 2, 3] },
    ];
    const module = (path: string, out: number, salt: number): FixtureTensor[] => [
      { name: `base_model.model.${path}.lora_A.weight`, dtype: aDtype, shape: [r, 8], data: v(r * 8, salt) },
      { name: `base_model.model.${path}.lora_B.weight`, dtype: bDtype, shape: [out, r], data: v(out * r, salt + 1) },
    ];
    const adapter = [...module('model.layers.0.self_attn.q_proj', 6, 5), ...(up ? module('model.layers.0.mlp.up_proj', 10, 9) : [])];
    const config: Record<string, unknown> = { peft_type: 'LORA', r, lora_alpha: alpha, target_modules: ['q_proj', 'up_proj'] };
    if (rslora) config.use_rslora = true;
    if (replaceNorm) {
      adapter.push({ name: 'base_model.model.model.norm.modules_to_save.default.weight', dtype: 'F32', shape: [8], data: v(8, 13) });
      config.modules_to_save = ['norm'];
    }
    return { kind: 'peft' as const, base, adapter, config };
  });

/** A diffusers UNet fragment with a kohya LoRA (lora_unet_…, lora_down/lora_up, optional alpha). */
const kohyaWorld: fc.Arbitrary<World> = fc
  .record({
    wDtype: floatDtype, fDtype: floatDtype, r: fc.integer({ min: 1, max: 3 }),
    alpha: fc.option(fc.record({ dtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16', 'F64'), value: fc.constantFrom(0, 1, 2, 0.5, 8) }), { nil: undefined }),
    seed: values(32),
  })
  .map(({ wDtype, fDtype, r, alpha, seed }) => {
    const v = (n: number, salt: number) => Array.from({ length: n }, (_, i) => seed[(i * 5 + salt) % 32] * (1 + ((i * 3 + salt) % 4) / 5));
    const base: FixtureTensor[] = [
      { name: 'down_blocks.0.attentions.0.proj_in.weight', dtype: wDtype, shape: [6, 8], data: v(48, 1) },
      { name: 'mid_block.attentions.0.proj_out.weight', dtype: wDtype, shape: [8, 6], data: v(48, 2) },
      { name: 'conv_in.bias', dtype: wDtype, shape: [4], data: v(4, 3) },
    ];
    const module = (key: string, out: number, inF: number, salt: number): FixtureTensor[] => [
      { name: `${key}.lora_down.weight`, dtype: fDtype, shape: [r, inF], data: v(r * inF, salt) },
      { name: `${key}.lora_up.weight`, dtype: fDtype, shape: [out, r], data: v(out * r, salt + 1) },
      ...(alpha ? [{ name: `${key}.alpha`, dtype: alpha.dtype, shape: [], data: [alpha.value] } satisfies FixtureTensor] : []),
    ];
    const adapter = [
      ...module('lora_unet_down_blocks_0_attentions_0_proj_in', 6, 8, 4),
      ...module('lora_unet_mid_block_attentions_0_proj_out', 8, 6, 7),
    ];
    return { kind: 'kohya' as const, base, adapter, config: {} };
  });

const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 3, 8, 2.5, 1e308, -1e308, 1e-300, 2 ** 53, 2 ** 64, '8', '', null, true, false, [], {}, [1, 2], { a: 1 }),
  fc.constantFrom({ '((.*)*)*z': 1 }, { '(a|aa)+$': 2 }, { q_proj: 2 }, { 'model.layers.0.self_attn.q_proj': 4 }, { '.*': 0 }, { '(?=q)q': 1 }, { 'layers\\.\\d+\\.mlp\\..*': 3 }),
  fc.integer({ min: 1, max: 200_000 }).map((depth) => ({ deep: depth })), // replaced by deep nesting when written
  fc.jsonValue({ maxDepth: 2 }),
);

const headerEdit: fc.Arbitrary<HeaderEdit> = fc.oneof(
  fc.record({ field: fc.constant('dtype' as const), value: fc.constantFrom(...ALL_FIXTURE_DTYPES, 'F12', 'f32', '') }),
  fc.record({ field: fc.constant('shape' as const), dim: fc.nat(3), value: fc.oneof(fc.constantFrom(0, 1, -1, 2.5, 1e20, 2 ** 53, '8', null, [2]), fc.nat(20)) }),
  fc.record({ field: fc.constant('offsets' as const), which: fc.constantFrom(0 as const, 1 as const), value: fc.oneof(fc.constantFrom(-4, 1e300, 2 ** 62, '0', null, 0.5), fc.nat(400)) }),
  fc.record({ field: fc.constant('name' as const), value: fc.constantFrom('', '__metadata__', 'model.layers.0.self_attn.q_proj.weight', 'lora_te_x.lora_up.weight', 'x'.repeat(5000), 'base_model.model.model.norm.weight') }),
  fc.record({ field: fc.constant('delete' as const) }),
  fc.record({ field: fc.constant('duplicate' as const) }),
  fc.record({ field: fc.constant('extra' as const), value: weird }),
  fc.record({ field: fc.constant('metadata' as const), value: weird }),
);

const fileOf = fc.constantFrom<'base' | 'adapter'>('base', 'adapter');
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ op: fc.constant('flip' as const), file: fc.constantFrom<'base' | 'adapter' | 'config'>('base', 'adapter', 'config'), at: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), file: fc.constantFrom<'base' | 'adapter' | 'config'>('base', 'adapter', 'config'), at: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('header' as const), file: fileOf, tensor: fc.nat(8), edit: headerEdit }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('prefix' as const), file: fileOf, length: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('value' as const), file: fileOf, tensor: fc.nat(8), index: fc.nat(100),
      value: fc.constantFrom(NaN, Infinity, -Infinity, 1e5, 65504, 70000, 1e38, 3.4e38, -0, 1e-40, 1e-8),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('text' as const), file: fc.constantFrom<'base' | 'adapter' | 'config'>('base', 'adapter', 'config'), at: fc.nat(), edit: textEdit }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('config' as const),
      field: fc.constantFrom('r', 'lora_alpha', 'use_rslora', 'peft_type', 'rank_pattern', 'alpha_pattern', 'modules_to_save', 'fan_in_fan_out', 'use_dora', 'init_lora_weights', 'target_modules', 'lora_bias'),
      value: weird,
    }),
  },
);

const command: fc.Arbitrary<Command> = fc.record(
  {
    command: fc.constantFrom<Command['command']>('merge', 'merge', 'merge', 'merge', 'dry-run', 'inspect-base', 'inspect-adapter'),
    dtype: fc.constantFrom<'f32' | 'f16' | 'bf16'>('f32', 'f16', 'bf16'),
    weight: fc.constantFrom('1', '0', '-0.5', '2.5', '1e30', '40000', '0.001'),
  },
  { requiredKeys: ['command'] },
);

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc.record({
  world: fc.oneof({ weight: 3, arbitrary: peftWorld }, { weight: 1, arbitrary: kohyaWorld }),
  mutations: fc.array(mutation, { maxLength: 3 }),
  command,
});

// --- writing a case's files --------------------------------------------------------------------

export interface CaseFiles {
  base: Uint8Array;
  adapter: Uint8Array;
  /** PEFT only: adapter_config.json's bytes as written. */
  config?: Uint8Array;
}

function deepNesting(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** JSON text of `value`, with `{ deep: n }` written as n nested arrays. */
function jsonOf(value: unknown): string {
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1 && typeof (value as { deep?: unknown }).deep === 'number') {
    return deepNesting((value as { deep: number }).deep);
  }
  return JSON.stringify(value) ?? 'null';
}

/** A safetensors file from tensors with one structured header edit (values encoded as the fixtures do). */
function withHeaderEdit(tensors: FixtureTensor[], index: number, edit: HeaderEdit): Uint8Array {
  const fields: string[] = [];
  const blobs: Uint8Array[] = [];
  let offset = 0;
  const target = tensors.length === 0 ? -1 : index % tensors.length;
  tensors.forEach((t, i) => {
    const bytes = t.data instanceof Uint8Array ? t.data : encodeValues(t.data, t.dtype);
    const entry: Record<string, unknown> = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + bytes.byteLength] };
    let name = t.name;
    let extra = '';
    if (i === target) {
      switch (edit.field) {
        case 'dtype': entry.dtype = edit.value; break;
        case 'shape': (entry.shape as unknown[])[edit.dim % Math.max(1, t.shape.length)] = edit.value; break;
        case 'offsets': (entry.data_offsets as unknown[])[edit.which] = edit.value; break;
        case 'name': name = edit.value; break;
        case 'extra': extra = `,"extra":${jsonOf(edit.value)}`; break;
        default: break;
      }
    }
    if (!(i === target && edit.field === 'delete')) {
      const text = JSON.stringify(entry);
      fields.push(`${JSON.stringify(name)}:${text.slice(0, -1)}${extra}}`);
      if (i === target && edit.field === 'duplicate') fields.push(`${JSON.stringify(`${name}.copy`)}:${text}`);
    }
    blobs.push(bytes);
    offset += bytes.byteLength;
  });
  if (edit.field === 'metadata') fields.unshift(`"__metadata__":${jsonOf(edit.value)}`);
  const data = new Uint8Array(offset);
  let at = 0;
  for (const b of blobs) {
    data.set(b, at);
    at += b.byteLength;
  }
  return buildRawSafetensors(`{${fields.join(',')}}`, data);
}

/** The bytes of every file of a case, with its mutations applied. */
export function writeCase(c: FuzzCase): CaseFiles {
  const tensors = { base: c.world.base.map((t) => ({ ...t })), adapter: c.world.adapter.map((t) => ({ ...t })) };
  const config: Record<string, unknown> = { ...c.world.config };
  const configEdits: string[] = [];
  // Value and config edits change what is written; byte-level edits apply to the written files.
  for (const m of c.mutations) {
    if (m.op === 'value') {
      const list = tensors[m.file];
      if (list.length === 0) continue;
      const t = list[m.tensor % list.length];
      if (t.data instanceof Uint8Array || t.data.length === 0) continue;
      const data = Array.from(t.data);
      data[m.index % data.length] = m.value;
      list[m.tensor % list.length] = { ...t, data };
    } else if (m.op === 'config') {
      config[m.field] = m.value;
      configEdits.push(m.field);
    }
  }
  const files: Record<'base' | 'adapter', Uint8Array> = {
    base: buildSafetensors(tensors.base),
    adapter: buildSafetensors(tensors.adapter),
  };
  let configBytes: Uint8Array | undefined;
  if (c.world.kind === 'peft') {
    configBytes = new TextEncoder().encode(`{${Object.entries(config).map(([k, v]) => `${JSON.stringify(k)}:${jsonOf(v)}`).join(',')}}`);
  }
  const edit = (bytes: Uint8Array, m: Mutation): Uint8Array => {
    switch (m.op) {
      case 'flip': {
        const out = bytes.slice();
        for (const at of m.at) if (out.length > 0) out[at % out.length] ^= 1 << (at % 8);
        return out;
      }
      case 'truncate':
        return bytes.subarray(0, m.at % (bytes.length + 1));
      case 'prefix': {
        const out = bytes.slice();
        if (out.length >= 8) new DataView(out.buffer).setBigUint64(0, m.length, true);
        return out;
      }
      case 'text':
        return editedText(bytes, m.file !== 'config', m.at, m.edit);
      default:
        return bytes;
    }
  };
  for (const m of c.mutations) {
    if (m.op === 'header') files[m.file] = withHeaderEdit(tensors[m.file], m.tensor, m.edit);
    else if (m.op === 'flip' || m.op === 'truncate' || m.op === 'text') {
      // The config's bytes as they are, so that a flip can leave them not UTF-8.
      if (m.file === 'config') {
        if (configBytes !== undefined) configBytes = edit(configBytes, m);
      } else {
        files[m.file] = edit(files[m.file], m);
      }
    } else if (m.op === 'prefix') files[m.file] = edit(files[m.file], m);
  }
  return { base: files.base, adapter: files.adapter, config: configBytes };
}
