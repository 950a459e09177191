/**
 * The benchmark's DeepSeek-V4 FP4 case: one MoE layer's routed experts as deepseek-ai/DeepSeek-V4-Flash
 * ships them (DeepSeek's names `layers.0.ffn.experts.K.w2`, packed E2M1 codes I8 (out, in/2) low
 * nibble first, an F8_E8M0 `.scale` (out, in/32); `expert_dtype: "fp4"`), EXPERTS experts of
 * hidden × moe_intermediate = 7168 × 2048, and a PEFT LoRA (transformers 5 names,
 * `target_parameters: ["mlp.experts.down_proj"]`) on every expert. Merged through the CLI on the CPU
 * backend and written as FP4 again (each group's scale recomputed), with `--threads 2` and
 * `--threads 1`, against, in the same run:
 * - a stream copy of the same FP4 file (the floor: its bytes read and written once);
 * - the same merge on a BF16 copy of the experts (the same names and shapes, no quantization: what
 *   the merge costs without decoding and encoding FP4), on two threads.
 * The FP4 merge's time is printed as ratios to both; both thread counts' outputs' SHA-256 must agree.
 *
 * With `--baseline DIR` (a copy of another build: its bin/, dist/ and package.json, with
 * node_modules beside them), each FP4 merge also runs on that build, alternating with this one,
 * and this build's time is printed as a ratio to the baseline's, with whether the bytes agree.
 *
 * usage: npm run build:lib && node bench/fp4-run.mjs [reps=1] [--baseline DIR]   (also run by `npm run bench`; `--skip fp4` leaves it out)
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSafetensorsWriter } from '../dist/formats/safetensors-writer.js';
import { createXorshift } from './fill-random.mjs';
import { fileSink } from './file-sink.mjs';
import { sha256, standaloneRunNode } from './standalone-child.mjs';

/** DeepSeek-V4-Flash's hidden size and routed experts' width; routed experts merged. */
const HIDDEN = 7168, INTER = 2048, EXPERTS = 4, RANK = 16;

/** A safetensors file of `tensors` ({name, dtype, shape, fill(bytes, next)}), in name order. */
async function writeTensors(path, tensors, seed) {
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  const writer = await createSafetensorsWriter(await fileSink(path), tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })), { format: 'pt' });
  const next = createXorshift(seed);
  const bytesPer = { I8: 1, F8_E8M0: 1, F32: 4, BF16: 2 };
  for (const t of tensors) {
    const bytes = new Uint8Array(t.shape.reduce((a, b) => a * b, 1) * bytesPer[t.dtype]);
    t.fill(bytes, next);
    await writer.writeChunk(t.name, bytes);
  }
  await writer.finish();
  return writer.byteLength;
}

const randomBytes = (b, next) => { for (let i = 0; i < b.length; i += 4) { const x = next(); b[i] = x; b[i + 1] = x >>> 8; b[i + 2] = x >>> 16; b[i + 3] = x >>> 24; } };
/** E8M0 scale bytes 2^-8 … 2^-4, as trained experts' groups have. */
const e8m0Scales = (b, next) => { for (let i = 0; i < b.length; i++) b[i] = 119 + (next() % 5); };
/** BF16 values of magnitude 2^-8 … 2^-4 (the FP4 experts' spread), sign and mantissa random. */
const bf16Values = (b, next) => { const h = new Uint16Array(b.buffer); for (let i = 0; i < h.length; i++) { const x = next(); h[i] = (x & 0x807f) | ((119 + ((x >>> 7) % 5)) << 7); } };
/** LoRA factors as f32, uniform in ±halfWidth. */
const smallF32 = (halfWidth) => (b, next) => { const f = new Float32Array(b.buffer); for (let i = 0; i < f.length; i++) f[i] = ((next() >>> 0) / 2 ** 32 - 0.5) * 2 * halfWidth; };

