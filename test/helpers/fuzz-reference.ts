/**
 * The fuzzer's float64 truth: what a merge of (possibly mutated) files must write, worked out from
 * the files with the plain decoder of fixtures.ts and the documented rules (PEFT: r, lora_alpha,
 * use_rslora, rank/alpha patterns, modules_to_save, target_modules; kohya: lora_down/lora_up/alpha), never with the
 * code under test. Returns
 *   - `expected`: every output tensor's exact values (before rounding) and dtype, and which copied
 *     tensors hold NaN/Inf (the merge must warn about those);
 *   - `invalid`: the inputs break a rule, so a successful merge would be wrong;
 *   - `unknown`: outside what this reference models (F64 factors, other key forms ...).
 */
import { decodeSafetensors, type DecodedTensor, type FixtureDType } from './fixtures.js';
import type { CaseFiles, Command } from './fuzz-cases.js';
import { safetensorsHeaderProblem, wellFormedUtf8 } from './json-text-edits.js';

export interface ExpectedTensor {
  name: string;
  dtype: FixtureDType;
  shape: number[];
  /** Exact values; `null` for a copy that must keep its bytes. */
  values: Float64Array | null;
  bytes: Uint8Array;
  /** |terms| summed, for f32 tolerances. */
  magnitude?: Float64Array;
  /**
   * Σ_k |A[k,i]| + |s·B[o,k]|: how far an f32 factor product can stray when s·B or A·B lands below
   * f32's smallest subnormal (each such rounding is off by up to 2^-150 times the other factor).
   */
  underflow?: Float64Array;
  copied: boolean;
}

export type Reference =
  | { kind: 'expected'; tensors: ExpectedTensor[]; nonFiniteCopies: string[] }
  | { kind: 'invalid'; why: string }
  | { kind: 'unknown'; why: string };

const FLOATS = new Set(['F32', 'F16', 'BF16']);
/** Integer dtypes an α may have: diffusers' convert_state_dict_to_kohya writes torch.tensor(rank), an I64, and kohya and ComfyUI read any α with .item(). */
const INTEGERS = new Set(['I64', 'U64', 'I32', 'U32', 'I16', 'U16', 'I8', 'U8']);
const invalid = (why: string): Reference => ({ kind: 'invalid', why });
const unknown = (why: string): Reference => ({ kind: 'unknown', why });

interface Module {
  baseKey: string;
  a: DecodedTensor;
  b: DecodedTensor;
  scale: number;
}

function decode(bytes: Uint8Array): ReturnType<typeof decodeSafetensors> | null {
  // The plain reader takes what the reference reader refuses: a header not UTF-8, `8.0` as a size.
  if (safetensorsHeaderProblem(bytes)) return null;
  try {
    const file = decodeSafetensors(bytes);
    return file.dataEnd === bytes.byteLength ? file : null;
  } catch {
    return null;
  }
}

/** The one base key a dotted name means: itself, or the unique key it ends with / that ends with it. */
function resolveDotted(keys: string[], name: string): string | null {
  if (keys.includes(name)) return name;
  const hits = keys.filter((k) => k.endsWith(`.${name}`) || name.endsWith(`.${k}`));
  return hits.length === 1 ? hits[0] : null;
}

function isPositiveInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x > 0;
}

