/**
 * The library's public calls against the mistakes plain-JavaScript embedders make (no type checker):
 * a string where an array goes, a weight in quotes, NaN, a dtype or backend misspelt, a File where a
 * path goes, `signal: {}`, an option name with a typo, null or a hole in any slot, the base given
 * as its own adapter. Each is refused before any file is opened with a BAD_ARGUMENT MergeError whose
 * one-line message names the argument and what to pass instead; nothing is left at `out`. A
 * property over random wrong-typed option objects: a one-line MergeError, or a merge whose q_proj
 * matches W + w·α/r·(B·A) computed here in float64.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import * as browser from '../src/index.js';
import * as node from '../src/node.js';
import { parseOutDType } from '../src/dtype.js';
import { openGguf } from '../src/formats/gguf/gguf-reader.js';
import { oneCallMerge } from '../src/pipeline/one-call-merge.js';
import { decodeSafetensors, roundForDType, tempDirs, type DecodedTensor } from './helpers/fixtures.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const dirs = tempDirs();
afterAll(() => dirs.removeAll());

// A Llama-style F16 base (llama.safetensors) and a PEFT LoRA folder (r = 2, α = 4, real key names).
const fixture = llamaWithPeft(31);
const dir = dirs.make(fixture.files);
const basePath = join(dir, 'llama.safetensors');
const adapterPath = join(dir, 'llama-lora');
const baseBlob = new Blob([fixture.base as Uint8Array<ArrayBuffer>]);
const adapterFiles = () => [
  new File([fixture.files['llama-lora/adapter_config.json'] as string], 'adapter_config.json'),
  new File([fixture.adapter as Uint8Array<ArrayBuffer>], 'adapter_model.safetensors'),
];
const Q = 'model.layers.0.self_attn.q_proj';

/** The refusal of `run`, or a failure of this test if it resolved. */
async function refusal(run: () => unknown): Promise<Error & { code?: string }> {
  try {
    await run();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a refusal, but the call succeeded');
}

/** `e` is a MergeError of `code` (default BAD_ARGUMENT) whose message matches `message`, on one line. */
function expectOneLineRefusal(e: Error & { code?: string }, code: string | undefined, message: RegExp): void {
  expect(browser.isMergeError(e), String(e)).toBe(true);
  expect(e.code).toBe(code ?? 'BAD_ARGUMENT');
  expect(e.message).toMatch(message);
  expect(e.message).not.toContain('\n');
}

/** A fresh folder for `out`, to check that a refused call leaves nothing (no file, temporary or lock). */
const freshOut = () => join(dirs.make(), 'merged.safetensors');
const folderOf = (out: string) => out.slice(0, out.lastIndexOf('/'));

/** q_proj of the merge in float64: W + w·α/r·(B·A), rounded once to `dtype`. */
function expectedQ(weight: number, dtype: 'F16' | 'F32' | 'BF16'): Float64Array {
  const base = decodeSafetensors(fixture.base).tensors.get(`${Q}.weight`)!;
  const adapter = decodeSafetensors(fixture.adapter).tensors;
  const a = adapter.get(`base_model.model.${Q}.lora_A.weight`)!;
  const b = adapter.get(`base_model.model.${Q}.lora_B.weight`)!;
  const [rows, cols] = base.shape;
  const r = a.shape[0];
  const scale = weight * (fixture.alpha / fixture.rank);
  const out = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += b.values[o * r + k] * a.values[k * cols + i];
      out[o * cols + i] = roundForDType(base.values[o * cols + i] + scale * s, dtype);
    }
  }
  return out;
}

function expectQ(merged: Map<string, DecodedTensor>, weight: number, dtype: 'F16' | 'F32' | 'BF16'): void {
  const got = merged.get(`${Q}.weight`)!;
  expect(got.dtype).toBe(dtype);
  expect(Array.from(got.values)).toEqual(Array.from(expectedQ(weight, dtype)));
}

interface Mistake {
  name: string;
  run: (out: string) => unknown;
  /** The refusal's code (BAD_ARGUMENT unless said). */
  code?: string;
  message: RegExp;
}

const aborted = (() => {
  const c = new AbortController();
  c.abort();
  return c.signal;
})();