/** The base folder: `fp4` the routed experts' down projections as packed FP4, else as BF16. */
async function writeBase(dir, fp4) {
  await mkdir(dir, { recursive: true });
  const quant = { activation_scheme: 'dynamic', fmt: 'e4m3', quant_method: 'fp8', scale_fmt: 'ue8m0', weight_block_size: [128, 128] };
  const config = {
    architectures: ['DeepseekV4ForCausalLM'], model_type: 'deepseek_v4', torch_dtype: 'bfloat16', hidden_size: HIDDEN, num_hidden_layers: 1,
    n_routed_experts: EXPERTS, moe_intermediate_size: INTER, vocab_size: 16, ...(fp4 ? { expert_dtype: 'fp4', quantization_config: quant } : {}),
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const tensors = [];
  for (let e = 0; e < EXPERTS; e++) {
    const stem = `layers.0.ffn.experts.${e}.w2`;
    if (fp4) {
      tensors.push(
        { name: `${stem}.weight`, dtype: 'I8', shape: [HIDDEN, INTER / 2], fill: randomBytes },
        { name: `${stem}.scale`, dtype: 'F8_E8M0', shape: [HIDDEN, INTER / 32], fill: e8m0Scales },
      );
    } else {
      tensors.push({ name: `${stem}.weight`, dtype: 'BF16', shape: [HIDDEN, INTER], fill: bf16Values });
    }
  }
  const bytes = await writeTensors(join(dir, 'model.safetensors'), tensors, 31);
  return { dir, file: join(dir, 'model.safetensors'), bytes };
}

/** PEFT 0.19's LoRA on the fused experts' down_proj (W[e] += B_e·A_e), in transformers 5's names. */
async function writeAdapter(dir) {
  await mkdir(dir, { recursive: true });
  const config = { peft_type: 'LORA', r: RANK, lora_alpha: RANK, peft_version: '0.19.1', target_modules: [], target_parameters: ['mlp.experts.down_proj'], base_model_name_or_path: 'deepseek-ai/DeepSeek-V4-Flash' };
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config) + '\n');
  const m = 'base_model.model.model.layers.0.mlp.experts';
  await writeTensors(join(dir, 'adapter_model.safetensors'), [
    { name: `${m}.lora_A.weight`, dtype: 'F32', shape: [RANK * EXPERTS, INTER], fill: smallF32(0.05) },
    { name: `${m}.lora_B.weight`, dtype: 'F32', shape: [HIDDEN, RANK * EXPERTS], fill: smallF32(0.05) },
  ], 32);
  return dir;
}


/** The main thread's share of the user CPU, where /proc gave it. */
const mainCpu = (r) => (r.mainUserSeconds === undefined ? '' : ` (main thread ${r.mainUserSeconds.toFixed(2)} s)`);

/**
 * Writes both bases and the adapter into `dir`, then times the stream copy, the BF16 merge and the
 * FP4 merges (best of `reps` each; with `baselineRoot`, the FP4 merges also on that build, alternating).
 */
export async function runFp4Bench(dir, { runNode, root, log, reps, baselineRoot }) {
  const here = join(root, 'bench');
  const fp4 = await writeBase(join(dir, 'fp4-base'), true);
  const bf16 = await writeBase(join(dir, 'bf16-base'), false);
  const adapter = await writeAdapter(join(dir, 'fp4-adapter'));
  const best = async (run) => {
    let b;
    for (let i = 0; i < reps; i++) {
      const r = await run();
      if (!b || r.seconds < b.seconds) b = r;
    }
    return b;
  };
  const mergeOnce = async (from, base, threads) => {
    const out = join(dir, 'fp4-out');
    await rm(out, { recursive: true, force: true });
    const r = await runNode(join(from, 'bin', 'loramerge.js'), ['merge', '--base', base.dir, '--adapter', adapter, '--out', out, '--backend', 'cpu', '--threads', threads], dir);
    const weights = join(out, 'model.safetensors');
    const run = { threads, seconds: r.seconds, userSeconds: r.usage.userSeconds, mainUserSeconds: r.usage.mainUserSeconds, rssMiB: r.rssMiB, bytes: (await stat(weights)).size, sha256: await sha256(weights) };
    await rm(out, { recursive: true, force: true });
    return run;
  };
  const copyOut = join(dir, 'fp4-copy.safetensors');
  const copy = await best(async () => {
    await rm(copyOut, { force: true });
    return runNode(join(here, 'stream-copy.mjs'), [fp4.file, copyOut], dir);
  });
  await rm(copyOut, { force: true });
  log(`DeepSeek-V4 FP4 case, stream copy of the FP4 file: ${copy.seconds.toFixed(2)} s`);
  const bf16Run = await best(() => mergeOnce(root, bf16, '2'));
  log(`DeepSeek-V4 FP4 case, the same merge on BF16 experts --threads 2: ${bf16Run.seconds.toFixed(2)} s, user CPU ${bf16Run.userSeconds.toFixed(2)} s${mainCpu(bf16Run)}`);
  const runs = [];
  for (const threads of ['2', '1']) {
    let mine, baseline;
    for (let i = 0; i < reps; i++) {
      const run = await mergeOnce(root, fp4, threads);
      if (!mine || run.seconds < mine.seconds) mine = run;
      if (baselineRoot) {
        const old = await mergeOnce(baselineRoot, fp4, threads);
        if (!baseline || old.seconds < baseline.seconds) baseline = old;
      }
    }
    runs.push(baseline ? { ...mine, baseline } : mine);
    log(`DeepSeek-V4 FP4 case --threads ${threads}: ${mine.seconds.toFixed(2)} s, user CPU ${mine.userSeconds.toFixed(2)} s${mainCpu(mine)}`);
    if (baseline) log(`  baseline: ${baseline.seconds.toFixed(2)} s, user CPU ${baseline.userSeconds.toFixed(2)} s${mainCpu(baseline)}`);
  }
  return { fp4Bytes: fp4.bytes, bf16Bytes: bf16.bytes, experts: EXPERTS, copySeconds: copy.seconds, bf16: bf16Run, runs, sameBytes: runs[0].sha256 === runs[1].sha256 };
}

