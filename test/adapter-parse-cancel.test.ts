/**
 * A cancel while an adapter's modules are parsed. The parse of an adapter of tens of thousands of
 * modules (a PEFT LoRA on every routed expert of DeepSeek-V3: 89,088 tensors, 44,544 modules) was
 * one synchronous piece of 1.5 to 2 s (10 s with a rank_pattern of 1000 module names): an abort()
 * asked for while it ran was seen only once every module was parsed. Now the parse ticks its pacer
 * once a tensor and once a module, as the plan does, and stops at the first tick after the abort.
 *
 * Work is counted, not timed: each tensor entry of the file is watched, and the tensors the parse
 * still reads after the abort are counted. The pacer here yields at every tick (a turn of 0 ms), so
 * the count does not depend on the machine's speed: none may be read after the abort.
 */
import { describe, expect, it } from 'vitest';
import { Pacer } from '../src/event-turns.js';
import { openAdapter, type ParsedAdapter } from '../src/formats/adapter.js';
import { parseMlxAdapter } from '../src/formats/mlx-lm.js';
import { parsePeftAdapter } from '../src/formats/peft.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import type { SafetensorsFile } from '../src/formats/safetensors-types.js';
import { parseSingleFileAdapter } from '../src/formats/single-file-adapter.js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { deepseekV3PeftConfig, expertLoraTensors, headerOf, type Declared } from './helpers/deepseek-v3-headers.js';
import { buildSafetensors, sparseSource } from './helpers/fixtures.js';
import { ggufLoraAdapter } from './helpers/gguf-models.js';
import { mlxConfig } from './helpers/mlx-lm-folder.js';

/** A header-only safetensors file of these tensors (its data a hole of zeros), opened. */
async function headerOnly(name: string, tensors: readonly Declared[]): Promise<SafetensorsFile> {
  const { header, size } = headerOf(tensors);
  return openSafetensors(sparseSource(name, size, [[0, header]]));
}

/** PEFT LoHa (hada_w1_a (out, r), hada_w1_b (r, in), and w2 likewise) at r 8 on the first 64 routed experts of DeepSeek-V3's 58 MoE layers: 11,136 modules. */
function lohaTensors(): Declared[] {
  const out: Declared[] = [];
  for (let l = 3; l < 61; l++) {
    for (let e = 0; e < 64; e++) {
      for (const [p, o, i] of [['gate_proj', 2048, 7168], ['up_proj', 2048, 7168], ['down_proj', 7168, 2048]] as const) {
        const m = `base_model.model.model.layers.${l}.mlp.experts.${e}.${p}`;
        for (const w of ['hada_w1', 'hada_w2']) out.push({ name: `${m}.${w}_a`, dtype: 'BF16', shape: [o, 8] }, { name: `${m}.${w}_b`, dtype: 'BF16', shape: [8, i] });
      }
    }
  }
  return out;
}

/** kohya's Flux LoRA naming (sd-scripts networks/lora_flux.py) on 20,000 single blocks, r 16, no alpha tensors: a hostile file of 40,000 tensors. */
function kohyaTensors(blocks = 20_000): Declared[] {
  const out: Declared[] = [];
  for (let b = 0; b < blocks; b++) {
    const m = `lora_unet_single_blocks_${b}_linear1`;
    out.push({ name: `${m}.lora_down.weight`, dtype: 'BF16', shape: [16, 3072] }, { name: `${m}.lora_up.weight`, dtype: 'BF16', shape: [21504, 16] });
  }
  return out;
}

/** mlx-lm LoRA (lora_a (in, r), lora_b (r, out)) at rank 8 on the 7 projections of 3000 Llama layers: 21,000 modules. */
function mlxTensors(layers = 3000): Declared[] {
  const out: Declared[] = [];
  for (let l = 0; l < layers; l++) {
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      out.push({ name: `model.layers.${l}.${p}.lora_a`, dtype: 'F32', shape: [2048, 8] }, { name: `model.layers.${l}.${p}.lora_b`, dtype: 'F32', shape: [8, 2048] });
    }
  }
  return out;
}

