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
import { LAYOUTS } from '../formats/layouts/index.js';
import type { RenameTable } from '../formats/layouts/fused-renames.js';
import type { ModuleRef } from './module-updates.js';

/**
 * Every layout's rename tables (Layout.renames), the registry's last layout first. The registry
 * tries a model's own layout before the general one whose names it shares (Hunyuan's before
 * FLUX.1's, Sana's before PixArt's): without a base, the general naming is the one a refusal
 * names the tensor in.
 */
function renameTables(): RenameTable[] {
  return [...new Set([...LAYOUTS].reverse().flatMap((layout) => layout.renames ?? []))];
}
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
  tables ??= renameTables();
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
