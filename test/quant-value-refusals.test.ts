/**
 * ComfyUI per-layer quantized layers (comfy_quant) written in ways ComfyUI's own writer never
 * writes them: each is refused in one line naming the tensor and what is wrong, or (a form that
 * is valid but not read here) copied as it is where nothing changes it and refused, naming it,
 * where a LoRA or --dtype would change it. None of these files may merge silently.
 *
 * The base is Comfy-Org's FLUX.2 dev layout (`model.diffusion_model.` + BFL names, bf16), with
 * `double_blocks.0.img_attn.qkv` stored in one comfy_quant format as ComfyUI's quantizers write
 * it: `<m>.comfy_quant` U8 (the UTF-8 bytes of json.dumps({"format": …})) beside
 * - float8_e4m3fn: `<m>.weight` F8_E4M3 (rows, cols), `<m>.weight_scale` F32 ();
 * - int8_tensorwise: `<m>.weight` I8 (rows, cols), `<m>.weight_scale` F32 () or (rows, 1);
 * - mxfp8: `<m>.weight` F8_E4M3 (rows, cols), both multiples of 32, `<m>.weight_scale` U8 e8m0
 *   exponents per 32 inputs in cuBLAS' swizzled layout, padded to (⌈rows/128⌉·128, ⌈cols/128⌉·4);
 * - nvfp4: `<m>.weight` U8 (rows, cols/2), `<m>.weight_scale` F8_E4M3 per 16 inputs, swizzled,
 *   padded to (⌈rows/128⌉·128, ⌈cols/64⌉·4), `<m>.weight_scale_2` F32 ().
 * The adapters are ai-toolkit's PEFT-form LoRAs (`diffusion_model.` + BFL names).
 */
