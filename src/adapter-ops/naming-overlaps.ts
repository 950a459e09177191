/**
 * Modules of a combine that name rows of one base weight in two namings the layouts translate
 * only against a base: a diffusion transformer's single-file naming (BFL's `double_blocks.0.img_attn.qkv`)
 * beside its diffusers naming (`transformer_blocks.0.attn.to_q`, a third of those rows). Which rows
 * a name's update lands on depends on the base (the same names mean other rows in other models),
 * so combine cannot sum such updates into one module; a method that reduces each module on its own
 * would then write something other than the reduction of the sum asked for, and is refused.
 */
import { MergeError } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import { AURAFLOW_RULES } from '../formats/layouts/auraflow.js';
import { ANIMA_ADAPTER_RULES, COSMOS_RULES } from '../formats/layouts/cosmos.js';
import { COSMOS1_RULES } from '../formats/layouts/cosmos1.js';
import { FLUX_RULES } from '../formats/layouts/flux-bfl.js';
import { FLUX2_RULES } from '../formats/layouts/flux2-bfl.js';
import { RenameTable, type RenameRule } from '../formats/layouts/fused-renames.js';
import { HUNYUAN_DIT_RULES } from '../formats/layouts/hunyuan-dit.js';
import { HUNYUAN_IMAGE_RULES, HUNYUAN_VIDEO_15_FUSED_RULES, HUNYUAN_VIDEO_15_RULES, HUNYUAN_VIDEO_RULES } from '../formats/layouts/hunyuan-video.js';
import { LTX_VIDEO_RULES } from '../formats/layouts/ltx-video.js';
import { LTX2_CONNECTOR_RULES, LTX2_RULES } from '../formats/layouts/ltx2.js';
import { LUMINA2_RULES } from '../formats/layouts/lumina2.js';
import { MOCHI_RULES } from '../formats/layouts/mochi.js';
import { PIXART_RULES } from '../formats/layouts/pixart.js';
import { SANA_RULES, SANA_SPRINT_RULES } from '../formats/layouts/sana.js';
import { SD3_RULES } from '../formats/layouts/sd3-sai.js';
import { STABLE_CASCADE_RULES } from '../formats/layouts/stable-cascade.js';
import { WAN_RULES } from '../formats/layouts/wan-original.js';
import { Z_IMAGE_RULES } from '../formats/layouts/z-image.js';
import type { ModuleRef } from './module-updates.js';

const RULE_SETS: readonly (readonly RenameRule[])[] = [
  FLUX_RULES, FLUX2_RULES, SD3_RULES, AURAFLOW_RULES, COSMOS_RULES, ANIMA_ADAPTER_RULES, COSMOS1_RULES, HUNYUAN_DIT_RULES,
  HUNYUAN_VIDEO_RULES, HUNYUAN_IMAGE_RULES, HUNYUAN_VIDEO_15_RULES, HUNYUAN_VIDEO_15_FUSED_RULES, LTX_VIDEO_RULES, LTX2_RULES,
  LTX2_CONNECTOR_RULES, LUMINA2_RULES, MOCHI_RULES, PIXART_RULES, SANA_RULES, SANA_SPRINT_RULES, STABLE_CASCADE_RULES, WAN_RULES, Z_IMAGE_RULES,
];
let tables: RenameTable[] | undefined;

interface Named {
  module: string;
  adapter: string;
  from: number;
  to: number;
  naming: 'fused' | 'split';
}

/**
 * Throws, naming both modules and the tensor, where two of the grouped modules (one per output
 * name) name overlapping rows of one single-file tensor, one in each naming; `method` words why.
 */
export function refuseNamingOverlaps(groups: ReadonlyMap<string, readonly ModuleRef[]>, adapters: readonly ParsedAdapter[], method: string): void {
  tables ??= RULE_SETS.map((rules) => new RenameTable(rules, () => false));
  const byTensor = new Map<string, Named[]>();
  for (const [name, refs] of groups) {
    const { module, adapterIndex } = refs[0];
    if (module.address.part !== undefined && module.address.part !== 'unet') continue;
    tables.forEach((table, t) => {
      const rows = table.rowsNamed(module.address.path);
      if (!rows) return;
      const key = `${t}:${rows.tensor}`;
      const named: Named = { module: name, adapter: adapters[adapterIndex].name, from: rows.from, to: rows.to, naming: rows.naming };
      const other = byTensor.get(key)?.find((o) => o.naming !== named.naming && o.from < named.to && named.from < o.to);
      if (other) {
        throw new MergeError('UNSUPPORTED_FORMAT', `combine: "${other.module}" (${other.adapter}) and "${named.module}" (${named.adapter}) name rows of one base weight (${rows.tensor}) in two namings, which only the base places; --method ${method} would reduce each on its own, not their sum: combine adapters of one naming, or use --method cat (exact)`);
      }
      byTensor.set(key, [...(byTensor.get(key) ?? []), named]);
    });
  }
}
