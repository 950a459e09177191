/**
 * PEFT adapters of the LyCORIS-family methods, VeRA and OFT (adapter_config.json `peft_type` LOHA,
 * LOKR, VERA, OFT): the same tensors as LyCORIS's (`<module>.hada_w1_a`, `<module>.lokr_w1` …)
 * under PEFT's module paths, VeRA's per-module vera_lambda_b/d with the shared
 * `base_model.vera_A`/`vera_B`, or OFT's `<module>.oft_R.weight`.
 * The modules are built by the algorithm registry; the scale is PEFT's: α/r from the config
 * (rank_pattern and alpha_pattern included) for LoHa and LoKr, whatever the factors' form, and
 * 1 for VeRA.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { parseBoundedJson } from './bounded-json.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterModule, ParsedAdapter } from './adapter.js';
import { algorithmNamed } from './algorithms/index.js';
import { splitTensorName, type Role } from './key-forms.js';
import { lookupPattern } from './peft-config.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

const PEFT_PREFIX = 'base_model.model.';

interface MethodConfig {
  algorithm: 'loha' | 'lokr' | 'vera' | 'peft-oft';
  roles: readonly Role[];
  /** Default r and α of PEFT's config class. */
  r: number;
  alpha: number;
}

const METHODS: Readonly<Record<string, MethodConfig>> = {
  LOHA: { algorithm: 'loha', roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'], r: 8, alpha: 8 },
  LOKR: { algorithm: 'lokr', roles: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'], r: 8, alpha: 8 },
  VERA: { algorithm: 'vera', roles: ['vera_lambda_b', 'vera_lambda_d'], r: 256, alpha: 1 },
  OFT: { algorithm: 'peft-oft', roles: ['oft_R'], r: 0, alpha: 1 },
};

/**
 * The config's `peft_type` when it is one this file parses, else undefined. The config's size and
 * nesting are checked first (a refusal names `configFile`).
 */
export function peftMethodOf(configText: string, configFile: string): string | undefined {
  const raw = parseBoundedJson(configText, configFile) as { peft_type?: unknown } | null;
  const type = raw !== null && typeof raw === 'object' ? raw.peft_type : undefined;
  return typeof type === 'string' && METHODS[type.toUpperCase()] ? type.toUpperCase() : undefined;
}

type Problem = { code: MergeErrorCode; message: string };

export function parsePeftMethodAdapter(name: string, configText: string, configFile: string, file: SafetensorsFile): ParsedAdapter {
  const raw = parseBoundedJson(configText, configFile) as Record<string, unknown>;
  const type = String(raw.peft_type).toUpperCase();
  const method = METHODS[type];
  const fileName = file.source.name;
  const number = (key: string, fallback: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const pattern = (key: string): [RegExp, number][] => {
    const v = raw[key];
    if (v === undefined || v === null) return [];
    if (typeof v !== 'object' || Array.isArray(v)) throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" must be an object`);
    return Object.entries(v as Record<string, unknown>).map(([k, x]) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new MergeError('BAD_CONFIG', `${configFile}: ${key}["${k}"] must be a number`);
      return [new RegExp(`^(?:.*\\.)?(?:${k})$`), x];
    });
  };
  const r = number('r', method.r);
  const alpha = number('alpha', method.alpha);
  const rankPattern = pattern('rank_pattern');
  const alphaPattern = pattern('alpha_pattern');
  const fanInFanOut = raw.fan_in_fan_out === true;
  // OFT's settings, checked here, read by its algorithm.
  const options: Record<string, number | boolean> = {};
  for (const key of ['coft', 'block_share', 'use_cayley_neumann'] as const) {
    if (raw[key] === undefined || raw[key] === null) continue;
    if (typeof raw[key] !== 'boolean') throw new MergeError('BAD_CONFIG', `${configFile}: "${key}" must be true or false`);
    options[key] = raw[key] as boolean;
  }
  for (const key of ['eps', 'num_cayley_neumann_terms'] as const) if (raw[key] !== undefined && raw[key] !== null) options[key] = number(key, 0);
  if (method.algorithm === 'peft-oft' && fanInFanOut) throw new MergeError('UNSUPPORTED_FORMAT', `${configFile}: OFT with fan_in_fan_out is not supported`);

  const problems: Problem[] = [];
  const groups = new Map<string, Map<Role, TensorEntry>>();
  const shared = new Map<Role, TensorEntry>();
  for (const entry of file.tensors) {
    if (method.algorithm === 'vera' && (entry.name === 'base_model.vera_A' || entry.name === 'base_model.vera_B')) {
      shared.set(entry.name === 'base_model.vera_A' ? 'vera_A' : 'vera_B', entry);
      continue;
    }
    const split = splitTensorName(entry.name);
    if (!split || !method.roles.includes(split.role)) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${entry.name}" is not a ${type} tensor this tool understands` });
      continue;
    }
    const path = split.module.startsWith(PEFT_PREFIX) ? split.module.slice(PEFT_PREFIX.length) : split.module;
    let roles = groups.get(path);
    if (!roles) groups.set(path, (roles = new Map()));
    roles.set(split.role, entry);
  }
  if (method.algorithm === 'vera' && (!shared.has('vera_A') || !shared.has('vera_B'))) {
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: VeRA adapter without base_model.vera_A and vera_B (saved with save_projection: false); PEFT regenerates them from a PyTorch random seed, which this tool cannot reproduce`);
  }

  const algorithm = algorithmNamed(method.algorithm);
  const modules: AdapterModule[] = [];
  for (const [path, roles] of groups) {
    const report = (code: MergeErrorCode, message: string) => problems.push({ code, message: `${name}: module "${path}"${/^(is|has|needs) /.test(message) ? ' ' : ': '}${message}` });
    const moduleAlpha = lookupPattern(alphaPattern, path, alpha);
    const moduleRank = lookupPattern(rankPattern, path, r);
    for (const [role, t] of shared) roles.set(role, t);
    const module = algorithm.build(roles, { adapter: name, key: `${PEFT_PREFIX}${path}`, address: { path, flat: false }, alpha: moduleAlpha, report, options });
    if (!module) continue;
    if (method.algorithm === 'loha' || method.algorithm === 'lokr') {
      // PEFT: α/r from the config; the stored factors must have that rank where they have one.
      const stored = storedRank(module);
      if (stored !== undefined && stored !== moduleRank) {
        report('BAD_CONFIG', `has rank ${stored} but the config (${rankPattern.some(([re]) => re.test(path)) ? 'rank_pattern' : 'r'}) says ${moduleRank}`);
        continue;
      }
      Object.assign(module, { rank: moduleRank, alpha: moduleAlpha, scale: moduleAlpha / moduleRank });
    }
    modules.push({ ...module, name: path, fanInFanOut: method.algorithm === 'vera' && fanInFanOut });
  }
  throwIfProblems(name, problems);
  if (modules.length === 0) throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no ${type} tensors found`);
  return { name, format: 'peft', file, modules, replacements: [], warnings: [], config: raw };
}

/** The rank the factors were trained at (LoHa's, or LoKr's decomposed factor); undefined for LoKr with two full factors. */
function storedRank(module: AdapterModule): number | undefined {
  const t = module.tensors;
  if (module.algorithm === 'loha') return t.w1b.shape[0];
  if (t.w1b) return t.w1b.shape[0];
  if (t.w2b) return t.w2b.shape[0];
  return undefined;
}