/** The one-call merge of `loramerge/node`: every mistake refused before a file is opened, nothing left at `out`. */
const nodeMergeMistakes: Mistake[] = [
  { name: 'options null', run: () => node.merge(null as never), message: /^merge\(\) options must be an object of options \(\{ base, adapters, out/ },
  { name: 'adapters a string, not an array', run: (out) => node.merge({ base: basePath, adapters: adapterPath as never, out }), message: /^adapters must be an array, each element an adapter .*\(wrap a single one in \[ \]\); not the string "/ },
  { name: 'adapters a Set, not an array', run: (out) => node.merge({ base: basePath, adapters: new Set([adapterPath]) as never, out }), message: /^adapters must be an array, .*\(spread it into one: \[\.\.\.list\]\); not a Set$/ },
  { name: 'adapters empty', run: (out) => node.merge({ base: basePath, adapters: [], out }), message: /^adapters is an empty array; give at least one/ },
  { name: 'adapters left out', run: (out) => node.merge({ base: basePath, out } as never), message: /^adapters must be an array.*not undefined$/ },
  { name: 'adapters with a hole', run: (out) => node.merge({ base: basePath, adapters: [adapterPath, , adapterPath] as never, out }), message: /^adapters\[1\] is an empty slot; each element must be an adapter/ },
  { name: 'an adapter null', run: (out) => node.merge({ base: basePath, adapters: [null as never], out }), message: /^adapters\[0\] is null;/ },
  { name: 'a source null', run: (out) => node.merge({ base: basePath, adapters: [{ source: null as never }], out }), message: /^adapters\[0\]\.source is null; give the adapter$/ },
  { name: 'weight in quotes', run: (out) => node.merge({ base: basePath, adapters: [{ source: adapterPath, weight: '0.8' as never }], out }), message: /^adapters\[0\]\.weight must be a finite number .*not the string "0\.8" \(write 0\.8, without quotes\)$/ },
  { name: 'weight NaN', run: (out) => node.merge({ base: basePath, adapters: [{ source: adapterPath, weight: NaN }], out }), message: /^adapters\[0\]\.weight must be a finite number .*not NaN$/ },
  { name: 'weight Infinity', run: (out) => node.merge({ base: basePath, adapters: [{ source: adapterPath, weight: Infinity }], out }), message: /^adapters\[0\]\.weight .*not the number Infinity$/ },
  { name: 'weight 1e309', run: (out) => node.merge({ base: basePath, adapters: [adapterPath, { source: adapterPath, weight: 1e309 }], out }), message: /^adapters\[1\]\.weight .*not the number Infinity$/ },
  { name: 'weight null (NaN after JSON)', run: (out) => node.merge({ base: basePath, adapters: [{ source: adapterPath, weight: null as never }], out }), message: /^adapters\[0\]\.weight must be a finite number .*not null$/ },
  { name: 'weight misspelt', run: (out) => node.merge({ base: basePath, adapters: [{ source: adapterPath, wieght: 0.5 } as never], out }), message: /^adapters\[0\]: unknown option "wieght"; did you mean "weight"\?$/ },
  { name: 'an object that is no source', run: (out) => node.merge({ base: basePath, adapters: [{ path: adapterPath } as never], out }), message: /^adapters\[0\] must be a File or Blob, an http\(s\) URL, .* or an InputFileSet, not an object$/ },
  { name: 'dtype a number', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], dtype: 42 as never, out }), message: /^dtype must be a type name such as "f16".*not the number 42$/ },
  { name: 'dtype null', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], dtype: null as never, out }), message: /^dtype must be a type name .*\(leave it out to keep the base's types\), not null$/ },
  { name: 'dtype unknown to the base', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], dtype: 'int4', out }), message: /^dtype must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "int4" \(for a safetensors model\)$/ },
  { name: 'dtype "f 16" (names the option as the library spells it)', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], dtype: 'f 16', out }), message: /^dtype must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "f 16"/ },
  { name: 'dtype fp8 (two types)', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], dtype: 'fp8', out }), message: /^dtype fp8 is two types: choose f8_e4m3/ },
  { name: 'backend gpu', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], backend: 'gpu' as never, out }), message: /^backend must be auto, webgpu or cpu, not the string "gpu"/ },
  { name: 'backend with a space', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], backend: 'webgpu ' as never, out }), message: /^backend must be auto, webgpu or cpu, not the string "webgpu " \(did you mean "webgpu"\?\)$/ },
  { name: 'backend null', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], backend: null as never, out }), message: /^backend must be auto, webgpu or cpu, not null$/ },
  { name: 'backend an object that is none', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], backend: {} as never, out }), message: /^backend must be auto, webgpu, cpu or a backend from createBackend, not an object$/ },
  { name: 'threads 0', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], threads: 0, out }), message: /^threads must be a positive integer, not the number 0$/ },
  { name: 'threads in quotes', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], threads: '4' as never, out }), message: /^threads must be a positive integer, not the string "4"$/ },
  { name: 'threads past MAX_THREADS', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], threads: 1025, out }), message: /^threads is 1025; at most 1024 \(the limit MAX_THREADS: each thread adds about 14 MiB, started at once\)$/ },
  { name: 'thread for threads', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], thread: 2, out } as never), message: /^merge\(\) options: unknown option "thread"; did you mean "threads"\?$/ },
  { name: 'out a number', run: () => node.merge({ base: basePath, adapters: [adapterPath], out: 42 as never }), message: /^out must be a path, a File System Access handle .*; not the number 42$/ },
  { name: 'out a File', run: () => node.merge({ base: basePath, adapters: [adapterPath], out: new File([], 'merged.safetensors') as never }), message: /^out must be a path, .*not a File \(a File or Blob is something to read, not a place to write\)$/ },
  { name: 'out null', run: () => node.merge({ base: basePath, adapters: [adapterPath], out: null as never }), message: /^out must be .*not null$/ },
  { name: 'out empty', run: () => node.merge({ base: basePath, adapters: [adapterPath], out: '' }), message: /^out is an empty string; name the output file or folder/ },
  { name: 'out a URL', run: () => node.merge({ base: basePath, adapters: [adapterPath], out: 'https://example.com/merged.safetensors' }), message: /^out is a URL \("https:/ },
  { name: 'base null', run: (out) => node.merge({ base: null as never, adapters: [adapterPath], out }), message: /^base is null; give the base model$/ },
  { name: 'base a number', run: (out) => node.merge({ base: 42 as never, adapters: [adapterPath], out }), message: /^the base must be a File or Blob, .*not the number 42$/ },
  { name: 'base an ftp URL', run: (out) => node.merge({ base: 'ftp://example.com/llama.safetensors', adapters: [adapterPath], out }), message: /^the base is a URL of scheme ftp: \("ftp:\/\/example\.com\/llama\.safetensors"\); give a path on disk, or an http:\/\/ or https:\/\/ URL$/ },
  { name: 'base a file URL', run: (out) => node.merge({ base: new URL(`file://${basePath}`) as never, adapters: [adapterPath], out }), message: /^the base is a URL of scheme file: / },
  { name: 'the base as its own adapter', run: (out) => node.merge({ base: basePath, adapters: [basePath], out }), message: /^adapters\[0\] is the base itself; give the adapter's files/ },
  { name: 'signal a plain object', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], signal: {} as never, out }), message: /^signal must be an AbortSignal \(abortController\.signal\), not an object$/ },
  { name: 'signal already aborted', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], signal: aborted, out }), code: 'ABORTED', message: /^merge cancelled$/ },
  { name: 'onProgress a string', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], onProgress: 'yes' as never, out }), message: /^onProgress must be a function, not the string "yes"$/ },
  { name: 'weights at the top level', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], weights: [0.5], out } as never), message: /^merge\(\) options: unknown option "weights"; each adapter has its own weight: adapters: \[\{ source, weight \}\]$/ },
  { name: 'alpha at the top level', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], alpha: 8, out } as never), message: /^merge\(\) options: unknown option "alpha"; an adapter's alpha is its own/ },
  { name: 'outPath for out', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], outPath: out } as never), message: /^merge\(\) options: unknown option "outPath"; did you mean "out"\?$/ },
  { name: 'onprogress in lower case', run: (out) => node.merge({ base: basePath, adapters: [adapterPath], onprogress: () => {}, out } as never), message: /^merge\(\) options: unknown option "onprogress"; did you mean "onProgress"\?$/ },
  { name: 'an adapter as a list of its files\' paths', run: (out) => node.merge({ base: basePath, adapters: [[join(adapterPath, 'adapter_config.json'), join(adapterPath, 'adapter_model.safetensors')] as never], out }), message: /^adapters\[0\]\[0\] is a path in a list; give the path of the folder that holds the files, or of the one file, as one string$/ },
  { name: 'a list of Files with a path in it', run: (out) => node.merge({ base: basePath, adapters: [adapterPath, [adapterFiles()[0], adapterPath] as never], out }), message: /^adapters\[1\]\[1\] is a path in a list;/ },
  { name: 'a base given as the adapter (a path)', run: (out) => node.merge({ base: adapterPath, adapters: [basePath], out }), code: 'UNSUPPORTED_FORMAT', message: /llama\.safetensors: not a LoRA adapter .*is it the base model/ },
];

