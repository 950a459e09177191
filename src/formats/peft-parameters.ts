/**
 * PEFT `target_parameters` (tuners/lora/layer.py `ParamWrapper`): LoRA on a parameter itself, such
 * as a fused 3-D expert tensor. The wrapper replaces the module that holds the parameter, so its
 * factors are saved under the module's path (`mlp.experts.lora_A.weight`), and a second targeted
 * parameter of the same module wraps the first wrapper (`mlp.experts.base_layer.lora_A.weight`
 * for the innermost). PEFT wraps a module's parameters in the order the module registers them, so
 * the innermost wrapper holds the first-registered one: the file names no parameter, and which one
 * a wrapper holds follows from the config's targets and that order.
 *
 * PEFT matches a target against the parameters each module really has (`module.param` equal to it
 * or ending with `.` + it). Without the model, a bare name (no dot) of a fused expert parameter
 * (`down_proj`, as PEFT's conversion of a per-expert adapter for transformers 5 writes it) is taken
 * for a parameter only of a module named `experts`, which is where transformers keeps them: an
 * ordinary `mlp.down_proj` or a router `mlp.gate` beside it holds `weight`, not `down_proj`.
 */

/**
 * Registration order of the fused expert parameters in transformers' MoE expert modules (gated ones
 * register gate_up_proj first; NemotronHExperts, which has no gate, up_proj then down_proj).
 */
const REGISTRATION_ORDER = ['gate_up_proj', 'gate_up_proj_bias', 'up_proj', 'down_proj', 'down_proj_bias'];

export type ParameterTarget =
  | { kind: 'parameter'; path: string }
  | { kind: 'problem'; message: string };

/**
 * The parameter a LoRA module's factors adapt, from its path as saved (with one `.base_layer` per
 * level of nesting) and the config's `target_parameters`; undefined when the path is an ordinary
 * module.
 */
export function parameterTarget(savedPath: string, targets: readonly string[]): ParameterTarget | undefined {
  let module = savedPath;
  let depth = 0;
  while (module.endsWith('.base_layer')) {
    module = module.slice(0, -'.base_layer'.length);
    depth++;
  }
  const names = new Set<string>();
  const experts = /(^|\.)experts$/.test(module);
  for (const t of targets) {
    const param = t.slice(t.lastIndexOf('.') + 1);
    if (!experts && param === t && REGISTRATION_ORDER.includes(param)) continue;
    const key = `${module}.${param}`;
    if (key === t || key.endsWith(`.${t}`)) names.add(param);
  }
  if (names.size === 0) {
    return depth === 0 ? undefined : { kind: 'problem', message: `module "${savedPath}" is a nested LoRA wrapper but no entry of target_parameters names a parameter of "${module}"` };
  }
  const ordered = [...names];
  if (ordered.length > 1) {
    const unknown = ordered.filter((n) => !REGISTRATION_ORDER.includes(n));
    if (unknown.length > 0) {
      return { kind: 'problem', message: `target_parameters names ${ordered.join(', ')} of "${module}"; which nested wrapper holds which depends on the order the model registers them, known only for ${REGISTRATION_ORDER.join(', ')}` };
    }
    ordered.sort((a, b) => REGISTRATION_ORDER.indexOf(a) - REGISTRATION_ORDER.indexOf(b));
  }
  if (depth >= ordered.length) {
    return { kind: 'problem', message: `module "${savedPath}" is wrapped ${depth + 1} deep but target_parameters names only ${ordered.join(', ')} of "${module}"` };
  }
  // The outermost wrapper (depth 0) holds the last-registered parameter.
  return { kind: 'parameter', path: `${module}.${ordered[ordered.length - 1 - depth]}` };
}

/**
 * Whether a config is one PEFT's conversion of a per-expert adapter for transformers 5
 * (utils/transformers_weight_conversion.py, PEFT ≥ 0.19) rewrote and PEFT saved again. Such a save
 * keeps the peft_version the adapter was first saved with (PeftConfig fills it only when absent),
 * yet its fused factors are laid out for the ParamWrapper of the PEFT that converted them: W[e] +=
 * B_e·A_e on the (E, out, in) parameters of the models it converts (Mixtral, Qwen-MoE and those
 * mapped to them). Known by what the conversion writes: `.*\.gate_up_proj` in rank_pattern at 2·r
 * and in alpha_pattern at 2·lora_alpha (gate and up fused), or target_parameters under a
 * peft_version before 0.17, which had no target_parameters.
 */
export function convertedForTransformers5(raw: Readonly<Record<string, unknown>>, r: number, alpha: number, version: string | null): boolean {
  const key = '.*\\.gate_up_proj';
  const rank = raw.rank_pattern;
  const alphas = raw.alpha_pattern;
  if (isRecord(rank) && isRecord(alphas) && rank[key] === 2 * r && alphas[key] === 2 * alpha) return true;
  const v = version === null ? null : /^(\d+)\.(\d+)\./.exec(version);
  return v !== null && Number(v[1]) === 0 && Number(v[2]) < 17;
}

function isRecord(x: unknown): x is Readonly<Record<string, unknown>> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
