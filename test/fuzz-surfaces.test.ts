/**
 * The fuzzer on the input surfaces beyond plain safetensors + LoRA (fuzz-surfaces.ts): GGUF bases
 * and llama.cpp LoRA adapters, the LyCORIS algorithms, PEFT method folders, sharded and diffusers
 * model folders, bitsandbytes bases, and fp8 bases (ComfyUI comfy_quant, block-wise fp8, Comfy-Org
 * scaled fp8, compressed-tensors FP8, ModelOpt FP8), ModelOpt NVFP4 folders and integer GPTQ, AWQ
 * and compressed-tensors int folders, mlx-lm adapter folders (lora, dora, full) on plain and
 * mlx-community affine-quantized bases, PEFT FourierFT / WaveFT folders, the diffusion transformers
 * whose two namings are converted (AuraFlow, PixArt, HunyuanDiT, Mochi, Cosmos / Anima, Stable
 * Cascade stage C; fuzz-dit-namings.ts) and PEFT's BEFT, Super-Tuning, TinyLoRA, PVeRA, UniLoRA and
 * BD-LoRA folders (fuzz-peft-new.ts), float stacked MoE experts under mlx-lm's LoRASwitchLinear and
 * PEFT per-expert LoRAs (fuzz-mlx-experts.ts), BFL's FLUX.1 control LoRAs on ComfyUI-GGUF files
 * (fuzz-flux-gguf.ts), PEFT VeRA and PVeRA saved with save_projection: false, their projections
 * drawn as torch draws them (fuzz-drawn-projections.ts: a property of its own, FUZZ_DRAWN_RUNS,
 * unmutated), llama-quantize's type mixes (fuzz-type-mixes.ts) and sd-scripts' split_qkv
 * and split_dims LoRAs on Flux and SD3.5 (fuzz-split-modules.ts), also with --dtype bf16,
 * mutated, run through the CLI's front end. For every case:
 *   - exit 0, the output equal to the float64 truth (merged tensors within the rounding of their
 *     dtype, every other tensor bit for bit), and --out holding only the output; or
 *   - exactly one clear `error:` line, no stack trace or internal error, a documented exit code,
 *     and nothing at --out (for the fp8 worlds, only where their truth does not expect the merge;
 *     naming the module where the truth says which, on the world's own unmutated inputs);
 * the inputs unchanged, and bounded time and memory. Most cases run in a worker thread, a few the
 * real `loramerge` process with its peak RSS measured (cli-fuzz.ts). Seeded; `npm test` runs a bounded number of cases, `npm run fuzz` many more
 * (FUZZ_SURFACE_RUNS, FUZZ_SURFACE_CLI_RUNS, FUZZ_SEED); FUZZ_SURFACE_WORLDS picks worlds by name.
 * Run `npm run build:lib` first when calling vitest directly: the cases run the built CLI.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { describeCliFuzz, filesUnder, fuzzSettings, type CliCase } from './helpers/cli-fuzz.js';
import { decodeFiles, NEW_SURFACE_WORLDS, REQUANTIZING_WORLDS, requantizedCases, surfaceCases, surfaceCommand, surfaceTruth, writeSurfaceCase, type GgufExpected, type SurfaceCase } from './helpers/fuzz-surfaces.js';
import { drawnProjectionCases } from './helpers/fuzz-drawn-projections.js';
import { readGguf, tensorValues, typeName } from './helpers/gguf-builder.js';

function prepare(c: SurfaceCase): CliCase {
  const { world, command } = c;
  const fixed = command.command === 'merge' && world.fixedDtype;
  const dtype = command.dtype ? ['--dtype', command.dtype] : fixed ? ['--dtype', fixed] : [];
  return {
    label: `${world.name}: ${command.command}${dtype.length ? ` ${dtype.join(' ')}` : ''}`,
    group: `${world.name}${dtype.length ? `, ${dtype.join(' ')}` : ''}`,
    inputs: writeSurfaceCase(c),
    // An adapter folder whose files were all dropped still exists.
    folders: world.adapter.endsWith('.safetensors') || world.adapter.endsWith('.gguf') ? [] : [world.adapter],
    output: command.command === 'merge' ? world.out : null,
    ...(world.slabBytes ? { slabBytes: world.slabBytes } : {}),
    argv(inDir, outDir) {
      const base = join(inDir, world.base);
      const adapter = join(inDir, world.adapter);
      switch (command.command) {
        case 'inspect-base': return ['inspect', base];
        case 'inspect-adapter': return ['inspect', adapter];
        case 'dry-run': return ['merge', '--base', base, '--adapter', adapter, '--weight', String(command.weight), '--dry-run', '--backend', 'cpu'];
        default: return ['merge', '--base', base, '--adapter', adapter, '--weight', String(command.weight), '--out', join(outDir, world.out), '--backend', 'cpu', ...dtype];
      }
    },
  };
}

/**
 * Half an ulp of `dtype` at x (the exact result rounded once, README "What \"merged\" means") plus
 * the float64 truth's own rounding on terms of size `magnitude`, for every dtype: f32 too, since IA3
 * factors and LoHa's, LoKr's and VeRA's derived factors are exact (it was one ulp plus 2^-20 of the
 * terms while they were rounded to f32). Where the engine takes an update in f32 as its tool forms it
 * (FourierFT's ΔW), the truth holds those f32 values; these worlds draw no Tucker cores.
 */