describe('merge() from loramerge/node refuses mistaken arguments up front', () => {
  it.each(nodeMergeMistakes)('$name', async ({ run, code, message }) => {
    const out = freshOut();
    const e = await refusal(() => run(out));
    expectOneLineRefusal(e, code, message);
    expect(readdirSync(folderOf(out))).toEqual([]);
  });

  it('an onProgress that throws ends the merge with its own error and leaves nothing', async () => {
    const out = freshOut();
    const thrown = new Error('the page went away');
    const e = await refusal(() => node.merge({ base: basePath, adapters: [adapterPath], out, backend: 'cpu', onProgress: () => { throw thrown; } }));
    expect(e).toBe(thrown);
    expect(readdirSync(folderOf(out))).toEqual([]);
  });

  it('an onProgress that throws at the last event (done) fails the merge with nothing at out, not after the files are in place', async () => {
    const out = freshOut();
    const thrown = new Error('the page went away');
    const phases: string[] = [];
    const e = await refusal(() => node.merge({
      base: basePath, adapters: [adapterPath], out, backend: 'cpu',
      onProgress: ({ phase }) => { phases.push(phase); if (phase === 'done') throw thrown; },
    }));
    expect([e, phases.at(-1)]).toEqual([thrown, 'done']);
    expect(readdirSync(folderOf(out))).toEqual([]);
  });

  it('aborts an output target the caller made (its lock is held from the start) when the call is refused before the merge takes it', async () => {
    const refusals = [
      { options: { dtype: 42 as never }, message: /^dtype must be a type name/ }, // an option
      { options: { dtype: 'q8_0' }, message: /q8_0/ }, // a type the base's container refuses, after the plan
      { options: { adapters: [join(dir, 'no-such-lora')] }, message: /no-such-lora/ }, // a source
    ];
    for (const { options, message } of refusals) {
      const out = freshOut();
      const target = await node.createNodeOutputTarget(out, 'file', [basePath]);
      expect(readdirSync(folderOf(out)).length, 'the target holds its lock').toBeGreaterThan(0);
      const e = await refusal(() => node.merge({ base: basePath, adapters: [adapterPath], backend: 'cpu', ...options, out: target }));
      expect(e.message).toMatch(message);
      expect(readdirSync(folderOf(out)), e.message).toEqual([]);
    }
  });

  it('aborts the output it opened when no backend can be made (the merge never took it)', async () => {
    let aborted = 0;
    const output: node.OutputTarget = { name: 'merged', createFile: () => { throw new Error('not reached'); }, commit: async () => {}, abort: async () => { aborted++; } };
    const e = await refusal(() => oneCallMerge<node.InputFileSet, string>({ base: baseSet(), adapters: [adapterSet()], out: 'merged' }, {
      openSource: async (set) => set,
      openOutput: async () => output,
      createBackend: async () => { throw new node.MergeError('GPU_UNAVAILABLE', 'no WebGPU adapter'); },
      checkSource: () => {},
      checkOutput: () => {},
    }));
    expect([e.message, aborted]).toEqual(['no WebGPU adapter', 1]);
  });

  it('an already aborted signal opens no source: not even the base is listed', async () => {
    const opened: string[] = [];
    const spy = (name: string, inner: node.InputFileSet): node.InputFileSet => ({
      name, list: () => (opened.push(name), inner.list()), open: (p) => inner.open(p), readText: (p) => inner.readText(p),
    });
    const e = await refusal(() => node.merge({ base: spy('base', baseSet()), adapters: [spy('adapter', adapterSet())], signal: aborted }));
    expect([e.code, e.message, opened]).toEqual(['ABORTED', 'merge cancelled', []]);
  });

  it('still merges what is right: weight -0 and an option set to undefined', async () => {
    const out = freshOut();
    await node.merge({ base: basePath, adapters: [{ source: adapterPath, weight: -0 }, { source: adapterPath, weight: 0.75 }], out, backend: 'cpu', dtype: undefined, signal: undefined });
    expectQ(decodeSafetensors(new Uint8Array(readFileSync(out))).tensors, 0.75, 'F16');
  });

  it('takes torch-style dtype names (float16, fp32) as the types they name', async () => {
    for (const [dtype, want] of [['float16', 'F16'], ['fp32', 'F32']] as const) {
      const { blobs } = await browser.merge({ base: baseBlob, adapters: [{ source: adapterFiles(), weight: -1.25 }], dtype, backend: 'cpu' });
      expectQ(decodeSafetensors(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors, -1.25, want);
    }
  });

  it('lists the float output dtypes a front end can offer (OUT_DTYPE_NAMES), each one merge() takes', async () => {
    expect(browser.OUT_DTYPE_NAMES).toEqual(['f32', 'f16', 'bf16', 'f8_e4m3', 'f8_e5m2']);
    expect(node.OUT_DTYPE_NAMES).toBe(browser.OUT_DTYPE_NAMES);
    for (const dtype of browser.OUT_DTYPE_NAMES) {
      const { blobs } = await browser.merge({ base: baseBlob, adapters: [adapterFiles()], dtype, backend: 'cpu' });
      const tensors = decodeSafetensors(new Uint8Array(await blobs[0].blob.arrayBuffer())).tensors;
      expect([...tensors.values()].map((t) => t.dtype), dtype).toEqual([...tensors.values()].map(() => dtype.toUpperCase()));
    }
  });
});

/** The browser entry's merge(): Files, Blobs and URLs only. */
const browserMergeMistakes: Mistake[] = [
  { name: 'adapters a string', run: () => browser.merge({ base: baseBlob, adapters: 'adapter.safetensors' as never }), message: /^adapters must be an array.*not the string "adapter\.safetensors"$/ },
  { name: 'a path where a File goes', run: () => browser.merge({ base: basePath, adapters: [adapterFiles()] }), message: /^the base \(".*llama\.safetensors"\) is not a URL; a path is given to merge\(\) from loramerge\/node/ },
  { name: 'a URL that is not http(s)', run: () => browser.merge({ base: 'file:///models/llama.safetensors', adapters: [adapterFiles()] }), message: /^the base is a URL of scheme file: .*only http:\/\/ and https:\/\/ URLs are read/ },
  { name: 'a list mixing a number in', run: () => browser.merge({ base: baseBlob, adapters: [[adapterFiles()[0], 7 as never]] }), message: /^adapters\[0\]\[1\] must be a File or a URL, not the number 7$/ },
  { name: 'a list with a Blob that has no name', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles(), [adapterFiles()[0], new Blob([fixture.adapter as Uint8Array<ArrayBuffer>])]] }), message: /^adapters\[1\]\[1\] is a Blob without a name; a list is a folder and takes Files/ },
  { name: 'a list mixing Files and URLs', run: () => browser.merge({ base: baseBlob, adapters: [[adapterFiles()[0], 'https://example.com/adapter_model.safetensors']] }), message: /^adapters\[0\] mixes Files and URLs; a list is one folder, all Files or all URLs$/ },
  { name: 'the base as a list of Blobs without names', run: () => browser.merge({ base: [baseBlob] as never, adapters: [adapterFiles()] }), message: /^the base\[0\] is a Blob without a name;/ },
  { name: 'out a path string', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles()], out: '/tmp/merged' as never }), message: /^out must be a File System Access handle .*not the string "\/tmp\/merged"; a path is written by merge\(\) from loramerge\/node \(and by its combineLoras, resizeLora and extractLora\)$/ },
  { name: 'browser merge in Node: backend webgpu', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles()], backend: 'webgpu' }), code: 'GPU_UNAVAILABLE', message: /^WebGPU is not available in this environment; in Node, WebGPU runs on Dawn from loramerge\/node \(its merge\(\), combineLoras, resizeLora and extractLora, or createNodeBackend\)$/ },
  { name: 'the same Blob as base and adapter', run: () => browser.merge({ base: baseBlob, adapters: [baseBlob] }), message: /^adapters\[0\] is the base itself/ },
  { name: 'a Blob of 0 bytes as the base', run: () => browser.merge({ base: new Blob([]), adapters: [adapterFiles()] }), code: 'HEADER_TOO_SMALL', message: /^model\.safetensors: file is empty, not a safetensors file$/ },
  { name: 'threads 1.5', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles()], threads: 1.5 }), message: /^threads must be a positive integer, not the number 1\.5$/ },
  { name: 'threads with a backend made by the caller', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles()], backend: { kind: 'cpu', description: 'CPU', merge: async () => new Uint8Array(), dispose() {} }, threads: 2 }), message: /^threads is for the backend merge\(\) makes; a backend you made has its threads from when it was made/ },
  { name: 'signal already aborted', run: () => browser.merge({ base: baseBlob, adapters: [adapterFiles()], signal: aborted }), code: 'ABORTED', message: /^merge cancelled$/ },
];

