/**
 * The machinery shared by layouts that translate between a model's single-file naming (BFL for
 * Flux, SAI for SD3) and its diffusers naming, where one single-file tensor may be several
 * diffusers tensors stacked by rows (q, k and v in one qkv) and some tensors store their two
 * halves in the other order (shift/scale of an adaLN modulation).
 *
 * A rule names one single-file tensor and the diffusers tensors that are its rows, in order, with
 * their heights in units (Flux's linear1 is q, k, v of 1 unit and proj_mlp of 4). A module named
 * either way claims a range of units of the rule's single-file tensor; the range lands on the
 * single-file tensor (when the base stores that one) or on the diffusers tensors it covers. Names
 * may be dotted or flattened with `_` (kohya, OneTrainer). A single-file tensor may have other
 * spellings (aliases); a table may look names up in the base its own way (exactly, say).
 *
 * A name is a module path whose values the base stores in `<path>.weight`, or `<path>:<param>` where
 * the model calls that parameter otherwise (BFL's and ComfyUI's RMSNorm `scale`:
 * `double_blocks.{i}.img_attn.norm.query_norm:scale`). Such a module is read under its path alone
 * or with the parameter after it (`…query_norm.scale`: ComfyUI's key map names every parameter that
 * is not a `weight` by its full name, so its files say `…query_norm.scale.diff`). `<path>:` with no
 * parameter is a parameter of a module named by its full path (Wan's `blocks.{i}.modulation`), read
 * under that path alone.
 */
import type { KeyResolution } from './base-key-index.js';
import type { BaseView, LayoutResolution, Placement, RowSegment } from './layout.js';

export interface RenamePart {
  /** Diffusers module path; `{i}` is the block index. */
  name: string;
  units: number;
}

export interface RenameRule {
  /** Single-file module path; `{i}` is the block index. */
  fused: string;
  /**
   * Other single-file spellings of the same tensor, the same rows in the same order (ComfyUI's
   * internal names for HunyuanVideo: `img_attn.qkv` for `img_attn_qkv`). Read in adapters and
   * looked for in the base after `fused`.
   */
  aliases?: readonly string[];
  parts: readonly RenamePart[];
  /**
   * The two halves of the rows are in the other order in the other naming: always, or only in
   * the last block (SD3's last norm1_context, which the base's block count decides).
   */
  swapHalves?: 'always' | 'last-block';
}

/** A module renamed whole, row for row (its two halves of rows swapped where `swapHalves` says). */
export function oneToOne(fused: string, name: string, swapHalves?: RenameRule['swapHalves']): RenameRule {
  return { fused, parts: [{ name, units: 1 }], ...(swapHalves ? { swapHalves } : {}) };
}

interface Compiled {
  rule: RenameRule;
  /** `rule.fused`, then its aliases. */
  fused: RegExp[];
  parts: RegExp[];
}

interface Claim {
  rule: RenameRule;
  block: string | undefined;
  /** Units [from, to) of the single-file tensor the module's ΔW rows are. */
  from: number;
  to: number;
  naming: 'fused' | 'split';
  /** A range of the single-file tensor that is not one diffusers tensor (placed by rows everywhere). */
  slice?: boolean;
}

/** A name's module path and the parameter that holds its values (`weight` unless the name says `:<param>`). */
function pathAndParam(name: string): { path: string; param: string } {
  const at = name.lastIndexOf(':');
  return at < 0 ? { path: name, param: 'weight' } : { path: name.slice(0, at), param: name.slice(at + 1) };
}

/** `double_blocks.{i}.img_attn.qkv` → a regex matching it dotted or flattened, capturing i. */
function template(t: string): RegExp {
  const { path, param } = pathAndParam(t);
  const escaped = path.split('{i}').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll('\\.', '[._]'));
  const named = param === 'weight' || param === '' ? '' : `(?:[._]${param})?`;
  return new RegExp(`^${escaped.join('(\\d+)')}${named}$`);
}

/** The base tensor a name means in block `block`: its path filled in, then its parameter. */
function tensorName(t: string, block: string | undefined): string {
  const { path, param } = pathAndParam(t);
  const filled = block === undefined ? path : path.replaceAll('{i}', block);
  return param === '' ? filled : `${filled}.${param}`;
}

/** How a table finds a tensor name in the base: by default the key, or the one key ending with it. */
export type KeyLookup = (base: BaseView, name: string) => KeyResolution;
const bySuffix: KeyLookup = (base, name) => base.index.resolveDotted(name);

export class RenameTable {
  private readonly compiled: Compiled[];

  /** `rules`: the renames this table places, read also without a base (adapter-ops/naming-overlaps.ts). */
  constructor(
    readonly rules: readonly RenameRule[], private readonly lastBlock: (base: BaseView, block: string) => boolean, private readonly lookup: KeyLookup = bySuffix,
  ) {
    this.compiled = rules.map((rule) => ({
      rule, fused: [rule.fused, ...(rule.aliases ?? [])].map(template), parts: rule.parts.map((p) => template(p.name)),
    }));
  }

