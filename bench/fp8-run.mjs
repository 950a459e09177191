/**
 * The benchmark's fp8-base cases, merged through the CLI on the CPU backend with `--threads 2`
 * (the worker pool) and `--threads 1` (everything on the calling thread), in the same run:
 * - ComfyUI "fp8mixed" (a FLUX.1-sized single file, the blocks' MLP Linear layers F8_E4M3 with a
 *   per-tensor `weight_scale` F32 () and a `comfy_quant` U8 config), an ai-toolkit PEFT LoRA on
 *   them: each merged weight written as fp8 again with its scale recalculated from max |W'|;
 * - ComfyUI int8_tensorwise (the same layers as I8 codes, `weight_scale` F32 per row ([rows, 1]) on
 *   the img stream's, per tensor ([]) on the txt stream's, `comfy_quant` {"format": "int8_tensorwise"}),
 *   the same LoRA: each merged weight written as int8 again with its scales recalculated;
 * - transformers' block-wise fp8 (Qwen3-FP8 style: `weight_scale_inv` F32 per 128 × 128 block,
 *   `quantization_config` fp8 with weight_block_size [128, 128]), a PEFT LoRA on every
 *   projection: each block's scale recomputed.
 * Threads change the time, never the bytes: both outputs' SHA-256 are printed.
 *
 * With `--baseline DIR` (a copy of another build: its bin/, dist/ and package.json, with
 * node_modules beside them), each merge is also run on that build, alternating with this one in
 * the same run, and this build's time, user CPU, main-thread CPU and peak RSS are printed as ratios
 * to the baseline's, with whether both builds wrote the same bytes.
 *
 * `--only TEXT`: only the cases whose name holds TEXT (`fp8mixed`, `int8`, `block`).
 *
 * usage: npm run build:lib && node bench/fp8-run.mjs [reps=1] [--baseline DIR] [--only TEXT]   (also run by `npm run bench`; `--skip fp8` leaves it out)
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSafetensorsWriter } from '../dist/formats/safetensors-writer.js';
import { createXorshift } from './fill-random.mjs';
import { fileSink } from './file-sink.mjs';
import { sha256, standaloneRunNode } from './standalone-child.mjs';

/** FLUX.1's hidden size; its double blocks' MLPs are hidden × 4·hidden. */
const FLUX_HIDDEN = 3072;
/** Double blocks whose img/txt MLPs are stored fp8 (4 weights of 37.7 M values each). */
const FLUX_BLOCKS = 1;
/** Qwen3-FP8-style projections: hidden, MLP width, layers. */
const QWEN = { hidden: 2048, intermediate: 6144, layers: 2 };
const RANK = 16;

/** json.dumps({"format": …}) as ComfyUI writes it. */
const comfyQuant = (format) => new TextEncoder().encode(JSON.stringify({ format }).replace(/":/g, '": '));

/** A safetensors file of `tensors` ({name, dtype, shape, fill(bytes, next)}), written in name order. */
async function writeTensors(path, tensors, seed, metadata) {
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  const writer = await createSafetensorsWriter(await fileSink(path), tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })), { format: 'pt', ...(metadata ? { metadata } : {}) });
  const next = createXorshift(seed);
  const bytesPer = { F8_E4M3: 1, U8: 1, I8: 1, F32: 4, BF16: 2 };
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(n * bytesPer[t.dtype]);
    t.fill(bytes, next);
    await writer.writeChunk(t.name, bytes);
  }
  await writer.finish();
  return writer.byteLength;
}

/** Random e4m3fn codes, no NaN (0x7f, 0xff). */
const fp8Codes = (b, next) => { for (let i = 0; i < b.length; i++) { const c = next() & 0xff; b[i] = (c & 0x7f) === 0x7f ? 0x7e : c; } };
const f32s = (values) => (b) => new Float32Array(b.buffer).set(values);
/** LoRA factors as f32, uniform in ±halfWidth. */
const smallF32 = (halfWidth) => (b, next) => { const f = new Float32Array(b.buffer); for (let i = 0; i < f.length; i++) f[i] = ((next() >>> 0) / 2 ** 32 - 0.5) * 2 * halfWidth; };