function tolerance(exact: number, magnitude: number, dtype: string): number {
  const mant = dtype === 'F16' ? 10 : dtype === 'BF16' ? 7 : 23;
  const minExp = dtype === 'F16' ? -14 : -126;
  const e = Math.max(exact === 0 ? minExp : Math.floor(Math.log2(Math.abs(exact))), minExp);
  return 2 ** (e - mant - 1) + 2 ** -40 * magnitude + 2 ** -149;
}

/** The same value, NaN included (and either zero). */
const same = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/**
 * The output against the float64 truth: merged tensors within rounding (or exactly, where the truth
 * says so), every other one bit for bit, the tensors the truth leaves out absent, and the header
 * entries it names as it says.
 */
function checkOutput(c: SurfaceCase, { inputs: written }: CliCase, outPath: string, _result: unknown, context: string): string {
  const truth = surfaceTruth(c, written);
  if (truth.kind === 'unknown') return truth.kind;
  expect(truth.kind === 'invalid' ? truth.why : 'valid', `the merge succeeded on inputs it must refuse\n${context}`).toBe('valid');
  if (truth.kind !== 'expected') return truth.kind;
  if (truth.gguf) {
    checkGguf(new Uint8Array(readFileSync(outPath)), truth.gguf, context);
    return truth.kind;
  }
  // The output, keyed like the base: a folder's files under the base's folder name.
  const outFiles = statSync(outPath).isDirectory()
    ? new Map([...filesUnder(outPath)].map(([p, b]) => [`${c.world.base}/${p}`, b] as [string, Uint8Array]))
    : new Map([[c.world.out, new Uint8Array(readFileSync(outPath))]]);
  const output = decodeFiles(outFiles);
  expect(output, `the output does not decode\n${context}`).not.toBeNull();
  const baseFiles = new Map([...written].filter(([p]) => p === c.world.base || p.startsWith(`${c.world.base}/`)));
  const base = decodeFiles(baseFiles)!;
  const leftOut = new Set(truth.leftOut);
  // A dequantized weight may stand where its stored parts were (GPTQ's `weight` for its `qweight`).
  const keys = [...new Set([...[...base.tensors.keys()].filter((k) => !leftOut.has(k)), ...truth.merged.keys()])].sort();
  expect([...output!.tensors.keys()].sort(), context).toEqual(keys);
  for (const key of keys) {
    const stored = base.tensors.get(key);
    const got = output!.tensors.get(key)!;
    const want = truth.merged.get(key);
    const dtype = want?.dtype ?? stored!.dtype;
    expect([got.dtype, got.shape], `${key}\n${context}`).toEqual([dtype, want?.shape ?? stored!.shape]);
    if (!want) {
      expect(Buffer.from(got.bytes).equals(Buffer.from(stored!.bytes)), `${key} copied bit for bit\n${context}`).toBe(true);
      continue;
    }
    for (let i = 0; i < want.values.length; i++) {
      const exact = want.values[i];
      if (want.exact) {
        expect(same(got.values[i], exact), `${key}[${i}]: ${got.values[i]}, want exactly ${exact}\n${context}`).toBe(true);
        continue;
      }
      expect(Number.isFinite(got.values[i]), `${key}[${i}] = ${got.values[i]}\n${context}`).toBe(true);
      expect(Math.abs(got.values[i] - exact), `${key}[${i}]: ${got.values[i]} vs exact ${exact}\n${context}`).toBeLessThanOrEqual(tolerance(exact, want.magnitude, dtype) + (want.slack?.[i] ?? 0));
    }
  }
  const header = output!.headers.get(c.world.out);
  for (const [entry, text] of Object.entries(truth.header ?? {})) expect(header?.[entry] ?? null, `header entry ${entry}\n${context}`).toBe(text);
  for (const path of truth.absent ?? []) expect(output!.json.has(path), `${path} left out\n${context}`).toBe(false);
  for (const [path, { equals, except = [] }] of Object.entries(truth.json ?? {})) {
    const text = output!.json.get(path);
    expect(text, `${path} written\n${context}`).toBeDefined();
    const without = (doc: Record<string, unknown>) => Object.fromEntries(Object.entries(doc).filter(([k]) => !except.includes(k)));
    expect(without(JSON.parse(text!) as Record<string, unknown>), `${path}\n${context}`).toEqual(without(equals));
  }
  return truth.kind;
}

