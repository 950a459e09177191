/**
 * The library as web tools embed it: in-memory inputs, a Blob output, WebGPU through Dawn, typed
 * progress events and cancellation with an AbortSignal. Outputs are checked against float64 truth.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBlobOutputTarget, generateSample, memoryInputFileSet, mergeModel, prepareMerge,
  type MergeBackend, type MergeProgress, type SampleFiles,
} from '../src/index.js';
import { createNodeBackend } from '../src/node.js';
import { decodeSafetensors, roundForDType } from './helpers/fixtures.js';

const parse = (bytes: Uint8Array) => decodeSafetensors(bytes).tensors;

let backend: MergeBackend;
let sample: SampleFiles;
beforeAll(async () => {
  backend = await createNodeBackend('webgpu');
  sample = await generateSample('small');
});
afterAll(() => backend?.dispose());

describe('mergeModel on WebGPU', () => {
  it('merges the sample exactly and reports progress', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(sample.base, 'base'), [
      { files: memoryInputFileSet(sample.adapter, 'adapter'), weight: -0.5 },
    ]);
    expect(prepared.plan.problems).toEqual([]);
    const output = createBlobOutputTarget();
    const events: MergeProgress[] = [];
    const result = await mergeModel({ prepared, output, backend, onProgress: (e) => events.push(e) });
    await prepared.close();
    expect(result.tensorsUpdated).toBe(14);
    expect(events.at(-1)).toMatchObject({ phase: 'done', tensorsDone: result.tensors });
    expect(events.at(-1)!.bytesDone).toBe(events.at(-1)!.bytesTotal);
    for (let i = 1; i < events.length; i++) expect(events[i].bytesDone).toBeGreaterThanOrEqual(events[i - 1].bytesDone);

    const files = output.files();
    expect(files.map((f) => f.path).sort()).toEqual(['config.json', 'model.safetensors']);
    const merged = parse(new Uint8Array(await files.find((f) => f.path === 'model.safetensors')!.blob.arrayBuffer()));
    const base = parse(sample.base['model.safetensors']);
    const adapter = parse(sample.adapter['adapter_model.safetensors']);
    const scale = -0.5 * (sample.options.alpha / sample.options.rank);
    let checked = 0;
    for (const [key, a] of adapter) {
      if (!key.endsWith('.lora_A.weight')) continue;
      const module = key.slice('base_model.model.'.length, -'.lora_A.weight'.length);
      const b = adapter.get(key.replace('lora_A', 'lora_B'))!;
      const w = base.get(`${module}.weight`)!;
      const got = merged.get(`${module}.weight`)!;
      const [out, inn] = w.shape;
      const r = a.shape[0];
      for (let o = 0; o < out; o++) {
        for (let i = 0; i < inn; i++) {
          let delta = 0;
          for (let k = 0; k < r; k++) delta += b.values[o * r + k] * a.values[k * inn + i];
          const exact = w.values[o * inn + i] + scale * delta;
          const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(exact), 2 ** -126))) - 7);
          const value = got.values[o * inn + i];
          if (value !== roundForDType(exact, 'BF16')) expect(Math.abs(value - exact), `${module}[${o},${i}]`).toBeLessThanOrEqual(ulp);
        }
      }
      checked++;
    }
    expect(checked).toBe(14);
  });

  it('stops on abort and leaves no output', async () => {
    const prepared = await prepareMerge(memoryInputFileSet(sample.base, 'base'), [{ files: memoryInputFileSet(sample.adapter, 'adapter') }]);
    const output = createBlobOutputTarget();
    const controller = new AbortController();
    const run = mergeModel({
      prepared, output, backend, signal: controller.signal,
      onProgress: (e) => { if (e.tensorsDone >= 3) controller.abort(); },
    });
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    await prepared.close();
    expect(output.files()).toEqual([]);
  });
});
