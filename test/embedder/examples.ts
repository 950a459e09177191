// The library's examples as README.md ("The library", the adapter jobs) and the TSDoc @example of
// merge, combineLoras, resizeLora, extractLora and convertLora write them, the values they name
// declared here: compiled with strict TypeScript against the installed package (lib ES2022 and DOM,
// as README says for the browser outputs), never run. An example that drifts from the API fails tsc.
import { combineLoras, extractLora, merge, resizeLora, type MergeProgress } from 'loramerge';
import * as node from 'loramerge/node';

declare const baseFile: File;
declare const loraFile: File;
declare const loraFiles: File[];
declare const baseFiles: File[];
declare const tunedFiles: File[];
declare const tunedFile: File;
declare const lora: File;
declare const loraA: File;
declare const loraB: File;
declare const a: File;
declare const b: File;
declare const abortController: AbortController;
declare const folderHandle: FileSystemDirectoryHandle;
declare const signal: AbortSignal;
declare const onProgress: (event: MergeProgress) => void;

/** README, "The library": one call in a browser or a worker, then in Node. */
export async function readmeMerge(): Promise<void> {
  const { blobs, plan } = await merge({
    base: baseFile,
    adapters: [{ source: loraFiles, weight: 0.8 }, 'https://huggingface.co/ORG/NAME'],
    dtype: 'bf16',
    backend: 'auto',
    threads: 4,
    signal: abortController.signal,
    onProgress: (e) => console.log(e.bytesDone / e.bytesTotal),
  });
  console.log(blobs, plan);
  await node.merge({ base: 'llama/', adapters: ['lora/'], out: 'merged/' });
}

/** README, the adapter jobs: in a browser, in Node, and Node's llama.cpp LoRA GGUFs. */
export async function readmeJobs(): Promise<void> {
  const { blobs, modules } = await combineLoras({
    adapters: [loraA, { source: loraB, weight: -0.5 }],
    method: 'svd', rank: 16,
    format: 'kohya',
  });
  console.log(blobs, modules);
  await resizeLora({ adapter: lora, rule: { kind: 'sv_fro', value: 0.9, maxRank: 32 }, out: folderHandle });
  await extractLora({ base: baseFiles, tuned: tunedFiles, rank: 32, backend: 'webgpu', signal, onProgress });

  await node.combineLoras({ adapters: ['style/', { source: 'detail.safetensors', weight: 0.5 }], method: 'svd', rank: 16, out: 'combined.safetensors' });
  await node.resizeLora({ adapter: 'https://huggingface.co/ORG/NAME', rule: { kind: 'rank', rank: 8 }, out: 'small/', overwrite: true });
  await node.extractLora({ base: 'llama/', tuned: 'llama-tuned/', rank: 32, out: 'extracted/', threads: 4 });

  await node.convertLora({ adapter: 'my-lora/', base: 'Llama-3.2-1B-F16.gguf', out: 'my-lora.gguf', outtype: 'q8_0', signal, onProgress });
  await node.resizeLora({ adapter: 'my-lora/', rule: { kind: 'rank', rank: 8 }, base: 'Llama-3.2-1B-F16.gguf', out: 'small.gguf' });
  await node.combineLoras({ adapters: ['a.gguf', 'b.gguf'], method: 'cat', out: 'both.gguf' });
}

/** Each export's TSDoc @example, as its doc comment writes it. */
export async function tsdocExamples(): Promise<void> {
  {
    const { blobs } = await merge({ base: baseFile, adapters: [{ source: loraFile, weight: 0.8 }], dtype: 'f16' });
    console.log(blobs);
  }
  await node.merge({ base: 'llama/', adapters: ['lora/'], out: 'merged/', dtype: 'bf16' });
  {
    const { blobs, modules } = await combineLoras({ adapters: [a, { source: b, weight: 0.5 }], method: 'svd', rank: 16 });
    console.log(blobs, modules);
  }
  {
    const { blobs, modules } = await resizeLora({ adapter: loraFile, rule: { kind: 'sv_fro', value: 0.9 } });
    console.log(blobs, modules);
  }
  {
    const { blobs, modules } = await extractLora({ base: baseFile, tuned: tunedFile, rank: 32 });
    console.log(blobs, modules);
  }
  await node.combineLoras({ adapters: ['style/', { source: 'detail.safetensors', weight: 0.5 }], method: 'svd', rank: 16, out: 'combined/' });
  await node.resizeLora({ adapter: 'lora.safetensors', rule: { kind: 'sv_fro', value: 0.9 }, out: 'lora-small.safetensors' });
  await node.convertLora({ adapter: 'my-lora/', base: 'Llama-3.2-1B-F16.gguf', out: 'my-lora.gguf' });
  await node.extractLora({ base: 'llama/', tuned: 'llama-tuned/', rank: 32, out: 'extracted/' });
}
