/**
 * PEFT `target_parameters` (tuners/lora/layer.py `ParamWrapper`): LoRA on a parameter itself, such
 * as a fused 3-D expert tensor. The wrapper replaces the module that holds the parameter, so its
 * factors are saved under the module's path (`mlp.experts.lora_A.weight`), and a second targeted
 * parameter of the same module wraps the first wrapper (`mlp.experts.base_layer.lora_A.weight`
 * for the innermost). PEFT wraps a module's parameters in the order the module registers them, so
 * the innermost wrapper holds the first-registered one: the file names no parameter, and which one
 * a wrapper holds follows from the config's targets and that order.
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
  for (const t of targets) {
    const param = t.slice(t.lastIndexOf('.') + 1);
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
