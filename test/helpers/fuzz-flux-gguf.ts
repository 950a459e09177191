/**
 * The surface fuzzer's `flux-control-gguf` world (fuzz-surfaces.ts draws it): BFL's FLUX.1 control
 * LoRA (flux1-canny-dev-lora.safetensors: BFL's names bare, BF16, `lora_B.bias` on every Linear, the
 * q/k norm scales whole, `img_in.lora_A` wider than the base's img_in) on a ComfyUI-GGUF FLUX.1 file
 * (`general.architecture` flux, BFL's names, weights F16 or F32 with the blocks' Q8_0 where a row is
 * whole blocks, biases and norms F32), at random small sizes (hidden 8 or 16, in_channels 4 to 16,
 * rank 1 to 3; 32 or 256 where img_in is stored in a block type). img_in stored F32 or F16 is
 * widened (ComfyUI-GGUF's GGUFModelPatcher patches those types in place at load); BF16 and block
 * types are refused (it patches them per step only, so the model never reads the new width).
 * Hostile: img_in's LoRA as wide as the base (merged without widening), a base img_in wider than the
 * LoRA (refused), lora_B rows or rank that do not fit img_in's lora_A, a norm scale of another length.
 *
 * The truth is ComfyUI's (comfy/lora_convert.py convert_lora_bfl_control, comfy.lora.calculate_weight)
 * in float64, written here: W' = W + w·B·A, img_in first zero-padded to lora_A's columns; b' = b +
 * w·lora_B.bias; norm scales replaced by the LoRA's whatever w; each tensor written in its own type
 * (a block type within twice the reference quantizer's error on the truth, blockBound), img_in at ne [lora_A columns, hidden].
 */
