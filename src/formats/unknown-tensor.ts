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

/**
 * For each of `keys`, the module (among `modules`, as key prefixes) it lies under, the longest when
 * several do; keys under none are left out. One sort of both lists, not a scan of every module for
 * each key: files of tens of thousands of modules, each with a tensor to place (PEFT's bias="all"),
 * took minutes. In code-unit order every string between a prefix and a string it starts is one it
 * starts too, so the modules a key lies under are a stack, each under the one below it.
 */
export function owningModules(keys: Iterable<string>, modules: Iterable<string>): Map<string, string> {
  const items: { text: string; module?: string }[] = [];
  for (const key of keys) items.push({ text: key });
  // No key to place (the usual file): the sort of tens of thousands of modules is skipped.
  if (items.length === 0) return new Map();
  for (const module of modules) items.push({ text: `${module}.`, module });
  items.sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
  const open: { text: string; module?: string }[] = [];
  const owners = new Map<string, string>();
  for (const item of items) {
    while (open.length > 0 && !item.text.startsWith(open[open.length - 1].text)) open.pop();
    if (item.module !== undefined) {
      open.push(item);
      continue;
    }
    // A key that is `<module>.` itself lies under the module below it, if any (nothing follows the dot).
    let top = open.length - 1;
    if (top >= 0 && open[top].text === item.text) top--;
    if (top >= 0) owners.set(item.text, open[top].module!);
  }
  return owners;
}

/** The tensor-name endings (without the leading dot) that give these roles, in the key-form table's order. */
export function roleEndings(roles: readonly Role[]): string[] {
  return KEY_FORMS.filter((form) => (roles as readonly string[]).includes(form.role)).map((form) => form.suffix.slice(1));
}
