/**
 * Planning a large adapter is seconds of synchronous work (matching 70,000 modules to 80,000 base
 * tensors). It used to be one loop without a turn of the event loop: a Ctrl-C or a SIGTERM was
 * handled only once planning had ended (`timeout` could not stop such a run), and an abort() of
 * the library's signal was not seen at all. Now planning gives the event loop a turn every 50 ms.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { Pacer } from '../src/event-turns.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { merge } from '../src/merge.js';
import type { InputFileSet } from '../src/io/types.js';
import { errorLines, listDir, runCliSignalledOnceOpen } from './helpers/cli.js';
import { buildSafetensors, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

const hidden = 8, inter = 16, vocab = 32;
const PROJECTIONS = [['self_attn.q_proj', hidden, hidden], ['self_attn.k_proj', hidden, hidden], ['self_attn.v_proj', hidden, hidden], ['self_attn.o_proj', hidden, hidden],
  ['mlp.gate_proj', inter, hidden], ['mlp.up_proj', inter, hidden], ['mlp.down_proj', hidden, inter]] as const;
const f16 = (n: number) => new Uint8Array(2 * n).fill(0x3c, 1); // F16 1.0 throughout: finite, and unread by a plan

/**
 * A Llama model of `layers` layers (hidden 8: the files stay small) and a PEFT LoRA (r = 1) on every
 * projection of every layer: 7 modules a layer. `small` is the same LoRA on layer 0's q_proj alone.
 */
function llamaFiles(layers: number) {
  const base: FixtureTensor[] = [
    { name: 'model.embed_tokens.weight', dtype: 'F16', shape: [vocab, hidden], data: f16(vocab * hidden) },
    { name: 'model.norm.weight', dtype: 'F16', shape: [hidden], data: f16(hidden) },
    { name: 'lm_head.weight', dtype: 'F16', shape: [vocab, hidden], data: f16(vocab * hidden) },
  ];
  const lora: FixtureTensor[] = [];
  for (let l = 0; l < layers; l++) {
    base.push({ name: `model.layers.${l}.input_layernorm.weight`, dtype: 'F16', shape: [hidden], data: f16(hidden) });
    for (const [p, out, inp] of PROJECTIONS) {
      const m = `model.layers.${l}.${p}`;
      base.push({ name: `${m}.weight`, dtype: 'F16', shape: [out, inp], data: f16(out * inp) });
      lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'F16', shape: [1, inp], data: f16(inp) });
      lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'F16', shape: [out, 1], data: f16(out) });
    }
  }
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, intermediate_size: inter, num_hidden_layers: layers,
    num_attention_heads: 2, num_key_value_heads: 2, vocab_size: vocab, tie_word_embeddings: false, torch_dtype: 'float16',
  };
  const adapterConfig = (targets: string[]) => JSON.stringify({
    peft_type: 'LORA', r: 1, lora_alpha: 2, target_modules: targets, task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B',
  });
  return {
    'model/model.safetensors': buildSafetensors(base, { format: 'pt' }),
    'model/config.json': JSON.stringify(config),
    'big/adapter_model.safetensors': buildSafetensors(lora),
    'big/adapter_config.json': adapterConfig(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
    'small/adapter_model.safetensors': buildSafetensors(lora.slice(0, 2)),
    'small/adapter_config.json': adapterConfig(['q_proj']),
  };
}

/** From the last adapter's opening to the signal: its few reads are done, the matching has begun. */
const SIGNAL_DELAY_MS = 300;

/** The CLI, signalled SIGNAL_DELAY_MS after it has `file` open (the last adapter, opened while planning, before its modules are matched). */
const runPlanning = (args: string[], file: string, signal?: NodeJS.Signals) => runCliSignalledOnceOpen(args, file, SIGNAL_DELAY_MS, signal);

