export { generateSample, resolveSampleOptions, type SampleFiles } from './generate-sample.js';
export { SAMPLE_PRESETS, SAMPLE_TARGET_MODULES, type SampleOptions, type SamplePreset } from './sample-options.js';
export { sampleProjections, type SampleProjection } from './llama-tensors.js';