export function referenceMerge(files: CaseFiles, kind: 'peft' | 'kohya', command: Command): Reference {
  const base = decode(files.base);
  if (!base) return invalid('base is not a valid safetensors file (plain reader)');
  const adapter = decode(files.adapter);
  if (!adapter) return invalid('adapter is not a valid safetensors file (plain reader)');
  const keys = [...base.tensors.keys()];
  const weight = command.weight === undefined ? 1 : Number(command.weight);
  const modules: Module[] = [];
  const replacements = new Map<string, DecodedTensor>();

  if (kind === 'peft') {
    let config: Record<string, unknown>;
    // PEFT reads it with Python's json: bytes that are not UTF-8 are refused.
    if (files.config && !wellFormedUtf8(files.config)) return invalid('config is not UTF-8');
    try {
      config = JSON.parse(new TextDecoder().decode(files.config ?? new Uint8Array()));
    } catch {
      return invalid('config is not JSON');
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) return invalid('config is not an object');
    if (config.peft_type !== undefined && config.peft_type !== 'LORA') return invalid('peft_type');
    const r = config.r ?? 8;
    const alpha = config.lora_alpha ?? 8;
    if (!isPositiveInt(r)) return invalid('r');
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) return invalid('lora_alpha');
    for (const flag of ['use_rslora', 'fan_in_fan_out', 'use_dora', 'lora_bias']) {
      if (config[flag] !== undefined && config[flag] !== null && typeof config[flag] !== 'boolean') return invalid(flag);
    }
    if (config.fan_in_fan_out === true || config.use_dora === true) return unknown('fan_in_fan_out / use_dora');
    const patterns = (field: string, integer: boolean): [RegExp, number][] | null => {
      const v = config[field];
      if (v === undefined || v === null) return [];
      if (typeof v !== 'object' || Array.isArray(v)) return null;
      const out: [RegExp, number][] = [];
      for (const [k, n] of Object.entries(v)) {
        if (typeof n !== 'number' || !Number.isFinite(n) || (integer && !isPositiveInt(n))) return null;
        // PEFT's rule through a backtracking RegExp, except on keys known to backtrack for ever
        // (they match no module name here: none ends in z, none holds 25 a's).
        if (/\(\?[=!<]|\\\d/.test(k)) return null; // lookaround, backreference: refused
        const safe = !/\(\.\*\)\*|\(a\|aa\)\+/.test(k);
        try {
          out.push([safe ? new RegExp(`^(?:.*\\.)?(?:${k})$`) : /(?!)/, n]);
        } catch {
          return null;
        }
      }
      return out;
    };
    const rankPattern = patterns('rank_pattern', true);
    const alphaPattern = patterns('alpha_pattern', false);
    if (!rankPattern || !alphaPattern) return invalid('patterns');
    const saved = config.modules_to_save ?? [];
    if (!Array.isArray(saved) || saved.some((s) => typeof s !== 'string')) return invalid('modules_to_save');
    // PEFT puts LoRA only on modules target_modules names (a list: the name or a "."-suffix; a string:
    // a regex the whole name matches) and none under modules_to_save; a file with another module's
    // factors was not trained as PEFT loads it.
    const targets = config.target_modules;
    if (targets !== undefined && targets !== null && typeof targets !== 'string' && !(Array.isArray(targets) && targets.every((t) => typeof t === 'string'))) return invalid('target_modules type');
    if (['exclude_modules', 'layers_to_transform', 'layers_pattern'].some((f) => config[f] !== undefined)) return unknown('exclude_modules / layers');
    if (saved.some((m: string) => !/^[A-Za-z0-9_]+$/.test(m))) return unknown('modules_to_save entry as a regex');
    const endsWithName = (path: string, names: readonly string[]) => names.some((n) => path === n || path.endsWith(`.${n}`));
    const targeted = (path: string): boolean | undefined => {
      if (saved.some((m: string) => path === m || path.startsWith(`${m}.`) || path.endsWith(`.${m}`) || path.includes(`.${m}.`))) return false;
      if (targets === undefined || targets === null) return true;
      if (Array.isArray(targets)) return endsWithName(path, targets as string[]);
      // all-linear leaves out the output head, which only the base's config.json names: outside the numbered layers, the reference cannot tell.
      if (targets.toLowerCase() === 'all-linear') return path.split('.').some((part) => /^\d+$/.test(part)) ? true : undefined;
      if (!/^[A-Za-z0-9_.]*$/.test(targets)) return undefined;
      return new RegExp(`^(?:${targets})$`).test(path);
    };
    const lookup = (table: [RegExp, number][], path: string, fallback: number) => table.find(([re]) => re.test(path))?.[1] ?? fallback;

    const groups = new Map<string, { a?: DecodedTensor; b?: DecodedTensor }>();
    for (const [name, t] of adapter.tensors) {
      const factor = /^(.+)\.lora_([AB])\.weight$/.exec(name);
      const rep = /^(.+)\.modules_to_save\.default\.weight$/.exec(name);
      if (factor) {
        const g = groups.get(factor[1]) ?? {};
        if (g[factor[2] === 'A' ? 'a' : 'b']) return unknown('factor twice');
        g[factor[2] === 'A' ? 'a' : 'b'] = t;
        groups.set(factor[1], g);
      } else if (rep) {
        const path = rep[1].replace(/^base_model\.model\./, '');
        if (/\.(lora_|modules_to_save)/.test(path)) return unknown('odd replacement key');
        const key = resolveDotted(keys, `${path}.weight`);
        if (!key) return invalid('replacement matches no base tensor');
        const info = base.tensors.get(key)!;
        if (!FLOATS.has(t.dtype) || !FLOATS.has(info.dtype) || t.shape.join() !== info.shape.join()) return invalid('replacement shape or dtype');
        if (replacements.has(key)) return invalid('replaced twice');
        replacements.set(key, t);
      } else {
        return unknown(`adapter tensor ${name}`);
      }
    }
    for (const [moduleKey, { a, b }] of groups) {
      if (!a || !b) return invalid('module lacks a factor');
      if (/lora_|modules_to_save|\.(weight|bias)$/.test(moduleKey) || /(^|\.)(default)$/.test(moduleKey)) return unknown('odd module key');
      const path = moduleKey.startsWith('base_model.model.') ? moduleKey.slice('base_model.model.'.length) : moduleKey;
      const isTarget = targeted(path);
      if (isTarget === undefined) return unknown('target_modules regex');
      if (!isTarget) return invalid(`module ${path} not targeted`);
      const key = resolveDotted(keys, `${path}.weight`);
      if (!key) return invalid(`module ${path} matches no base tensor`);
      if (modules.some((m) => m.baseKey === key)) return invalid('two modules on one tensor');
      const rank = a.shape[0];
      if (lookup(rankPattern, path, r) !== rank) return invalid('rank disagrees with config');
      const moduleAlpha = lookup(alphaPattern, path, alpha);
      modules.push({ baseKey: key, a, b, scale: config.use_rslora === true ? moduleAlpha / Math.sqrt(rank) : moduleAlpha / rank });
    }
  } else {
    const groups = new Map<string, { a?: DecodedTensor; b?: DecodedTensor; alpha?: DecodedTensor }>();
    for (const [name, t] of adapter.tensors) {
      const m = /^lora_unet_([^.]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(name);
      if (!m) return /^lora_(unet|te|te1|te2|te3)_/.test(name) ? unknown(`kohya tensor ${name}`) : invalid(`not a kohya name: ${name}`);
      const g = groups.get(m[1]) ?? {};
      g[m[2] === 'alpha' ? 'alpha' : m[2] === 'lora_down.weight' ? 'a' : 'b'] = t;
      groups.set(m[1], g);
    }
    for (const [flat, { a, b, alpha }] of groups) {
      if (!a || !b) return invalid('module lacks a factor');
      const hits = keys.filter((k) => {
        if (!k.endsWith('.weight')) return false;
        const f = k.slice(0, -'.weight'.length).replaceAll('.', '_');
        return f === flat || f.endsWith(`_${flat}`);
      });
      if (hits.length !== 1) return hits.length === 0 ? invalid('no base tensor') : unknown('several base tensors');
      const rank = a.shape[0];
      let alphaValue = rank;
      if (alpha) {
        if (alpha.values.length !== 1 || !FLOATS.has(alpha.dtype) && alpha.dtype !== 'F64' && !INTEGERS.has(alpha.dtype) || !Number.isFinite(alpha.values[0])) return invalid('alpha');
        alphaValue = alpha.values[0] === 0 ? rank : alpha.values[0];
      }
      if (modules.some((m) => m.baseKey === hits[0])) return invalid('two modules on one tensor');
      modules.push({ baseKey: hits[0], a, b, scale: alphaValue / rank });
    }
  }
  if (modules.length === 0 && replacements.size === 0) return invalid('no modules');

  const outDtypeOf = (dtype: FixtureDType): FixtureDType => (command.dtype && FLOATS.has(dtype) ? (command.dtype.toUpperCase() as FixtureDType) : dtype);
  const tensors: ExpectedTensor[] = [];
  const nonFiniteCopies: string[] = [];
  for (const [name, w] of base.tensors) {
    const outDtype = outDtypeOf(w.dtype);
    const module = modules.find((m) => m.baseKey === name);
    const replacement = replacements.get(name);
    if (module && replacement) return invalid('replaced and updated');
    if (module) {
      const { a, b } = module;
      if (!FLOATS.has(w.dtype)) return invalid('base tensor not float');
      if (![a, b].every((t) => FLOATS.has(t.dtype))) return FLOATS.has(a.dtype) || a.dtype === 'F64' ? unknown('F64 factor') : invalid('factor not float');
      if (w.shape.length !== 2 || a.shape.length !== 2 || b.shape.length !== 2) return unknown('not 2-D');
      const [out, inF] = w.shape;
      const rank = a.shape[0];
      if (rank > 1024) return invalid('rank over the limit');
      if (b.shape[0] !== out || b.shape[1] !== rank || a.shape[1] !== inF) return invalid('shapes do not fit');
      const values = new Float64Array(out * inF);
      const magnitude = new Float64Array(out * inF);
      const underflow = new Float64Array(out * inF);
      // Factors are read in f32 (F16/BF16/F32 exactly); the scale folds in the user's weight.
      const s = weight * module.scale;
      for (let o = 0; o < out; o++) {
        for (let i = 0; i < inF; i++) {
          let delta = 0;
          let size = 0;
          let spread = 0;
          for (let k = 0; k < rank; k++) {
            const term = b.values[o * rank + k] * a.values[k * inF + i];
            delta += term;
            size += Math.abs(term);
            spread += Math.abs(a.values[k * inF + i]) + Math.abs(s * b.values[o * rank + k]);
          }
          values[o * inF + i] = w.values[o * inF + i] + s * delta;
          magnitude[o * inF + i] = Math.abs(w.values[o * inF + i]) + Math.abs(s) * size;
          underflow[o * inF + i] = spread;
        }
      }
      if (!values.every(Number.isFinite)) return invalid('merged values are not finite');
      tensors.push({ name, dtype: outDtype, shape: w.shape, values, magnitude, underflow, bytes: w.bytes, copied: false });
    } else if (replacement) {
      if (!replacement.values.every(Number.isFinite)) return invalid('replacement holds NaN/Inf');
      tensors.push({ name, dtype: outDtype, shape: w.shape, values: replacement.values, bytes: replacement.bytes, copied: false });
    } else {
      const finite = !FLOATS.has(w.dtype) || w.values.every(Number.isFinite);
      if (!finite) nonFiniteCopies.push(name);
      tensors.push({ name, dtype: outDtype, shape: w.shape, values: outDtype === w.dtype ? null : w.values, bytes: w.bytes, copied: true });
    }
  }
  return { kind: 'expected', tensors, nonFiniteCopies };
}
