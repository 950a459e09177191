/**
 * The algorithm registry: a list, tried as a whole. A module belongs to the one algorithm whose
 * defining roles it has; a module with tensors of two algorithms, or of none, is reported.
 */
import { MergeError } from '../../errors.js';
import type { AdapterModule } from '../adapter.js';
import type { Role } from '../key-forms.js';
import type { SafetensorsFile } from '../safetensors-types.js';
import type { Algorithm, DeltaDims, ModuleUpdate } from './algorithm.js';
import { boft } from './boft.js';
import { full } from './full.js';
import { glora } from './glora.js';
import { ia3 } from './ia3.js';
import { loha } from './loha.js';
import { lokr } from './lokr.js';
import { lora } from './lora.js';
import { loraSplit } from './lora-split.js';
import { mlxLora } from './mlx-lora.js';
import { norm } from './norm.js';
import { oft } from './oft.js';
import { onetrainerOft } from './onetrainer-oft.js';
import { peftAdalora } from './peft-adalora.js';
import { peftBoft } from './peft-boft.js';
import { peftC3a } from './peft-c3a.js';
import { peftGlora } from './peft-glora.js';
import { peftHira } from './peft-hira.js';
import { peftHra } from './peft-hra.js';
import { peftIa3 } from './peft-ia3.js';
import { peftMiss } from './peft-miss.js';
import { peftOft } from './peft-oft.js';
import { peftRoad } from './peft-road.js';
import { peftShira } from './peft-shira.js';
import { peftFourierft } from './peft-fourierft.js';
import { peftWaveft } from './peft-waveft.js';
import { peftDelora } from './peft-delora.js';
import { peftGralora } from './peft-gralora.js';
import { peftBeft } from './peft-beft.js';
import { peftDeft } from './peft-deft.js';
import { peftPeanut } from './peft-peanut.js';
import { peftBdlora } from './peft-bdlora.js';
import { peftSupertuning } from './peft-supertuning.js';
import { peftTinylora } from './peft-tinylora.js';
import { peftPvera } from './peft-pvera.js';
import { peftUnilora } from './peft-unilora.js';
import { peftRandlora } from './peft-randlora.js';
import { peftVblora } from './peft-vblora.js';
import { peftOftLegacy } from './peft-oft-legacy.js';
import { set } from './set.js';
import { vera } from './vera.js';

export type { Algorithm, DeltaDims, ModuleContext, ModulePiece, ModuleUpdate, UpdateShape } from './algorithm.js';

export const ALGORITHMS: readonly Algorithm[] = [lora, loraSplit, loha, lokr, full, norm, ia3, glora, oft, boft, vera, peftOft, onetrainerOft, peftOftLegacy, peftBoft, peftIa3, peftAdalora, peftHra, peftHira, peftGlora, peftRoad, peftC3a, peftMiss, peftShira, peftFourierft, peftWaveft, peftVblora, peftRandlora, peftDelora, peftGralora, peftBeft, peftDeft, peftPeanut, peftSupertuning, peftTinylora, peftPvera, peftUnilora, peftBdlora, mlxLora, set];

/** Roles every algorithm accepts: the parser reads them before building the module. */
export const SHARED_ROLES: readonly Role[] = ['alpha'];

/** The algorithms whose defining roles appear among `roles`. */
export function algorithmsFor(roles: Iterable<Role>): Algorithm[] {
  const present = new Set(roles);
  return ALGORITHMS.filter((a) => a.defines.some((r) => present.has(r)));
}

export function algorithmNamed(name: string): Algorithm {
  const found = ALGORITHMS.find((a) => a.name === name);
  if (!found) throw new MergeError('UNSUPPORTED_FORMAT', `unknown adapter algorithm "${name}"`);
  return found;
}

/** How users know the update a module makes: its algorithm's title, or `bias diff` for a module that changes its bias only by an added diff (ComfyUI's `diff_b` alone). */
export function moduleTitle(module: AdapterModule): string {
  return module.update.kind === 'none' && !module.gloraBias ? 'bias diff' : algorithmNamed(module.algorithm).title;
}

/** Reads a module's update for the engine, through the algorithm that built it. */
export function loadModuleUpdate(file: SafetensorsFile, module: AdapterModule, delta?: DeltaDims): Promise<ModuleUpdate> {
  return algorithmNamed(module.algorithm).load(file, module, delta);
}