export async function writeComfy(dir) {
  await mkdir(dir, { recursive: true });
  const h = FLUX_HIDDEN;
  const base = [], lora = [];
  for (let b = 0; b < FLUX_BLOCKS; b++) {
    for (const stream of ['img', 'txt']) {
      for (const [layer, rows, cols] of [['0', 4 * h, h], ['2', h, 4 * h]]) {
        const m = `double_blocks.${b}.${stream}_mlp.${layer}`;
        const key = `model.diffusion_model.${m}`;
        base.push(
          { name: `${key}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], fill: fp8Codes },
          { name: `${key}.weight_scale`, dtype: 'F32', shape: [], fill: f32s([0.0005]) },
          { name: `${key}.comfy_quant`, dtype: 'U8', shape: [comfyQuant('float8_e4m3fn').length], fill: (x) => x.set(comfyQuant('float8_e4m3fn')) },
        );
        lora.push(
          { name: `diffusion_model.${m}.lora_A.weight`, dtype: 'F32', shape: [RANK, cols], fill: smallF32(0.02) },
          { name: `diffusion_model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows, RANK], fill: smallF32(0.02) },
        );
      }
    }
  }
  const bytes = await writeTensors(join(dir, 'flux1-dev-fp8mixed.safetensors'), base, 11);
  await writeTensors(join(dir, 'lora.safetensors'), lora, 12);
  return { base: join(dir, 'flux1-dev-fp8mixed.safetensors'), adapter: join(dir, 'lora.safetensors'), bytes, tensors: base.length / 3, out: 'merged.safetensors' };
}

