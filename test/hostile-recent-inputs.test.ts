/**
 * Hostile and damaged inputs against the layouts and readers added last (split experts on fused
 * expert tensors, the T5-alone table's pipelines): each is refused in one line naming the file,
 * tensor or module and what to do, exit code 1, nothing at the output path and the inputs as they
 * were; or, where a tool would load it, merged as that tool does.
 * - An expert's Linear of experts a trainer split (Unsloth's gpt-oss `experts.gate_up_projs.K`):
 *   torch's ModuleList names its layers str(K), so `gate_up_projs.01` or `.007` is no trainer's
 *   layer (PEFT finds no such module); it was merged into expert 1 or 7.
 * - Comfy-Org's fp8mixed FLUX.2 (F8_E4M3 codes, `<m>.weight_scale` F32, `<m>.comfy_quant`) whose
 *   scale times its codes passes float32 (ComfyUI's dequantization makes Inf there), or a LoRA
 *   factor holding NaN, merged and quantized again: the line named neither the file nor the cause.
 * - A diffusers pipeline's model_index.json gives each folder [library, class]: diffusers imports
 *   the class by its name, so a folder with weights whose class is not a string cannot be loaded.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { buildSafetensors, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { mergeFolders, snapshot } from './helpers/cli.js';
import { hfModelFolder, peftFolder, prepareOne, randomTensor, type Files } from './helpers/hf-folder.js';
import { tensor } from './helpers/diffusion-fixtures.js';
import { T5_SELF_ATTENTION, t5EncoderTensors, t5XxlConfig } from './helpers/t5-fixtures.js';
import { flux2BflTensors } from './helpers/dit-fixtures.js';
import { e4m3Value } from './helpers/e4m3-by-hand.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const rand = seededRandom(20261301);
const temp = tempDirs();
afterAll(temp.removeAll);

/** A CLI merge of these folders: its one error line, exit code 1, nothing at --out, the inputs unchanged. */
async function refusedByCli(base: Files, adapter: Files): Promise<string> {
  const { run, out, lines } = await mergeFolders((files) => {
    const dir = temp.make(files);
    before.set(dir, snapshot(dir));
    return dir;
  }, base, adapter);
  const dir = join(out, '..');
  expect(lines, run.stderr).toHaveLength(1);
  expect(run.stderr).not.toMatch(/\n\s+at |internal error/);
  expect(run.code, run.stderr).toBe(1);
  expect(existsSync(out)).toBe(false);
  expect(snapshot(dir)).toEqual(before.get(dir));
  return lines[0];
}
const before = new Map<string, ReturnType<typeof snapshot>>();