describe('a Ctrl-C or SIGTERM while a large adapter is planned', () => {
  it.skipIf(process.platform !== 'linux')('ends the CLI while it plans: exit 130, the one cancel line, no plan printed, nothing at --out', async () => {
    // 70,000 modules on 80,003 tensors. The signal goes just after the last adapter (one module) is
    // open: the matching of all modules has begun. The same plan run to its end shows that the plan
    // was still being made when the signal would have come.
    const dir = temp.make(llamaFiles(10_000));
    const [base, big, small] = ['model', 'big', 'small'].map((p) => join(dir, p));
    const trigger = join(small, 'adapter_model.safetensors');
    const full = await runPlanning(['merge', '--base', base, '--adapter', big, '--adapter', small, '--dry-run'], trigger);
    expect(full.code, full.stderr).toBe(0);
    expect(full.afterSignalMs).toBeGreaterThan(0);

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const outDir = temp.make();
      const out = join(outDir, 'merged');
      const run = await runPlanning(['merge', '--base', base, '--adapter', big, '--adapter', small, '--out', out], trigger, signal);
      expect({ code: run.code, signal: run.signal }, run.stderr).toEqual({ code: 130, signal: null });
      expect(errorLines(run.stderr)).toEqual([`error: merge cancelled; nothing was written to ${out}`]);
      // Cancelled before the plan was printed: the old loop gave the signal no turn until the plan
      // was made, and its `plan:` line follows in the same task. Told by the output, not by comparing
      // two timings, which a busy machine skews.
      expect(run.stderr).not.toMatch(/\n\s+at |internal error|^plan:/m);
      expect(listDir(outDir)).toEqual([]);
    }
  }, 120_000);
});

describe('prepareMerge given a signal', () => {
  const files = llamaFiles(4_000);
  const set = (prefix: string, name: string): InputFileSet => memoryInputFileSet(
    Object.fromEntries(Object.entries(files).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v])), name);
  const base = set('model/', 'model'), adapter = set('big/', 'adapter');

  it('rejects with AbortError (code ABORTED, cause the reason) when it is aborted during planning, not after', async () => {
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    // The abort is asked for on the next task: memory files are read without one, so only planning's
    // own turns let it run. Without them the plan of 28,000 modules ended first and resolved.
    setTimeout(() => controller.abort(reason), 0);
    const outcome = await prepareMerge(base, [{ files: adapter, weight: 1 }], { signal: controller.signal }).then(
      async (prepared) => {
        await prepared.close();
        return prepared;
      },
      (e: unknown) => e,
    );
    expect(isMergeError(outcome), String(outcome)).toBe(true);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
    // An uninterrupted plan of this size: 28,000 module updates.
    const whole = await prepareMerge(base, [{ files: adapter, weight: 1 }]);
    await whole.close();
    expect(whole.plan.updates).toHaveLength(28_000);
  }, 120_000);

  it("passes merge()'s signal on: a cancel while planning ends the call before the plan is made", async () => {
    // Planning ticks its pacer once a module (the turns of the event loop are given there): the
    // uncancelled plan's count of ticks. Counted, not timed: a busy machine changes the time only.
    const tick = vi.spyOn(Pacer.prototype, 'tick');
    try {
      const whole = await prepareMerge(base, [{ files: adapter, weight: 1 }]);
      await whole.close();
      const planTicks = tick.mock.calls.length;
      expect(planTicks).toBeGreaterThanOrEqual(28_000);
      tick.mockClear();
      const controller = new AbortController();
      const reason = new Error('user pressed stop');
      setTimeout(() => controller.abort(reason), 0);
      const outcome = await merge({ base, adapters: [adapter], backend: 'cpu', signal: controller.signal }).catch((e: unknown) => e);
      expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
      // Without its turns, or without the signal passed on, the abort was seen only by the merge
      // after the plan: the same error, once every module was planned (every tick made).
      expect(tick.mock.calls.length, `${tick.mock.calls.length} ticks of the plan's ${planTicks}`).toBeLessThan(planTicks);
    } finally {
      tick.mockRestore();
    }
  }, 120_000);

  it('an already aborted signal refuses before the plan', async () => {
    const files = llamaFiles(1);
    const controller = new AbortController();
    controller.abort('stop');
    const base = memoryInputFileSet({ 'model.safetensors': files['model/model.safetensors'], 'config.json': files['model/config.json'] }, 'model');
    const adapter = memoryInputFileSet({ 'adapter_model.safetensors': files['big/adapter_model.safetensors'], 'adapter_config.json': files['big/adapter_config.json'] }, 'adapter');
    await expect(prepareMerge(base, [{ files: adapter }], { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
  });
});