  /** Where a module named in either naming lands in this base; undefined when no rule names it. */
  resolve(path: string, base: BaseView): LayoutResolution | undefined {
    const claim = this.claim(path);
    return claim && this.place(claim, base);
  }

  /**
   * Where rows [from, to) (in units) of a single-file tensor land, for names that are neither
   * naming's own (XLabs' processor names); the whole tensor when `to` is undefined.
   */
  resolveFusedRows(fusedPath: string, from: number, to: number | undefined, base: BaseView): LayoutResolution | undefined {
    const claim = this.claim(fusedPath);
    if (!claim || claim.naming !== 'fused') return undefined;
    if (to === undefined) return this.place(claim, base);
    // A slice of the tensor is named in neither naming: place it like a split name.
    return this.place({ ...claim, from, to, naming: 'split', slice: true }, base);
  }

  /**
   * The single-file tensor (its name in the block) whose rows [from, to), in units, a module path
   * names, and in which naming; undefined when no rule names it. Needs no base.
   */
  rowsNamed(path: string): { tensor: string; from: number; to: number; naming: 'fused' | 'split' } | undefined {
    const claim = this.claim(path);
    return claim && { tensor: tensorName(claim.rule.fused, claim.block), from: claim.from, to: claim.to, naming: claim.naming };
  }

  private place(claim: Claim, base: BaseView): LayoutResolution {
    const { rule, block } = claim;
    const total = rule.parts.reduce((n, p) => n + p.units, 0);
    const swap = rule.swapHalves === 'always' || (rule.swapHalves === 'last-block' && block !== undefined && this.lastBlock(base, block));

    const fused = this.fusedInBase(rule, block, base);
    if (fused.found) {
      const rows = base.shape(fused.key)?.[0] ?? 0;
      if (rows % total !== 0) return { found: false, ambiguous: false, candidates: [] };
      const unit = rows / total;
      const segment: RowSegment = { src: 0, dst: claim.from * unit, count: (claim.to - claim.from) * unit };
      // A module that is the whole tensor in the other naming lands whole (a vector cannot take rows).
      const whole = claim.naming === 'fused' || (!swap && !claim.slice && claim.from === 0 && claim.to === total);
      const rowsOf = whole ? undefined : swap ? swapped(segment) : [segment];
      return { found: true, targets: [rowsOf ? { baseKey: fused.key, rows: rowsOf } : { baseKey: fused.key }] };
    }
    if (fused.ambiguous) return fused;

    // The base stores the diffusers tensors: each part the claim covers is one target.
    const targets: Placement[] = [];
    let offset = 0;
    let unit: number | undefined;
    for (const part of rule.parts) {
      const start = offset;
      offset += part.units;
      if (offset <= claim.from || start >= claim.to) continue;
      const r = this.lookup(base, tensorName(part.name, block));
      if (!r.found) return r;
      const rows = base.shape(r.key)?.[0] ?? 0;
      if (rows % part.units !== 0) return { found: false, ambiguous: false, candidates: [] };
      unit ??= rows / part.units;
      const from = Math.max(start, claim.from);
      const to = Math.min(offset, claim.to);
      const segment: RowSegment = { src: (from - claim.from) * unit, dst: (from - start) * unit, count: (to - from) * unit };
      const whole = !claim.slice && (claim.naming === 'split' || (!swap && rule.parts.length === 1));
      targets.push(whole ? { baseKey: r.key } : { baseKey: r.key, rows: swap ? swapped(segment) : [segment] });
    }
    return { found: true, targets };
  }

  /** The base's single-file tensor under the rule's name or, failing that, one of its aliases. */
  private fusedInBase(rule: RenameRule, block: string | undefined, base: BaseView): KeyResolution {
    let miss: KeyResolution = { found: false, ambiguous: false, candidates: [] };
    for (const name of [rule.fused, ...(rule.aliases ?? [])]) {
      const r = this.lookup(base, tensorName(name, block));
      if (r.found || r.ambiguous) return r;
      miss = r;
    }
    return miss;
  }

  private claim(path: string): Claim | undefined {
    for (const { rule, fused, parts } of this.compiled) {
      const total = rule.parts.reduce((n, p) => n + p.units, 0);
      const m = fused.map((f) => f.exec(path)).find((x) => x !== null);
      if (m) return { rule, block: m[1], from: 0, to: total, naming: 'fused' };
      let offset = 0;
      for (let p = 0; p < parts.length; p++) {
        const pm = parts[p].exec(path);
        if (pm) return { rule, block: pm[1], from: offset, to: offset + rule.parts[p].units, naming: 'split' };
        offset += rule.parts[p].units;
      }
    }
    return undefined;
  }
}

/** The segment's rows with their two halves exchanged. */
function swapped(g: RowSegment): RowSegment[] {
  const half = g.count / 2;
  return [{ src: g.src, dst: g.dst + half, count: half }, { src: g.src + half, dst: g.dst, count: half }];
}