// openai/gpt-oss-20b in bf16 (unsloth/gpt-oss-20b-BF16), sizes cut: hidden 8, intermediate 6, 3 experts.
const G = { E: 3, H: 8, I: 6 };
const GPT_OSS = { architectures: ['GptOssForCausalLM'], model_type: 'gpt_oss', hidden_size: G.H, intermediate_size: G.I, num_local_experts: G.E, torch_dtype: 'bfloat16' };
const gptOss = (): FixtureTensor[] => [
  randomTensor('model.layers.0.self_attn.q_proj.weight', [16, G.H], 'BF16', rand),
  // GptOssExperts: gate_up_proj (E, hidden, 2·inter), down_proj (E, inter, hidden).
  randomTensor('model.layers.0.mlp.experts.gate_up_proj', [G.E, G.H, 2 * G.I], 'BF16', rand),
  randomTensor('model.layers.0.mlp.experts.down_proj', [G.E, G.I, G.H], 'BF16', rand),
];
/** Unsloth's split Linear layers, as PEFT saves a LoRA on them (r 2, α 4), target_modules naming each. */
const splitLora = (paths: string[]): Files => peftFolder(
  { r: 2, lora_alpha: 4, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', target_modules: paths, peft_version: '0.17.1' },
  paths.flatMap((p) => {
    const [out, inF] = p.includes('gate_up_projs') ? [2 * G.I, G.H] : [G.H, G.I];
    return [randomTensor(`base_model.model.${p}.lora_A.weight`, [2, inF], 'F32', rand), randomTensor(`base_model.model.${p}.lora_B.weight`, [out, 2], 'F32', rand)];
  }),
);
const EXPERTS = 'model.layers.0.mlp.experts';

describe("a split expert's Linear layer named with leading zeros (gate_up_projs.01), on gpt-oss with the experts fused", () => {
  const why = (path: string, index: string, canonical: string) => `adapter1: module "${path}": its expert number ${index} is not how PyTorch names a layer of the split experts (it writes ${canonical}), so no trainer's Linear layer has this name: fix the module's name in the adapter`;

  it('refused naming the module, not merged into expert 1 or 0 (in the plan)', async () => {
    for (const [index, canonical] of [['01', '1'], ['007', '7'], ['00', '0']]) {
      const path = `${EXPERTS}.gate_up_projs.${index}`;
      const prepared = await prepareOne(hfModelFolder(gptOss(), GPT_OSS), splitLora([path]));
      await prepared.close();
      expect(prepared.plan.problems.map((p) => p.message), index).toEqual([why(path, index, canonical)]);
      expect(prepared.plan.updates, index).toEqual([]);
    }
    // …as expert 1 named as torch names it merges, and one past the last is told so.
    const ok = await prepareOne(hfModelFolder(gptOss(), GPT_OSS), splitLora([`${EXPERTS}.down_projs.1`]));
    await ok.close();
    expect(ok.plan.problems).toEqual([]);
    expect(ok.plan.updates.map((u) => u.baseKey)).toEqual([`${EXPERTS}.down_proj`]);
  });

  it('the CLI: one line, exit code 1, nothing written, the inputs unchanged', async () => {
    const path = `${EXPERTS}.down_projs.02`;
    const line = await refusedByCli(hfModelFolder(gptOss(), GPT_OSS), splitLora([path]));
    expect(line).toMatch(/^error: \/.+\/adapter: module "/);
    expect(line.slice(line.indexOf(': module') + 2)).toBe(why(path, '02', '2').slice('adapter1: '.length));
  });
});

describe("a pipeline's model_index.json whose text encoder's class is not a string", () => {
  const flat = T5_SELF_ATTENTION.replaceAll('.', '_');
  /** lodestones/Chroma1-HD's folders (its T5 alone in text_encoder/), cut small, with `textEncoder` as model_index.json's text_encoder entry. */
  const chroma = (textEncoder: unknown): Files => ({
    'model_index.json': JSON.stringify({
      _class_name: 'ChromaPipeline', _diffusers_version: '0.35.0.dev0', scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'],
      text_encoder: textEncoder, tokenizer: ['transformers', 'T5Tokenizer'], transformer: ['diffusers', 'ChromaTransformer2DModel'],
    }),
    'transformer/diffusion_pytorch_model.safetensors': buildSafetensors([
      tensor(rand, 'distilled_guidance_layer.in_proj.weight', [8, 8], 'BF16'), tensor(rand, 'transformer_blocks.0.attn.to_q.weight', [8, 8], 'BF16'),
    ]),
    'text_encoder/config.json': JSON.stringify(t5XxlConfig()),
    'text_encoder/model.safetensors': buildSafetensors(t5EncoderTensors(rand, '')),
  });
  // OneTrainer's kohya-format LoRA on Chroma's T5 (lora_te1_, which ComfyUI maps to it).
  const lora: Files = {
    'lora.safetensors': buildSafetensors([
      tensor(rand, `lora_te1_${flat}_q.lora_down.weight`, [2, 10], 'F32'), tensor(rand, `lora_te1_${flat}_q.lora_up.weight`, [10, 2], 'F32'),
    ]),
  };

  it.for<[unknown, string]>([
    [{ a: 1 }, '["transformers",{"a":1}]'],
    [5, '["transformers",5]'],
    [['T5EncoderModel'], '["transformers",["T5EncoderModel"]]'],
  ])('class %j: refused in one line naming the folder and the file (the folder was read as a text encoder of class "[object Object]")', async ([cls, shown]) => {
    const message = (name: string) => `${name}/model_index.json: "text_encoder" is ${shown}, whose class is not a string (diffusers loads text_encoder/ by its class's name): fix model_index.json`;
    let refused: unknown;
    try {
      const prepared = await prepareOne(chroma(['transformers', cls]), lora);
      await prepared.close();
    } catch (e) {
      refused = e;
    }
    expect(isMergeError(refused) && [refused.code, refused.message]).toEqual(['BAD_CONFIG', message('base')]);
    const line = await refusedByCli(chroma(['transformers', cls]), lora);
    expect(line.startsWith('error: /') && line.endsWith(message('/base').slice(1)), line).toBe(true);
  });
});

describe("Comfy-Org's fp8mixed FLUX.2 whose merge is not finite, quantized again (the command line)", () => {
  const P = 'model.diffusion_model.';
  const layer = 'double_blocks.0.img_mlp.0';
  const config = Array.from(new TextEncoder().encode('{"format": "float8_e4m3fn"}'));
  /** flux2_dev_fp8mixed.safetensors cut small: one Linear F8_E4M3 with its scale and comfy_quant, the rest bf16. */
  const base = (scale: number) => ({
    'flux2_dev_fp8mixed.safetensors': buildSafetensors(flux2BflTensors(rand, 'BF16', undefined, P).flatMap((t): FixtureTensor[] => {
      if (t.name !== `${P}${layer}.weight`) return [t];
      const codes = Array.from({ length: t.shape[0] * t.shape[1] }, (_, i) => e4m3Value((i * 37 + 5) % 126));
      return [
        { name: t.name, dtype: 'F8_E4M3', shape: t.shape, data: codes },
        { name: `${P}${layer}.weight_scale`, dtype: 'F32', shape: [], data: [scale] },
        { name: `${P}${layer}.comfy_quant`, dtype: 'U8', shape: [config.length], data: config },
      ];
    })),
  });
  /** ai-toolkit's LoRA on that Linear (PEFT form under diffusion_model., bf16), `a` its lora_A's values. */
  const lora = (shape: number[], a: (i: number) => number): Files => ({
    'lora.safetensors': buildSafetensors([
      { name: `diffusion_model.${layer}.lora_A.weight`, dtype: 'BF16', shape: [2, shape[1]], data: Array.from({ length: 2 * shape[1] }, (_, i) => a(i)) },
      { name: `diffusion_model.${layer}.lora_B.weight`, dtype: 'BF16', shape: [shape[0], 2], data: Array.from({ length: 2 * shape[0] }, (_, i) => ((i % 7) - 3) / 64) },
    ]),
  });
  const shape = flux2BflTensors(rand, 'BF16', undefined, P).find((t) => t.name === `${P}${layer}.weight`)!.shape;

  it('a scale whose codes times it pass float32: the base named as broken', async () => {
    const line = await refusedByCli(base(3e38), lora(shape, (i) => ((i % 5) - 2) / 32));
    expect(line).toMatch(/^error: \/.+\/base\/flux2_dev_fp8mixed\.safetensors: tensor "/);
    // Which code × 3e38 passes float32 (the product in float32, as ComfyUI dequantizes): counted here by hand.
    const past = Array.from({ length: shape[0] * shape[1] }, (_, i) => i).filter((i) => !Number.isFinite(Math.fround(Math.fround(e4m3Value((i * 37 + 5) % 126)) * Math.fround(3e38))));
    const [first, last] = [Math.floor(past[0] / shape[1]), Math.floor(past[past.length - 1] / shape[1])];
    expect([past.length, first, last]).toEqual([207, 0, 47]);
    expect(line.slice(line.indexOf(': tensor') + 2)).toBe(`tensor "${P}${layer}.weight" holds ${past.length} values past float32 in the base (its codes times its scales, ${P}${layer}.weight_scale; first in row ${first}, last in row ${last}), and the merge updates it; the base file is broken: use an intact copy of the base`);
  });

  it('a NaN in lora_A: the adapter tensor named', async () => {
    const line = await refusedByCli(base(0.0005), lora(shape, (i) => (i === 3 ? NaN : ((i % 5) - 2) / 32)));
    expect(line).toContain(`module "diffusion_model.${layer}": factor diffusion_model.${layer}.lora_A.weight holds 1 NaN or Inf value (row ${Math.floor(3 / shape[1])}); the adapter file is broken (`);
    expect(line).toMatch(/^error: \//);
  });
});