/** The fp8mixed case's layers as ComfyUI int8_tensorwise: per-row scales on img, per-tensor on txt. */
export async function writeComfyInt8(dir) {
  await mkdir(dir, { recursive: true });
  const h = FLUX_HIDDEN;
  const base = [], lora = [];
  const int8Codes = (b, next) => { for (let i = 0; i < b.length; i++) b[i] = next() & 0xff; };
  const rowScales = (b, next) => { const s = new Float32Array(b.buffer); for (let i = 0; i < s.length; i++) s[i] = 0.0002 + (next() & 0xff) * 2e-6; };
  for (let b = 0; b < FLUX_BLOCKS; b++) {
    for (const stream of ['img', 'txt']) {
      for (const [layer, rows, cols] of [['0', 4 * h, h], ['2', h, 4 * h]]) {
        const m = `double_blocks.${b}.${stream}_mlp.${layer}`;
        const key = `model.diffusion_model.${m}`;
        base.push(
          { name: `${key}.weight`, dtype: 'I8', shape: [rows, cols], fill: int8Codes },
          stream === 'img'
            ? { name: `${key}.weight_scale`, dtype: 'F32', shape: [rows, 1], fill: rowScales }
            : { name: `${key}.weight_scale`, dtype: 'F32', shape: [], fill: f32s([0.0005]) },
          { name: `${key}.comfy_quant`, dtype: 'U8', shape: [comfyQuant('int8_tensorwise').length], fill: (x) => x.set(comfyQuant('int8_tensorwise')) },
        );
        lora.push(
          { name: `diffusion_model.${m}.lora_A.weight`, dtype: 'F32', shape: [RANK, cols], fill: smallF32(0.02) },
          { name: `diffusion_model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows, RANK], fill: smallF32(0.02) },
        );
      }
    }
  }
  const bytes = await writeTensors(join(dir, 'flux1-dev-int8.safetensors'), base, 13);
  await writeTensors(join(dir, 'lora.safetensors'), lora, 14);
  return { base: join(dir, 'flux1-dev-int8.safetensors'), adapter: join(dir, 'lora.safetensors'), bytes, tensors: base.length / 3, out: 'merged.safetensors' };
}

export async function writeBlockFp8(dir) {
  const baseDir = join(dir, 'base'), adapterDir = join(dir, 'adapter');
  await mkdir(baseDir, { recursive: true });
  await mkdir(adapterDir, { recursive: true });
  const { hidden: h, intermediate: f, layers } = QWEN;
  const config = {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: h, intermediate_size: f, num_hidden_layers: layers, torch_dtype: 'bfloat16',
    quantization_config: { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] },
  };
  await writeFile(join(baseDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const base = [], lora = [];
  const targets = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  for (let l = 0; l < layers; l++) {
    for (const [p, rows, cols] of [['self_attn.q_proj', h, h], ['self_attn.k_proj', h, h], ['self_attn.v_proj', h, h], ['self_attn.o_proj', h, h], ['mlp.gate_proj', f, h], ['mlp.up_proj', f, h], ['mlp.down_proj', h, f]]) {
      const m = `model.layers.${l}.${p}`;
      const grid = [Math.ceil(rows / 128), Math.ceil(cols / 128)];
      base.push(
        { name: `${m}.weight`, dtype: 'F8_E4M3', shape: [rows, cols], fill: fp8Codes },
        { name: `${m}.weight_scale_inv`, dtype: 'F32', shape: grid, fill: (b, next) => { const s = new Float32Array(b.buffer); for (let i = 0; i < s.length; i++) s[i] = 2 ** -10 * (1 + (next() & 0xff) / 256); } },
      );
      lora.push(
        { name: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [RANK, cols], fill: smallF32(0.02) },
        { name: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [rows, RANK], fill: smallF32(0.02) },
      );
    }
  }
  const bytes = await writeTensors(join(baseDir, 'model.safetensors'), base, 21);
  await writeFile(join(adapterDir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: RANK, lora_alpha: RANK, target_modules: targets }) + '\n');
  await writeTensors(join(adapterDir, 'adapter_model.safetensors'), lora, 22);
  return { base: baseDir, adapter: adapterDir, bytes, tensors: base.length / 2, out: join('merged', 'model.safetensors') };
}

/** The main thread's share of the user CPU, where /proc gave it. */
const mainCpu = (r) => (r.mainUserSeconds === undefined ? '' : ` (main thread ${r.mainUserSeconds.toFixed(2)} s)`);


/**
 * Both cases: each written into `dir`, merged with --threads 2 and --threads 1, best of `reps` each;
 * with `baselineRoot`, each rep also on that build (alternating), its best kept as `baseline`.
 */
export async function runFp8Bench(dir, { runNode, root, log, reps, baselineRoot, only }) {
  const cases = [];
  for (const [name, write] of [['ComfyUI fp8mixed (per-tensor weight_scale)', writeComfy], ['ComfyUI int8_tensorwise (weight_scale per row and per tensor)', writeComfyInt8], ['block fp8 (weight_scale_inv 128×128)', writeBlockFp8]]) {
    if (only && !name.includes(only)) continue;
    const caseDir = join(dir, `fp8-${cases.length}`);
    const files = await write(caseDir);
    const runs = [];
    const mergeOnce = async (from, threads) => {
      const outDir = join(caseDir, `out-${threads}`);
      await rm(outDir, { recursive: true, force: true });
      await mkdir(outDir, { recursive: true });
      const out = join(outDir, files.out.split('/')[0]);
      const r = await runNode(join(from, 'bin', 'loramerge.js'), ['merge', '--base', files.base, '--adapter', files.adapter, '--out', out, '--backend', 'cpu', '--threads', threads], dir);
      const weights = join(outDir, files.out);
      return { threads, seconds: r.seconds, userSeconds: r.usage.userSeconds, mainUserSeconds: r.usage.mainUserSeconds, rssMiB: r.rssMiB, bytes: (await stat(weights)).size, sha256: await sha256(weights) };
    };
    for (const threads of ['2', '1']) {
      let best, baseline;
      for (let i = 0; i < reps; i++) {
        const run = await mergeOnce(root, threads);
        if (!best || run.seconds < best.seconds) best = run;
        if (baselineRoot) {
          const old = await mergeOnce(baselineRoot, threads);
          if (!baseline || old.seconds < baseline.seconds) baseline = old;
        }
      }
      runs.push(baseline ? { ...best, baseline } : best);
      log(`${name} --threads ${threads}: ${best.seconds.toFixed(2)} s, user CPU ${best.userSeconds.toFixed(2)} s${mainCpu(best)}`);
      if (baseline) log(`  baseline: ${baseline.seconds.toFixed(2)} s, user CPU ${baseline.userSeconds.toFixed(2)} s${mainCpu(baseline)}`);
    }
    await rm(caseDir, { recursive: true, force: true });
    cases.push({ name, baseBytes: files.bytes, tensors: files.tensors, runs, sameBytes: runs[0].sha256 === runs[1].sha256 });
  }
  return cases;
}

/** This build's run as ratios to the baseline's (below 1: less). */
function againstBaseline(r) {
  const b = r.baseline;
  const ratio = (x, y) => (x === undefined || y === undefined || y === 0 ? 'n/a' : `${(x / y).toFixed(2)}×`);
  return `    baseline ${b.seconds.toFixed(2)} s, user CPU ${b.userSeconds.toFixed(2)} s${mainCpu(b)}, peak RSS ${b.rssMiB.toFixed(0)} MiB; this build / baseline: time ${ratio(r.seconds, b.seconds)}, user CPU ${ratio(r.userSeconds, b.userSeconds)}, main thread ${ratio(r.mainUserSeconds, b.mainUserSeconds)}, peak RSS ${ratio(r.rssMiB, b.rssMiB)}; bytes ${b.sha256 === r.sha256 ? 'the same' : 'DIFFER'}`;
}

export function printFp8Table(cases) {
  const out = [];
  let status = 0;
  for (const c of cases) {
    const [two, one] = c.runs;
    const kind = c.name.includes('int8') ? 'int8' : 'fp8';
    out.push(`${kind} base, ${c.name}: ${(c.baseBytes / 1e9).toFixed(3)} GB, ${c.tensors} ${kind} weights merged with an r=${RANK} LoRA and written as ${kind} again, CPU backend:`);
    for (const r of c.runs) {
      out.push(`  --threads ${r.threads}  ${r.seconds.toFixed(2)} s, user CPU ${r.userSeconds.toFixed(2)} s${mainCpu(r)}, peak RSS ${r.rssMiB.toFixed(0)} MiB, ${(r.bytes / 1e9).toFixed(3)} GB, sha256 ${r.sha256.slice(0, 16)}`);
      if (r.baseline) {
        out.push(againstBaseline(r));
        if (r.baseline.sha256 !== r.sha256) status = 1;
      }
    }
    out.push(`  two threads: ${(one.seconds / two.seconds).toFixed(2)}× faster than one; outputs ${c.sameBytes ? 'byte-identical' : 'DIFFER'}`);
    if (!c.sameBytes) status = 1;
  }
  process.stdout.write(out.join('\n') + '\n\n');
  return status;
}

/** Run alone: `node bench/fp8-run.mjs [reps=1]` (after `npm run build:lib`), in a temporary folder. */
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const runNode = standaloneRunNode(root);
  const dir = await mkdtemp(join(tmpdir(), 'loramerge-fp8-bench-'));
  try {
    const args = process.argv.slice(2);
    const at = args.indexOf('--baseline');
    const baselineRoot = at >= 0 ? resolve(args.splice(at, 2)[1]) : undefined;
    const onlyAt = args.indexOf('--only');
    const only = onlyAt >= 0 ? args.splice(onlyAt, 2)[1] : undefined;
    const cases = await runFp8Bench(dir, { runNode, root, log: (line) => process.stderr.write(`${line}\n`), reps: Math.max(1, Number(args[0] ?? 1)), baselineRoot, only });
    process.exitCode = printFp8Table(cases);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
