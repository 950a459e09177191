/**
 * Layout: Stable Diffusion UNets (SD1, SD2, SDXL) in diffusers' naming (`down_blocks_1_attentions_0_proj_in`)
 * and in the LDM/SGM single files' (`input_blocks_4_1_proj_in`), either way round, flattened or
 * dotted (diffusers' _maybe_map_sgm_blocks_to_diffusers and ComfyUI's unet_to_diffusers map the same).
 *
 * kohya's sd-scripts build SD1/SD2 LoRAs on the diffusers UNet, so their modules carry diffusers
 * names, while most users' base models are single-file LDM checkpoints
 * (`model.diffusion_model.input_blocks.4.1.proj_in.weight`); sd-scripts converts the checkpoint on
 * load. SDXL LoRAs already use the checkpoint's names and never need this.
 *
 * The layout: two resnets (plus attentions) per down block and a downsampler after each of the
 * first three; the input blocks count them in order from 1 (block 0 is conv_in). Up blocks have
 * three resnets and output blocks count from 0; an up block's upsampler sits after its resnet (1)
 * or after its resnet and attention (2).
 */

import type { Layout } from './layout.js';

const RESNET_PARTS: Readonly<Record<string, string>> = {
  norm1: 'in_layers_0',
  conv1: 'in_layers_2',
  time_emb_proj: 'emb_layers_1',
  norm2: 'out_layers_0',
  conv2: 'out_layers_3',
  conv_shortcut: 'skip_connection',
};

const TOP_LEVEL: Readonly<Record<string, string>> = {
  conv_in: 'input_blocks_0_0',
  time_embedding_linear_1: 'time_embed_0',
  time_embedding_linear_2: 'time_embed_2',
  conv_norm_out: 'out_0',
  conv_out: 'out_2',
  // SDXL's size and crop conditioning.
  add_embedding_linear_1: 'label_emb_0_0',
  add_embedding_linear_2: 'label_emb_0_2',
};

const invert = (m: Readonly<Record<string, string>>): Readonly<Record<string, string>> =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [v, k]));
const RESNET_FROM_LDM = invert(RESNET_PARTS);
const TOP_FROM_LDM = invert(TOP_LEVEL);

/**
 * The LDM names a flattened diffusers UNet module may have: none when the name is not a diffusers
 * UNet name, two for an upsampler (which of them exists depends on the block).
 */
export function ldmUnetNames(flatName: string): string[] {
  const top = TOP_LEVEL[flatName];
  if (top) return [top];
  let m = /^down_blocks_(\d+)_(resnets|attentions)_(\d+)_(.+)$/.exec(flatName);
  if (m) return blockPart(`input_blocks_${3 * Number(m[1]) + Number(m[3]) + 1}`, m[2], m[4]);
  m = /^down_blocks_(\d+)_downsamplers_0_conv$/.exec(flatName);
  if (m) return [`input_blocks_${3 * (Number(m[1]) + 1)}_0_op`];
  m = /^mid_block_attentions_0_(.+)$/.exec(flatName);
  if (m) return [`middle_block_1_${m[1]}`];
  m = /^mid_block_resnets_(\d+)_(.+)$/.exec(flatName);
  if (m) return resnetPart(`middle_block_${2 * Number(m[1])}`, m[2]);
  m = /^up_blocks_(\d+)_(resnets|attentions)_(\d+)_(.+)$/.exec(flatName);
  if (m) return blockPart(`output_blocks_${3 * Number(m[1]) + Number(m[3])}`, m[2], m[4]);
  m = /^up_blocks_(\d+)_upsamplers_0_conv$/.exec(flatName);
  if (m) {
    const block = `output_blocks_${3 * Number(m[1]) + 2}`;
    return [`${block}_1_conv`, `${block}_2_conv`];
  }
  return [];
}

function blockPart(block: string, kind: string, rest: string): string[] {
  return kind === 'attentions' ? [`${block}_1_${rest}`] : resnetPart(`${block}_0`, rest);
}

function resnetPart(resnet: string, rest: string): string[] {
  const part = RESNET_PARTS[rest];
  return part ? [`${resnet}_${part}`] : [];
}

/**
 * The diffusers name of a flattened LDM/SGM UNet module (the inverse of ldmUnetNames): kohya's
 * SDXL LoRAs on a diffusers UNet. Null when the name is not an LDM UNet name.
 */
export function diffusersUnetName(flatName: string): string | null {
  const top = TOP_FROM_LDM[flatName];
  if (top) return top;
  const resnet = (block: string, rest: string) => (RESNET_FROM_LDM[rest] ? `${block}_${RESNET_FROM_LDM[rest]}` : null);
  let m = /^input_blocks_(\d+)_([01])_(.+)$/.exec(flatName);
  if (m && Number(m[1]) > 0) {
    const k = Number(m[1]);
    if (k % 3 === 0) return m[2] === '0' && m[3] === 'op' ? `down_blocks_${k / 3 - 1}_downsamplers_0_conv` : null;
    const block = `down_blocks_${Math.floor((k - 1) / 3)}`;
    const i = (k - 1) % 3;
    return m[2] === '1' ? `${block}_attentions_${i}_${m[3]}` : resnet(`${block}_resnets_${i}`, m[3]);
  }
  m = /^middle_block_([012])_(.+)$/.exec(flatName);
  if (m) return m[1] === '1' ? `mid_block_attentions_0_${m[2]}` : resnet(`mid_block_resnets_${Number(m[1]) / 2}`, m[2]);
  m = /^output_blocks_(\d+)_([012])_(.+)$/.exec(flatName);
  if (m) {
    const k = Number(m[1]);
    const block = `up_blocks_${Math.floor(k / 3)}`;
    if (m[3] === 'conv' && m[2] !== '0') return k % 3 === 2 ? `${block}_upsamplers_0_conv` : null;
    if (m[2] === '2') return null;
    return m[2] === '1' ? `${block}_attentions_${k % 3}_${m[3]}` : resnet(`${block}_resnets_${k % 3}`, m[3]);
  }
  return null;
}

export const sdLdmUnet: Layout = {
  name: 'sd-ldm-unet',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    const flat = address.flat ? address.path : address.path.replaceAll('.', '_');
    const reverse = diffusersUnetName(flat);
    const names = reverse ? [reverse] : ldmUnetNames(flat);
    if (names.length === 0) return undefined;
    const found = names.map((name) => base.index.resolveFlat(name)).filter((r) => r.found);
    if (found.length === 1) return { found: true, targets: [{ baseKey: found[0].key }] };
    return { found: false, ambiguous: found.length > 1, candidates: found.map((r) => r.key).sort() };
  },
};
