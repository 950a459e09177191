/**
 * Layout: vision-language models, whose checkpoints and adapters name the language model in two
 * ways (checkpoint-key-maps.ts). Both the base's keys and the module's path are converted to the
 * refactored module tree's names, as transformers and PEFT convert them when loading, and matched
 * there; a module may then land on a tensor its own spelling never ends with. A path that still
 * fits several tensors (LLaVA's vision tower has the language model's suffixes) is reported with
 * every candidate, by its name in the base.
 */
import type { KeyResolution } from './base-key-index.js';
import { BaseKeyIndex } from './base-key-index.js';
import { baseKeyMap, convertCheckpointKey, type CheckpointKeyMap } from './checkpoint-key-maps.js';
import { wholeTensor, type BaseView, type Layout } from './layout.js';

interface ConvertedKeys {
  map: CheckpointKeyMap;
  index: BaseKeyIndex;
  /** Converted key → the base's own key. */
  original: Map<string, string>;
  /**
   * Converted keys that two or more of the base's keys convert to (a checkpoint storing both
   * spellings of one tensor), with every such key: a module there is refused naming them all,
   * never merged into whichever came last.
   */
  shared: Map<string, string[]>;
}

const converted = new WeakMap<BaseView, ConvertedKeys | null>();

/** The view's keys in the refactored naming, built once per view; null when the model has no key map. */
function convertedKeys(view: BaseView): ConvertedKeys | null {
  let keys = converted.get(view);
  if (keys === undefined) {
    const map = baseKeyMap(view.architectures, view.keys);
    if (!map) {
      keys = null;
    } else {
      const original = new Map<string, string>();
      const shared = new Map<string, string[]>();
      for (const key of view.keys) {
        const name = convertCheckpointKey(key, map);
        const earlier = original.get(name);
        if (earlier !== undefined) shared.set(name, [...(shared.get(name) ?? [earlier]), key]);
        else original.set(name, key);
      }
      keys = { map, index: new BaseKeyIndex(original.keys()), original, shared };
    }
    converted.set(view, keys);
  }
  return keys;
}

/** A tensor path (a module path plus `.weight`, or a parameter) resolved in the converted naming. */
export function resolveConvertedPath(view: BaseView, tensorPath: string): KeyResolution | undefined {
  const keys = convertedKeys(view);
  if (!keys) return undefined;
  const r = keys.index.resolveDotted(convertCheckpointKey(tensorPath, keys.map));
  if (r.found) {
    const both = keys.shared.get(r.key);
    if (both) return { found: false, ambiguous: true, candidates: [...both].sort() };
    return { found: true, key: keys.original.get(r.key)! };
  }
  return { ...r, candidates: r.candidates.flatMap((c) => keys.shared.get(c) ?? [keys.original.get(c)!]).sort() };
}

/**
 * A tensor name in the base: through its model's checkpoint key map where that finds it or finds it
 * ambiguous (a Qwen3-Omni thinker's `model.layers.…` on `thinker.model.layers.…`, never the talker's;
 * Nemotron-H's `model.layers.…` on `backbone.layers.…`), else as the base spells it.
 */
export function resolveMappedPath(view: BaseView, tensorPath: string): KeyResolution {
  const converted = resolveConvertedPath(view, tensorPath);
  if (converted && (converted.found || converted.ambiguous)) return converted;
  return view.index.resolveDotted(tensorPath);
}

export const vlmCheckpoint: Layout = {
  name: 'vlm-checkpoint',
  resolve(address, base) {
    if (address.flat) return undefined;
    const r = resolveConvertedPath(base, address.tensor ? address.path : `${address.path}.weight`);
    return r && wholeTensor(r);
  },
};
