/**
 * LTX-2's text connectors on diffusers bases. diffusers' conversion (scripts/convert_ltx2_to_diffusers.py)
 * moves them out of the transformer into a model of their own, LTX2TextConnectors in the pipeline's
 * `connectors/` folder, renamed: `video_embeddings_connector` → `video_connector`,
 * `audio_embeddings_connector` → `audio_connector`, `transformer_1d_blocks` → `transformer_blocks`,
 * `q_norm`/`k_norm` → `norm_q`/`norm_k`, `text_embedding_projection.aggregate_embed` → `text_proj_in`
 * (LTX-2.3: `video_aggregate_embed` → `video_text_proj_in`, `audio_aggregate_embed` →
 * `audio_text_proj_in`). A LoRA in Lightricks' trainer's form (`diffusion_model.` + the original
 * names, PEFT factors, no α: scale 1) and ComfyUI-extracted diffs name them as the transformer's.
 * On a whole pipeline folder they land in `connectors/`, the transformer's modules in
 * `transformer/`, everything else mirrored; on a transformer alone they are refused, saying to pass
 * the pipeline. Where each lands is written out by hand from the script; the truth is float64.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { buildSafetensors, decodeSafetensors, seededRandom, tempDirs, type DecodedTensor, type FixtureTensor } from './helpers/fixtures.js';
import { loraTensors, tensor, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { LTX2, ltx2DiffusersTensors, ltx2Pipeline, type Ltx2Dims } from './helpers/dit-fixtures.js';
import { mergeBackends } from './helpers/merge-backends.js';
import { expectRefusedByCliAndLibrary } from './helpers/refusals.js';
import type { TruthTerm } from './helpers/merge-truth.js';
import { mergePipelineAndCheck } from './helpers/pipeline-merge.js';

const rand = seededRandom(20261204);
const temp = tempDirs();
afterAll(temp.removeAll);

const V23: Ltx2Dims = { ...LTX2, v23: true };
const { dim: D, adim: A, cap: C, heads: H, latent: L } = LTX2;
const dm = 'diffusion_model.';

/** Lightricks' trainer's PEFT form, no α (scale 1); `key` is where it lands in the pipeline (`<folder>.<name>`). */
const peft = (name: string, out: number, inF: number, key: string): LoraSpec =>
  ({ down: `${dm}${name}.lora_A.weight`, up: `${dm}${name}.lora_B.weight`, r: 2, out, in: inF, lands: [{ key }], scale: 1 });

/**
 * DiffSynth-Studio's form: bare names (its LTX-2 DiT's, the original ones), `.lora_A.default.weight`,
 * no α (scale 1). ComfyUI maps bare names to `diffusion_model.` for LTX-2 (model_lora_keys_unet),
 * so they are the transformer's and its connectors': on the pipeline, a block name that diffusers'
 * connectors share lands in the transformer.
 */
const bare = (name: string, out: number, inF: number, key: string): LoraSpec =>
  ({ down: `${name}.lora_A.default.weight`, up: `${name}.lora_B.default.weight`, r: 2, out, in: inF, lands: [{ key }], scale: 1 });

/** A ComfyUI-extracted full diff (`<module>.diff`, or a parameter's `<name>.diff`) shaped like the tensor it lands on. */
interface DiffSpec { name: string; shape: number[]; key: string }

/** W += weight · diff as a truth term: diff (rows, cols) is B, the identity (cols, cols) is A. */
function diffTerm(d: DiffSpec, diff: DecodedTensor, weight: number): TruthTerm {
  const cols = d.shape.length === 1 ? 1 : d.shape.slice(1).reduce((a, b) => a * b, 1);
  const eye = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) eye[i * cols + i] = 1;
  return { baseKey: d.key, a: { dtype: 'F32', shape: [cols, cols], values: eye, bytes: new Uint8Array() }, b: diff, scale: weight };
}

interface PipelineCase { name: string; dims: Ltx2Dims; specs: LoraSpec[]; diffs: DiffSpec[]; weight: number; written: string[] }

