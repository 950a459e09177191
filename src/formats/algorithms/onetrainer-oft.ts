/**
 * OneTrainer's OFT (PeftType.OFT_2, modules/module/LoRAModule.py `OFTModule` with
 * modules/module/oft_utils.py `OFTRotationModule`), saved in a single file beside no config:
 * `<module>.oft_R.weight` (r, b(b−1)/2) holds each block's upper triangle row by row, r = in/b blocks
 * (in = a conv's in·kh·kw), or one row shared by all in/b blocks (oft_block_share); Scaled OFT adds
 * the buffer `<module>.oft_R.scaled_oft` (True, or 1 in the saved dtype). OneTrainer forms each block
 * Q = skew(row) / (2·√(b − 1)) when scaled (else skew(row)), R = I + 2Q + 2Q² + 2Q³ + Q⁴ (its
 * Cayley–Neumann series, 5 terms, always on; I + 2Q + 2Q² + 2Q³ + 2Q⁴ in its first four OFT commits,
 * 14–15 November 2025, told by the file's `ot_revision`: ./onetrainer-revisions.ts), and applies it as
 * its forward does: a Linear rotates its
 * input, x·R per block, so W' = W·Rᵀ; a Conv2d rotates its weight, W' = W·R per block of in·kh·kw.
 * The bias is not touched. OneTrainer has no weight for a module; a user weight s ≠ 1 merges the
 * blocks I + s·(R − I) (as ComfyUI-OFTv2, the loader OneTrainer's OFT author wrote, applies them).
 * Reached through PEFT's OFT algorithm, which owns `oft_R` and hands files outside a PEFT folder here.
 *
 * COFT (`oft_coft`, `coft_eps`: OneTrainer from November 2025 to May 2026) projected each Linear's
 * skew blocks in place at every forward, ‖Q_k‖ capped at coft_eps/√r (`_project_batch`); its Conv2d
 * forward formed R from the weight as it stood, unprojected. The setting lives in the training config,
 * which the file holds only when saved with it (`ot_config`, include_train_config): read from there
 * (oneTrainerOftOptions), or, for a file saved without it, from the user (`--onetrainer-coft`,
 * OpenAdapterOptions.oneTrainerCoft), and applied as OneTrainer did, Linear layers alone.
 *
 * What cannot be told is refused, not guessed: a module without the Scaled OFT marker (which proves
 * OneTrainer from 29 May 2026: current series, no COFT) in a file whose `ot_revision` names no commit
 * (left out, or "git not installed") could be from either series; one whose revision is a commit that
 * had COFT (14 November 2025 – 10 May 2026), saved without its config, could have been projected or
 * not (COFT's default was off, but the file does not say which setting it trained with).
 */
import { MergeError } from '../../errors.js';
import { coftProject, peftOftRotation, skewFromUpper } from '../../algorithms/math/oft.js';
import type { Role } from '../key-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { fmtShape, moduleBasics, type Algorithm, type ModuleContext } from './algorithm.js';
import { f32Bytes, readValues } from './factor-io.js';
import { COFT_COMMITS, FIRST_SERIES_COMMITS } from './onetrainer-revisions.js';

/** The number of Cayley–Neumann terms OneTrainer's OFTModule builds its rotations with (fixed). */
const NEUMANN_TERMS = 5;

/** Which OneTrainer saved a file (`onetrainer_period`): its ot_revision names no commit; one of its first four OFT commits (first series, COFT); one of the commits with COFT and the current series; any other commit. */
const UNKNOWN = 0;
const FIRST_SERIES = 1;
const WITH_COFT = 2;
const LATER = 3;

/** The period of OneTrainer's `ot_revision` (`git rev-parse --short HEAD`): a commit's leading hex digits, matched against ./onetrainer-revisions.ts. */
function revisionPeriod(revision: string): number {
  const rev = revision.trim().toLowerCase();
  if (!/^[0-9a-f]{7,40}$/.test(rev)) return UNKNOWN;
  const known = (list: string) => list.split(' ').some((commit) => (rev.length >= commit.length ? rev.startsWith(commit) : commit.startsWith(rev)));
  if (known(FIRST_SERIES_COMMITS)) return FIRST_SERIES;
  if (known(COFT_COMMITS)) return WITH_COFT;
  return LATER;
}

