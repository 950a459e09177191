/**
 * Where a replaced tensor (PEFT modules_to_save: `lm_head.weight`, `model.embed_tokens.weight`)
 * lands: the base key of that name, or else the tensor the module's layouts map it to (a GGUF base
 * names them `output.weight`, `token_embd.weight`), with that layout's row order when it reorders
 * every row (llama's q and k rows, permuted by the converter). A layout that places the module on
 * some rows only (one expert of a stacked tensor, one third of a fused qkv) gives no whole tensor to
 * replace: refused, saying so.
 */
import type { KeyResolution } from '../formats/layouts/base-key-index.js';
import type { ModuleLocator, RowSegment } from '../formats/layouts/index.js';
import { moduleAddress, type ModuleAddress } from '../formats/module-address.js';

export type ReplacementTarget =
  | { found: true; key: string; rows?: readonly RowSegment[]; rowBlock?: number }
  | Extract<KeyResolution, { found: false }>;

export function resolveReplacement(locator: ModuleLocator, path: string, rowsOf: (key: string) => number | undefined): ReplacementTarget {
  const direct = locator.resolveTensorPath(path);
  if (direct.found || direct.ambiguous || !path.endsWith('.weight')) return direct;
  const located = locator.locate(moduleAddress(path.slice(0, -'.weight'.length)));
  if (!located.found || located.targets.length !== 1) return direct;
  const { baseKey, rows } = located.targets[0];
  if (!rows) return { found: true, key: baseKey };
  const total = rowsOf(baseKey) ?? 0;
  const rowBlock = coversEveryRow(rows, total) ? closedBlock(rows, total) : undefined;
  if (rowBlock === undefined) {
    return { found: false, ambiguous: false, candidates: [], why: `it maps to some rows of ${baseKey} only (${located.layout}), not a whole tensor to replace` };
  }
  return { found: true, key: baseKey, rows, rowBlock };
}

/** The segments move every row of a tensor of `total` rows to a distinct row of it. */
function coversEveryRow(rows: readonly RowSegment[], total: number): boolean {
  const hit = new Uint8Array(total);
  let n = 0;
  for (const s of rows) {
    if (s.src < 0 || s.dst < 0 || s.src + s.count > total || s.dst + s.count > total) return false;
    for (let i = 0; i < s.count; i++) {
      if (hit[s.dst + i]) return false;
      hit[s.dst + i] = 1;
      n++;
    }
  }
  return n === total && total > 0;
}

/** The smallest divisor b of `total` such that every row moves within its run of b rows (a head for llama's q/k). */
function closedBlock(rows: readonly RowSegment[], total: number): number {
  for (let b = 1; b <= total; b++) {
    if (total % b !== 0) continue;
    const within = rows.every((s) => Math.floor(s.src / b) === Math.floor((s.src + s.count - 1) / b)
      && Math.floor(s.dst / b) === Math.floor((s.dst + s.count - 1) / b) && Math.floor(s.src / b) === Math.floor(s.dst / b));
    if (within) return b;
  }
  return total;
}

/**
 * Where a `set_weight` lands: the one whole tensor the layouts place its module on, as they place a
 * diff of that module (`double_blocks.0.img_attn.norm.query_norm.scale` → diffusers'
 * `transformer_blocks.0.attn.norm_q.weight`); part of a fused tensor is no tensor to replace.
 */
export function resolveSetWeight(locator: ModuleLocator, address: ModuleAddress): ReplacementTarget {
  const located = locator.locate(address);
  if (!located.found) return { found: false, ambiguous: false, candidates: [], why: located.message };
  const [target] = located.targets;
  if (located.targets.length !== 1 || target.rows || target.columns || target.transposedBlocks) {
    return { found: false, ambiguous: false, candidates: [], why: `it maps to part of ${located.targets.map((t) => t.baseKey).join(', ')} (${located.layout}), not a whole tensor to replace` };
  }
  return { found: true, key: target.baseKey };
}
