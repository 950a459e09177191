/**
 * How the page names and groups what a person picks or drops, without a browser: a PEFT adapter's
 * two files picked as files are one adapter named `PEFT adapter` (a browser does not say their
 * folder), a folder pick is named by its folder, and the same two files dropped loose are one
 * adapter too, beside any other file dropped with them. Same-named picks are told apart by ` #2`, never
 * read as a folder really named `lora (2)` nor doubled.
 */
import { describe, expect, it } from 'vitest';
import { adapterSets, setFromInput } from '../demo/file-picking.js';
import { namedApart, type PickedSet } from '../demo/page-state.js';

const file = (name: string, relative = '') => Object.assign(new File(['{}'], name), { webkitRelativePath: relative });
/** A file input as the browser fills it. */
const input = (files: File[]) => ({ files }) as unknown as HTMLInputElement;
const loose = (name: string): PickedSet => ({ name, files: [{ path: name, file: file(name) }], origin: 'user' });

describe('naming and grouping picked adapter files', () => {
  it('a PEFT adapter\'s two files picked as files: one set named PEFT adapter; as a folder: named by it', () => {
    const files = setFromInput(input([file('adapter_model.safetensors'), file('adapter_config.json')]))!;
    expect(files.name).toBe('PEFT adapter');
    expect(files.files.map((f) => f.path)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const folder = setFromInput(input([file('adapter_config.json', 'my-vblora/adapter_config.json'), file('adapter_model.safetensors', 'my-vblora/adapter_model.safetensors')]))!;
    expect(folder.name).toBe('my-vblora');
    // Only the folder pick's name is a folder's (a conversion's general.name reads it); `PEFT adapter` is a label.
    expect([folder.namesFolder, files.namesFolder]).toEqual([true, undefined]);
    // One weights file alone keeps its own name; so does a kohya file with a config beside it.
    expect(setFromInput(input([file('adapter_model.safetensors')]))!.name).toBe('adapter_model.safetensors');
    expect(setFromInput(input([file('style.safetensors'), file('adapter_config.json')]))!.name).toBe('style.safetensors');
  });

  it('dropped loose, the two files are one adapter; other dropped files stay adapters of their own', () => {
    const sets = adapterSets([loose('style.safetensors'), loose('adapter_config.json'), loose('adapter_model.safetensors')]);
    expect(sets.map((s) => [s.name, s.files.map((f) => f.path)])).toEqual([
      ['style.safetensors', ['style.safetensors']],
      ['PEFT adapter', ['adapter_config.json', 'adapter_model.safetensors']],
    ]);
    expect(sets[1].namesFolder).toBeUndefined();
    const two = [loose('a.safetensors'), loose('b.safetensors')];
    expect(adapterSets(two)).toEqual(two);
  });

  it('mlx-lm\'s adapter_config.json and adapters.safetensors, picked or dropped loose, are one adapter named mlx-lm adapter, with any checkpoints dropped beside them', () => {
    const picked = setFromInput(input([file('adapters.safetensors'), file('adapter_config.json'), file('0000100_adapters.safetensors')]))!;
    expect([picked.name, picked.files.map((f) => f.path)]).toEqual(['mlx-lm adapter', ['0000100_adapters.safetensors', 'adapter_config.json', 'adapters.safetensors']]);
    const sets = adapterSets([loose('adapters.safetensors'), loose('style.safetensors'), loose('0000200_adapters.safetensors'), loose('adapter_config.json')]);
    expect(sets.map((s) => [s.name, s.files.map((f) => f.path)])).toEqual([
      ['mlx-lm adapter', ['0000200_adapters.safetensors', 'adapter_config.json', 'adapters.safetensors']],
      ['style.safetensors', ['style.safetensors']],
    ]);
    // Without its config the weights stay a set of their own (the plan refuses it: the scale is in the config).
    const alone = [loose('adapters.safetensors')];
    expect(adapterSets(alone)).toEqual(alone);
  });

  it('same-named sets dropped together or picked after others are named apart: `lora #2`, `lora #3`; a real `lora (2)` keeps its name', () => {
    const folder = (name: string): PickedSet => ({ name, files: [{ path: 'adapter_model.safetensors', file: file('adapter_model.safetensors') }], origin: 'user' });
    expect(namedApart([folder('lora'), folder('lora'), folder('style')], []).map((s) => s.name)).toEqual(['lora', 'lora #2', 'style']);
    // A made name is no folder's: `lora #2` no longer says it names its folder, the kept `lora` still does.
    const named = (name: string): PickedSet => ({ ...folder(name), namesFolder: true });
    expect(namedApart([named('lora'), named('lora')], []).map((s) => [s.name, s.namesFolder])).toEqual([['lora', true], ['lora #2', undefined]]);
    // A folder really named `lora (2)` dropped beside a second `lora`: each keeps what tells it apart.
    expect(namedApart([folder('lora'), folder('lora (2)')], ['lora', 'PEFT adapter']).map((s) => s.name)).toEqual(['lora #2', 'lora (2)']);
    expect(namedApart([folder('lora (2)')], ['lora', 'lora #2']).map((s) => s.name)).toEqual(['lora (2)']);
    expect(namedApart([folder('lora (2)')], ['lora (2)']).map((s) => s.name)).toEqual(['lora (2) #2']);
    // A real `lora #2` is kept, and a made name steps past it.
    expect(namedApart([folder('lora'), folder('lora #2')], ['lora']).map((s) => s.name)).toEqual(['lora #3', 'lora #2']);
    expect(namedApart([folder('lora')], ['lora', 'lora #2']).map((s) => s.name)).toEqual(['lora #3']);
  });
});