export const onetrainerOft: Algorithm = {
  name: 'onetrainer-oft',
  title: 'OFT (OneTrainer)',
  // Claimed through `peft-oft` (a module is OneTrainer's when no PEFT config comes with it).
  defines: [],
  roles: ['oft_R', 'scaled_oft'],
  scalars: ['scaled_oft'],

  build(tensors: ReadonlyMap<Role, TensorEntry>, context: ModuleContext) {
    const weight = tensors.get('oft_R');
    if (!weight) {
      context.report('UNSUPPORTED_FORMAT', 'has oft_R.scaled_oft but no oft_R.weight');
      return null;
    }
    if (tensors.has('oft_embedding_R')) {
      context.report('UNSUPPORTED_FORMAT', 'has oft_embedding_R, which PEFT alone writes (in a folder with its adapter_config.json); OneTrainer\'s OFT wraps Linear and Conv2d layers');
      return null;
    }
    if (context.alpha !== undefined) {
      context.report('UNSUPPORTED_FORMAT', 'has an alpha beside OneTrainer\'s OFT tensors (oft_R), which OneTrainer neither writes nor reads for OFT; remove the alpha tensor to merge it as OneTrainer applies it');
      return null;
    }
    const scaled = context.scalars?.get('scaled_oft');
    if (scaled !== undefined && scaled !== 1) {
      context.report('UNSUPPORTED_FORMAT', `has oft_R.scaled_oft holding ${scaled}: OneTrainer writes that marker as True (1) for Scaled OFT and leaves it out otherwise`);
      return null;
    }
    const [rows, n] = weight.shape;
    const b = (1 + Math.sqrt(1 + 8 * n)) / 2;
    if (weight.shape.length !== 2 || !Number.isInteger(b) || b < 2 || rows < 1) {
      context.report('SHAPE_MISMATCH', `oft_R.weight ${fmtShape(weight.shape)} does not hold b(b−1)/2 values per block, as OneTrainer's OFT saves it`);
      return null;
    }
    const o = context.options;
    const period = typeof o?.onetrainer_period === 'number' ? o.onetrainer_period : UNKNOWN;
    if (scaled === 1 && (period === FIRST_SERIES || period === WITH_COFT)) {
      context.report('UNSUPPORTED_FORMAT', 'has oft_R.scaled_oft (Scaled OFT, OneTrainer from 29 May 2026), but the file\'s ot_revision is a OneTrainer commit from before it; the file is not as OneTrainer saves it');
      return null;
    }
    if (scaled !== 1 && period === UNKNOWN) {
      const said = o?.onetrainer_revision_text === true ? 'whose ot_revision metadata names no OneTrainer commit' : 'without OneTrainer\'s ot_revision metadata';
      context.report('UNSUPPORTED_FORMAT', `is OneTrainer's OFT in a file ${said}: OneTrainer built its rotations as I + 2Q + 2Q² + 2Q³ + 2Q⁴ in its first OFT commits (14–15 November 2025) and as I + 2Q + 2Q² + 2Q³ + Q⁴ since b46986d6, and the file does not say which; add the OneTrainer commit it was trained with (\`git rev-parse --short HEAD\` in OneTrainer's folder) as ot_revision to the file's metadata`);
      return null;
    }
    const hadCoft = scaled !== 1 && (period === FIRST_SERIES || period === WITH_COFT);
    // The user's word on COFT stands in for a training config the file was saved without, or holds unreadable.
    const userCoft = hadCoft && o?.onetrainer_config !== true && o?.onetrainer_user_coft === true;
    const configProblem = typeof o?.onetrainer_config_problem === 'number' ? CONFIG_PROBLEMS[o.onetrainer_config_problem] : undefined;
    if (hadCoft && configProblem && !userCoft) {
      context.report('UNSUPPORTED_FORMAT', `is OneTrainer's OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 (its ot_revision), which had COFT, and the file's training config (ot_config metadata) ${configProblem}: whether and how COFT projected its blocks cannot be told; fix ot_config as OneTrainer writes it (peft_type "OFT_2", oft_coft true or false, coft_eps a positive number), or, knowing how it was trained, merge it with --onetrainer-coft off, --onetrainer-coft on (coft_eps 1e-4, OneTrainer's default) or --onetrainer-coft EPS`);
      return null;
    }
    if (hadCoft && o?.onetrainer_config !== true && !userCoft) {
      context.report('UNSUPPORTED_FORMAT', 'is OneTrainer\'s OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 (its ot_revision), which had COFT (oft_coft, off by default), without its training config (ot_config): whether COFT projected its blocks cannot be told; add ot_config with the run\'s peft_type "OFT_2", oft_coft and coft_eps (as OneTrainer writes it with include_train_config) to the file\'s metadata, or, knowing how it was trained, merge it with --onetrainer-coft off, --onetrainer-coft on (coft_eps 1e-4, OneTrainer\'s default) or --onetrainer-coft EPS');
      return null;
    }
    // Only a OneTrainer that had COFT projected: a later one (or a Scaled OFT module) ignores an ot_config that says oft_coft.
    const coftEps = !hadCoft ? undefined : o?.onetrainer_config === true ? o.onetrainer_coft_eps : userCoft ? o?.onetrainer_user_coft_eps : undefined;
    return {
      ...moduleBasics(context),
      algorithm: onetrainerOft.name,
      kind: 'linear',
      // One row is one block shared by every block of the inputs (or the only block): any width b divides.
      deltaShape: [-1, rows === 1 ? -1 : rows * b],
      rank: 1,
      alpha: 1,
      scale: 1,
      tensors: { weight },
      update: { kind: 'transform', cost: b, block: b, splitRows: true },
      fanInFanOut: false,
      options: {
        scaled: scaled === 1,
        ...(scaled !== 1 && period === FIRST_SERIES ? { firstSeries: true } : {}),
        ...(typeof coftEps === 'number' ? { coftEps } : {}),
      },
    };
  },

  async load(file, module, delta) {
    const { weight } = module.tensors;
    const [rows, n] = weight.shape;
    const b = (1 + Math.sqrt(1 + 8 * n)) / 2;
    const dims = delta?.baseDims ?? 2;
    if (dims !== 2 && dims !== 4) {
      throw new MergeError('UNSUPPORTED_FORMAT', `OFT module "${module.name}": OneTrainer's OFT wraps Linear and Conv2d layers, and the base tensor it lands on has ${dims} dims`);
    }
    const inF = delta?.in ?? rows * b;
    if (inF % b !== 0 || (rows !== 1 && rows * b !== inF)) {
      throw new MergeError('SHAPE_MISMATCH', `OFT module "${module.name}": oft_R.weight ${fmtShape(weight.shape)} holds ${rows} block${rows === 1 ? '' : 's'} of ${b}, which do not cover the layer's ${inF} inputs`);
    }
    const blocks = inF / b;
    const vec = await readValues(file, weight);
    const f = module.options?.scaled === true ? 1 / (2 * Math.sqrt(b - 1)) : 1;
    const conv = dims === 4;
    const eps = module.options?.coftEps;
    // COFT's projection of every row at once (its ε over √rows), on a Linear only.
    let rowsQ: Float64Array | undefined;
    if (typeof eps === 'number' && !conv) {
      const all = new Float64Array(rows * b * b);
      for (let k = 0; k < rows; k++) all.set(skewFromUpper(vec.subarray(k * n, (k + 1) * n), b), k * b * b);
      rowsQ = coftProject(all, b, rows, eps);
    }
    const deltaBlocks = new Float32Array(blocks * b * b);
    let r: Float64Array = new Float64Array(0);
    for (let k = 0; k < blocks; k++) {
      const src = rows === 1 ? 0 : k;
      if (k === 0 || rows !== 1) {
        const q = (rowsQ ? rowsQ.slice(src * b * b, (src + 1) * b * b) : skewFromUpper(vec.subarray(src * n, (src + 1) * n), b)).map((x) => x * f);
        r = peftOftRotation(q, b, true, NEUMANN_TERMS, module.options?.firstSeries === true);
      }
      // The engine maps each block of a row by M = I + s·Δ (W' = W·Mᵀ): M = R for a Linear (W·Rᵀ), Rᵀ for a Conv2d (W·R).
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < b; j++) deltaBlocks[k * b * b + i * b + j] = (conv ? r[j * b + i] : r[i * b + j]) - (i === j ? 1 : 0);
      }
    }
    return [{ kind: 'rotate', axis: 'in', blockSize: b, delta: f32Bytes(deltaBlocks) }];
  },
};

