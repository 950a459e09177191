/**
 * A merge's listed elements settled on the worker thread that merged their block (engine/cpu/
 * listed-fix.ts). Merging a bf16 LoRA into fp8 codes × an f32 scale lands many elements exactly on
 * a float32 rounding midpoint (the code × scale product has up to 27 significant bits, ΔW adds
 * none below them), so the kernel lists them and each is computed exactly: that work used to run on
 * the calling thread alone.
 *
 * The base is Comfy-Org's fp8mixed FLUX.2 layout ("flux2_dev_fp8mixed.safetensors": each block's
 * Linear F8_E4M3 with `<m>.weight_scale` F32 () and `<m>.comfy_quant` U8 holding
 * `{"format": "float8_e4m3fn"}`), at hidden size 256; the LoRA is ai-toolkit's (PEFT form under
 * `diffusion_model.`, bf16 factors, scale 1). Two threads (slabs in shared memory, as the command
 * line reads them), two threads through the pool's scratch (a page's pool) and one thread write the
 * same bytes; those bytes are ComfyUI's re-quantization (ops.py set_weight, scale "recalculate",
 * rounded to nearest even) of W' = e4m3(code) × weight_scale + B·A computed here in float64:
 * w = f32(W'), s = f32(max |w| / 448), code = e4m3(clamp(f32(w · f32(1 / s)), ±448)); the workers
 * did settle listed elements, as many listed and computed exactly as on one thread.
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/engine/cpu/cpu-backend.js';
import { isMergeError } from '../src/errors.js';
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../src/index.js';
import { flux2Fp8mixed } from './helpers/comfy-fp8mixed.js';
import { FLUX2, type Flux2Dims } from './helpers/dit-fixtures.js';
import { buildSafetensors, decodeSafetensors, roundForDType, seededRandom, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { comfyRequantize } from './helpers/e4m3-by-hand.js';
import { threadBackends } from './helpers/thread-backends.js';

const rand = seededRandom(20261207);
const P = 'model.diffusion_model.';
const DIMS: Flux2Dims = { ...FLUX2, h: 256, head: 64 };
const h = DIMS.h;
const FILE = 'flux2_dev_fp8mixed.safetensors';
const R = 16;
/** The merged layers (out × in); each holds at least 64 Ki elements, so its ops go to the pool. */
const MERGED: Record<string, [number, number]> = {
  'double_blocks.0.img_attn.qkv': [3 * h, h],
  'double_blocks.1.txt_mlp.0': [6 * h, h],
  'single_blocks.0.linear1': [9 * h, h],
  'single_blocks.1.linear2': [h, 4 * h],
};

const randomCode = () => {
  let b: number;
  do b = Math.floor(rand() * 256); while ((b & 0x7f) === 0x7f);
  return b;
};

/** The base, and each quantized layer's real values e4m3(code) × weight_scale in float64. */
function fp8mixed(): { bytes: Uint8Array; real: Map<string, Float64Array> } {
  const { tensors, real } = flux2Fp8mixed(rand, DIMS, P, randomCode);
  return { bytes: buildSafetensors(tensors), real };
}

/** ai-toolkit's LoRA, bf16 factors of about ±0.01 (as trained ones are), and B·A per layer in float64. */
function aiToolkitLora(): { bytes: Uint8Array; delta: Map<string, Float64Array> } {
  const tensors: FixtureTensor[] = [];
  const delta = new Map<string, Float64Array>();
  const small = (n: number) => Array.from({ length: n }, () => roundForDType((rand() - 0.5) * 0.02, 'BF16'));
  for (const [m, [out, inF]] of Object.entries(MERGED)) {
    const a = small(R * inF), b = small(out * R);
    const d = new Float64Array(out * inF);
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let k = 0; k < R; k++) s += b[o * R + k] * a[k * inF + i];
      d[o * inF + i] = s;
    }
    delta.set(`${P}${m}.weight`, d);
    tensors.push({ name: `diffusion_model.${m}.lora_A.weight`, dtype: 'BF16', shape: [R, inF], data: a });
    tensors.push({ name: `diffusion_model.${m}.lora_B.weight`, dtype: 'BF16', shape: [out, R], data: b });
  }
  return { bytes: buildSafetensors(tensors), delta };
}

const threads = threadBackends();

const base = fp8mixed();
const lora = aiToolkitLora();

async function mergeOn(backend: CpuBackend): Promise<Uint8Array> {
  const prepared = await prepareMerge(memoryInputFileSet({ [FILE]: base.bytes }, FILE), [{ files: memoryInputFileSet({ 'style.safetensors': lora.bytes }, 'style.safetensors') }]);
  const output = createBlobOutputTarget();
  try {
    expect(prepared.plan.problems).toEqual([]);
    await mergeModel({ prepared, output, backend });
  } finally {
    await prepared.close();
  }
  return new Uint8Array(await output.files()[0].blob.arrayBuffer());
}

