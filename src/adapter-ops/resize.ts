/**
 * resize: a new rank for every module of one adapter, as kohya's resize_lora does: the SVD of the
 * module's unscaled B·A (exact, from the factors), a rank by `rule` (rank-rules.ts), S in B, and a
 * new alpha that keeps the module's effective scale (α/r, or α/√r under rsLoRA). The report gives
 * each module's rank and the share of its update's Frobenius norm kept.
 */
import type { AlgebraBackend } from '../algebra/algebra-backend.js';
import { chooseRank, type RankRule } from '../algebra/rank-rules.js';
import { throwIfAborted } from '../errors.js';
import type { ParsedAdapter } from '../formats/adapter.js';
import type { WrittenModule } from '../formats/adapter-writer.js';
import type { ProgressListener } from '../pipeline/progress.js';
import { collectModules, finishAdapter, type ModuleReport, type OpResult } from './op-common.js';
import { factorBytes, factorRank, readFactors, type OutputFormat } from './module-updates.js';
import { decomposeFactors, moduleFromSvd } from './reduce.js';

export async function resizeAdapter(
  adapter: ParsedAdapter, rule: RankRule, format: OutputFormat, backend: AlgebraBackend,
  run: { signal?: AbortSignal; onProgress?: ProgressListener } = {},
): Promise<OpResult> {
  const groups = collectModules([adapter], format, 'resize');
  const rslora = format === 'peft' && adapter.config.use_rslora === true;
  const modules: WrittenModule[] = [];
  const report: ModuleReport[] = [];
  let done = 0;
  const bytesTotal = adapter.modules.reduce((n, m) => n + factorBytes(m), 0);
  let bytesDone = 0;
  const grown: string[] = [];
  for (const [name, [ref]] of groups) {
    throwIfAborted(run.signal);
    run.onProgress?.({ phase: 'merge', tensorsDone: done, tensorsTotal: groups.size, bytesDone, bytesTotal, tensor: name });
    const { b, a, rank: oldRank } = await readFactors(adapter, ref.module);
    const { svd, total2 } = await decomposeFactors(backend, b, a, oldRank, run.signal);
    const side = Math.min(ref.shape.out, ref.shape.in);
    // A dynamic rule capped by the user stops there (kohya's --new_rank), even past the module's own
    // rank, as kohya's does; uncapped, it stops at the module's own rank, which holds all the update.
    const maxRank = rule.kind === 'rank' ? Math.min(rule.rank, side) : rule.maxRank !== undefined ? Math.min(rule.maxRank, side) : oldRank;
    const choice = chooseRank(svd.s, side, rule, maxRank);
    if (choice.rank > oldRank) grown.push(`${name} (rank ${oldRank})`);
    const scale = ref.module.scale;
    const alpha = rslora ? scale * Math.sqrt(choice.rank) : scale * choice.rank;
    modules.push(await moduleFromSvd(svd, choice.rank, 'up', name, ref.shape, alpha, run.signal));
    report.push({ name, rank: choice.rank, froKept: choice.froKept, singularValues: Array.from(svd.s), normSquared: total2 });
    done++;
    bytesDone += factorBytes(ref.module);
  }
  run.onProgress?.({ phase: 'done', tensorsDone: done, tensorsTotal: groups.size, bytesDone, bytesTotal });
  // A split module's own rank is its parts' together (n·r), as the update resized holds it.
  const oldRanks = new Set(adapter.modules.map(factorRank));
  const from = oldRanks.size === 1 ? String([...oldRanks][0]) : 'mixed ranks';
  const how = rule.kind === 'rank' ? `rank ${rule.rank}` : `${rule.kind} ${rule.value}${rule.maxRank !== undefined ? ` at most rank ${rule.maxRank}` : ''}`;
  const comment = rule.kind === 'rank' ? `dimension is resized from ${from} to ${rule.rank}` : `Dynamic resize with ${rule.kind}: ${rule.value} from ${from}`;
  const previous = typeof adapter.config.ss_training_comment === 'string' ? `; ${adapter.config.ss_training_comment}` : '';
  const result = finishAdapter([adapter], modules, report, format, {
    loramerge_command: 'resize',
    loramerge_rule: how,
    loramerge_sources: JSON.stringify([{ adapter: adapter.name, format: adapter.format }]),
  }, comment + previous, { useRslora: rslora });
  if (grown.length > 0) {
    // Exact, as kohya's resize is, but the added rank holds nothing: a larger file, the same update.
    result.warnings.push(`${how} is above the rank of ${grown.length} module(s) (${grown.slice(0, 3).join(', ')}${grown.length > 3 ? ', …' : ''}): the rank they gain is zero-filled, so the file grows and the update stays as it was`);
  }
  if (format === 'kohya' && adapter.format === 'kohya') {
    // kohya's resize keeps the input's training metadata and rewrites the network's size. A LyCORIS
    // input's ss_network_args (`"algo": "loha"`) describe a network the output, a plain LoRA, is not.
    // A networks.lora input keeps its args but those that say how its modules are split or scaled
    // (plainNetworkArgs): the output holds each module as one plain pair at α/k.
    const otherNetwork = adapter.config.ss_network_module !== undefined && adapter.config.ss_network_module !== 'networks.lora';
    for (const [k, v] of Object.entries(adapter.config)) {
      if (typeof v !== 'string' || k in result.adapter.metadata) continue;
      if (k !== 'ss_network_args') result.adapter.metadata[k] = v;
      else if (!otherNetwork) {
        const args = plainNetworkArgs(v);
        if (args !== undefined) result.adapter.metadata[k] = args;
      }
    }
  }
  return result;
}

/**
 * Network args that describe how the input's modules are split or scaled, which a plain pair at
 * α/k is not: musubi/blissful-tuner's `module_kwargs` (split_dims), sd-scripts' `split_qkv`, and
 * blissful-tuner's `use_rslora`/`use_dora` (its readers go by the flag tensors, which the output
 * does not carry, but the args would still tell a user the output is rsLoRA or DoRA).
 */
const INPUT_MODULE_ARGS = new Set(['module_kwargs', 'split_dims', 'split_qkv', 'use_rslora', 'use_dora']);

/**
 * A networks.lora input's ss_network_args (a JSON object) without INPUT_MODULE_ARGS, or undefined
 * when nothing is left; args that are not such an object are dropped if they name one of those
 * args, and kept as they are otherwise.
 */
function plainNetworkArgs(text: string): string | undefined {
  let args: unknown;
  try {
    args = JSON.parse(text);
  } catch {
    args = undefined;
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    return [...INPUT_MODULE_ARGS].some((k) => text.includes(k)) ? undefined : text;
  }
  const kept = Object.entries(args).filter(([k]) => !INPUT_MODULE_ARGS.has(k));
  if (kept.length === Object.keys(args).length) return text;
  return kept.length > 0 ? JSON.stringify(Object.fromEntries(kept)) : undefined;
}