/**
 * Whether a single file asks for the user's word on COFT (OpenAdapterOptions.oneTrainerCoft, the
 * CLI's --onetrainer-coft): OneTrainer OFT modules without the Scaled OFT marker, in a file whose
 * ot_revision is a commit that had COFT and which holds no training config (ot_config) to say how
 * it was trained. The same reading as the refusal that asks (build), made from the header alone,
 * so a front end can offer the setting beside the file whether or not it was given.
 */
export function asksOneTrainerCoft(metadata: Readonly<Record<string, string>>, tensorNames: readonly string[]): boolean {
  const options = oneTrainerOftOptions(metadata);
  if (options.onetrainer_config === true) return false;
  if (options.onetrainer_period !== FIRST_SERIES && options.onetrainer_period !== WITH_COFT) return false;
  const names = new Set(tensorNames);
  return tensorNames.some((name) => name.endsWith(OFT_WEIGHT) && !names.has(`${name.slice(0, -OFT_WEIGHT.length)}.oft_R.scaled_oft`));
}

const OFT_WEIGHT = '.oft_R.weight';

/** OneTrainer's default coft_eps (TrainConfig), where a config or the user turns COFT on without one. */
export const ONETRAINER_COFT_EPS = 1e-4;

/**
 * The module options a OneTrainer file's header gives its OFT modules: `onetrainer_period` (which
 * OneTrainer saved it, from `ot_revision`; `onetrainer_revision_text` where that names no commit),
 * `onetrainer_config` where its training config (`ot_config`) was saved with it, and
 * `onetrainer_coft_eps` where that config trained OFT_2 with COFT on. `coft`, the user's word on
 * how a file without its config was trained (OpenAdapterOptions.oneTrainerCoft: false off, true on
 * at OneTrainer's default ε, a number on at that ε), becomes `onetrainer_user_coft` (and
 * `onetrainer_user_coft_eps`), read only where the file has no config and was saved by a
 * OneTrainer that had COFT.
 */