interface Case {
  what: string;
  tensors: () => Declared[];
  parse: (file: SafetensorsFile, pacer?: Pacer) => Promise<ParsedAdapter>;
  /** The module a tensor name belongs to, as the file's naming says. */
  moduleOf: (tensor: string) => string;
  modules: number;
  rank: number;
  scale: number;
}

const experts = deepseekV3PeftConfig(['gate_proj', 'up_proj', 'down_proj']);
const cases: Case[] = [
  {
    what: 'a PEFT LoRA on every routed expert of DeepSeek-V3 (44,544 modules)', tensors: expertLoraTensors, modules: 44_544, rank: 8, scale: 16 / 8,
    parse: (file, pacer) => parsePeftAdapter('adapter', experts, 'adapter/adapter_config.json', file, pacer),
    moduleOf: (t) => t.replace(/\.lora_[AB]\.weight$/, ''),
  },
  {
    what: 'a PEFT LoHa on 64 experts of each DeepSeek-V3 MoE layer (11,136 modules)', tensors: lohaTensors, modules: 11_136, rank: 8, scale: 16 / 8,
    parse: (file, pacer) => parsePeftAdapter('adapter', JSON.stringify({ peft_type: 'LOHA', r: 8, alpha: 16, target_modules: ['gate_proj', 'up_proj', 'down_proj'] }), 'adapter/adapter_config.json', file, pacer),
    moduleOf: (t) => t.replace(/\.hada_w[12]_[ab]$/, ''),
  },
  {
    // No alpha tensor: kohya's scale is then 1 (alpha defaults to the rank).
    what: "a kohya LoRA in Flux's single-block names (20,000 modules)", tensors: () => kohyaTensors(), modules: 20_000, rank: 16, scale: 1,
    parse: (file, pacer) => parseSingleFileAdapter('lora.safetensors', file, pacer),
    moduleOf: (t) => t.split('.')[0],
  },
  {
    what: 'an mlx-lm LoRA on 3000 Llama layers (21,000 modules)', tensors: () => mlxTensors(), modules: 21_000, rank: 8, scale: 20,
    parse: (file, pacer) => parseMlxAdapter('adapter', mlxConfig({}), 'adapter/adapter_config.json', file, pacer),
    moduleOf: (t) => t.replace(/\.lora_[ab]$/, ''),
  },
];

/**
 * Parses `file` with an abort asked for when the parse, once it has ticked its pacer, first reads
 * property `at` of the tensor a third of the way into the file ('name': while the tensors are
 * grouped; 'shape': while the modules are built). Returns the outcome and how many other modules
 * the parse read a tensor of after the abort (the module being built then may finish reading its own),
 * and how many shapes it had read before the abort (none while the tensors are grouped).
 */
async function cancelledParse(c: Case, file: SafetensorsFile, at: 'name' | 'shape'): Promise<{ outcome: unknown; readAfter: number; shapesBefore: number; reason: Error }> {
  const controller = new AbortController();
  const reason = new Error('user pressed stop');
  let ticks = 0;
  class Counting extends Pacer {
    override tick() {
      ticks++;
      return super.tick();
    }
  }
  const trigger = Math.floor(file.tensors.length / 3);
  const own = c.moduleOf(file.tensors[trigger].name);
  const readAfter = new Set<string>();
  let shapesBefore = 0;
  const tensors = file.tensors.map((entry, i) => new Proxy(entry, {
    get(target, key, receiver) {
      if (controller.signal.aborted) {
        const module = c.moduleOf(entry.name);
        if (module !== own) readAfter.add(module);
      } else if (i === trigger && key === at && ticks > 0) {
        controller.abort(reason);
      } else if (key === 'shape') {
        shapesBefore++;
      }
      return Reflect.get(target, key, receiver) as unknown;
    },
  }));
  const watched = Object.create(file, { tensors: { value: tensors } }) as SafetensorsFile;
  const outcome = await c.parse(watched, new Counting(controller.signal, 0)).catch((e: unknown) => e);
  return { outcome, readAfter: readAfter.size, shapesBefore, reason };
}

