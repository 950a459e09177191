/**
 * LyCORIS's bypass mode (`--network_args bypass_mode=True`, recorded by kohya in `ss_network_args`):
 * each module is trained in its bypass forward, f(x) + h(x) or g(f(x)), instead of on W + ΔW. The
 * saved tensors are named as always, so only the metadata tells such a file apart, and for some
 * algorithms the forward it was trained in is not its merge (lycoris/modules/*.py, bypass_forward_diff
 * and _bypass_forward against make_weight / get_diff_weight):
 * - LoCon and LoHa: the same ΔW, α/r applied once;
 * - LoKr: kron(W₁, W₂) with no α/r at all (bypass_forward_diff scales by the multiplier only);
 * - GLoRA: α/r applied twice, (W·a1·a2 + b1·b2)·(α/r)²;
 * - DyLoRA: up·down with neither α/r nor its rank scale;
 * - DoRA (dora_scale) on any of them: left out (the bypass forward adds ΔW·x, with no norm);
 * - diag-OFT and BOFT: the rotation applied to the layer's output, bias included, and OFT's rescale as
 *   rescale·(Rᵀ·y) + (rescale − 1)·y;
 * - (IA)³ on the output side: the output scaled, bias included; on the input side the same as its merge;
 * - norm diffs: not bypassed. Full (`diff`) modules: LyCORIS refuses bypass mode for them.
 * Each algorithm says what becomes of its modules (Algorithm.lycorisBypass), reading the flag only where
 * it matters; a module of an algorithm that says nothing is refused when the flag is on.
 */
import type { AdapterModule } from '../adapter.js';
import type { Algorithm, ModuleContext } from './algorithm.js';

/** Where a refusal says the flag was read. */
export const BYPASS_SOURCE = 'LyCORIS\'s bypass_mode (metadata "ss_network_args")';

/** Was the file trained by LyCORIS with bypass_mode on (read from its metadata only when asked)? */
export function lycorisBypassOn(context: ModuleContext): boolean {
  return context.networkArgs?.lycorisBypass() ?? false;
}

/**
 * The module as it was trained: through the algorithm's own rule (Algorithm.lycorisBypass, which reads
 * the flag only where it matters), or, for an algorithm without one, itself unless bypass_mode is on,
 * when it is refused. Null after reporting.
 */
export function underLycorisBypass(algorithm: Algorithm, module: AdapterModule, context: ModuleContext): AdapterModule | null {
  if (algorithm.lycorisBypass) return algorithm.lycorisBypass(module, context);
  if (!lycorisBypassOn(context)) return module;
  context.report('UNSUPPORTED_FORMAT', `is ${algorithm.title}, trained with ${BYPASS_SOURCE}, which LyCORIS does not train ${algorithm.title} in; what this module does to the weight cannot be told`);
  return null;
}

/**
 * A LoCon, LoHa or LoKr module, refused under bypass mode when it has a DoRA magnitude: LyCORIS's
 * bypass forward leaves weight decomposition out, so the magnitude was never trained or applied.
 */
export function withoutDora(module: AdapterModule, context: ModuleContext, title: string): AdapterModule | null {
  if (!module.dora || !lycorisBypassOn(context)) return module;
  context.report('UNSUPPORTED_FORMAT', `is ${title} with DoRA (dora_scale), trained with ${BYPASS_SOURCE}, whose forward leaves DoRA's norm out: the magnitude saved was never applied in training, so no merge gives the weight the module was trained to`);
  return null;
}