import { describe, expect, it } from 'vitest';
import { FLUX2, flux2BflTensors, type Flux2Dims } from './helpers/dit-fixtures.js';
import { loraTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, decodeSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { mergeBackends, mergeInMemory, refusalsInMemory, type InMemoryAdapter } from './helpers/merge-backends.js';
import { blockedOrder, e4m3Value } from './helpers/e4m3-by-hand.js';

const rand = seededRandom(60221);
const P = 'model.diffusion_model.';
// h = 32: qkv is 96 × 32, whole mxfp8 blocks (32) and nvfp4 blocks (16) both ways.
const DIMS: Flux2Dims = { ...FLUX2, h: 32, head: 16 };
const { h } = DIMS;
const FILE = 'flux2_dev_mixed.safetensors';
const M = `${P}double_blocks.0.img_attn.qkv`;
const ROWS = 3 * h;
const COLS = h;
const backends = mergeBackends({ cpu: 'default' });

type Format = 'float8_e4m3fn' | 'int8_tensorwise' | 'mxfp8' | 'nvfp4';

/** json.dumps as ComfyUI writes it (a space after each colon and comma). */
const configBytes = (conf: Record<string, unknown>) => Array.from(new TextEncoder().encode(JSON.stringify(conf).replace(/":/g, '": ').replace(/,"/g, ', "')));
const config = (conf: Record<string, unknown>): FixtureTensor => ({ name: `${M}.comfy_quant`, dtype: 'U8', shape: [configBytes(conf).length], data: configBytes(conf) });

/** A finite e4m3fn code (0x7f and 0xff are NaN). */
const code = () => {
  let b: number;
  do b = Math.floor(rand() * 256); while ((b & 0x7f) === 0x7f);
  return b;
};

/** The qkv layer's tensors as ComfyUI's quantizer writes them for `format`. */
function layer(format: Format): FixtureTensor[] {
  switch (format) {
    case 'float8_e4m3fn':
      return [
        { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [ROWS, COLS], data: Uint8Array.from({ length: ROWS * COLS }, code) },
        { name: `${M}.weight_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0005)] },
        config({ format }),
      ];
    case 'int8_tensorwise':
      return [
        { name: `${M}.weight`, dtype: 'I8', shape: [ROWS, COLS], data: Array.from({ length: ROWS * COLS }, () => Math.floor(rand() * 255) - 127) },
        { name: `${M}.weight_scale`, dtype: 'F32', shape: [], data: [Math.fround(0.0004)] },
        config({ format }),
      ];
    case 'mxfp8': {
      const { order, shape } = blockedOrder(ROWS, COLS / 32);
      return [
        { name: `${M}.weight`, dtype: 'F8_E4M3', shape: [ROWS, COLS], data: Uint8Array.from({ length: ROWS * COLS }, code) },
        { name: `${M}.weight_scale`, dtype: 'U8', shape, data: Array.from(order, (at) => (at < 0 ? 0 : 116 + (at % 8))) },
        config({ format }),
      ];
    }
    case 'nvfp4': {
      const { order, shape } = blockedOrder(ROWS, COLS / 16);
      return [
        { name: `${M}.weight`, dtype: 'U8', shape: [ROWS, COLS / 2], data: Array.from({ length: ROWS * COLS / 2 }, () => Math.floor(rand() * 256)) },
        { name: `${M}.weight_scale`, dtype: 'F8_E4M3', shape, data: Array.from(order, (at) => (at < 0 ? 0 : e4m3Value(0x28 + (at % 16)))) },
        { name: `${M}.weight_scale_2`, dtype: 'F32', shape: [], data: [Math.fround(0.0007)] },
        config({ format }),
      ];
    }
  }
}

/**
 * The FLUX.2 file with qkv in `format`, `edit` applied to its tensors: each one is replaced by what
 * `edit` returns for it (undefined removes it); `extra` tensors are added.
 */
function comfyBase(format: Format, edit: (t: FixtureTensor) => FixtureTensor | undefined = (t) => t, extra: FixtureTensor[] = []): Uint8Array {
  const tensors = flux2BflTensors(rand, 'BF16', DIMS, P).flatMap((t) => (t.name === `${M}.weight` ? layer(format) : [t]));
  return buildSafetensors([...tensors.flatMap((t) => edit(t) ?? []), ...extra]);
}
/** Replaces the tensor named `name` (undefined: removes it). */
const swap = (name: string, make: (t: FixtureTensor) => FixtureTensor | undefined) => (t: FixtureTensor) => (t.name === name ? make(t) : t);

const peft = (m: string, out: number, inF: number): LoraSpec => ({
  down: `diffusion_model.${m}.lora_A.weight`, up: `diffusion_model.${m}.lora_B.weight`, r: 2, out, in: inF, lands: [{ key: `${P}${m}.weight` }], scale: 1,
});
const onQkv: InMemoryAdapter = { name: 'qkv.safetensors', files: { 'qkv.safetensors': buildSafetensors(loraTensors(rand, [peft('double_blocks.0.img_attn.qkv', 3 * h, h)], 'BF16')) } };
const onModulation: InMemoryAdapter = { name: 'mod.safetensors', files: { 'mod.safetensors': buildSafetensors(loraTensors(rand, [peft('double_stream_modulation_img.lin', 6 * h, h)], 'BF16')) } };

const refusals = (base: Uint8Array, adapter: InMemoryAdapter, outDtype?: string) =>
  refusalsInMemory({ backend: backends.cpu!, base: { [FILE]: base }, baseName: FILE, adapters: [adapter], ...(outDtype ? { outDtype } : {}) });

describe('ComfyUI comfy_quant layers written wrong: refused in one line naming the tensor', () => {
  const cases: [string, () => Uint8Array, string][] = [
    // ComfyUI reads a config with bytes(tensor.tolist()): a 2-D tensor's rows are lists, no bytes.
    ['a comfy_quant of U8 bytes in two dimensions', () => comfyBase('float8_e4m3fn', swap(`${M}.comfy_quant`, (t) => ({ ...t, shape: [1, t.shape[0]] }))),
      `${FILE}: tensor "${M}.comfy_quant" is U8 (1, 27), not ComfyUI's quantization config (U8 bytes of a JSON object); fix or remove it`],
    ['a comfy_quant of 5000 bytes (a config is a few dozen)', () => comfyBase('float8_e4m3fn', swap(`${M}.comfy_quant`, () => {
      const head = '{"format": "float8_e4m3fn"';
      const text = Array.from(new TextEncoder().encode(`${head}${' '.repeat(5000 - head.length - 1)}}`));
      return { name: `${M}.comfy_quant`, dtype: 'U8', shape: [text.length], data: text };
    })),
    `${FILE}: tensor "${M}.comfy_quant" is U8 (5000), not ComfyUI's quantization config (U8 bytes of a JSON object); fix or remove it`],
    ['a comfy_quant whose format is the empty string', () => comfyBase('float8_e4m3fn', swap(`${M}.comfy_quant`, () => config({ format: '' }))),
      `${FILE}: tensor "${M}.comfy_quant" is not ComfyUI's quantization config (a JSON object with a "format" string, such as {"format": "float8_e4m3fn"}); fix or remove it`],
    ['a float8_e4m3fn weight_scale stored as F8_E4M3', () => comfyBase('float8_e4m3fn', swap(`${M}.weight_scale`, (t) => ({ ...t, dtype: 'F8_E4M3', data: [0.5] }))),
      `${FILE}: ${M}.weight (comfy_quant format "float8_e4m3fn"): its scale ${M}.weight_scale has shape [] (F8_E4M3); float8_e4m3fn needs one F32 scale per weight (shape [] or [1])`],
    ['a float8_e4m3fn weight_scale of shape [1, 1]', () => comfyBase('float8_e4m3fn', swap(`${M}.weight_scale`, (t) => ({ ...t, shape: [1, 1] }))),
      `${FILE}: ${M}.weight (comfy_quant format "float8_e4m3fn"): its scale ${M}.weight_scale has shape [1, 1] (F32); float8_e4m3fn needs one F32 scale per weight (shape [] or [1])`],
    ['an mxfp8 weight of 48 inputs (not whole blocks of 32)', () => comfyBase('mxfp8', swap(`${M}.weight`, (t) => ({ ...t, shape: [ROWS * COLS / 48, 48] }))),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant) is F8_E4M3 [64, 48]; ComfyUI stores mxfp8 weights as F8_E4M3 (rows, cols), both multiples of 32`],
    ['an mxfp8 weight of 48 rows (not a multiple of 32)', () => comfyBase('mxfp8', swap(`${M}.weight`, (t) => ({ ...t, shape: [48, ROWS * COLS / 48] }))),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant) is F8_E4M3 [48, 64]; ComfyUI stores mxfp8 weights as F8_E4M3 (rows, cols), both multiples of 32`],
    ['an mxfp8 weight in three dimensions, each of its first two a multiple of 32', () => comfyBase('mxfp8', swap(`${M}.weight`, (t) => ({ ...t, shape: [32, 32, 3] }))),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant) is F8_E4M3 [32, 32, 3]; ComfyUI stores mxfp8 weights as F8_E4M3 (rows, cols), both multiples of 32`],
    ['an mxfp8 weight without its weight_scale', () => comfyBase('mxfp8', swap(`${M}.weight_scale`, () => undefined)),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant): its scale ${M}.weight_scale is missing; mxfp8 needs U8 e8m0 block scales of shape [128, 4] (one per 32 inputs, in cuBLAS' swizzled layout)`],
    ['an mxfp8 weight_scale flattened to one dimension', () => comfyBase('mxfp8', swap(`${M}.weight_scale`, (t) => ({ ...t, shape: [512] }))),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant): its scale ${M}.weight_scale is U8 [512]; mxfp8 needs U8 e8m0 block scales of shape [128, 4] (one per 32 inputs, in cuBLAS' swizzled layout)`],
    ['an mxfp8 weight_scale of 8 scale columns (two tiles where the grid fills one)', () => comfyBase('mxfp8', swap(`${M}.weight_scale`, (t) => ({ ...t, shape: [128, 8], data: new Array(1024).fill(120) }))),
      `${FILE}: ${M}.weight (comfy_quant format "mxfp8", ${M}.comfy_quant): its scale ${M}.weight_scale is U8 [128, 8]; mxfp8 needs U8 e8m0 block scales of shape [128, 4] (one per 32 inputs, in cuBLAS' swizzled layout)`],
    ['an nvfp4 weight of 24 rows (not a multiple of 16)', () => comfyBase('nvfp4', swap(`${M}.weight`, (t) => ({ ...t, shape: [24, ROWS * COLS / 2 / 24] }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant) is U8 [24, 64]; ComfyUI stores nvfp4 weights as U8 (rows, cols/2), rows and cols multiples of 16`],
    ['an nvfp4 weight of 24 inputs (12 bytes a row)', () => comfyBase('nvfp4', swap(`${M}.weight`, (t) => ({ ...t, shape: [ROWS * COLS / 2 / 12, 12] }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant) is U8 [128, 12]; ComfyUI stores nvfp4 weights as U8 (rows, cols/2), rows and cols multiples of 16`],
    ['an nvfp4 weight in three dimensions, its first two whole blocks', () => comfyBase('nvfp4', swap(`${M}.weight`, (t) => ({ ...t, shape: [48, 16, 2] }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant) is U8 [48, 16, 2]; ComfyUI stores nvfp4 weights as U8 (rows, cols/2), rows and cols multiples of 16`],
    ['an nvfp4 weight without its block scales', () => comfyBase('nvfp4', swap(`${M}.weight_scale`, () => undefined)),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant): its scale ${M}.weight_scale is missing; nvfp4 needs F8_E4M3 block scales of shape [128, 4] (one per 16 inputs, in cuBLAS' swizzled layout)`],
    ['an nvfp4 weight_scale of 8 scale columns (two tiles where the grid fills one)', () => comfyBase('nvfp4', swap(`${M}.weight_scale`, (t) => ({ ...t, shape: [128, 8], data: new Array(1024).fill(1) }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant): its scale ${M}.weight_scale is F8_E4M3 [128, 8]; nvfp4 needs F8_E4M3 block scales of shape [128, 4] (one per 16 inputs, in cuBLAS' swizzled layout)`],
    ['an nvfp4 weight_scale_2 of shape [1, 1]', () => comfyBase('nvfp4', swap(`${M}.weight_scale_2`, (t) => ({ ...t, shape: [1, 1] }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant): its scale ${M}.weight_scale_2 is F32 [1, 1]; nvfp4 needs one F32 scale per weight (shape [] or [1])`],
    ['an nvfp4 weight_scale_2 stored as BF16', () => comfyBase('nvfp4', swap(`${M}.weight_scale_2`, (t) => ({ ...t, dtype: 'BF16' }))),
      `${FILE}: ${M}.weight (comfy_quant format "nvfp4", ${M}.comfy_quant): its scale ${M}.weight_scale_2 is BF16 []; nvfp4 needs one F32 scale per weight (shape [] or [1])`],
    ['a negative nvfp4 weight_scale_2', () => comfyBase('nvfp4', swap(`${M}.weight_scale_2`, (t) => ({ ...t, data: [-0.5] }))),
      `${FILE}: tensor "${M}.weight_scale_2" holds the scale -0.5; a scale must be finite and not negative`],
  ];
  for (const [what, base, message] of cases) {
    it(`${what}: a LoRA elsewhere is refused too (the base is read whole)`, async () => {
      expect(await refusals(base(), onModulation)).toEqual([message]);
    });
  }
});

describe('ComfyUI comfy_quant layers in a form not read here: copied where nothing changes them, refused naming them where a LoRA or --dtype would', () => {
  const cases: [string, () => Uint8Array, string][] = [
    // comfy_kitchen's int8 rowwise quantizer keeps the row dimension's 1: [rows, 1].
    ['an int8_tensorwise weight_scale of one value per row, shape [rows]', () => comfyBase('int8_tensorwise', swap(`${M}.weight_scale`, (t) => ({ ...t, shape: [ROWS], data: Array.from({ length: ROWS }, (_, r) => Math.fround(0.0003 + r * 1e-6)) }))),
      `its scale ${M}.weight_scale has shape [${ROWS}]: ComfyUI re-quantizes such a layer with per-row scales of shape [${ROWS}, 1], which loramerge does not write in place of it`],
    ['an int8_tensorwise conv kernel (4-D weight)', () => comfyBase('int8_tensorwise', swap(`${M}.weight`, (t) => ({ ...t, shape: [ROWS, COLS / 4, 2, 2] }))),
      `an int8_tensorwise weight of shape [${ROWS}, ${COLS / 4}, 2, 2] (${M}.comfy_quant), which loramerge does not read`],
    ['a float8_e4m3fn weight of one dimension', () => comfyBase('float8_e4m3fn', swap(`${M}.weight`, (t) => ({ ...t, shape: [ROWS * COLS] }))),
      `a float8_e4m3fn weight of shape [${ROWS * COLS}] (${M}.comfy_quant), which loramerge does not read`],
  ];
  for (const [what, make, why] of cases) {
    it(`${what}: --dtype bf16 refused naming it; a LoRA elsewhere copies its tensors byte for byte`, async () => {
      const base = make();
      expect(await refusals(base, onModulation, 'bf16')).toEqual([`${FILE}: tensor "${M}.weight" cannot be dequantized: ${why}; leave out --dtype`]);
      const original = decodeSafetensors(base).tensors;
      const { tensors } = await mergeInMemory({ backend: backends.cpu!, base: { [FILE]: base }, baseName: FILE, adapters: [onModulation] });
      const kept = [...original.keys()].filter((k) => k.startsWith(`${M}.`));
      expect(kept.length).toBeGreaterThan(2);
      for (const key of kept) expect(tensors.get(key)!.bytes, key).toEqual(original.get(key)!.bytes);
    });
  }

  it('an int8_tensorwise weight_scale of shape [rows]: a LoRA on the layer is refused naming it', async () => {
    expect(await refusals(cases[0][1](), onQkv)).toEqual([expect.stringContaining(`${M}.weight`)]);
    const [message] = await refusals(cases[0][1](), onQkv);
    expect(message).toContain(cases[0][2]);
    expect(message).not.toContain('\n');
  });
});
