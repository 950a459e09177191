/**
 * A cancel while the inputs are opened. prepareMerge looked at its signal before opening the base
 * and between adapters, but not inside either open: a base of 163 shards is 163 headers to read and
 * parse, and an adapter of 44,544 modules a header of 89,088 tensors and then the parse of its
 * modules, each seconds of work in which an abort() (the CLI's Ctrl-C) was seen only at the end.
 * Now the event loop gets a turn, and the signal is looked at, between the shards and between an
 * adapter's header and its modules.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openAdapter } from '../src/formats/adapter.js';
import { openModel } from '../src/formats/open-model.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { deepseekV3Folder, watchingOpens, deepseekV3PeftConfig, expertLoraTensors, expertRankPattern, fp8Linear, HIDDEN, MOE_INTER, writeHeaderOnly } from './helpers/deepseek-v3-headers.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** How many times a PEFT adapter's modules were parsed (parsePeftAdapter called, from openAdapter). */
const peftParses = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/formats/peft.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/formats/peft.js')>();
  return {
    ...real,
    parsePeftAdapter: (...args: Parameters<typeof real.parsePeftAdapter>) => {
      peftParses.count++;
      return real.parsePeftAdapter(...args);
    },
  };
});

/** prepareMerge aborted on the next task after its start: what it rejected with. */
async function cancelledRun(run: (signal: AbortSignal) => Promise<{ close(): Promise<void> }>, reason: Error): Promise<unknown> {
  const controller = new AbortController();
  setTimeout(() => controller.abort(reason), 0);
  return run(controller.signal).then(async (prepared) => {
    await prepared.close();
    return prepared;
  }, (e: unknown) => e);
}

describe('a cancel while prepareMerge opens its inputs', () => {
  it('is seen between the headers of a base of 163 shards, long before the base is open', async () => {
    const dir = deepseekV3Folder(temp.make({}));
    // Uncancelled, the open reads every shard's header.
    const all = watchingOpens(await openNodeInputFileSet(dir));
    await (await openModel(all.files)).close();
    expect([...all.opened].filter((p) => p.endsWith('.safetensors'))).toHaveLength(163);
    const m = 'model.layers.3.mlp.experts.0.gate_proj';
    const adapter = memoryInputFileSet({
      'adapter_config.json': deepseekV3PeftConfig(['gate_proj']),
      'adapter_model.safetensors': buildSafetensors([
        { name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [8, HIDDEN], data: new Uint8Array(2 * 8 * HIDDEN) },
        { name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [MOE_INTER, 8], data: new Uint8Array(2 * MOE_INTER * 8) },
      ]),
    }, 'adapter');
    const reason = new Error('user pressed stop');
    const base = await openNodeInputFileSet(dir);
    const { files: watched, opened: shardsOpened } = watchingOpens(base);
    const outcome = await cancelledRun((signal) => prepareMerge(watched, [{ files: adapter, weight: 1 }], { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Without the turns between shards the abort was seen once all 163 were open. With them it is
    // seen at the first turn after the index (its 90,427 entries parsed in one piece). Counted in
    // shards opened, not in milliseconds: a busy machine changes the time, not the count.
    expect(shardsOpened.size, `${shardsOpened.size} of the 163 shards opened after the abort`).toBeLessThan(163 / 2);
  }, 120_000);

  it("is seen between an adapter's header of 89,088 tensors and the parse of its 44,544 modules against its rank_pattern", async () => {
    // rank_pattern keyed by module paths, as PEFT saves it (here those of layer 60 and some of 59, at rank 8):
    // each module is looked up in it as the modules are parsed.
    const rankPattern = expertRankPattern();
    expect(Object.keys(rankPattern)).toHaveLength(1000);
    const dir = temp.make({ 'adapter_config.json': deepseekV3PeftConfig(['gate_proj', 'up_proj', 'down_proj'], rankPattern) });
    writeHeaderOnly(join(dir, 'adapter_model.safetensors'), expertLoraTensors());
    const files = await openNodeInputFileSet(dir);
    // Uncancelled, the open parses the adapter's modules once.
    peftParses.count = 0;
    await (await openAdapter(files)).file.source.close();
    expect(peftParses.count).toBe(1);
    const baseDir = join(temp.make({}), 'base');
    mkdirSync(baseDir);
    writeHeaderOnly(join(baseDir, 'model.safetensors'), fp8Linear('model.layers.3.mlp.experts.0.gate_proj', MOE_INTER, HIDDEN));
    const base = await openNodeInputFileSet(baseDir);
    const reason = new Error('user pressed stop');
    // Aborted as the adapter's weights are opened: after the base is open, before the adapter's
    // header is read, so the abort is due at the turn between header and modules.
    const controller = new AbortController();
    const opened: string[] = [];
    const watched: typeof files = {
      name: files.name, list: () => files.list(), readText: (p) => files.readText(p),
      open: (p) => {
        opened.push(p);
        if (p === 'adapter_model.safetensors') controller.abort(reason);
        return files.open(p);
      },
    };
    peftParses.count = 0;
    const outcome = await prepareMerge(base, [{ files: watched, weight: 1 }], { signal: controller.signal }).then(async (prepared) => {
      await prepared.close();
      return prepared;
    }, (e: unknown) => e);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Its modules were never parsed: without the turn between header and modules the abort was
    // seen once the adapter was parsed. Counted in parses, not in milliseconds.
    expect(opened).toEqual(['adapter_model.safetensors']);
    expect(peftParses.count).toBe(0);
  }, 120_000);
});
