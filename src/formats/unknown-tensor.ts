/**
 * The one wording for a tensor that lies under a known adapter module but ends in a way the file's
 * algorithms never save there (`<module>.x.weight`, `<module>.foo`): the module, the ending found, and
 * the endings that are read. Every adapter form (single files, PEFT LoRA, PEFT's other methods) refuses
 * such a tensor with this line, rather than taking it for a module or a saved base tensor of its own.
 */
import { KEY_FORMS, type Role } from './key-forms.js';

/**
 * The refusal of `key`, a tensor of module `owner` (its key prefix, `key` = `<owner>.<ending>`), whose
 * ending no algorithm of the file reads. `shownModule` is the module as messages name it (PEFT's without
 * `base_model.model.`); `reads` lists the endings that are read, by algorithm ("PEFT HRA: hra_u").
 */
export function unknownTensorMessage(fileName: string, owner: string, key: string, reads: string, shownModule = owner): string {
  return `${fileName}: module "${shownModule}": unknown tensor "${key.slice(owner.length + 1)}" ("${key}"), which no adapter algorithm reads ` +
    `(${reads}); remove it or name it as one of those`;
}

/** The module (among `modules`, as key prefixes) a tensor name lies under, the longest when several do; undefined when none. */
export function owningModule(key: string, modules: Iterable<string>): string | undefined {
  let owner: string | undefined;
  for (const module of modules) {
    if (key.length > module.length + 1 && key.startsWith(`${module}.`) && (owner === undefined || module.length > owner.length)) owner = module;
  }
  return owner;
}

/** The tensor-name endings (without the leading dot) that give these roles, in the key-form table's order. */
export function roleEndings(roles: readonly Role[]): string[] {
  return KEY_FORMS.filter((form) => (roles as readonly string[]).includes(form.role)).map((form) => form.suffix.slice(1));
}
