/**
 * A cancel that comes while combine or resize writes its output (a llama.cpp LoRA GGUF from the
 * command line, a kohya file from the library): the writing stops at the next tensor, nothing is
 * left at the output path (no temporary either), the inputs are unchanged, and it ends as every
 * cancel does (one line and exit code 130; an ABORTED MergeError). The writers are wrapped to count
 * the tensors written and to cancel after the first one: the cancel lands mid-write, by count.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { handleCancelSignals } from '../src/cli/cancel-signals.js';
import { CANCEL_SIGNALS, EXIT_CANCELLED } from '../src/cli/exit-codes.js';
import { runCommandLine } from '../src/cli/run-cli.js';
import { isMergeError } from '../src/errors.js';
import { combineLoras, resizeLora } from '../src/node-adapter-jobs.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { errorLines, listDir } from './helpers/cli.js';
import { seededRandom, tempDirs } from './helpers/fixtures.js';
import { twoLlamaCppLoras } from './helpers/gguf-models.js';
import { dense, gaussian } from './helpers/svd-reference.js';

/** Tensors each writer has written, and what runs after each one. */
const writes = vi.hoisted(() => ({ gguf: [] as string[], safetensors: [] as string[], after: (): void => {} }));

vi.mock('../src/formats/gguf/gguf-writer.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/gguf/gguf-writer.js')>();
  return {
    ...real,
    createGgufWriter: async (...args: Parameters<typeof real.createGgufWriter>) => {
      const writer = await real.createGgufWriter(...args);
      const writeChunk = writer.writeChunk.bind(writer);
      // gguf-lora-writer writes each tensor as one chunk.
      writer.writeChunk = async (name, bytes) => {
        await writeChunk(name, bytes);
        writes.gguf.push(name);
        writes.after();
      };
      return writer;
    },
  };
});

vi.mock('../src/formats/safetensors-writer.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/safetensors-writer.js')>();
  return {
    ...real,
    createSafetensorsWriter: async (...args: Parameters<typeof real.createSafetensorsWriter>) => {
      const writer = await real.createSafetensorsWriter(...args);
      const writeTensor = writer.writeTensor.bind(writer);
      writer.writeTensor = async (name, bytes) => {
        await writeTensor(name, bytes);
        writes.safetensors.push(name);
        writes.after();
      };
      return writer;
    },
  };
});

const temp = tempDirs();
afterAll(temp.removeAll);
afterEach(() => {
  writes.gguf.length = 0;
  writes.safetensors.length = 0;
  writes.after = () => {};
});

const [lora1, lora2] = twoLlamaCppLoras();

/** Every file in `dir` and its bytes. */
function contents(dir: string): Map<string, Buffer> {
  return new Map(listDir(dir).map((name) => [name, readFileSync(join(dir, name))]));
}