/**
 * A GGUF output against its truth: the tensors in order, each of its type and ne, its bytes exact
 * or its values within rounding (F32/F16/BF16) or within the bound given (a block type); the
 * metadata entries named.
 */
function checkGguf(bytes: Uint8Array, want: GgufExpected, context: string): void {
  const got = readGguf(bytes);
  expect(got.tensors.map((t) => [t.name, typeName(t.typeId), t.ne]), `tensors, types and ne\n${context}`).toEqual(want.tensors.map((t) => [t.name, t.type, t.ne]));
  want.tensors.forEach((w, k) => {
    const t = got.tensors[k];
    if (w.bytes) {
      expect(Buffer.from(t.data).equals(Buffer.from(w.bytes)), `${w.name} (${w.type}) byte for byte\n${context}`).toBe(true);
      return;
    }
    const wanted: Float64Array | undefined = w.values;
    if (!wanted) return;
    const values = tensorValues(w.type, t.data);
    for (let i = 0; i < wanted.length; i++) {
      const exact: number = wanted[i];
      const bound: number = w.bound ? w.bound[i] : tolerance(exact, w.magnitude ?? 0, w.type);
      if (!(Math.abs(values[i] - exact) <= bound)) expect.fail(`${w.name}[${i}] (${w.type}): ${values[i]} vs exact ${exact} (bound ${bound})\n${context}`);
    }
  });
  for (const [key, value] of Object.entries(want.meta ?? {})) expect(got.metadata.get(key)?.value, `${key}\n${context}`).toEqual(value);
}

/** Where the truth decides refusals too, a merge it expects must not be refused. */
function checkRefusal(c: SurfaceCase, { inputs }: CliCase, context: string): string | undefined {
  if (!c.world.refusalsChecked || c.command.command !== 'merge') return undefined;
  const truth = surfaceTruth(c, inputs);
  expect(truth.kind, `refused a merge the truth expects\n${context}`).not.toBe('expected');
  if (truth.kind === 'invalid' && truth.names !== undefined) {
    const line = context.split('\n').find((l) => l.startsWith('error: '));
    expect(line, `the refusal names ${truth.names} (${truth.why})\n${context}`).toContain(truth.names);
    return 'invalid, naming the module';
  }
  return truth.kind;
}

describeCliFuzz('fuzzing GGUF, LyCORIS, PEFT methods and model folders', {
  name: 'fuzz surfaces',
  // FUZZ_SURFACE_WORLDS=<key>,<key>: only those worlds (SURFACE_WORLDS names them).
  cases: surfaceCases(process.env.FUZZ_SURFACE_WORLDS),
  prepare,
  checkOutput,
  checkRefusal,
  mergeDetail: (stats) => `${stats.outcomes.get('merged, expected') ?? 0} against the truth`,
  expectReach(stats, runs) {
    // Merges checked against the truth, not only merges.
    expect(stats.outcomes.get('merged, expected') ?? 0).toBeGreaterThan(runs / 10);
    expect(stats.refused).toBeGreaterThan(runs / 10);
  },
}, fuzzSettings('FUZZ_SURFACE_RUNS', 'FUZZ_SURFACE_CLI_RUNS', { runs: 1500, cliRuns: 6 }));