export function printFp4Table(c) {
  const out = [`DeepSeek-V4 FP4 experts: ${c.experts} × w2 (${HIDDEN} × ${INTER}) packed E2M1 + E8M0 per 32, ${(c.fp4Bytes / 1e6).toFixed(0)} MB, an r=${RANK} LoRA on each, written as FP4 again, CPU backend:`];
  out.push(`  stream copy of the FP4 file  ${c.copySeconds.toFixed(2)} s`);
  out.push(`  BF16 experts of the same shape (${(c.bf16Bytes / 1e6).toFixed(0)} MB), --threads 2  ${c.bf16.seconds.toFixed(2)} s, user CPU ${c.bf16.userSeconds.toFixed(2)} s${mainCpu(c.bf16)}`);
  let status = 0;
  for (const r of c.runs) {
    out.push(`  FP4 --threads ${r.threads}  ${r.seconds.toFixed(2)} s, user CPU ${r.userSeconds.toFixed(2)} s${mainCpu(r)}, peak RSS ${r.rssMiB.toFixed(0)} MiB, sha256 ${r.sha256.slice(0, 16)}; ` +
      `${(r.seconds / c.copySeconds).toFixed(1)}× the stream copy, ${(r.seconds / c.bf16.seconds).toFixed(2)}× the BF16 merge`);
    if (r.baseline) {
      const b = r.baseline;
      out.push(`    baseline ${b.seconds.toFixed(2)} s, user CPU ${b.userSeconds.toFixed(2)} s${mainCpu(b)}; this build / baseline: time ${(r.seconds / b.seconds).toFixed(2)}×, user CPU ${(r.userSeconds / b.userSeconds).toFixed(2)}×; bytes ${b.sha256 === r.sha256 ? 'the same' : 'DIFFER'}`);
      if (b.sha256 !== r.sha256) status = 1;
    }
  }
  out.push(`  outputs of --threads 2 and 1 ${c.sameBytes ? 'byte-identical' : 'DIFFER'}`);
  if (!c.sameBytes) status = 1;
  process.stdout.write(out.join('\n') + '\n\n');
  return status;
}

/** Run alone: `node bench/fp4-run.mjs [reps=1] [--baseline DIR]` (after `npm run build:lib`), in a temporary folder. */
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const runNode = standaloneRunNode(root);
  const dir = await mkdtemp(join(tmpdir(), 'loramerge-fp4-bench-'));
  try {
    const args = process.argv.slice(2);
    const at = args.indexOf('--baseline');
    const baselineRoot = at >= 0 ? resolve(args.splice(at, 2)[1]) : undefined;
    const result = await runFp4Bench(dir, { runNode, root, log: (line) => process.stderr.write(`${line}\n`), reps: Math.max(1, Number(args[0] ?? 1)), baselineRoot });
    process.exitCode = printFp4Table(result);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
