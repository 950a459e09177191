/**
 * Layouts of one model family, told apart by a marker tensor, whose names are looked up exactly
 * under the prefix the model's keys carry ('' for a bare file, `model.diffusion_model.`…): a suffix
 * match could take another block's tensor of the same name for a missing one.
 */
import { RenameTable, type KeyLookup, type RenameRule } from './fused-renames.js';
import type { BaseView, Layout } from './layout.js';

/**
 * What one base key says: the model's prefix (this is the model), null (it is not), or undefined
 * (this key tells nothing; look on).
 */
export type PrefixProbe = (key: string, base: BaseView) => string | null | undefined;

export interface ModelPrefix {
  /** The prefix of the model's keys, or null: not this model. Found once per base. */
  of(base: BaseView): string | null;
  /** Names looked up exactly under that prefix. */
  readonly lookup: KeyLookup;
}

export function modelPrefix(probe: PrefixProbe): ModelPrefix {
  const found = new WeakMap<readonly string[], string | null>();
  const of = (base: BaseView): string | null => {
    let prefix = found.get(base.keys);
    if (prefix === undefined) {
      prefix = null;
      for (const key of base.keys) {
        const said = probe(key, base);
        if (said !== undefined) {
          prefix = said;
          break;
        }
      }
      found.set(base.keys, prefix);
    }
    return prefix;
  };
  const lookup: KeyLookup = (base, name) => {
    const key = `${of(base) ?? ''}${name}`;
    return base.index.has(key) ? { found: true, key } : { found: false, ambiguous: false, candidates: [] };
  };
  return { of, lookup };
}

/** The prefix before the marker's first group, as a probe's answer for a matched key. */
export function prefixBefore(key: string, match: RegExpExecArray): string {
  return key.slice(0, match.index + match[1].length);
}

/** A layout of one model part (the diffusion model), answering only on that model's bases; its renames are its one table. */
export function modelLayout(name: string, prefix: ModelPrefix, rules: readonly RenameRule[]): Layout & { renames: readonly RenameTable[] } {
  const table = new RenameTable(rules, () => false, prefix.lookup);
  return {
    name,
    renames: [table],
    resolve(address, base) {
      if (address.part !== undefined && address.part !== 'unet') return undefined;
      if (prefix.of(base) === null) return undefined;
      return table.resolve(address.path, base);
    },
  };
}
