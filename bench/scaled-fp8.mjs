/**
 * What merging into an fp8 checkpoint with scale tensors costs against the same merge into a bf16
 * base, measured in the same run on each backend: one n × n `q_proj` (block-wise fp8, 128 × 128
 * scales, as Qwen3-FP8 ships it) and a rank-r PEFT LoRA, written as fp8 with recomputed scales
 * (default) and dequantized (`--dtype bf16`). Prints seconds and the ratio to the bf16 base.
 *
 * usage: npm run build:lib && node bench/scaled-fp8.mjs [n=2048] [r=16]
 */
import { createBlobOutputTarget, memoryInputFileSet, mergeModel, prepareMerge } from '../dist/index.js';
import { createNodeBackend } from '../dist/node.js';

const n = Number(process.argv[2] ?? 2048);
const r = Number(process.argv[3] ?? 16);
const q = 'model.layers.0.self_attn.q_proj';

/** A safetensors file of typed arrays. */
function safetensors(tensors) {
  const header = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = JSON.stringify(header);
  const head = new TextEncoder().encode(json + ' '.repeat((8 - (json.length % 8)) % 8));
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const codes = Uint8Array.from({ length: n * n }, () => Math.floor(random() * 0x7e) | (random() < 0.5 ? 0x80 : 0));
const small = (k) => Float32Array.from({ length: k }, () => (random() - 0.5) * 0.02);
const qwenConfig = { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', torch_dtype: 'bfloat16' };
const fp8Base = {
  'model.safetensors': safetensors([
    { name: `${q}.weight`, dtype: 'F8_E4M3', shape: [n, n], data: codes },
    { name: `${q}.weight_scale_inv`, dtype: 'F32', shape: [Math.ceil(n / 128), Math.ceil(n / 128)], data: new Float32Array(Math.ceil(n / 128) ** 2).fill(0.001) },
  ]),
  'config.json': JSON.stringify({ ...qwenConfig, quantization_config: { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] } }),
};
const bf16Base = {
  'model.safetensors': safetensors([{ name: `${q}.weight`, dtype: 'BF16', shape: [n, n], data: Uint16Array.from({ length: n * n }, () => 0x3c00 + Math.floor(random() * 0x400)) }]),
  'config.json': JSON.stringify(qwenConfig),
};
const adapter = {
  'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r, target_modules: ['q_proj'] }),
  'adapter_model.safetensors': safetensors([
    { name: `base_model.model.${q}.lora_A.weight`, dtype: 'F32', shape: [r, n], data: small(r * n) },
    { name: `base_model.model.${q}.lora_B.weight`, dtype: 'F32', shape: [n, r], data: small(n * r) },
  ]),
};

for (const kind of ['cpu', 'webgpu']) {
  let backend;
  try {
    backend = await createNodeBackend(kind);
  } catch (e) {
    console.log(`${kind}: not available (${e.message})`);
    continue;
  }
  const time = async (base, outDtype) => {
    const prepared = await prepareMerge(memoryInputFileSet(base, 'model'), [{ files: memoryInputFileSet(adapter, 'adapter') }]);
    const t0 = performance.now();
    await mergeModel({ prepared, output: createBlobOutputTarget(), backend, outDtype });
    await prepared.close();
    return (performance.now() - t0) / 1000;
  };
  await time(bf16Base); // warm-up
  const baseline = await time(bf16Base);
  const keep = await time(fp8Base);
  const dequantized = await time(fp8Base, 'bf16');
  console.log(`${backend.description} | ${n}×${n} r=${r} | bf16 base ${baseline.toFixed(2)} s | block fp8 re-quantized ${keep.toFixed(2)} s (×${(keep / baseline).toFixed(1)}) | block fp8 --dtype bf16 ${dequantized.toFixed(2)} s (×${(dequantized / baseline).toFixed(1)})`);
  backend.dispose();
}