describe('Ctrl-C while combine or resize writes a llama.cpp LoRA GGUF', () => {
  const cases: [string, (dir: string, out: string) => string[], string[]][] = [
    ['combine', (dir, out) => ['combine', '--adapter', join(dir, 'a.gguf'), '--weight', '0.5', '--adapter', join(dir, 'b.gguf'), '--method', 'cat', '--out', out, '--backend', 'cpu', '--threads', '1'],
      ['blk.0.attn_q.weight.lora_a', 'blk.0.attn_q.weight.lora_b', 'token_embd.weight.lora_a', 'token_embd.weight.lora_b', 'blk.0.ffn_down.weight.lora_a', 'blk.0.ffn_down.weight.lora_b']],
    ['resize', (dir, out) => ['resize', '--adapter', join(dir, 'a.gguf'), '--rank', '2', '--out', out, '--backend', 'cpu', '--threads', '1'],
      ['blk.0.attn_q.weight.lora_a', 'blk.0.attn_q.weight.lora_b', 'token_embd.weight.lora_a', 'token_embd.weight.lora_b']],
  ];

  // After the first tensor (the writing stops at the next), and after the last (nothing is left to
  // write, but the file must not be committed).
  const runs = cases.flatMap(([command, args, tensors]) => [1, tensors.length].map((at) => ({ command, args, tensors, at })));

  it.for(runs)('$command, cancelled after tensor $at: exit 130, one line, no tensor written after it, nothing at --out, the inputs unchanged', async ({ command, args, tensors, at }) => {
    const dir = temp.make({ 'a.gguf': lora1.bytes, 'b.gguf': lora2.bytes });
    const before = contents(dir);
    const out = join(dir, 'out.gguf');
    // Unwrapped, the command writes every tensor and commits (the control for the count below).
    const whole = await runCommandLine(args(dir, join(dir, 'whole.gguf')), { out: () => {}, err: () => {} });
    expect(whole).toBe(0);
    expect(writes.gguf).toEqual(tensors);
    writes.gguf.length = 0;

    // main.ts's handlers, as a signal reaches them (process.emit calls them as a delivered one would).
    const listeners = new Map(CANCEL_SIGNALS.map((s) => [s, process.listeners(s)]));
    const exits: number[] = [];
    handleCancelSignals((code) => exits.push(code));
    const err: string[] = [];
    let code: number;
    try {
      writes.after = () => {
        if (writes.gguf.length === at) process.emit('SIGINT');
      };
      code = await runCommandLine(args(dir, out), { out: () => {}, err: (line) => err.push(line) });
    } finally {
      for (const s of CANCEL_SIGNALS) for (const l of process.listeners(s)) if (!listeners.get(s)!.includes(l)) process.off(s, l);
    }
    const stderr = err.join('\n');
    expect(code, stderr).toBe(EXIT_CANCELLED);
    expect(exits).toEqual([]);
    expect(errorLines(stderr)).toEqual([`error: ${command} cancelled; nothing was written to ${out}`]);
    expect(stderr).not.toMatch(/\n\s+at |internal error/);
    // The tensor being written when the signal came is the last one written.
    expect(writes.gguf).toEqual(tensors.slice(0, at));
    // Nothing at --out, no temporary or lock beside it; the inputs (and the earlier output) as they were.
    expect(contents(dir)).toEqual(new Map([...before, ['whole.gguf', readFileSync(join(dir, 'whole.gguf'))] as const]));
  });
});

describe('an AbortSignal fired while combineLoras or resizeLora writes', () => {
  const rand = seededRandom(8);
  const key = (block: number) => `lora_unet_down_blocks_${block}_attentions_0_proj_in`;
  const modules = [1, 2].map((block) => ({ name: key(block), b: dense(32, 4, () => gaussian(rand)), a: dense(4, 24, () => gaussian(rand)), alpha: 2 }));
  const jobs: [string, (dir: string, out: string, signal: AbortSignal) => Promise<unknown>][] = [
    ['combine', (dir, out, signal) => combineLoras({ adapters: [join(dir, 'style.safetensors'), { source: join(dir, 'detail.safetensors'), weight: 0.5 }], method: 'cat', out, backend: 'cpu', threads: 1, signal })],
    ['resize', (dir, out, signal) => resizeLora({ adapter: join(dir, 'style.safetensors'), rule: { kind: 'rank', rank: 2 }, out, backend: 'cpu', threads: 1, signal })],
  ];

  // Each module's lora_down and lora_up, then the alphas (module 1 is in both of combine's inputs).
  const tensors = [1, 2].flatMap((block) => [`${key(block)}.lora_down.weight`, `${key(block)}.lora_up.weight`]).concat([1, 2].map((block) => `${key(block)}.alpha`));
  const runs = jobs.flatMap(([command, job]) => [1, tensors.length].map((at) => ({ command, job, at })));

  it.for(runs)('$command, aborted after tensor $at: rejects with "… cancelled" (ABORTED, the reason as cause), no tensor written after it, nothing at out, the inputs unchanged', async ({ command, job, at }) => {
    const dir = temp.make({ 'style.safetensors': kohyaFile(modules), 'detail.safetensors': kohyaFile(modules.slice(0, 1)) });
    const before = contents(dir);
    const controller = new AbortController();
    const reason = new Error('stop');
    writes.after = () => {
      if (writes.safetensors.length === at) controller.abort(reason);
    };
    const error = await job(dir, join(dir, 'out.safetensors'), controller.signal).then(() => undefined, (e: unknown) => e);
    expect(isMergeError(error), String(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ABORTED', name: 'AbortError', message: `${command} cancelled`, cause: reason });
    expect(writes.safetensors).toEqual(tensors.slice(0, at));
    expect(contents(dir)).toEqual(before);
  });
});
