/**
 * Requests that are legal but almost certainly not what the user meant are said aloud, and modules
 * beyond the limits are refused before anything is read:
 * - weight 0, or a module whose alpha is 0 (scale 0): the merge rewrites the tensors unchanged;
 * - a rank above MAX_RANK: its factors alone would take more memory than a merge may use;
 * - rotation blocks larger than MAX_ROTATION_BLOCK: turning them into rotations takes b³ work each.
 * (The same adapter given twice is found in same-adapter.ts, which compares file contents.)
 */
import type { AdapterModule } from '../formats/adapter.js';
import { moduleTitle } from '../formats/algorithms/index.js';
import { MAX_RANK, MAX_ROTATION_BLOCK } from '../limits.js';
import { shownList } from '../shown-text.js';
import type { WeightedAdapter } from './merge-plan.js';

/** The rank the executor runs a module's low-rank product at (LoHa: r₁·r₂; LoKr: its kron rank), if it is one. */
export function effectiveRank(module: AdapterModule): number | undefined {
  return module.update.kind === 'low-rank' ? module.update.rank : undefined;
}

/** Why a module is refused before its factors are read, if it is. */
export function moduleLimitProblem(module: AdapterModule): string | undefined {
  const rank = effectiveRank(module);
  if (rank !== undefined && rank > MAX_RANK) {
    const shown = rank !== module.rank ? ` (${moduleTitle(module)}, rank ${module.rank} in its factors)` : '';
    return `rank ${rank}${shown} is above the limit of ${MAX_RANK} (MAX_RANK), which bounds the memory a merge takes`;
  }
  if (module.update.kind === 'transform' && (module.update.block ?? 0) > MAX_ROTATION_BLOCK) {
    return `has rotation blocks of ${module.update.block}, above the limit of ${MAX_ROTATION_BLOCK} (MAX_ROTATION_BLOCK), which bounds the work of turning each into a rotation`;
  }
  return undefined;
}

/** Above this |weight| a warning says weights are multipliers (see suspiciousRequestWarnings). */
const MULTIPLIER_SAID_ABOVE = 10;

/** Warnings for weight 0, for a weight that looks like a percentage, and for modules whose alpha makes their scale 0. */

export function suspiciousRequestWarnings(adapters: readonly WeightedAdapter[]): string[] {
  const warnings: string[] = [];
  for (const { adapter, weight } of adapters) {
    if (weight === 0) {
      const still = changedAtWeightZero(adapter);
      if (still.length > 0) {
        warnings.push(`${adapter.name}: weight 0 leaves out its updates, but not all of its changes: ${still.join('; ')} (was another weight meant?)`);
        continue;
      }
      // A widened base (ComfyUI's reshape_weight, a control LoRA's img_in) is padded before the weight scales the update.
      const widened = adapter.modules.filter((m) => m.widenBaseTo !== undefined);
      warnings.push(widened.length === 0
        ? `${adapter.name}: weight 0 changes nothing; its tensors are written unchanged (was another weight meant?)`
        : `${adapter.name}: weight 0 changes no values; its tensors are written unchanged except that the base weights of ${shownList(widened, (m) => `"${m.key}"`, ', ', widened.length)} are still zero-padded to the adapter's width, as its loader pads them before the update (was another weight meant?)`);
      continue;
    }
    // Strengths are multipliers; a percentage typed as one (80 for 0.8) merges the update 80-fold
    // and the model is ruined without a word. Sliders go to a few units either way, so past ten
    // it is said, not refused.
    if (Math.abs(weight) > MULTIPLIER_SAID_ABOVE) {
      const percent = Math.abs(weight) <= 100 ? ` (was ${weight / 100} meant?)` : '';
      warnings.push(`${adapter.name}: weight ${weight} scales its update ${Math.abs(weight)}-fold: a weight is a multiplier, not a percentage (1 applies the adapter as trained, 0.8 at 80 %)${percent}`);
    }
    const silent = adapter.modules.filter((m) => m.scale === 0);
    if (silent.length > 0) {
      const names = silent.slice(0, 3).map((m) => m.key).join(', ');
      warnings.push(
        `${adapter.name}: ${silent.length === adapter.modules.length ? 'every module has' : `${silent.length} of ${adapter.modules.length} modules have`} ` +
          `alpha 0, so scale 0: ${silent.length === 1 ? 'it changes' : 'they change'} nothing (${names}${silent.length > 3 ? ', …' : ''})`,
      );
    }
  }
  return warnings;
}

/**
 * What an adapter still changes at weight 0, as its training tool applies that weight: a DoRA
 * magnitude (PEFT scales ΔW, so each norm of W itself is set to the magnitude; LyCORIS moves the
 * factor m / ‖V‖ to 1 and keeps ΔW whole), and the tensors and token rows it replaces, to which no
 * weight applies. Empty when every change scales to nothing.
 */
function changedAtWeightZero(adapter: WeightedAdapter['adapter']): string[] {
  const still: string[] = [];
  const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  const peftDora = adapter.modules.filter((m) => m.dora?.weighting === 'delta' && !m.dora.noneAtWeightZero).length;
  const lycorisDora = adapter.modules.filter((m) => m.dora?.weighting === 'factor').length;
  if (peftDora > 0) still.push(`${count(peftDora, 'DoRA module still scales its weight', 'DoRA modules still scale their weights')} to the trained magnitudes (PEFT scales only ΔW by the weight)`);
  if (lycorisDora > 0) still.push(`${count(lycorisDora, 'DoRA module still adds its update', 'DoRA modules still add their updates')} whole (LyCORIS's weight moves only the DoRA factor, to 1 at weight 0)`);
  if (adapter.replacements.length > 0) still.push(`${count(adapter.replacements.length, 'saved tensor still replaces', 'saved tensors still replace')} the base's`);
  if ((adapter.tokenRows?.length ?? 0) > 0) still.push('its trainable tokens still set their rows');
  return still;
}