import fc from 'fast-check';
import { roundForDType, seededRandom, type FixtureTensor } from './fixtures.js';
import { tensorData, type FixtureTensor as GgufTensor, type MetaValue } from './gguf-builder.js';
import { blockBound, OUT_DTYPE, type Decoded, type GgufExpected, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

const BASE = 'flux1-dev-Q8_0.gguf';
const LORA = 'control/flux1-canny-dev-lora.safetensors';
const TXT = 6, VEC = 5, TIME = 4;

/** FLUX.1's Linears in BFL's names at hidden `h` and `inCh` image channels, one double and one single block, (out, in). */
function linears(h: number, inCh: number): [string, number, number][] {
  const out: [string, number, number][] = [
    ['img_in', h, inCh], ['txt_in', h, TXT], ['time_in.in_layer', h, TIME], ['time_in.out_layer', h, h],
    ['vector_in.in_layer', h, VEC], ['vector_in.out_layer', h, h], ['guidance_in.in_layer', h, TIME], ['guidance_in.out_layer', h, h],
  ];
  for (const s of ['img', 'txt']) {
    out.push([`double_blocks.0.${s}_mod.lin`, 6 * h, h], [`double_blocks.0.${s}_attn.qkv`, 3 * h, h], [`double_blocks.0.${s}_attn.proj`, h, h],
      [`double_blocks.0.${s}_mlp.0`, 4 * h, h], [`double_blocks.0.${s}_mlp.2`, h, 4 * h]);
  }
  out.push(['single_blocks.0.linear1', 7 * h, h], ['single_blocks.0.linear2', h, 5 * h], ['single_blocks.0.modulation.lin', 3 * h, h]);
  out.push(['final_layer.adaLN_modulation.1', 2 * h, h], ['final_layer.linear', inCh, h]);
  return out;
}

const NORMS = [
  ...['img', 'txt'].flatMap((s) => ['query', 'key'].map((n) => `double_blocks.0.${s}_attn.norm.${n}_norm.scale`)),
  ...['query', 'key'].map((n) => `single_blocks.0.norm.${n}_norm.scale`),
];

type ImgIn = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q5_0' | 'Q4_K';
const BLOCK: Partial<Record<ImgIn, number>> = { Q8_0: 32, Q5_0: 32, Q4_K: 256 };
type Hostile = 'same width' | 'base wider' | 'lora wider by 1' | 'rows' | 'rank' | 'norm length';

export const fluxGgufWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    h: fc.constantFrom(8, 16), inCh: fc.constantFrom(4, 8, 16), r: fc.integer({ min: 1, max: 3 }),
    wType: fc.constantFrom<'F16' | 'F32'>('F16', 'F32'), q8Blocks: fc.boolean(),
    imgIn: fc.oneof({ weight: 6, arbitrary: fc.constantFrom<ImgIn>('F32', 'F16') }, { weight: 2, arbitrary: fc.constantFrom<ImgIn>('BF16', 'Q8_0', 'Q5_0', 'Q4_K') }),
    seed: fc.integer(),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant<Hostile | null>(null) }, { weight: 1, arbitrary: fc.constantFrom<Hostile>('same width', 'base wider', 'lora wider by 1', 'rows', 'rank', 'norm length') }),
  })
  .map(({ h, inCh: drawnIn, r, wType, q8Blocks, imgIn, seed, hostile }) => {
    const rand = seededRandom(seed);
    const vals = (n: number, s = 0.5) => Array.from({ length: n }, () => (rand() * 2 - 1) * s);
    // A block type's rows are whole blocks (ComfyUI-GGUF's converter writes no other).
    const inCh = BLOCK[imgIn] ?? drawnIn;
    const loraCols = hostile === 'same width' ? inCh : hostile === 'lora wider by 1' ? inCh + 1 : 2 * inCh;
    const baseCols = hostile === 'base wider' ? 3 * inCh : inCh;
    const list = linears(h, inCh);
    const typeOf = (m: string, cols: number) => (m === 'img_in' ? imgIn : q8Blocks && /^(double|single)_blocks\./.test(m) && cols % 32 === 0 ? 'Q8_0' : wType);
    const ggufTensors: GgufTensor[] = [];
    for (const [m, o, i] of list) {
      const cols = m === 'img_in' ? baseCols : i;
      ggufTensors.push({ name: `${m}.weight`, type: typeOf(m, cols), ne: [cols, o], data: tensorData(typeOf(m, cols), vals(o * cols)) });
      ggufTensors.push({ name: `${m}.bias`, type: 'F32', ne: [o], data: tensorData('F32', vals(o)) });
    }
    for (const n of NORMS) ggufTensors.push({ name: n, type: 'F32', ne: [h / 2], data: tensorData('F32', vals(h / 2, 1)) });
    const str = (value: string): MetaValue => ({ type: 'string', value });
    const lora: FixtureTensor[] = [];
    for (const [m, o, i] of list) {
      const cols = m === 'img_in' ? loraCols : i;
      const rows = m === 'img_in' && hostile === 'rows' ? o + 1 : o;
      const rankB = m === 'img_in' && hostile === 'rank' ? r + 1 : r;
      lora.push(
        { name: `${m}.lora_A.weight`, dtype: 'BF16', shape: [r, cols], data: vals(r * cols) },
        { name: `${m}.lora_B.weight`, dtype: 'BF16', shape: [rows, rankB], data: vals(rows * rankB) },
        { name: `${m}.lora_B.bias`, dtype: 'BF16', shape: [rows], data: vals(rows) },
      );
    }
    for (const n of NORMS) {
      const len = hostile === 'norm length' && n === NORMS[0] ? h / 2 + 1 : h / 2;
      lora.push({ name: n, dtype: 'BF16', shape: [len], data: vals(len, 1) });
    }
    // The tensors value and shape edits reach first (they pick among a file's first nine): img_in's.
    const first = (t: FixtureTensor) => (t.name.startsWith('img_in.') || t.name === NORMS[0] ? 0 : 1);
    lora.sort((a, b) => first(a) - first(b));
    const files: Record<string, SpecFile> = {
      [BASE]: { kind: 'gguf', build: { metadata: [['general.architecture', str('flux')], ['general.quantization_version', { type: 'u32', value: 2 }], ['general.file_type', { type: 'u32', value: 7 }]], tensors: ggufTensors } },
      [LORA]: { kind: 'safetensors', tensors: lora },
    };
    return {
      name: `FLUX.1 control LoRA on a ComfyUI-GGUF file, img_in ${imgIn}${hostile ? ` (${hostile})` : ''}`,
      files, base: BASE, adapter: LORA, out: 'merged.gguf', refusalsChecked: true, outDtypes: ['f16', 'f32'],
      truth: (d: Decoded, w: number, outDtype): Truth => {
        const base = (n: string) => d.tensors.get(`/${n}`)!;
        const ad = (n: string) => d.tensors.get(`control/${n}`)!;
        const invalid = (why: string): Truth => ({ kind: 'invalid', why });
        const imgA = ad('img_in.lora_A.weight'), imgB = ad('img_in.lora_B.weight');
        if (imgB.shape[0] !== h) return invalid(`img_in.lora_B has ${imgB.shape[0]} rows, img_in ${h}`);
        if (imgB.shape[1] !== imgA.shape[0]) return invalid(`img_in: lora_B rank ${imgB.shape[1]}, lora_A ${imgA.shape[0]}`);
        for (const n of NORMS) if (ad(n).shape[0] !== h / 2) return invalid(`${n}: ${ad(n).shape[0]} values, the base's ${h / 2}`);
        const newCols = imgA.shape[1];
        if (newCols < baseCols) return invalid(`img_in (${baseCols} columns) is already wider than the LoRA's ${newCols}`);
        if (newCols > baseCols && imgIn !== 'F32' && imgIn !== 'F16') return invalid(`widening img_in stored ${imgIn} (ComfyUI-GGUF widens F32 or F16 only)`);
        // Any factor, bias or norm NaN or infinite is refused (named as ComfyUI's replacement for a norm).
        for (const [k, t] of d.tensors) if (k.startsWith('control/') && t.values.some((x) => !Number.isFinite(x))) return invalid(`${k} holds NaN or Inf`);
        // The metadata is copied as it is: an edited architecture string too (the tensors, not
        // it, say what each tensor is; ComfyUI-GGUF's list of architectures grows with its versions).
        const want: GgufExpected = { tensors: [], meta: { 'general.architecture': d.gguf.get(BASE)!.get('general.architecture')?.value } };
        for (const [m, o, i] of list) {
          const cols = m === 'img_in' ? newCols : i;
          const w0 = base(`${m}.weight`), a = ad(`${m}.lora_A.weight`).values, b = ad(`${m}.lora_B.weight`).values;
          const stored = m === 'img_in' ? baseCols : i;
          const values = new Float64Array(o * cols);
          let dMax = 0;
          for (let y = 0; y < o; y++) for (let x = 0; x < cols; x++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += b[y * r + k] * a[k * cols + x];
            dMax = Math.max(dMax, Math.abs(s));
            values[y * cols + x] = (x < stored ? w0.values[y * stored + x] : 0) + w * s;
          }
          // --dtype: every matrix in that type; the 1-D biases and norms keep F32.
          const type = outDtype ? OUT_DTYPE[outDtype] : typeOf(m, stored);
          const magnitude = Math.max(...Array.from(w0.values, Math.abs)) + Math.abs(w) * dMax;
          const float = type === 'F32' || type === 'F16' || type === 'BF16';
          want.tensors.push(float ? { name: `${m}.weight`, type, ne: [cols, o], values, magnitude } : { name: `${m}.weight`, type, ne: [cols, o], values, bound: blockBound(type, values) });
          const bias = base(`${m}.bias`).values, lb = ad(`${m}.lora_B.bias`).values;
          const bv = Float64Array.from(bias, (x, k) => x + w * lb[k]);
          want.tensors.push({ name: `${m}.bias`, type: 'F32', ne: [o], values: bv, magnitude: Math.max(...Array.from(bias, Math.abs)) + Math.abs(w) * Math.max(...Array.from(lb, Math.abs)) });
        }
        for (const n of NORMS) want.tensors.push({ name: n, type: 'F32', ne: [h / 2], bytes: tensorData('F32', ad(n).values) });
        for (const t of want.tensors) {
          if (!t.values) continue;
          const float = t.type === 'F32' || t.type === 'F16' || t.type === 'BF16';
          if (t.values.some((x) => !Number.isFinite(x) || !Number.isFinite(roundForDType(x, float ? t.type as 'F32' : 'F32')))) return invalid(`${t.name}: a merged value past ${t.type}`);
          // A block's f16 scale past f16 (README: re-encoded blocks are checked again); left to the outcome checks near it.
          if (!float && t.values.some((x) => Math.abs(x) > 1e5)) return { kind: 'unknown', why: `${t.name}: a ${t.type} block scale near or past f16` };
        }
        return { kind: 'expected', merged: new Map(), gguf: want };
      },
    };
  });