describe.each(cases)('the parse of $what', (c) => {
  it('gives every module, at the rank and scale the file and its config state', async () => {
    const file = await headerOnly('adapter.safetensors', c.tensors());
    const adapter = await c.parse(file);
    expect(adapter.modules).toHaveLength(c.modules);
    expect(new Set(adapter.modules.map((m) => m.name)).size).toBe(c.modules);
    expect(adapter.modules.filter((m) => m.rank !== c.rank || m.scale !== c.scale)).toEqual([]);
  }, 120_000);

  for (const at of ['name', 'shape'] as const) {
    it(`stops at a cancel asked for while its ${at === 'name' ? 'tensors are grouped' : 'modules are built'}: no other module's tensor is read`, async () => {
      const file = await headerOnly('adapter.safetensors', c.tensors());
      const { outcome, readAfter, shapesBefore, reason } = await cancelledParse(c, file, at);
      expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', message: 'merge cancelled', cause: reason });
      // Asked for in the phase named: while grouping, no module had been built (no shape read).
      if (at === 'name') expect(shapesBefore).toBe(0);
      else expect(shapesBefore).toBeGreaterThan(0);
      // Without the ticks the parse went on to its end: the tensors of all modules after the first third.
      expect(readAfter, `tensors of ${readAfter} of ${c.modules} modules read after the abort`).toBe(0);
    }, 120_000);
  }
});

describe('openAdapter', () => {
  it("hands its pacer (prepareMerge's signal) on to the parse of a PEFT folder, a kohya file, an mlx-lm folder and a llama.cpp LoRA GGUF", async () => {
    const bf16 = (shape: number[]) => new Uint8Array(2 * shape.reduce((a, b) => a * b, 1));
    const peft = expertLoraTensors().slice(0, 2000).map((t) => ({ ...t, shape: [8, 16], data: bf16([8, 16]) }));
    const kohya = kohyaTensors(1000).map((t) => ({ ...t, shape: t.shape[0] === 16 ? [16, 32] : [32, 16], data: bf16([16, 32]) }));
    const mlx = mlxTensors(100).map((t) => ({ ...t, dtype: 'BF16' as const, shape: t.shape[0] === 8 ? [8, 16] : [16, 8], data: bf16([8, 16]) }));
    const sets = [
      memoryInputFileSet({ 'adapter_config.json': experts, 'adapter_model.safetensors': buildSafetensors(peft) }, 'peft'),
      memoryInputFileSet({ 'lora.safetensors': buildSafetensors(kohya) }, 'lora.safetensors'),
      memoryInputFileSet({ 'adapter_config.json': mlxConfig({}), 'adapters.safetensors': buildSafetensors(mlx, { format: 'mlx' }) }, 'mlx'),
      // llama.cpp's names (convert_lora_to_gguf.py) on the q and k projections of 100 blocks.
      memoryInputFileSet({ 'lora.gguf': ggufLoraAdapter(Array.from({ length: 200 }, (_, i) => ({ tensor: `blk.${i >> 1}.attn_${i % 2 === 0 ? 'q' : 'k'}.weight`, rank: 2, in: 8, out: 8, aType: 'F32', bType: 'F32' })), 4).bytes }, 'lora.gguf'),
    ];
    for (const files of sets) {
      // Aborted at the pacer's 100th tick: the parse's (opening the file ticks it once).
      const controller = new AbortController();
      let ticks = 0;
      class Aborting extends Pacer {
        override tick() {
          if (++ticks === 100) controller.abort('stop');
          return super.tick();
        }
      }
      await expect(openAdapter(files, new Aborting(controller.signal, 0)), files.name).rejects.toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: 'stop' });
      expect(ticks, files.name).toBe(100);
    }
  }, 120_000);
});