const BOTH = ['transformer/diffusion_pytorch_model.safetensors', 'connectors/diffusion_pytorch_model.safetensors'];
const CASES: PipelineCase[] = [
  {
    name: 'LTX-2: a trainer LoRA with connector modules and extracted connector diffs',
    dims: LTX2, weight: 0.8, written: BOTH,
    specs: [
      peft('transformer_blocks.0.attn1.to_q', D, D, 'transformer.transformer_blocks.0.attn1.to_q.weight'),
      peft('video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q', C, C, 'connectors.video_connector.transformer_blocks.0.attn1.to_q.weight'),
      peft('video_embeddings_connector.transformer_1d_blocks.1.attn1.to_out.0', C, C, 'connectors.video_connector.transformer_blocks.1.attn1.to_out.0.weight'),
      peft('audio_embeddings_connector.transformer_1d_blocks.1.ff.net.2', C, 4 * C, 'connectors.audio_connector.transformer_blocks.1.ff.net.2.weight'),
      peft('audio_embeddings_connector.transformer_1d_blocks.0.ff.net.0.proj', 4 * C, C, 'connectors.audio_connector.transformer_blocks.0.ff.net.0.proj.weight'),
      peft('text_embedding_projection.aggregate_embed', C, 3 * C, 'connectors.text_proj_in.weight'),
    ],
    diffs: [
      { name: `${dm}video_embeddings_connector.transformer_1d_blocks.1.attn1.q_norm.diff`, shape: [C], key: 'connectors.video_connector.transformer_blocks.1.attn1.norm_q.weight' },
      { name: `${dm}audio_embeddings_connector.transformer_1d_blocks.0.attn1.k_norm.diff`, shape: [C], key: 'connectors.audio_connector.transformer_blocks.0.attn1.norm_k.weight' },
      { name: `${dm}audio_embeddings_connector.learnable_registers.diff`, shape: [4, C], key: 'connectors.audio_connector.learnable_registers' },
    ],
  },
  {
    name: 'LTX-2: a DiffSynth-Studio LoRA (bare names: blocks the connectors share by name land in the transformer)',
    dims: LTX2, weight: 1.1, written: BOTH,
    specs: [
      bare('transformer_blocks.0.attn1.to_q', D, D, 'transformer.transformer_blocks.0.attn1.to_q.weight'),
      bare('transformer_blocks.1.attn1.to_out.0', D, D, 'transformer.transformer_blocks.1.attn1.to_out.0.weight'),
      bare('transformer_blocks.1.ff.net.2', D, 4 * D, 'transformer.transformer_blocks.1.ff.net.2.weight'),
      bare('transformer_blocks.0.audio_attn1.to_v', A, A, 'transformer.transformer_blocks.0.audio_attn1.to_v.weight'),
      bare('audio_patchify_proj', A, L, 'transformer.audio_proj_in.weight'),
      bare('adaln_single.linear', 6 * D, D, 'transformer.time_embed.linear.weight'),
      bare('video_embeddings_connector.transformer_1d_blocks.1.attn1.to_v', C, C, 'connectors.video_connector.transformer_blocks.1.attn1.to_v.weight'),
    ],
    diffs: [],
  },
  {
    name: 'LTX-2: connector modules alone (the transformer is mirrored byte for byte)',
    dims: LTX2, weight: 1, written: ['connectors/diffusion_pytorch_model.safetensors'],
    specs: [peft('audio_embeddings_connector.transformer_1d_blocks.0.attn1.to_v', C, C, 'connectors.audio_connector.transformer_blocks.0.attn1.to_v.weight')],
    diffs: [{ name: `${dm}video_embeddings_connector.learnable_registers.diff`, shape: [4, C], key: 'connectors.video_connector.learnable_registers' }],
  },
  {
    name: 'LTX-2.3: per-modality text projections and the connectors\' attention gates',
    dims: V23, weight: -0.5, written: BOTH,
    specs: [
      peft('transformer_blocks.1.audio_attn1.to_k', A, A, 'transformer.transformer_blocks.1.audio_attn1.to_k.weight'),
      peft('text_embedding_projection.video_aggregate_embed', D, 3 * C, 'connectors.video_text_proj_in.weight'),
      peft('text_embedding_projection.audio_aggregate_embed', A, 3 * C, 'connectors.audio_text_proj_in.weight'),
      peft('video_embeddings_connector.transformer_1d_blocks.1.attn1.to_gate_logits', H, D, 'connectors.video_connector.transformer_blocks.1.attn1.to_gate_logits.weight'),
      peft('audio_embeddings_connector.transformer_1d_blocks.0.attn1.to_k', A, A, 'connectors.audio_connector.transformer_blocks.0.attn1.to_k.weight'),
    ],
    diffs: [{ name: `${dm}video_embeddings_connector.transformer_1d_blocks.0.attn1.k_norm.diff`, shape: [D], key: 'connectors.video_connector.transformer_blocks.0.attn1.norm_k.weight' }],
  },
];

