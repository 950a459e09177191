/**
 * Layout: XLabs' Flux LoRAs, named after their attention processors
 * (`double_blocks.N.processor.qkv_lora1.down.weight`), as diffusers
 * (_convert_xlabs_flux_lora_to_diffusers) reads them: qkv_lora1 / qkv_lora2 are the whole
 * img_attn.qkv / txt_attn.qkv, proj_lora1 / proj_lora2 are img_attn.proj / txt_attn.proj; in single
 * blocks qkv_lora is the q, k, v rows of linear1 and proj_lora is linear2. They land on BFL or
 * diffusers Flux bases alike (flux-bfl.ts does the rest). XLabs trained FLUX.1 only: on a FLUX.2
 * base (whose double blocks have FLUX.1's names and, in klein 4B, its shapes) they are refused.
 */
import { RenameTable } from './fused-renames.js';
import { FLUX_RULES } from './flux-bfl.js';
import { FLUX1_MISS, isFlux2 } from './flux2-bfl.js';
import type { Layout } from './layout.js';

const table = new RenameTable(FLUX_RULES, () => false);
const DOUBLE = /^double_blocks[._](\d+)[._]processor[._](qkv|proj)_lora([12])$/;
// `qkv_lora.down.weight` splits like any `_lora.down.weight` name, leaving `…processor.qkv`.
const SINGLE = /^single_blocks[._](\d+)[._]processor[._](qkv|proj)(?:_lora)?$/;

export const xlabsFlux: Layout = {
  name: 'xlabs-flux',
  resolve(address, base) {
    if (address.part !== undefined && address.part !== 'unet') return undefined;
    let m = DOUBLE.exec(address.path);
    if ((m || SINGLE.test(address.path)) && isFlux2(base)) return FLUX1_MISS;
    if (m) {
      const stream = m[3] === '1' ? 'img' : 'txt';
      return table.resolveFusedRows(`double_blocks.${m[1]}.${stream}_attn.${m[2]}`, 0, undefined, base);
    }
    m = SINGLE.exec(address.path);
    if (m) {
      // linear1 is q, k, v (3 units) then proj_mlp (4): qkv_lora is the first three.
      return m[2] === 'qkv'
        ? table.resolveFusedRows(`single_blocks.${m[1]}.linear1`, 0, 3, base)
        : table.resolveFusedRows(`single_blocks.${m[1]}.linear2`, 0, undefined, base);
    }
    return undefined;
  },
};