export function oneTrainerOftOptions(metadata: Readonly<Record<string, string>>, coft?: boolean | number): Record<string, number | boolean> {
  const revision = metadata.ot_revision;
  const options: Record<string, number | boolean> = { onetrainer_period: typeof revision === 'string' ? revisionPeriod(revision) : UNKNOWN };
  if (typeof revision === 'string' && options.onetrainer_period === UNKNOWN) options.onetrainer_revision_text = true;
  if (coft !== undefined) {
    options.onetrainer_user_coft = true;
    if (coft !== false) options.onetrainer_user_coft_eps = coft === true ? ONETRAINER_COFT_EPS : coft;
  }
  const text = metadata.ot_config;
  if (typeof text !== 'string') return options;
  // A config that cannot be read as OneTrainer writes it is kept as its problem, reported only where
  // the merge depends on it (a file from the COFT period), never taken as no config or as COFT's default.
  const problem = (code: number) => ({ ...options, onetrainer_config_problem: code });
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch {
    return problem(CONFIG_NOT_JSON);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return problem(CONFIG_NOT_OBJECT);
  const c = config as Record<string, unknown>;
  if (c.peft_type !== 'OFT_2') return problem(CONFIG_NOT_OFT);
  if (c.oft_coft !== undefined && typeof c.oft_coft !== 'boolean') return problem(CONFIG_COFT_TYPE);
  options.onetrainer_config = true;
  if (c.oft_coft !== true) return options;
  // OneTrainer's default coft_eps (TrainConfig) where the config leaves it out; one it cannot have trained with is refused.
  if (c.coft_eps !== undefined && !(typeof c.coft_eps === 'number' && Number.isFinite(c.coft_eps) && c.coft_eps > 0)) return problem(CONFIG_EPS);
  options.onetrainer_coft_eps = typeof c.coft_eps === 'number' ? c.coft_eps : ONETRAINER_COFT_EPS;
  return options;
}

/** Why a file's ot_config is not read (oneTrainerOftOptions' `onetrainer_config_problem`). */
const CONFIG_NOT_JSON = 1;
const CONFIG_NOT_OBJECT = 2;
const CONFIG_NOT_OFT = 3;
const CONFIG_COFT_TYPE = 4;
const CONFIG_EPS = 5;
const CONFIG_PROBLEMS: Record<number, string> = {
  [CONFIG_NOT_JSON]: 'is not JSON',
  [CONFIG_NOT_OBJECT]: 'is not a JSON object',
  [CONFIG_NOT_OFT]: 'does not name peft_type "OFT_2" (OneTrainer\'s OFT), which the file\'s oft_R tensors are',
  [CONFIG_COFT_TYPE]: 'holds an oft_coft that is not true or false',
  [CONFIG_EPS]: 'turns oft_coft on with a coft_eps that is not a positive number',
};
