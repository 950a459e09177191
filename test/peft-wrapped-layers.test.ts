/**
 * PEFT methods on layers PEFT cannot wrap with them. Each method's _create_new_module (or its
 * layer.py dispatchers) builds its layer for some torch classes only and raises for the rest:
 * RoAd wraps nn.Linear alone, (IA)³ Linear, Conv2d, Conv3d and transformers' Conv1D, but no
 * nn.Conv1d. A folder whose module lands on another kind of layer (told by the base tensor's
 * dims: (out, in, k) is a Conv1d, (out, in, kh, kw) a Conv2d) cannot come from PEFT, so it is
 * refused by name rather than merged; the same methods on layers PEFT does wrap still merge.
 */
import { describe, expect, it } from 'vitest';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues, mergePeftFolder, preparePeftFolder } from './helpers/peft-method-folder.js';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(404);
const vals = gridValues(rand);
const t = fixtureTensor;
const weight = (key: string, shape: number[]) => t(`${key}.weight`, 'F32', shape, vals(shape.reduce((a, b) => a * b, 1), 'F32'));

/** adapter_config.json as PEFT 0.18 writes it for `peft_type`, with the method's own fields. */
const config = (peftType: string, fields: object) => ({
  peft_type: peftType, task_type: null, base_model_name_or_path: 'stable-diffusion-v1-5/stable-diffusion-v1-5', peft_version: '0.18.0', revision: null,
  exclude_modules: null, layers_to_transform: null, layers_pattern: null, modules_to_save: null, inference_mode: true, ...fields,
});

// A UNet resnet's 3×3 conv and an attention projection; a Whisper encoder's first Conv1d (kernel 3).
const conv2d = 'down_blocks.0.resnets.0.conv1', linear = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const conv1d = 'model.encoder.conv1';
const road = config('ROAD', { variant: 'road_1', group_size: 4, init_weights: true, target_modules: ['conv1', 'to_q'] });
const roadTensors = (key: string, out: number): FixtureTensor[] => [
  t(`base_model.model.${key}.road_theta`, 'F32', [out / 2], vals(out / 2, 'F32')),
  t(`base_model.model.${key}.road_alpha`, 'F32', [out / 2], vals(out / 2, 'F32')),
];
const ia3 = config('IA3', { target_modules: ['conv1'], feedforward_modules: [], fan_in_fan_out: false, init_ia3_weights: true });
const ia3Tensors = (key: string, shape: number[]): FixtureTensor[] => [t(`base_model.model.${key}.ia3_l`, 'F32', shape, vals(shape.reduce((a, b) => a * b, 1), 'F32'))];

const ROAD_ON_CONV2D = /^adapter: module "down_blocks\.0\.resnets\.0\.conv1": RoAd \(PEFT\) wraps only Linear layers; "down_blocks\.0\.resnets\.0\.conv1\.weight" is a Conv2d weight \(shape \(8, 4, 3, 3\)\), so PEFT cannot have trained this module on it$/;
const IA3_ON_CONV1D = /^adapter: module "model\.encoder\.conv1": \(IA\)³ \(PEFT\) wraps only Linear, Conv1D, Conv2d and Conv3d layers; "model\.encoder\.conv1\.weight" is a Conv1d weight \(shape \(8, 4, 3\)\), so PEFT cannot have trained this module on it$/;

async function problems(base: FixtureTensor[], cfg: object, tensors: FixtureTensor[]): Promise<string[]> {
  return (await preparePeftFolder(base, cfg, tensors)).plan.problems.map((p) => p.message);
}

describe('a PEFT method on a layer its PEFT tuner cannot wrap is refused', () => {
  it('RoAd on a Conv2d weight: the library names the module, the method and the tensor', async () => {
    expect(await problems([weight(conv2d, [8, 4, 3, 3]), weight(linear, [8, 6])], road, [...roadTensors(conv2d, 8), ...roadTensors(linear, 8)])).toEqual([
      expect.stringMatching(ROAD_ON_CONV2D),
    ]);
    // The same RoAd on the Linear alone is a plan without problems.
    expect(await problems([weight(conv2d, [8, 4, 3, 3]), weight(linear, [8, 6])], road, roadTensors(linear, 8))).toEqual([]);
  });

  it('RoAd on a Conv2d weight through the CLI: one line, nothing written', async () => {
    await expectPeftCliRefusal([weight(conv2d, [8, 4, 3, 3])], road, roadTensors(conv2d, 8), new RegExp(ROAD_ON_CONV2D.source.replace('^adapter', '.*adapter')));
  });

  it('(IA)³ on a Conv1d weight is refused; on a Conv2d weight it merges', async () => {
    expect(await problems([weight(conv1d, [8, 4, 3])], ia3, ia3Tensors(conv1d, [1, 8, 1]))).toEqual([expect.stringMatching(IA3_ON_CONV1D)]);
    await expectPeftCliRefusal([weight(conv1d, [8, 4, 3])], ia3, ia3Tensors(conv1d, [1, 8, 1]), new RegExp(IA3_ON_CONV1D.source.replace('^adapter', '.*adapter')));
    // PEFT's (IA)³ Conv2d: W' = W ⊙ l per output channel, in float64 here.
    const base = weight(conv2d, [8, 4, 3, 3]), l = ia3Tensors(conv2d, [1, 8, 1, 1]);
    const { tensors } = await mergePeftFolder(backends.cpu!, [base], ia3, l);
    const w = base.data as Float64Array, lv = l[0].data as Float64Array;
    expectMerged(tensors.get(`${conv2d}.weight`)!.values, w.map((x, i) => x * lv[Math.floor(i / 36)]), 'F32', conv2d);
  });
});
