// Mistakes the declarations refuse at compile time under a plain Node configuration (no DOM lib):
// each line below must be a type error, or `tsc` fails on its unused @ts-expect-error. Never run.
import { combineLoras, merge, resizeLora, type MergeProgress } from 'loramerge/node';
import { createWriteStream } from 'node:fs';

export async function mistakes(): Promise<void> {
  // @ts-expect-error `adapter` for `adapters`
  await merge({ base: 'llama/', adapter: ['lora/'] });
  // @ts-expect-error a weight in quotes
  await merge({ base: 'llama/', adapters: [{ source: 'lora/', weight: '0.8' }] });
  // @ts-expect-error a backend that is none of auto, webgpu, cpu
  await merge({ base: 'llama/', adapters: ['lora/'], backend: 'gpu' });
  // @ts-expect-error one adapter not in an array
  await merge({ base: 'llama/', adapters: 'lora/' });
  // @ts-expect-error out a number
  await merge({ base: 'llama/', adapters: ['lora/'], out: 3 });
  // @ts-expect-error out a Node stream
  await merge({ base: 'llama/', adapters: ['lora/'], out: createWriteStream('merged.safetensors') });
  // @ts-expect-error out a File: something to read, not a place to write
  await merge({ base: 'llama/', adapters: ['lora/'], out: new File([], 'merged.safetensors') });
  // @ts-expect-error out an object with a path
  await combineLoras({ adapters: ['a/', 'b/'], method: 'cat', out: { path: 'combined/' } });
  // @ts-expect-error out a Buffer
  await resizeLora({ adapter: 'lora/', rule: { kind: 'rank', rank: 8 }, out: Buffer.from('small/') });
  const waitingForAPlan = (event: MergeProgress) =>
    // @ts-expect-error a phase no event has: planning is done before the first event
    event.phase === 'plan';
  await merge({ base: 'llama/', adapters: ['lora/'], onProgress: waitingForAPlan });
}
