/**
 * The one wording for a tensor that lies under a known adapter module but ends in a way the file's
 * algorithms never save there (`<module>.x.weight`, `<module>.foo`): the module, the ending found, and
 * the endings that are read. Every adapter form (single files, PEFT LoRA, PEFT's other methods) refuses
 * such a tensor with this line, rather than taking it for a module or a saved base tensor of its own.
 */
import { Pacer } from '../event-turns.js';
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

/** Keys placed between two ticks of the pacer in owningModules. */
export const OWNING_KEYS_PER_TICK = 1024;

/**
 * For each of `keys`, the module (among `modules`, as key prefixes) it lies under, the longest when
 * several do; keys under none are left out. Each key's prefixes that end before one of its dots are
 * looked up in `modules`, longest first: a lookup for each dot of each key, and none for a module. A
 * scan of every module for each key took minutes on files of tens of thousands of modules, each with
 * a tensor to place (PEFT's bias="all"); a sort of keys and modules together, in one piece that a
 * cancel could not stop, 100 ms on a header of 89,000 tensors. `pacer` is ticked once every
 * OWNING_KEYS_PER_TICK keys.
 */
export async function owningModules(keys: Iterable<string>, modules: { has(module: string): boolean }, pacer: Pacer = new Pacer()): Promise<Map<string, string>> {
  const owners = new Map<string, string>();
  let placed = 0;
  for (const key of keys) {
    // A key that is `<module>.` itself is not under that module (nothing follows the dot): its last
    // dot is where a module would end, and only dots before it are looked at.
    for (let dot = key.length < 2 ? -1 : key.lastIndexOf('.', key.length - 2); dot >= 0; dot = dot === 0 ? -1 : key.lastIndexOf('.', dot - 1)) {
      const module = key.slice(0, dot);
      if (modules.has(module)) {
        owners.set(key, module);
        break;
      }
    }
    if (++placed % OWNING_KEYS_PER_TICK === 0) await pacer.tick();
  }
  return owners;
}

/** The tensor-name endings (without the leading dot) that give these roles, in the key-form table's order. */
export function roleEndings(roles: readonly Role[]): string[] {
  return KEY_FORMS.filter((form) => (roles as readonly string[]).includes(form.role)).map((form) => form.suffix.slice(1));
}
