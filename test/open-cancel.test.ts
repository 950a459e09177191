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
import { RE2JS } from 're2js';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { openAdapter } from '../src/formats/adapter.js';
import { openModel } from '../src/formats/open-model.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { openNodeInputFileSet } from '../src/io/node-input-files.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { deepseekV3Folder, watchingOpens, deepseekV3PeftConfig, expertLoraTensors, expertRankPattern, fp8Linear, HIDDEN, MOE_INTER, uncancelledMs, writeHeaderOnly } from './helpers/deepseek-v3-headers.js';
import { buildSafetensors, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

/** prepareMerge aborted on the next task after its start: what it rejected with, and when. */
async function cancelledRun(run: (signal: AbortSignal) => Promise<{ close(): Promise<void> }>, reason: Error): Promise<{ outcome: unknown; ms: number }> {
  const controller = new AbortController();
  setTimeout(() => controller.abort(reason), 0);
  const started = performance.now();
  const outcome = await run(controller.signal).then(async (prepared) => {
    await prepared.close();
    return prepared;
  }, (e: unknown) => e);
  return { outcome, ms: performance.now() - started };
}

describe('a cancel while prepareMerge opens its inputs', () => {
  it('is seen between the headers of a base of 163 shards, long before the base is open', async () => {
    const dir = deepseekV3Folder(temp.make({}));
    const whole = await uncancelledMs(async () => (await openModel(await openNodeInputFileSet(dir))).close());
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
    const { outcome, ms } = await cancelledRun((signal) => prepareMerge(watched, [{ files: adapter, weight: 1 }], { signal }), reason);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Without the turns between shards the abort was seen once all 163 were open. With them it is
    // seen at the first turn after the index (its 90,427 entries parsed in one piece): counted in
    // shards opened, which a busy machine does not change, and in time, 0.25 to 0.45 of the open's
    // when measured quietly (bounded at 1: the open's whole time).
    expect(shardsOpened.size, `${shardsOpened.size} of the 163 shards opened after the abort`).toBeLessThan(163 / 2);
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the base takes ${whole.toFixed(0)} ms`).toBeLessThan(whole);
  }, 120_000);

  it("is seen between an adapter's header of 89,088 tensors and the parse of its 44,544 modules against its rank_pattern", async () => {
    // rank_pattern keyed by module paths, as PEFT saves it (here those of layer 60 and some of 59, at rank 8),
    // and 8 regexes tried on every other module: looking each module up in it is most of the parse.
    const rankPattern = expertRankPattern();
    expect(Object.keys(rankPattern)).toHaveLength(1008);
    const dir = temp.make({ 'adapter_config.json': deepseekV3PeftConfig(['gate_proj', 'up_proj', 'down_proj'], rankPattern) });
    writeHeaderOnly(join(dir, 'adapter_model.safetensors'), expertLoraTensors());
    const files = await openNodeInputFileSet(dir);
    const whole = await uncancelledMs(async () => (await openAdapter(files)).file.source.close());
    // The regexes tried while the modules are parsed count how far the parse got, whatever the machine's load.
    const matches = vi.spyOn(RE2JS.prototype, 'matches');
    await (await openAdapter(files)).file.source.close();
    const parsed = matches.mock.calls.length;
    expect(parsed).toBeGreaterThanOrEqual(43_544 * 8); // each module not keyed by name, against each regex
    const baseDir = join(temp.make({}), 'base');
    mkdirSync(baseDir);
    writeHeaderOnly(join(baseDir, 'model.safetensors'), fp8Linear('model.layers.3.mlp.experts.0.gate_proj', MOE_INTER, HIDDEN));
    const base = await openNodeInputFileSet(baseDir);
    const reason = new Error('user pressed stop');
    matches.mockClear();
    const { outcome, ms } = await cancelledRun((signal) => prepareMerge(base, [{ files, weight: 1 }], { signal }), reason);
    const cancelledAfter = matches.mock.calls.length;
    matches.mockRestore();
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // Without the turn between header and modules the abort was seen once the adapter was parsed.
    // Now that module paths are looked up by hash the parse is no longer seconds, so it is told by
    // the regexes tried, and the time bounded loosely for a busy machine.
    expect(cancelledAfter, `${cancelledAfter} of ${parsed} regex tests made after the abort`).toBeLessThan(parsed / 10);
    expect(ms, `cancelled after ${ms.toFixed(0)} ms; opening the adapter takes ${whole.toFixed(0)} ms`).toBeLessThan(whole);
  }, 120_000);
});