describe('listed elements settled on the worker threads', () => {
  it('fp8mixed FLUX.2 + a bf16 LoRA: two threads (shared slabs, or the pool\'s scratch) write the bytes of one thread, ComfyUI\'s re-quantization of W\'', async () => {
    const { shared: onShared, scratch: onScratch, single } = threads.three();
    const threaded = await mergeOn(onShared);
    // Every merged layer's terms went to the workers, which settled the listed elements of their blocks.
    expect(threads.sharedPool.sent.settlingTerms).toBeGreaterThanOrEqual(Object.keys(MERGED).length);
    expect(threads.sharedPool.sent.settlingBlocks).toBeGreaterThanOrEqual(Object.keys(MERGED).length);
    const throughScratch = await mergeOn(onScratch);
    expect(threads.scratchPool.sent.settlingBlocks).toBeGreaterThanOrEqual(Object.keys(MERGED).length);
    const oneThread = await mergeOn(single);
    expect(Buffer.from(threaded).equals(Buffer.from(oneThread))).toBe(true);
    expect(Buffer.from(throughScratch).equals(Buffer.from(oneThread))).toBe(true);
    // The same elements listed and computed exactly, wherever they were settled; exact ties are common here.
    expect(single.certification.exact).toBeGreaterThan(1000);
    expect(onShared.certification).toEqual(single.certification);
    expect(onScratch.certification).toEqual(single.certification);

    const written = decodeSafetensors(threaded).tensors;
    for (const key of lora.delta.keys()) {
      const real = base.real.get(key)!, d = lora.delta.get(key)!;
      const expected = comfyRequantize(real.map((w, i) => w + d[i]));
      const scale = written.get(key.replace(/\.weight$/, '.weight_scale'))!;
      expect(scale.values[0], key).toBe(expected.scale);
      const codes = written.get(key)!;
      expect(codes.dtype).toBe('F8_E4M3');
      const wrong = codes.values.findIndex((got, i) => got !== expected.codes[i]);
      expect(wrong, `${key}: code ${wrong} is ${codes.values[wrong]}, expected ${expected.codes[wrong]}`).toBe(-1);
    }
  });

  it('a weight_scale whose codes times it pass float32, and a NaN in a LoRA factor, are refused in one line naming the file and the tensor, the same on every thread', async () => {
    const target = `${P}double_blocks.1.txt_mlp.0`;
    const edited = (bytes: Uint8Array, edit: (name: string, t: DecodedTensor) => FixtureTensor | undefined) => buildSafetensors([...decodeSafetensors(bytes).tensors]
      .map(([name, t]) => edit(name, t) ?? { name, dtype: t.dtype as FixtureTensor['dtype'], shape: t.shape, data: t.bytes }));
    // 3e38 × e4m3 codes up to 448: past float32's 3.4e38, as ComfyUI's dequantization (code · scale in float32) makes Inf.
    const hugeScale = edited(base.bytes, (name) => (name === `${target}.weight_scale` ? { name, dtype: 'F32', shape: [], data: [3e38] } : undefined));
    const nanFactor = edited(lora.bytes, (name, t) => (name === 'diffusion_model.double_blocks.1.txt_mlp.0.lora_A.weight'
      ? { name, dtype: 'BF16', shape: t.shape, data: Array.from(t.values, (x, i) => (i === 2000 ? NaN : x)) } : undefined));
    // The NaN's row in lora_A (rank × in).
    const nanRow = Math.floor(2000 / decodeSafetensors(lora.bytes).tensors.get('diffusion_model.double_blocks.1.txt_mlp.0.lora_A.weight')!.shape[1]);
    const refusal = async (b: Uint8Array, l: Uint8Array, backend: CpuBackend) => {
      const prepared = await prepareMerge(memoryInputFileSet({ [FILE]: b }, FILE), [{ files: memoryInputFileSet({ 'style.safetensors': l }, 'style.safetensors') }]);
      try {
        expect(prepared.plan.problems).toEqual([]);
        await mergeModel({ prepared, output: createBlobOutputTarget(), backend });
      } catch (e) {
        return isMergeError(e) ? `${e.code}: ${e.message}` : `not a MergeError: ${String(e)}`;
      } finally {
        await prepared.close();
      }
      return 'merged';
    };
    const { shared, scratch, single } = threads.three();
    // The base as a memory file set names its one file under the set's name.
    const file = `${FILE}/${FILE}`.replaceAll('.', '\\.');
    const tensor = `${target}.weight`.replaceAll('.', '\\.');
    for (const [b, l, expected] of [
      [hugeScale, lora.bytes, new RegExp(`^NON_FINITE: ${file}: tensor "${tensor}" holds \\d+ values? past float32 in the base \\(its codes times its scales, ${tensor}_scale; (row \\d+|first in row \\d+, last in row \\d+)\\), and the merge updates it; the base file is broken: use an intact copy of the base$`)],
      [base.bytes, nanFactor, new RegExp(`^NON_FINITE: style\\.safetensors module "diffusion_model\\.double_blocks\\.1\\.txt_mlp\\.0": factor diffusion_model\\.double_blocks\\.1\\.txt_mlp\\.0\\.lora_A\\.weight holds 1 NaN or Inf value \\(row ${nanRow}\\); the adapter file is broken \\(${file}: tensor "${tensor}"\\)$`)],
    ] as const) {
      const lines = [await refusal(b, l, single), await refusal(b, l, shared), await refusal(b, l, scratch)];
      expect(lines[0]).toMatch(expected);
      expect(lines[1]).toBe(lines[0]);
      expect(lines[2]).toBe(lines[0]);
    }
  });
});