// The re-quantizing worlds among those FUZZ_SURFACE_WORLDS names (all where it is unset).
const requantizing = REQUANTIZING_WORLDS.filter((k) => !process.env.FUZZ_SURFACE_WORLDS || process.env.FUZZ_SURFACE_WORLDS.split(',').map((w) => w.trim()).includes(k));
const requantized = fuzzSettings('FUZZ_REQUANT_RUNS', 'FUZZ_REQUANT_CLI_RUNS', { runs: 120, cliRuns: 0 });
describeCliFuzz('fuzzing merges quantized again, inputs as written', {
  name: 'fuzz re-quantized',
  cases: requantizedCases(requantizing.length ? requantizing : REQUANTIZING_WORLDS),
  prepare,
  checkOutput,
  checkRefusal,
  mergeDetail: (stats) => `${stats.outcomes.get('merged, expected') ?? 0} against the truth`,
  expectReach(stats, runs) {
    if (runs) expect(stats.outcomes.get('merged, expected') ?? 0).toBeGreaterThan(runs / 4);
  },
}, requantizing.length ? requantized : { ...requantized, runs: 0, cliRuns: 0 });

// PEFT VeRA and PVeRA folders saved with save_projection: false (fuzz-drawn-projections.ts): a
// property of its own, so that the mixed property's draws for a seed stay as they were.
const drawn = fuzzSettings('FUZZ_DRAWN_RUNS', 'FUZZ_DRAWN_CLI_RUNS', { runs: 60, cliRuns: 1 });
const drawnWanted = !process.env.FUZZ_SURFACE_WORLDS || process.env.FUZZ_SURFACE_WORLDS.split(',').map((w) => w.trim()).includes('peft-drawn-projections');
describeCliFuzz('fuzzing VeRA and PVeRA saved without their projections', {
  name: 'fuzz drawn projections',
  cases: drawnProjectionCases(surfaceCommand),
  prepare,
  checkOutput,
  checkRefusal,
  mergeDetail: (stats) => `${stats.outcomes.get('merged, expected') ?? 0} against the truth`,
  expectReach(stats, runs) {
    if (runs < 30) return;
    expect(stats.outcomes.get('merged, expected') ?? 0).toBeGreaterThan(runs / 5);
    // Refusals the truth expects, each naming the module or the key.
    expect(stats.outcomes.get('refused, invalid, naming the module') ?? 0).toBeGreaterThan(0);
  },
}, drawnWanted ? drawn : { ...drawn, runs: 0, cliRuns: 0 });

// The newest surfaces (fuzz-new-surfaces.ts: modular_model_index.json pipelines, kandinskylab's
// config_lora.json, DeepSeek-V4's E8M0 scales and packed FP4 experts, OneTrainer OFT headers, DeepSeek-V3.1's
// F32 ue8m0 scales): a property of their own,
// FUZZ_NEW_RUNS, so that the mixed property's draws for a seed stay as they were.
const newWanted = NEW_SURFACE_WORLDS.filter((k) => !process.env.FUZZ_SURFACE_WORLDS || process.env.FUZZ_SURFACE_WORLDS.split(',').map((w) => w.trim()).includes(k));
const fresh = fuzzSettings('FUZZ_NEW_RUNS', 'FUZZ_NEW_CLI_RUNS', { runs: 90, cliRuns: 2 });
describeCliFuzz('fuzzing modular pipeline indexes, Kandinsky 5 LoRA configs, DeepSeek-V4 FP4 and V3.1 ue8m0 checkpoints and OneTrainer OFT headers', {
  name: 'fuzz new surfaces',
  cases: surfaceCases((newWanted.length ? newWanted : NEW_SURFACE_WORLDS).join(',')),
  prepare,
  checkOutput,
  checkRefusal,
  mergeDetail: (stats) => `${stats.outcomes.get('merged, expected') ?? 0} against the truth`,
  expectReach(stats, runs) {
    if (runs < 30) return;
    expect(stats.outcomes.get('merged, expected') ?? 0).toBeGreaterThan(runs / 10);
    expect(stats.outcomes.get('refused, invalid, naming the module') ?? 0).toBeGreaterThan(0);
  },
}, newWanted.length ? fresh : { ...fresh, runs: 0, cliRuns: 0 });
