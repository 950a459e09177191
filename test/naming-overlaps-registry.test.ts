/**
 * combine's refusal of one weight named two ways (naming-overlaps.ts) reads its renames from the
 * layout registry: every rename a layout translates by is refused there, and every rename-rule
 * set a layout file defines reaches the registry, so a new layout cannot be added in one place only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { refuseNamingOverlaps } from '../src/adapter-ops/naming-overlaps.js';
import type { ModuleRef } from '../src/adapter-ops/module-updates.js';
import type { ParsedAdapter } from '../src/formats/adapter.js';
import type { RenameRule } from '../src/formats/layouts/fused-renames.js';
import { LAYOUTS } from '../src/formats/layouts/index.js';

/** A rule's name in block 3, without the parameter after `:`. */
function named(template: string): string {
  const at = template.lastIndexOf(':');
  return (at < 0 ? template : template.slice(0, at)).replaceAll('{i}', '3');
}

/** Two adapters, the first naming `fused`, the second `split`, grouped as combine groups them (by output name). */
function refusal(fused: string, split: string): string | undefined {
  const adapters = [{ name: 'one.safetensors' }, { name: 'two.safetensors' }] as unknown as ParsedAdapter[];
  const ref = (path: string, adapterIndex: number) => ({ adapterIndex, outputName: path, module: { address: { path, flat: false } } }) as unknown as ModuleRef;
  const groups = new Map([[fused, [ref(fused, 0)]], [split, [ref(split, 1)]]]);
  try {
    refuseNamingOverlaps(groups, adapters, 'svd');
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const isRuleSet = (v: unknown): v is readonly RenameRule[] =>
  Array.isArray(v) && v.length > 0 && v.every((r) => typeof (r as RenameRule)?.fused === 'string' && Array.isArray((r as RenameRule).parts));

const LAYOUT_DIR = new URL('../src/formats/layouts/', import.meta.url);
const layoutFiles = readdirSync(LAYOUT_DIR).filter((f) => f.endsWith('.ts'));
const layoutModules: Record<string, Record<string, unknown>> = Object.fromEntries(
  await Promise.all(layoutFiles.map(async (f) => [f, await import(new URL(f.replace(/\.ts$/, '.js'), LAYOUT_DIR).href) as Record<string, unknown>] as const)));
const layoutSources: Record<string, string> = Object.fromEntries(layoutFiles.map((f) => [f, readFileSync(new URL(f, LAYOUT_DIR), 'utf8')]));
const registered = new Set(LAYOUTS.flatMap((layout) => (layout.renames ?? []).map((table) => table.rules)));

describe('combine refuses, for every rename in the layout registry, a module named one way beside one named the other', () => {
  const layouts = LAYOUTS.filter((layout) => (layout.renames ?? []).length > 0);

  it('the registry lists renames for the diffusion layouts that translate a single-file naming', () => {
    expect(layouts.map((l) => l.name).sort()).toEqual([
      'ace-step', 'auraflow', 'cosmos', 'cosmos1', 'flux-bfl', 'flux2-bfl', 'hunyuan-dit', 'hunyuan-video', 'ideogram4', 'krea2', 'ltx-video', 'ltx2', 'lumina2',
      'minimax-h3', 'mochi', 'pixart', 'sana', 'sd3-sai', 'stable-cascade', 'stable-cascade-diffusers', 'wan-original', 'z-image',
    ]);
  });

  for (const layout of layouts) {
    it(`${layout.name}: each rule's single-file name beside each of its diffusers names`, () => {
      let pairs = 0;
      for (const table of layout.renames ?? []) {
        for (const rule of table.rules) {
          for (const fused of [rule.fused, ...(rule.aliases ?? [])].map(named)) {
            for (const split of rule.parts.map((p) => named(p.name))) {
              if (split === fused) continue;
              const message = refusal(fused, split);
              expect(message, `${fused} beside ${split}`).toMatch(/name rows of one base weight \(.+\) in two namings/);
              expect(message).toContain(`"${fused}" (one.safetensors)`);
              expect(message).toContain(`"${split}" (two.safetensors)`);
              pairs++;
            }
          }
        }
      }
      expect(pairs).toBeGreaterThan(0);
    });
  }
});

describe('mochi: the last block\'s text modulation, which diffusers names norm1_context.linear_1', () => {
  it('blocks.<last>.mod_y beside transformer_blocks.<last>.norm1_context.linear_1 is refused for svd', () => {
    const message = refusal('blocks.47.mod_y', 'transformer_blocks.47.norm1_context.linear_1');
    expect(message).toMatch(/name rows of one base weight \(blocks\.47\.mod_y\.weight\) in two namings/);
    expect(message).toContain('--method svd');
  });
});

describe('every rename-rule set a layout file defines is one the registry lists', () => {
  it('each exported rule set is a registered layout table\'s rules', () => {
    const exported = Object.entries(layoutModules).flatMap(([file, exports]) =>
      Object.entries(exports).filter(([, v]) => isRuleSet(v)).map(([name, v]) => ({ name: `${file}: ${name}`, rules: v as readonly RenameRule[] })));
    expect(exported.length).toBeGreaterThan(20);
    expect(exported.filter((e) => !registered.has(e.rules)).map((e) => e.name)).toEqual([]);
  });

  // Files that build rename tables without listing them, and why: no translation of their own.
  const UNLISTED: Record<string, string> = {
    'model-prefix.ts': 'defines modelLayout, whose layouts list their table',
    'internvl-original.ts': 'its tables only refuse the other checkpoint naming',
    'comfy-linear1-qkv.ts': "places ComfyUI's linear1_qkv, a third naming, by FLUX's tables",
    'xlabs-flux.ts': "places XLabs' processor names, a third naming, by FLUX.1's table",
  };

  it('each layout file that builds a rename table exports a registered layout listing its renames', () => {
    const unlisted = Object.entries(layoutSources).filter(([file, source]) => {
      if (!/new RenameTable\(|modelLayout\(/.test(source) || file in UNLISTED) return false;
      return !Object.values(layoutModules[file]).some((v) => LAYOUTS.includes(v as never) && ((v as { renames?: unknown[] }).renames ?? []).length > 0);
    }).map(([file]) => file);
    expect(unlisted).toEqual([]);
  });
});
