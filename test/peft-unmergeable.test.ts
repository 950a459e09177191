/**
 * PEFT methods whose file cannot determine a merged weight, refused through the CLI naming the
 * method and why, with nothing written: WaveFT with a wavelet family PEFT lists but has no filters
 * for (its get_delta_weight raises) and LiLY (its router mixes the B experts by input-dependent
 * probabilities; PEFT's merge raises too).
 */
import { it } from 'vitest';
import { seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectPeftCliRefusal, fixtureTensor, gridValues } from './helpers/peft-method-folder.js';

const vals = gridValues(seededRandom(79));
const t = fixtureTensor;
const q = 'model.layers.0.self_attn.q_proj';
const base = [t(`${q}.weight`, 'F32', [8, 6], vals(48, 'F32'))];

const refuse = (config: object, tensors: FixtureTensor[], message: RegExp) => expectPeftCliRefusal(base, config, tensors, message);

it('WaveFT with use_idwt and wavelet_family db11: PEFT\'s wavelet.py has no filters for it', async () => {
  // The fields PEFT writes to a WaveFT adapter_config.json.
  await refuse({
    peft_type: 'WAVEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', n_frequency: 5, scaling: 25, wavelet_family: 'db11',
    use_idwt: true, random_loc_seed: 777, fan_in_fan_out: false, target_modules: ['q_proj'], bias: 'none', n_frequency_pattern: {},
    proportional_parameters: false, init_weights: true, inference_mode: true,
  }, [t(`base_model.model.${q}.waveft_spectrum`, 'F32', [5], vals(5, 'F32'))],
  /adapter_config\.json: WaveFT "wavelet_family" "db11" has no filters in PEFT's wavelet\.py \(db1–db10, sym2–sym10, coif1–coif5\), so PEFT's get_delta_weight raises ValueError and cannot merge it/);
});

it('LiLY: a router over shared B experts, weighed per batch of inputs', async () => {
  await refuse({
    peft_type: 'LILY', task_type: 'CAUSAL_LM', r: 2, scaling: 1, stride_A: 1, num_B: 2, target_modules: ['q_proj'], init_weights: true, inference_mode: true,
  }, [
    t(`base_model.model.${q}.lily_A.weight`, 'F32', [2, 6], vals(12, 'F32')), t(`base_model.model.${q}.lily_B.weight`, 'F32', [4, 8], vals(32, 'F32')),
    t(`base_model.model.${q}.lily_router.weight`, 'F32', [2, 2], vals(4, 'F32')),
  ], /PEFT method LILY is not supported: its router weighs the shared lily_B experts by softmax probabilities averaged over each batch of inputs, so no single merged weight exists/);
});