describe('merge() from loramerge refuses mistaken arguments', () => {
  it.each(browserMergeMistakes)('$name', async ({ run, code, message }) => {
    const e = await refusal(() => run(''));
    expectOneLineRefusal(e, code, message);
  });
});

const adapterSet = () => browser.memoryInputFileSet({
  'adapter_config.json': fixture.files['llama-lora/adapter_config.json'], 'adapter_model.safetensors': fixture.adapter,
}, 'llama-lora');
const baseSet = () => browser.memoryInputFileSet({ 'llama.safetensors': fixture.base }, 'llama');
/** The base as a picked folder of two files: the merged model is two files too. */
const baseWithConfig = () => [new File([fixture.base as Uint8Array<ArrayBuffer>], 'llama.safetensors'), new File(['{"model_type": "llama"}'], 'config.json')];
/** A file handle from showSaveFilePicker, as a page has it; nothing may write to it. */
const pickedFile = () => ({ kind: 'file', name: 'merged.safetensors', createWritable: async () => { throw new Error('not reached'); } }) as never;

/** The step-by-step calls, the constructors of inputs and outputs, backends and adapter jobs. */
const stepMistakes: Mistake[] = [
  { name: 'prepareMerge: a path for baseFiles', run: () => node.prepareMerge(basePath as never, [{ files: adapterSet() }]), message: /^prepareMerge: baseFiles must be an InputFileSet \(from blobInputFileSet, .*openNodeInputFileSet\), not the string "/ },
  { name: 'prepareMerge: an InputFileSet for an adapter entry', run: () => node.prepareMerge(baseSet(), [adapterSet() as never]), message: /^prepareMerge: adapters\[0\] is an InputFileSet; give \{ files: theSet, weight \}$/ },
  { name: 'prepareMerge: one adapter, not an array', run: () => node.prepareMerge(baseSet(), { files: adapterSet() } as never), message: /^prepareMerge: adapters must be an array.*not an object$/ },
  { name: 'prepareMerge: weight in quotes', run: () => node.prepareMerge(baseSet(), [{ files: adapterSet(), weight: '2' as never }]), message: /^prepareMerge: adapters\[0\]\.weight \(llama-lora\) must be a finite number .*\(write 2, without quotes\)$/ },
  { name: 'prepareMerge: source for files', run: () => node.prepareMerge(baseSet(), [{ source: adapterSet() } as never]), message: /^prepareMerge: adapters\[0\]: unknown option "source"; an adapter here is \{ files: an InputFileSet, weight \}$/ },
  { name: 'mergeModel: nothing prepared', run: () => node.mergeModel({} as never), message: /^mergeModel: prepared must be what prepareMerge returned, not undefined$/ },
  { name: 'mergeTensor: an op without its name', run: () => node.mergeTensor({ rows: 2, cols: 2 } as never, {} as never), message: /^mergeTensor: op must be a MergeOp naming its tensor \(op\.name\), not an object$/ },
  { name: 'mergeTensor: backend the string cpu', run: () => node.mergeTensor({ name: 'w' } as never, 'cpu' as never), message: /^mergeTensor: backend must be a MergeBackend .*not the string "cpu"$/ },
  { name: 'openModel: a path', run: () => node.openModel(basePath as never), message: /^openModel: files must be an InputFileSet/ },
  { name: 'createBackend: kind gpu', run: () => node.createBackend({ kind: 'gpu' as never }), message: /^createBackend: kind must be auto, webgpu or cpu, not the string "gpu"/ },
  { name: 'createBackend: a string for options', run: () => node.createBackend('cpu' as never), message: /^createBackend takes an object of options: createBackend\(\{ kind: "cpu" \}\)$/ },
  { name: 'createBackend: backend for kind', run: () => node.createBackend({ backend: 'cpu' } as never), message: /^createBackend options: unknown option "backend"; did you mean "kind"\?$/ },
  { name: 'createBackend: gpu an object without requestAdapter', run: () => node.createBackend({ kind: 'webgpu', gpu: {} as never }), message: /^createBackend: gpu must be a WebGPU entry point \(navigator\.gpu, or \(await getNodeGpu\(\)\)\.gpu\), not an object$/ },
  { name: 'createBackend: gpu the module, not its gpu', run: () => node.createBackend({ gpu: 'webgpu' as never }), message: /^createBackend: gpu must be a WebGPU entry point .*not the string "webgpu"$/ },
  { name: 'createBackend: a limit in quotes', run: () => node.createBackend({ kind: 'cpu', limits: { maxBufferSize: '1GB' as never } }), message: /^createBackend: limits\.maxBufferSize must be a positive integer, not the string "1GB"$/ },
  { name: 'createBackend: a limit misspelt', run: () => node.createBackend({ kind: 'cpu', limits: { maxStorageBufferSize: 1 << 20 } as never }), message: /^createBackend: limits: unknown option "maxStorageBufferSize"; the options are maxStorageBufferBindingSize, maxBufferSize, maxComputeWorkgroupsPerDimension$/ },
  { name: 'createBackend: decisionStore without save', run: () => node.createBackend({ kind: 'cpu', decisionStore: { load: async () => undefined } as never }), message: /^createBackend: decisionStore must be an object with load\(\) and save\(text\), not an object$/ },
  { name: 'createBackend: calibrationDtype in lower case', run: () => node.createBackend({ kind: 'cpu', calibrationDtype: 'f16' as never }), message: /^createBackend: calibrationDtype must be F32, F16, BF16, F8_E4M3 or F8_E5M2, not the string "f16" \(did you mean "F16"\?\)$/ },
  { name: 'createBackend: machine a number', run: () => node.createBackend({ kind: 'cpu', machine: 16 as never }), message: /^createBackend: machine must be a string, not the number 16$/ },
  { name: 'createNodeBackend: kind GPU', run: () => node.createNodeBackend('GPU' as never), message: /^createNodeBackend: kind must be auto, webgpu or cpu, not the string "GPU"/ },
  { name: 'createNodeBackend: threads 0', run: () => node.createNodeBackend('cpu', { threads: 0 }), message: /^createNodeBackend: threads must be a positive integer, not the number 0$/ },
  // Each made so that, were the limit not checked, no worker would start (a worker script that is
  // not there, no Web Workers in Node, a backend whose CPU threads start only when it needs them).
  { name: 'createNodeBackend: threads past MAX_THREADS', run: () => node.createNodeBackend('webgpu', { threads: 1025 }), message: /^createNodeBackend: threads is 1025; at most 1024 \(the limit MAX_THREADS: each thread adds about 14 MiB, started at once\)$/ },
  { name: 'createCpuWorkerPool: threads past MAX_THREADS', run: () => node.createCpuWorkerPool({ threads: 100_000, workerUrl: new URL('file:///no-such-worker.js') }), message: /^createCpuWorkerPool: threads is 100000; at most 1024 \(the limit MAX_THREADS/ },
  { name: 'createBrowserCpuWorkerPool: threads past MAX_THREADS', run: () => node.createBrowserCpuWorkerPool({ threads: 4096 }), message: /^createBrowserCpuWorkerPool: threads is 4096; at most 1024/ },
  { name: 'createCpuWorkerPool: threads in quotes', run: () => node.createCpuWorkerPool({ threads: '4' as never }), message: /^createCpuWorkerPool: threads must be a positive integer, not the string "4"$/ },
  { name: 'createBrowserCpuWorkerPool: thread for threads', run: () => node.createBrowserCpuWorkerPool({ thread: 2 } as never), message: /^createBrowserCpuWorkerPool options: unknown option "thread"; did you mean "threads"\?$/ },
  { name: 'urlInputFileSet: one URL, not an array', run: () => node.urlInputFileSet('https://example.com/a.safetensors' as never), message: /^urlInputFileSet: urls must be an array of URLs \(wrap a single one in \[ \]\), not the string "https:/ },
  { name: 'urlInputFileSet: an ftp URL', run: () => node.urlInputFileSet(['ftp://example.com/a.safetensors']), message: /^ftp:\/\/example\.com\/a\.safetensors: only http:\/\/ and https:\/\/ URLs are read/ },
  { name: 'urlInputFileSet: signal a plain object', run: () => node.urlInputFileSet(['https://example.com/a.safetensors'], undefined, { signal: {} as never }), message: /^signal must be an AbortSignal/ },
  { name: 'blobInputFileSet: an object for the Map', run: () => node.blobInputFileSet('model', { 'model.safetensors': baseBlob } as never), message: /^blobInputFileSet: files must be a Map from relative path to Blob, not an object$/ },
  { name: 'inputFileSetFromFiles: a Blob without a name', run: () => node.inputFileSetFromFiles([baseBlob as never]), message: /^inputFileSetFromFiles: files\[0\] must be a File \(with its name\), not a Blob$/ },
  { name: 'memoryInputFileSet: a number for bytes', run: () => node.memoryInputFileSet({ 'model.safetensors': 42 as never }), message: /^memoryInputFileSet: files\["model\.safetensors"\] must be a Uint8Array or a string, not the number 42$/ },
  { name: 'openNodeInputFileSet: a File for the path', run: () => node.openNodeInputFileSet(new File([], 'x') as never), message: /^openNodeInputFileSet: path must be a file or folder path, not a File$/ },
  { name: 'createFileSystemAccessOutputTarget: a path', run: () => node.createFileSystemAccessOutputTarget('/tmp/out' as never), message: /^createFileSystemAccessOutputTarget: handle must be a file or folder handle .*not the string "\/tmp\/out"$/ },
  { name: 'createOpfsOutputTarget: nothing', run: () => node.createOpfsOutputTarget(undefined as never), message: /^createOpfsOutputTarget: folder must be a folder handle .*not undefined$/ },
  { name: 'createNodeOutputTarget: a number for the path', run: () => node.createNodeOutputTarget(42 as never, 'file', []), message: /^createNodeOutputTarget: outPath must be a path, not the number 42$/ },
  { name: 'createBlobOutputTarget: options for the name', run: () => node.createBlobOutputTarget({ name: 'x' } as never), message: /^createBlobOutputTarget: name must be a string, not an object$/ },
  { name: 'parseOutDType: a number', run: () => parseOutDType(16 as never), message: /^dtype must be a type name such as "f16" or "bf16", not the number 16$/ },
  { name: 'parseOutDType: an unknown name', run: () => parseOutDType('f12'), message: /^unknown dtype "f12" \(expected f32, f16, bf16, f8_e4m3 or f8_e5m2\)$/ },
  { name: 'generateSample: an unknown preset', run: () => node.generateSample('tiny' as never), message: /^unknown sample preset "tiny" \(expected small or large\)$/ },
  { name: 'openNodeByteSource: a number', run: () => node.openNodeByteSource(42 as never), message: /^openNodeByteSource: path must be a file path, not the number 42$/ },
  { name: 'openGguf: a path', run: () => openGguf('model.gguf' as never), message: /^openGguf: source must be a ByteSource .*not the string "model\.gguf"$/ },
  { name: 'urlByteSource: an ftp URL', run: () => node.urlByteSource('ftp://example.com/model.gguf'), message: /^ftp:\/\/example\.com\/model\.gguf: only http:\/\/ and https:\/\/ URLs are read/ },
  { name: 'urlByteSource: a number', run: () => node.urlByteSource(42 as never), message: /^urlByteSource: url must be a URL or a string, not the number 42$/ },
  { name: 'combineLoras: one adapter, not an array', run: () => node.combineLoras({ adapters: adapterSet() as never, method: 'cat' }), message: /^adapters must be an array.*\(wrap a single one in \[ \]\); not an? / },
  { name: 'combineLoras: ranks for rank', run: () => node.combineLoras({ adapters: [adapterSet()], method: 'svd', ranks: 2 } as never), message: /^combineLoras options: unknown option "ranks"; did you mean "rank"\?$/ },
  { name: 'combineLoras: weight in quotes', run: () => node.combineLoras({ adapters: [{ source: adapterSet(), weight: '1' as never }], method: 'cat' }), message: /^adapters\[0\]\.weight must be a finite number/ },
  { name: 'combineLoras: method in capitals', run: () => node.combineLoras({ adapters: [adapterSet()], method: 'SVD' as never, rank: 1 }), message: /^method must be one of cat, svd, ties, dare_linear, dare_ties, magnitude_prune, not the string "SVD" \(did you mean "svd"\?\)$/ },
  { name: 'combineLoras: method left out', run: () => node.combineLoras({ adapters: [adapterSet()] } as never), message: /^method must be one of cat, svd, .*, not undefined$/ },
  { name: 'extractLora: neither rank nor energy', run: () => node.extractLora({ base: baseSet(), tuned: baseSet() }), message: /^extractLora takes exactly one of rank \(every module's rank\) and energy \(the share of ‖T − B‖²_F each module keeps\), such as rank: 32 or energy: 0\.9; neither was given$/ },
  { name: 'extractLora: both rank and energy', run: () => node.extractLora({ base: baseSet(), tuned: baseSet(), rank: 8, energy: 0.9 }), message: /^extractLora takes exactly one of rank .*; not both$/ },
  { name: 'extractLora: rank in quotes', run: () => node.extractLora({ base: baseSet(), tuned: baseSet(), rank: '4' as never }), message: /^rank must be a positive integer, not the string "4"$/ },
  { name: 'resizeLora: a rule value in quotes', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'sv_fro', value: '0.9' as never } }), message: /^sv_fro must be a number in \(0, 1\], not the string "0\.9"$/ },
  { name: 'resizeLora: value for a rank rule\'s rank', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank', value: 8 } as never }), message: /^rule: unknown option "value"; a rank rule gives its rank: \{ kind: "rank", rank: 8 \}$/ },
  { name: 'resizeLora: rank for an sv_fro rule\'s value', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'sv_fro', rank: 8 } as never }), message: /^rule: unknown option "rank"; a sv_fro rule gives its value: \{ kind: "sv_fro", value \}, its largest rank as maxRank; a fixed rank is \{ kind: "rank", rank \}$/ },
  { name: 'resizeLora: a maxRank that is no positive integer', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'sv_fro', value: 0.9, maxRank: 2.5 } }), message: /^rule\.maxRank must be a positive integer, not 2\.5$/ },
  { name: 'resizeLora: a rank rule without its rank', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank' } as never }), message: /^rule\.rank must be a positive integer, not undefined$/ },
  { name: 'resizeLora: backend gpu', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank', rank: 1 }, backend: 'gpu' as never }), message: /^backend must be auto, webgpu or cpu, not the string "gpu"/ },
  { name: 'resizeLora: adapter null', run: () => node.resizeLora({ adapter: null as never, rule: { kind: 'rank', rank: 1 } }), message: /^adapter must be a File or Blob, .*not null$/ },
  { name: 'extractLora: signal a plain object', run: () => node.extractLora({ base: baseSet(), tuned: baseSet(), rank: 1, signal: {} as never }), message: /^signal must be an AbortSignal/ },
  { name: 'extractLora: signal already aborted', run: () => node.extractLora({ base: baseSet(), tuned: baseSet(), rank: 1, signal: aborted }), code: 'ABORTED', message: /^extract cancelled$/ },
  { name: 'combineLoras: a PEFT folder into a picked file', run: () => node.combineLoras({ adapters: [adapterSet()], method: 'cat', out: { kind: 'file', name: 'lora.safetensors', createWritable: async () => { throw new Error('not reached'); } } as never }), message: /^a PEFT adapter is a folder \(adapter_config\.json \+ adapter_model\.safetensors\): give a folder, or ask for the kohya format$/ },
  { name: 'browser merge: a base of two files into a picked file', run: () => browser.merge({ base: baseWithConfig(), adapters: [adapterFiles()], out: pickedFile() }), message: /^out is a file \(merged\.safetensors\), but the base is 2 files \(config\.json, llama\.safetensors\) and the merged model mirrors them; give a folder \(showDirectoryPicker, an OPFS folder\) instead$/ },
  { name: 'merge: a base of two files into a picked file', run: () => node.merge({ base: baseWithConfig(), adapters: [adapterPath], out: pickedFile() }), message: /^out is a file \(merged\.safetensors\), but the base is 2 files \(config\.json, llama\.safetensors\) and the merged model mirrors them; give a folder/ },
  { name: 'extractLora: out a File', run: () => node.extractLora({ base: baseSet(), tuned: baseSet(), rank: 1, out: new File([], 'x') as never }), message: /^out must be a path, a File System Access handle .*not a File/ },
  { name: 'browser extractLora: out a path', run: () => browser.extractLora({ base: baseSet(), tuned: baseSet(), rank: 1, out: 'lora/' as never }), message: /^out must be a File System Access handle .*not the string "lora\/"; a path is written by merge\(\) from loramerge\/node/ },
  { name: 'browser extractLora in Node: backend webgpu', run: () => browser.extractLora({ base: baseSet(), tuned: baseSet(), rank: 1, backend: 'webgpu' }), code: 'GPU_UNAVAILABLE', message: /^WebGPU is not available in this environment; in Node, WebGPU runs on Dawn from loramerge\/node/ },
  { name: 'resizeLora: out an https URL', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank', rank: 1 }, out: 'https://example.com/lora.safetensors' }), message: /^out is a URL \("https:\/\/example\.com\/lora\.safetensors"\); the adapter is written to a path on disk, a File System Access handle or an OutputTarget$/ },
  { name: 'resizeLora: overwrite in quotes', run: () => node.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank', rank: 1 }, overwrite: 'yes' as never }), message: /^overwrite must be true or false, not the string "yes"$/ },
  { name: 'combineLoras: hfToken a number', run: () => node.combineLoras({ adapters: [adapterSet()], method: 'cat', hfToken: 42 as never }), message: /^hfToken must be a Hugging Face token \(a string\) or false, not the number 42$/ },
  { name: 'browser combineLoras: hfToken a number', run: () => browser.combineLoras({ adapters: [adapterSet()], method: 'cat', hfToken: 42 as never }), message: /^hfToken must be a Hugging Face token \(a string\) or false, not the number 42$/ },
  { name: 'browser resizeLora: hfToken misspelt', run: () => browser.resizeLora({ adapter: adapterSet(), rule: { kind: 'rank', rank: 1 }, hfTokn: 'hf_x' } as never), message: /^resizeLora options: unknown option "hfTokn"; did you mean "hfToken"\?$/ },
  { name: 'browser merge: hfToken true', run: () => browser.merge({ base: baseSet(), adapters: [adapterSet()], hfToken: true as never }), message: /^hfToken must be a Hugging Face token \(a string\) or false, not boolean true$/ },
  { name: 'browser urlByteSource: hfToken empty', run: () => browser.urlByteSource('https://huggingface.co/a/b/resolve/main/m.gguf', { hfToken: ' \n' }), message: /^hfToken must be a Hugging Face token \(visible ASCII, not empty\) or false; the string given holds other characters or none$/ },
  { name: 'extractLora: a path in a list', run: () => node.extractLora({ base: ['base/model.safetensors'], tuned: baseSet(), rank: 1 }), message: /^base\[0\] is a path in a list; give the path of the folder that holds the files, or of the one file, as one string$/ },
];

describe('the step-by-step calls, inputs, outputs, backends and adapter jobs refuse mistaken arguments', () => {
  it.each(stepMistakes)('$name', async ({ run, code, message }) => {
    const e = await refusal(() => run(''));
    expectOneLineRefusal(e, code, message);
  });

  it('an adapter job with an already aborted signal opens no source', async () => {
    const opened: string[] = [];
    const spy = (name: string, inner: node.InputFileSet): node.InputFileSet => ({
      name, list: () => (opened.push(name), inner.list()), open: (p) => inner.open(p), readText: (p) => inner.readText(p),
    });
    const e = await refusal(() => node.extractLora({ base: spy('base', baseSet()), tuned: spy('tuned', baseSet()), rank: 1, signal: aborted }));
    expect([e.code, e.message, opened]).toEqual(['ABORTED', 'extract cancelled', []]);
  });

  it('mergeModel with a wrong option aborts the output it was given, leaving nothing', async () => {
    const prepared = await node.prepareMerge(baseSet(), [{ files: adapterSet() }]);
    try {
      const out = freshOut();
      const output = await node.createNodeOutputTarget(out, 'file', []);
      const backend = await node.createBackend({ kind: 'cpu' });
      const e = await refusal(() => node.mergeModel({ prepared, output, backend, onProgress: 'yes' as never }));
      backend.dispose();
      expect([e.code, e.message]).toEqual(['BAD_ARGUMENT', 'mergeModel: onProgress must be a function, not the string "yes"']);
      expect(readdirSync(folderOf(out))).toEqual([]);
      // An output type the base's format does not write is named as mergeModel's option.
      const output2 = await node.createNodeOutputTarget(out, 'file', []);
      const backend2 = await node.createBackend({ kind: 'cpu' });
      const e2 = await refusal(() => node.mergeModel({ prepared, output: output2, backend: backend2, outDtype: 'f12' }));
      backend2.dispose();
      expect([e2.code, e2.message]).toEqual(['BAD_ARGUMENT', 'outDtype must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not "f12" (for a safetensors model)']);
      expect(readdirSync(folderOf(out))).toEqual([]);
    } finally {
      await prepared.close();
    }
  });
});

/** Values for each slot of merge()'s options: mostly right, else a mistake plain JavaScript lets through. */
const anything = [undefined, null, 0, 42, NaN, '', 'x', [], {}, () => {}, true, new Blob([]), [null]];
const mostly = <T,>(right: fc.Arbitrary<T>, wrong: readonly unknown[]) =>
  fc.oneof({ arbitrary: right as fc.Arbitrary<unknown>, weight: 5 }, { arbitrary: fc.constantFrom(...wrong), weight: 1 });
function optionsArbitrary(out: () => string) {
  const weight = mostly(fc.oneof(fc.constant(undefined), fc.double({ min: -2, max: 2, noNaN: true }), fc.constant(-0)), [NaN, Infinity, '0.8', null, 1e309]);
  const adapter = mostly(
    fc.oneof(fc.constant(adapterPath), weight.map((w) => ({ source: adapterPath, weight: w }))),
    [null, 42, { path: adapterPath }, basePath, 'ftp://host/lora', { source: adapterPath, wieght: 2 }],
  );
  return fc.record({
    base: mostly(fc.constantFrom(basePath, baseBlob), [...anything, 'ftp://host/base.safetensors']),
    adapters: mostly(fc.array(adapter, { minLength: 1, maxLength: 2 }), [adapterPath, ...anything]),
    out: mostly(fc.constantFrom('fresh', undefined), anything),
    dtype: mostly(fc.constantFrom(undefined, 'f32', 'bf16', 'fp16', 'float16'), ['f8', 'int4', ...anything]),
    backend: mostly(fc.constantFrom(undefined, 'cpu', 'auto'), ['gpu', 'CPU', 'webgpu ', ...anything]),
    signal: mostly(fc.constant(undefined), [aborted, ...anything]),
    onProgress: mostly(fc.constantFrom(undefined, () => {}), anything),
    extra: mostly(fc.constantFrom({}, { unused: undefined }), [{ weights: [1] }, { outPath: 'x' }, { dtype_: 'f16' }]),
  }, { requiredKeys: ['base', 'adapters', 'extra'] }).map(({ extra, out: o, ...rest }) => ({
    ...rest, ...(o === undefined ? {} : { out: o === 'fresh' ? out() : o }), ...(extra as Record<string, unknown>),
  }));
}

/** The weight and output dtype the options ask for, where they are right. */
function asked(options: Record<string, unknown>): { weight: number; dtype: 'F16' | 'F32' | 'BF16' } {
  const adapters = options.adapters as unknown[];
  const weight = adapters.reduce<number>((sum, a) => sum + (typeof a === 'object' && a !== null ? ((a as { weight?: number }).weight ?? 1) : 1), 0);
  const dtype = ({ f32: 'F32', bf16: 'BF16', fp16: 'F16', float16: 'F16' } as const)[options.dtype as 'f32'] ?? 'F16';
  return { weight, dtype };
}

describe('random wrong-typed options', () => {
  it('give a one-line MergeError, or a merge matching float64 truth, and leave nothing at a refused out', async () => {
    let merged = 0;
    let refused = 0;
    await fc.assert(fc.asyncProperty(optionsArbitrary(freshOut), async (options) => {
      let result: Awaited<ReturnType<typeof node.merge>>;
      try {
        result = await node.merge(options as never);
      } catch (e) {
        refused++;
        expect(browser.isMergeError(e), String((e as Error)?.stack ?? e)).toBe(true);
        expect((e as Error).message).not.toContain('\n');
        if (typeof options.out === 'string' && options.out.endsWith('merged.safetensors')) expect(readdirSync(folderOf(options.out))).toEqual([]);
        return;
      }
      merged++;
      const { weight, dtype } = asked(options as Record<string, unknown>);
      const bytes = typeof options.out === 'string' ? new Uint8Array(readFileSync(options.out)) : new Uint8Array(await result.blobs[0].blob.arrayBuffer());
      expectQ(decodeSafetensors(bytes).tensors, weight, dtype);
    }), { numRuns: 120, seed: 20261205 });
    // Both outcomes were met: the property is not vacuous either way.
    expect(merged).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });
});