const PIPELINES = new Map(CASES.map((c) => [c, ltx2Pipeline(rand, 'BF16', c.dims)]));
const ADAPTERS = new Map(CASES.map((c) => [c, buildSafetensors([...loraTensors(rand, c.specs, 'BF16'), ...c.diffs.map((d) => tensor(rand, d.name, d.shape, 'BF16', 0.5))])]));
const backends = mergeBackends({ cpu: 'default' });

for (const c of CASES) {
  describe(c.name, () => {
    for (const kind of ['cpu', 'webgpu'] as const) {
      it(`lands each module in the pipeline's component under diffusers' names, on ${kind}`, async () => {
        const bytes = ADAPTERS.get(c)!;
        const adapter = decodeSafetensors(bytes).tensors;
        const { out } = await mergePipelineAndCheck(backends[kind]!, PIPELINES.get(c)!,
          [{ file: 'ltx-2-19b-lora.safetensors', bytes, specs: c.specs, weight: c.weight }], c.written,
          c.diffs.map((d) => diffTerm(d, adapter.get(d.name)!, c.weight)));
        expect([...out.keys()].filter((p) => p.endsWith('.safetensors')).sort()).toEqual(Object.keys(PIPELINES.get(c)!).filter((p) => p.endsWith('.safetensors')).sort());
      });
    }
  });
}

// --- refused, with the reason -----------------------------------------------------------------------

describe('connector modules that cannot land', () => {
  const transformerOnly = () => ({
    'diffusion_pytorch_model.safetensors': buildSafetensors(ltx2DiffusersTensors(rand, 'BF16')), 'config.json': JSON.stringify({ _class_name: 'LTX2VideoTransformer3DModel' }),
  });
  const pipeline = () => ltx2Pipeline(rand, 'BF16');
  const lora = (name: string, out: number, inF: number) => loraTensors(rand, [peft(name, out, inF, '')], 'BF16');
  const PASS_PIPELINE = /is in a text connector, which diffusers' conversion moves out of the transformer into its separate `connectors` model .*pass the whole diffusers pipeline folder \(model_index\.json with transformer\/ and connectors\/\) as the base/;
  const cases: [string, () => Record<string, Uint8Array | string>, FixtureTensor[], RegExp][] = [
    ['a connector block on a diffusers transformer alone', transformerOnly, lora('video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q', C, C),
      new RegExp(`module "diffusion_model\\.video_embeddings_connector\\.transformer_1d_blocks\\.0\\.attn1\\.to_q": ${PASS_PIPELINE.source}`)],
    ['the text projection on a diffusers transformer alone', transformerOnly, lora('text_embedding_projection.aggregate_embed', C, 3 * C),
      new RegExp(`module "diffusion_model\\.text_embedding_projection\\.aggregate_embed": ${PASS_PIPELINE.source}`)],
    ['a connector block the connectors model does not have', pipeline, lora('audio_embeddings_connector.transformer_1d_blocks.5.attn1.to_q', C, C),
      /module "diffusion_model\.audio_embeddings_connector\.transformer_1d_blocks\.5\.attn1\.to_q": is in a text connector, but diffusers' `connectors` model has no such tensor under the names its conversion gives/],
    ['a connector module of the wrong width', pipeline, lora('video_embeddings_connector.transformer_1d_blocks.0.attn1.to_k', C, 2 * C),
      /module "diffusion_model\.video_embeddings_connector\.transformer_1d_blocks\.0\.attn1\.to_k": ΔW \(12, 24\) does not fit base connectors\.video_connector\.transformer_blocks\.0\.attn1\.to_k\.weight \(12, 12\)/],
  ];

  it.each(cases)('%s: one line from the CLI, nothing written, and the same message from the library', async (_what, base, tensors, message) => {
    const adapter = { 'ltx-2-19b-lora.safetensors': buildSafetensors(tensors) };
    await expectRefusedByCliAndLibrary(temp.make, backends.cpu!, base(), adapter, message);
  });
});
