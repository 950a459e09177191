/**
 * The `general.*` keys llama.cpp's convert_lora_to_gguf.py writes to a LoRA GGUF, from what it reads
 * of the adapter's folder (ModelBase.prepare_metadata with dir_model_card = the LoRA folder, and
 * gguf-py's Metadata.load / set_gguf_meta_model):
 * - the folder's generation_config.json: `sequence`, `top_k`, `top_p`, `min_p`, `xtc_probability`,
 *   `xtc_threshold`, `temperature`, `penalty_last_n`, `penalty_repeat`, `mirostat`, `mirostat_tau`,
 *   `mirostat_eta` as general.sampling.* (Metadata.load_generation_config: a file that is not JSON
 *   counts as none);
 * - the folder's README.md front matter, read as PyYAML's safe_load reads it (YAML 1.1 types: a
 *   plain `1.0`, `yes` or `2024-01-01` is no string): `name` / `model_name`, `author` /
 *   `model_author` / `model_creator`, `version`, `organization`, `description`, `finetune`,
 *   `basename` (also `model_type`), `size_label`, `url` … as general.source.*, `base_model` (or
 *   `base_models`, `base_model_sources`: ids, URLs, or mappings written as they are) as
 *   general.base_model.N.*, `datasets` likewise as general.dataset.N.*, `license` (a list joined
 *   with commas), `license_name`, `license_link`, `tags` + `pipeline_tag`, `language(s)`;
 * - the folder's config.json `_name_or_path`, where it is a model id (at most one `/`);
 * - the folder's own name, split as a model id (`Llama-3.1-8B-Instruct-v2`: basename, size label,
 *   finetune, version), its words title-cased for general.name.
 * Each earlier source wins over the later ones; a key the card holds with a value that is no
 * string but Python-false (`0`, `no`, `[]`) keeps the later ones out and writes nothing (gguf-py's
 * add_string skips it), as the script does. LoRAs count their size negated (gguf-py's
 * get_total_parameter_count: each pair as out × A's last ne), which the size-label heuristic reads.
 * Where the script stops instead (the front matter is no YAML PyYAML reads, a key it writes as a
 * string holds a number, list or mapping, a tag or merge key safe_load refuses, config.json is no
 * JSON object), {@link ggufCardProblem} says why, and the conversion is refused.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';

/** What convert_lora_to_gguf reads of the adapter's folder for the general.* keys. */
export interface GgufLoraCard {
  /** The folder's name (the script's lora_path's last component); absent for files given without their folder. */
  folder?: string;
  /** README.md, config.json and generation_config.json of the folder, as text, when there. */
  readme?: string;
  config?: string;
  generation?: string;
}

/** A front matter value as PyYAML's safe_load constructs it, as far as gguf-py's use tells values apart. */
type Py = string | null | PyOther | Py[] | PyDict;
/** A bool, int, float, date or explicitly tagged value: what it is (for messages) and its Python truth (undefined: not worked out). */
interface PyOther { readonly other: string; readonly truthy: boolean | undefined }
/** A mapping: its string keys' values, and whether it has any key at all (Python's truth of a dict). */
class PyDict {
  constructor(readonly entries: Map<string, Py>, readonly nonEmpty: boolean) {}
}

/** Why the conversion cannot write the general.* keys convert_lora_to_gguf.py writes for `card` (the script stops), or undefined. */
export function ggufCardProblem(card: GgufLoraCard): string | undefined {
  const r = general(card, 0);
  return 'why' in r ? r.why : undefined;
}

/** The general.* keys convert_lora_to_gguf writes for `card`, in its order; `totalParams` as gguf-py counts the LoRA (negative). Throws where {@link ggufCardProblem} names a problem. */
export function ggufLoraGeneral(card: GgufLoraCard, totalParams: number): GgufKeyValue[] {
  const r = general(card, totalParams);
  if ('why' in r) throw new Error(r.why);
  return r.keys;
}

function general(card: GgufLoraCard, total: number): { keys: GgufKeyValue[] } | { why: string } {
  const sampling = samplingKeys(card.generation);
  if ('why' in sampling) return sampling;
  const m: Meta = { origin: {} };
  if (card.readme !== undefined) {
    const read = readFrontMatter(card.readme);
    if ('why' in read) return read;
    fromCard(m, read.card, total);
  }
  const config = parseConfig(card.config);
  if ('why' in config) return config;
  const id = config.id;
  if (id !== undefined && (id.match(/\//g) ?? []).length <= 1) fromId(m, id, total);
  if (card.folder !== undefined) fromId(m, card.folder, total);
  const out: GgufKeyValue[] = [...sampling.keys];
  const why = keyValues(m, out);
  return why === undefined ? { keys: out } : { why };
}

/** gguf-py's get_total_parameter_count for LoRA pairs: Σ (B's numpy shape without its last) × A's last numpy dim, negated. */
export function ggufLoraTotalParams(pairs: readonly { aNe: readonly number[]; bNe: readonly number[] }[]): number {
  let total = 0;
  for (const { aNe, bNe } of pairs) total += bNe.slice(1).reduce((p, d) => p * d, 1) * aNe[0];
  return pairs.length > 0 ? -total : 0;
}

// ---- generation_config.json: Metadata.load's sampling_* and set_gguf_meta_model's add_sampling_* ----

/** generation_config.json's key, the GGUF key, and how gguf-py packs it (add_string, add_int32 or add_float32). */
const SAMPLING: readonly (readonly [string, string, 'string' | 'int32' | 'float32'])[] = [
  ['sequence', 'sequence', 'string'], ['top_k', 'top_k', 'int32'], ['top_p', 'top_p', 'float32'], ['min_p', 'min_p', 'float32'],
  ['xtc_probability', 'xtc_probability', 'float32'], ['xtc_threshold', 'xtc_threshold', 'float32'], ['temperature', 'temp', 'float32'],
  ['penalty_last_n', 'penalty_last_n', 'int32'], ['penalty_repeat', 'penalty_repeat', 'float32'], ['mirostat', 'mirostat', 'int32'],
  ['mirostat_tau', 'mirostat_tau', 'float32'], ['mirostat_eta', 'mirostat_eta', 'float32'],
];

function samplingKeys(text: string | undefined): { keys: GgufKeyValue[] } | { why: string } {
  if (text === undefined) return { keys: [] };
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch {
    // load_generation_config takes a file json.load refuses as none; Python's json reads NaN and Infinity, JSON.parse does not.
    if (/(^|[^\w"])(NaN|-?Infinity)([^\w"]|$)/.test(text)) return { why: 'generation_config.json holds NaN or Infinity, which is not read here: write the value as a number' };
    return { keys: [] };
  }
  // `if gen_config:` — a falsy top level is none; any other value that is no object has no .get.
  if (config === null || config === false || config === 0 || config === '' || (Array.isArray(config) && config.length === 0)) return { keys: [] };
  if (typeof config !== 'object' || Array.isArray(config)) return { why: 'generation_config.json is not a JSON object, and convert_lora_to_gguf.py stops on it' };
  const c = config as Record<string, unknown>;
  const keys: GgufKeyValue[] = [];
  for (const [from, name, pack] of SAMPLING) {
    const v = c[from];
    if (v === undefined || v === null) continue;
    const key = `general.sampling.${name}`;
    const bad = (what: string) => ({ why: `generation_config.json "${from}" is ${what}, and convert_lora_to_gguf.py stops on it (gguf-py writes ${key} as ${pack === 'string' ? 'a string' : `a ${pack}`})` });
    if (pack === 'string') {
      if (typeof v === 'string') {
        if (v !== '') keys.push({ key, type: GGUFValueType.STRING, value: v });
      } else if (v !== false && v !== 0 && !(Array.isArray(v) && v.length === 0) && !(typeof v === 'object' && Object.keys(v as object).length === 0)) {
        return bad(`${jsonKind(v)}, not a string`);
      }
      continue;
    }
    const n = typeof v === 'boolean' ? Number(v) : v;
    if (typeof n !== 'number') return bad(`${jsonKind(v)}, not a number`);
    if (pack === 'int32') {
      // Python's json reads 40.0 or 4e1 as a float, which struct.pack('i') refuses.
      if (typeof v === 'number' && !intToken(text, from)) return bad(`${v} written as a float, not an integer`);
      if (n < -(2 ** 31) || n > 2 ** 31 - 1) return bad(`${v}, out of the int32 range`);
      keys.push({ key, type: GGUFValueType.INT32, value: n });
    } else {
      if (Number.isFinite(n) && !Number.isFinite(Math.fround(n))) return bad(`${v}, too large for a float32`);
      keys.push({ key, type: GGUFValueType.FLOAT32, value: n });
    }
  }
  return { keys };
}

const jsonKind = (v: unknown) => (typeof v === 'string' ? `the string "${v}"` : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `${JSON.stringify(v)}`);

/** Whether the last `"key": number` in `text` is written as an integer (no fraction, no exponent), as Python's json then reads an int. */
function intToken(text: string, key: string): boolean {
  const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const all = [...text.matchAll(new RegExp(`"${escaped}"\\s*:\\s*(-?\\d[\\d.eE+-]*)`, 'g'))];
  const last = all.at(-1);
  return last === undefined || /^-?\d+$/.test(last[1]);
}

// ---- the README.md front matter: Metadata.apply_metadata_heuristic ----

type Field =
  | 'name' | 'author' | 'version' | 'organization' | 'finetune' | 'basename' | 'description' | 'size_label'
  | 'license' | 'license_name' | 'license_link' | 'source_url' | 'source_doi' | 'source_uuid' | 'source_repo_url';
/** A base model or data set: the fields set_gguf_meta_model writes, and what to call it in a message. */
type Source = { label: string; fields: Map<string, Py> };
/** Metadata's fields; `undefined` is Python's None. `origin`: the card key each came from, for messages. */
type Meta = Partial<Record<Field, Py>> & {
  origin: Partial<Record<Field, string>>;
  base_models?: Source[]; datasets?: Source[]; tags?: Py[]; languages?: Py[];
};
/** A dict entry's keys set_gguf_meta_model writes, in its order. */
const SOURCE_FIELDS = ['name', 'author', 'version', 'organization', 'description', 'url', 'doi', 'uuid', 'repo_url'] as const;

function fromCard(m: Meta, card: PyDict, total: number): void {
  const use = (field: Field, key: string) => {
    if (!card.entries.has(key) || m[field] !== undefined) return;
    const v = card.entries.get(key)!;
    if (v === null) return;
    m[field] = v;
    m.origin[field] = key;
  };
  for (const [field, key] of [
    ['name', 'name'], ['author', 'author'], ['version', 'version'], ['organization', 'organization'], ['description', 'description'],
    ['finetune', 'finetune'], ['basename', 'basename'], ['size_label', 'size_label'], ['source_url', 'url'], ['source_doi', 'doi'],
    ['source_uuid', 'uuid'], ['source_repo_url', 'repo_url'],
    ['name', 'model_name'], ['author', 'model_author'], ['version', 'model_version'], ['organization', 'model_organization'],
    ['description', 'model_description'], ['finetune', 'model_finetune'], ['basename', 'model_basename'], ['size_label', 'model_size_label'],
    ['source_url', 'model_url'], ['source_doi', 'model_doi'], ['source_uuid', 'model_uuid'], ['source_repo_url', 'model_repo_url'],
    ['name', 'model_name'], ['author', 'model_creator'], ['basename', 'model_type'],
  ] as const) use(field, key);
  const sources = (keys: readonly string[]): Source[] | undefined => {
    const key = keys.find((k) => card.entries.has(k));
    if (key === undefined) return undefined;
    const v = card.entries.get(key)!;
    const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : [];
    return list.map((e, i) => {
      const label = `"${key}"${typeof v === 'string' ? '' : ` entry ${i}`}`;
      if (typeof e === 'string') return { label, fields: sourceOf(e, total) };
      // A mapping is written as it is; anything else (logged as "not in a known format") as an empty entry.
      return { label, fields: e instanceof PyDict ? e.entries : new Map() };
    });
  };
  m.base_models = sources(['base_model', 'base_models', 'base_model_sources']);
  m.datasets = sources(['datasets', 'dataset', 'dataset_sources']);
  use('license', 'license');
  use('license_name', 'license_name');
  use('license_link', 'license_link');
  const list = (keys: readonly string[]) => {
    let out: Py[] | undefined;
    for (const k of keys) {
      const v = card.entries.get(k);
      if (v === undefined || v === null) continue;
      out = [...(out ?? []), ...(typeof v === 'string' ? [v] : Array.isArray(v) ? v : [])];
    }
    return out;
  };
  m.tags = list(['tags', 'pipeline_tag']);
  m.languages = list(['languages', 'language']);
}

/** A base model or data set named in the card: a URL, or a Hugging Face id. */
function sourceOf(id: string, total: number): Map<string, Py> {
  const s = new Map<string, Py>();
  const fill = (c: IdComponents) => {
    s.set('name', idToTitle(c.full));
    if (c.org !== undefined) s.set('organization', idToTitle(c.org));
    if (c.version !== undefined) s.set('version', c.version);
  };
  if (/^(https?|ssh):\/\//.test(id)) {
    s.set('repo_url', id);
    const hub = id.includes('huggingface.co') ? /^https?:\/\/huggingface.co\/([^/]+\/[^/]+)$/.exec(id) : null;
    if (hub) fill(idComponents(hub[1], total));
    return s;
  }
  const c = idComponents(id, total);
  fill(c);
  if (c.org !== undefined) s.set('repo_url', `https://huggingface.co/${c.org}/${c.full}`);
  return s;
}

/** Fills what is still unknown from a model id (config.json's _name_or_path, the folder's name). */
function fromId(m: Meta, id: string, total: number): void {
  const c = idComponents(id, total);
  m.name ??= idToTitle(c.full);
  if (c.org !== undefined) m.organization ??= idToTitle(c.org);
  if (c.basename !== undefined) m.basename ??= c.basename;
  if (c.finetune !== undefined) m.finetune ??= c.finetune;
  if (c.version !== undefined) m.version ??= c.version;
  if (c.size_label !== undefined) m.size_label ??= c.size_label;
}

/** Python's truth of a value; undefined where not worked out (an explicitly tagged one). */
function truthy(v: Py): boolean | undefined {
  if (v === null) return false;
  if (typeof v === 'string' || Array.isArray(v)) return v.length > 0;
  if (v instanceof PyDict) return v.nonEmpty;
  return v.truthy;
}

const describe = (v: Py) => (Array.isArray(v) ? 'a list' : v instanceof PyDict ? 'a mapping' : typeof v === 'object' && v !== null ? v.other : 'no string');

/** set_gguf_meta_model's keys for `m`, appended to `out`, in its order; or why the script stops on them. */
function keyValues(m: Meta, out: GgufKeyValue[]): string | undefined {
  // gguf-py's add_string writes no empty (Python-false) value, and packs nothing but a str.
  const s = (key: string, value: Py | undefined, what: string): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') {
      if (value) out.push({ key, type: GGUFValueType.STRING, value });
      return undefined;
    }
    if (truthy(value) === false) return undefined;
    return `README.md front matter ${what} is ${describe(value)}, not a string, and convert_lora_to_gguf.py stops on it (gguf-py writes ${key} only from a string)`;
  };
  const field = (key: string, f: Field) => s(key, m[f], `"${m.origin[f]}"`);
  const license = Array.isArray(m.license) ? joined(m.license) : m.license;
  if (license === false) return `README.md front matter "license" is a list with an item that is no string, and convert_lora_to_gguf.py stops on it (it joins the list with commas)`;
  const why =
    field('general.name', 'name') ?? field('general.author', 'author') ?? field('general.version', 'version')
    ?? field('general.organization', 'organization') ?? field('general.finetune', 'finetune') ?? field('general.basename', 'basename')
    ?? field('general.description', 'description') ?? field('general.size_label', 'size_label')
    ?? s('general.license', license, '"license"') ?? field('general.license.name', 'license_name') ?? field('general.license.link', 'license_link')
    ?? field('general.source.url', 'source_url') ?? field('general.source.doi', 'source_doi') ?? field('general.source.uuid', 'source_uuid')
    ?? field('general.source.repo_url', 'source_repo_url');
  if (why !== undefined) return why;
  for (const [what, list] of [['base_model', m.base_models], ['dataset', m.datasets]] as const) {
    if (list === undefined) continue;
    out.push({ key: `general.${what}.count`, type: GGUFValueType.UINT32, value: list.length });
    for (const [i, e] of list.entries()) {
      for (const f of SOURCE_FIELDS) {
        if (!e.fields.has(f)) continue;
        const problem = s(`general.${what}.${i}.${f}`, e.fields.get(f)!, `${e.label}'s "${f}"`);
        if (problem !== undefined) return problem;
      }
    }
  }
  // gguf-py's add_array writes no empty array; a non-empty one's items must all be strings here.
  for (const [key, list, from] of [['general.tags', m.tags, '"tags" / "pipeline_tag"'], ['general.languages', m.languages, '"language" / "languages"']] as const) {
    if (!list || list.length === 0) continue;
    const bad = list.find((v) => typeof v !== 'string');
    if (bad !== undefined) return `README.md front matter ${from} holds ${bad === null ? 'an empty item' : describe(bad)}, not a string: convert_lora_to_gguf.py writes ${key} only as a list of strings here`;
    out.push({ key, type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING, value: list as string[] });
  }
  return undefined;
}

/** ",".join(list) where every item is a str; false where Python's join stops on an item. */
function joined(list: Py[]): string | false {
  return list.every((v) => typeof v === 'string') ? (list as string[]).join(',') : false;
}

/** config.json's _name_or_path (load_hf_parameters: json.load, then .get and .count, which stop on a file that is no object, or a non-string id). */
function parseConfig(text: string | undefined): { id?: string } | { why: string } {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { why: 'config.json is not JSON, and convert_lora_to_gguf.py stops on it (it reads the adapter folder\'s config.json for general.name)' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { why: 'config.json is not a JSON object, and convert_lora_to_gguf.py stops on it' };
  const id = (v as Record<string, unknown>)._name_or_path;
  if (id === undefined || id === null) return {};
  if (typeof id !== 'string') return { why: 'config.json "_name_or_path" is not a string, and convert_lora_to_gguf.py stops on it' };
  return { id };
}

// ---- gguf-py Metadata.get_model_id_components and id_to_title ----

const LETTER = /^\p{L}$/u;
const DECIMAL = /^\p{Nd}$/u;
const CASED = /^[\p{Lu}\p{Ll}\p{Lt}]$/u;

/** Python's str.title(): a letter after a cased character lowercased, any other cased character title-cased. */
function pyTitle(w: string): string {
  let out = '';
  let previousCased = false;
  for (const ch of w) {
    const c = previousCased ? ch.toLowerCase() : ch.toUpperCase();
    out += c;
    previousCased = CASED.test(ch);
  }
  return out;
}

/** Python's str.islower(): some cased character, and every cased one lowercase. */
function pyIsLower(w: string): boolean {
  let cased = false;
  for (const ch of w) {
    if (!CASED.test(ch)) continue;
    if (ch !== ch.toLowerCase()) return false;
    cased = true;
  }
  return cased;
}

/** Metadata.id_to_title: each all-lowercase word title-cased unless a version or a number. */
export function idToTitle(s: string): string {
  return s.trim().replace(/-/g, ' ').split(/\s+/).filter((w) => w !== '')
    .map((w) => (pyIsLower(w) && !/^(v\d+(?:\.\d+)*|\d.*)$/u.test(w) ? pyTitle(w) : w)).join(' ');
}

interface IdComponents { full: string; org?: string; basename?: string; finetune?: string; version?: string; size_label?: string }

function normalizeSizeLabel(label: string): string {
  label = label.replace(/_/g, '.');
  if (DECIMAL.test(label.at(-1) ?? '')) {
    if (label.length < 2) return label;
    label = `${label.slice(0, -2)}.${label.at(-1)}${label.at(-2)}`;
  }
  if (label.length > 1 && DECIMAL.test(label.at(-2)!) && 'kmbt'.includes(label.at(-1)!)) label = label.slice(0, -1) + label.at(-1)!.toUpperCase();
  return label;
}

/** float(label[:-1]) · 1000^" KMBT".find(label[-1]); null where Python's float() raises ValueError. */
function sizeLabelParams(label: string): number | null {
  const head = label.slice(0, -1);
  if (!/^\s*[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?\s*$/.test(head) || !/\d/.test(head)) return null;
  return Number(head.replace(/_/g, '')) * 1000 ** ' KMBT'.indexOf(label.at(-1)!);
}

/** Metadata.get_model_id_components: a model id split into name, organization, basename, finetune, version and size label. */
export function idComponents(id: string, total: number): IdComponents {
  if (id.includes(' ')) return { full: id };
  let org: string | undefined;
  let full = id;
  const slash = id.indexOf('/');
  if (slash >= 0) [org, full] = [id.slice(0, slash), id.slice(slash + 1)];
  if (org !== undefined && org.startsWith('.')) org = undefined;
  const parts = full.split('-').filter((p) => p !== '');
  const types = parts.map(() => new Set<string>());
  const abs = Math.abs(total);
  parts.forEach((part, i) => {
    if (/^(v|iter)?\d+([.]\d+)*$/iu.test(part)) types[i].add('version');
    else if (/^(i?q\d(_[\p{L}\p{N}_])*|b?fp?(16|32))$/iu.test(part)) {
      types[i].add('type');
      parts[i] = part.toUpperCase();
    } else if (i > 0 && /^((([A]|\d+[x])?\d+([._]\d+)?[KMBT]\d?)|small|mini|medium|large|x?xl)$/iu.test(part)) {
      part = normalizeSizeLabel(part);
      if (total !== 0) {
        const label = sizeLabelParams(part);
        if (label !== null) {
          // (A one-digit next part stops the script there, an IndexError; here it is no active-parameter label.)
          const next = i + 1 < parts.length ? normalizeSizeLabel(parts[i + 1]) : undefined;
          const nextParams = next !== undefined && /^A\d+([._]\d+)?[KMBT]\d?$/iu.test(next) ? sizeLabelParams(next.slice(1)) : null;
          const followedByActive = nextParams !== null && Math.abs(nextParams - abs) <= Math.floor((7 * abs) / 8);
          if (!followedByActive && ((total < 0 && label < Math.floor(abs / 8)) || (total > 0 && Math.abs(label - total) > Math.floor((7 * total) / 8)))) {
            types[i].add('finetune');
            part = part.slice(0, -1) + part.at(-1)!.toLowerCase();
          }
        }
      }
      if (types[i].size === 0) types[i].add('size_label');
      parts[i] = part;
    } else if (i > 0 && /^(chat|instruct|vision|lora)$/iu.test(part)) {
      types[i].add(total < 0 && part.toLowerCase() === 'lora' ? 'type' : 'finetune');
    }
  });
  if (parts.some((p, i) => types[i].has('size_label') && [...p].some((c) => DECIMAL.test(c)))) {
    parts.forEach((p, i) => {
      if (types[i].has('size_label') && [...p].every((c) => LETTER.test(c))) types[i].delete('size_label');
    });
  }
  let atStart = true;
  parts.forEach((p, i) => {
    const t = types[i];
    if (atStart && ((t.size === 0 && LETTER.test([...p][0])) || t.has('version'))) t.add('basename');
    else {
      atStart = false;
      if (t.size === 0) t.add('finetune');
    }
  });
  for (let i = parts.length - 1; i >= 0; i--) {
    if (types[i].has('basename') && types[i].size > 1) types[i].delete('basename');
    else break;
  }
  const join = (keep: (t: Set<string>) => boolean, unique = false) => {
    const picked = parts.filter((_, i) => keep(types[i]));
    return (unique ? [...new Set(picked)] : picked).join('-') || undefined;
  };
  let basename = join((t) => t.has('basename'));
  const size_label = join((t) => t.has('size_label'), true);
  const finetune = join((t) => t.has('finetune'));
  const version = join((t) => t.has('version') && !t.has('basename'));
  if (size_label === undefined && finetune === undefined && version === undefined) basename = undefined;
  return { full, org, basename, finetune, version, size_label };
}


// ---- the README.md front matter, as gguf-py's load_model_card reads it (PyYAML's safe_load) ----

/** Python's str.splitlines() boundaries. */
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;

/** The front matter as a mapping (empty where there is none, or it is no mapping), or why PyYAML's safe_load stops on it. */
function readFrontMatter(readme: string): { card: PyDict } | { why: string } {
  const none = { card: new PyDict(new Map(), false) };
  const lines = readme.split(LINE_BREAK);
  if (readme.endsWith('\n') || LINE_BREAK.test(readme.at(-1) ?? '')) lines.pop();
  if (lines.length === 0 || lines[0] !== '---') return none;
  const body: string[] = [];
  for (const line of lines.slice(1)) {
    if (line === '---') break;
    body.push(line);
  }
  // load_model_card's own fixes before yaml.safe_load: the Norway problem, and tabs as two spaces.
  const text = `${body.join('\n')}\n`.replaceAll('- no\n', '- "no"\n').replaceAll('\t', '  ');
  // The failsafe schema keeps every scalar a string; PyYAML's YAML 1.1 resolution is done below.
  const doc = parseDocument(text, { schema: 'failsafe', uniqueKeys: false, merge: false, strict: false, prettyErrors: false, keepSourceTokens: false });
  if (doc.errors.length > 0) return { why: `README.md front matter is not YAML that PyYAML reads (${doc.errors[0].message.split('\n')[0]}), and convert_lora_to_gguf.py stops on it` };
  try {
    const top = new PyYamlReader(doc).read(doc.contents);
    return top instanceof PyDict ? { card: top } : none;
  } catch (e) {
    if (e instanceof SafeLoadStop) {
      return { why: `README.md front matter ${e.message}, ${e.ours ? 'which is not read here (PyYAML builds a list holding itself)' : "which PyYAML's safe_load refuses, and convert_lora_to_gguf.py stops on it"}` };
    }
    throw e;
  }
}

/** Where safe_load stops on the front matter (or, `ours`, where this reading does not follow it). */
class SafeLoadStop extends Error {
  constructor(message: string, readonly ours = false) {
    super(message);
  }
}

const YAML_TAG = 'tag:yaml.org,2002:';
/** Standard tags safe_load constructs to something other than a str, list or dict (or not as a plain one): kept, not worked out. */
const OTHER_TAGS = new Set(['bool', 'int', 'float', 'timestamp', 'binary', 'omap', 'pairs', 'set']);

/** Composes and constructs as PyYAML's SafeLoader does, as far as gguf-py's reading of the card tells values apart. */
class PyYamlReader {
  private readonly anchors = new Map<string, unknown>();
  private readonly done = new Map<unknown, Py>();
  private readonly open = new Set<unknown>();

  constructor(private readonly doc: Document) {}

  read(node: unknown): Py {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      // The composer knows an anchor only once it has read it.
      const target = this.anchors.get(node.source);
      if (target === undefined) throw new SafeLoadStop(`has the alias *${node.source} before its anchor`);
      if (this.open.has(target)) throw new SafeLoadStop(`has a node holding itself (*${node.source})`, true);
      return this.done.get(target) ?? this.read(target);
    }
    const anchor = (node as { anchor?: string }).anchor;
    if (anchor !== undefined) this.anchors.set(anchor, node);
    this.open.add(node);
    const value = this.construct(node);
    this.open.delete(node);
    this.done.set(node, value);
    return value;
  }

  private construct(node: unknown): Py {
    const tag = (node as { tag?: string }).tag;
    const name = tag?.startsWith(YAML_TAG) ? tag.slice(YAML_TAG.length) : tag === '!' ? '' : undefined;
    if (tag !== undefined && name === undefined) throw new SafeLoadStop(`has the tag ${tag}`);
    if (isScalar(node)) {
      const text = String(node.value ?? '');
      if (name === 'str' || name === '') return text;
      if (name === 'null') return null;
      if (name !== undefined && OTHER_TAGS.has(name)) return { other: `a value tagged !!${name}`, truthy: undefined };
      if (name !== undefined) throw new SafeLoadStop(`has the tag !!${name} on a scalar`);
      return node.type === 'PLAIN' ? resolvePlain(text) : text;
    }
    if (isSeq(node)) {
      const items = node.items.map((item) => this.read(item));
      if (name === undefined || name === 'seq' || name === '') return items;
      if (OTHER_TAGS.has(name)) return { other: `a sequence tagged !!${name}`, truthy: undefined };
      throw new SafeLoadStop(`has the tag !!${name} on a sequence`);
    }
    if (isMap(node)) {
      // SafeConstructor.flatten_mapping: a merge key's mappings (the first of a list winning) under the mapping's own keys.
      const merged: PyDict[] = [];
      const own: [Py, Py][] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        if (isMap(pair.key) || isSeq(pair.key)) throw new SafeLoadStop('has a mapping or list as a key (unhashable)');
        if (isScalar(pair.key) && pair.key.type === 'PLAIN' && pair.key.tag === undefined && pair.key.value === '<<') {
          const value = this.read(pair.value);
          const sources = isSeq(pair.value) && Array.isArray(value) ? value : [value];
          if (!sources.every((v) => v instanceof PyDict)) throw new SafeLoadStop('has a merge key (<<) on something other than a mapping or a list of mappings');
          merged.push(...(sources as PyDict[]).reverse());
          continue;
        }
        own.push([this.read(pair.key), this.read(pair.value)]);
      }
      const entries = new Map<string, Py>();
      for (const m of merged) for (const [k, v] of m.entries) entries.set(k, v);
      for (const [k, v] of own) if (typeof k === 'string') entries.set(k, v);
      const nonEmpty = own.length > 0 || merged.some((m) => m.nonEmpty);
      if (name === undefined || name === 'map' || name === '') return new PyDict(entries, nonEmpty);
      if (OTHER_TAGS.has(name)) return { other: `a mapping tagged !!${name}`, truthy: undefined };
      throw new SafeLoadStop(`has the tag !!${name} on a mapping`);
    }
    return null;
  }
}

// PyYAML's implicit resolvers (resolver.py), YAML 1.1: a plain scalar matching one is no str.
const PY_NULL = /^(?:~|null|Null|NULL|)$/;
const PY_TRUE = /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/;
const PY_FALSE = /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/;
const PY_INT = /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const PY_FLOAT = /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const PY_TIMESTAMP = /^(?:([0-9]{4})-([0-9]{2})-([0-9]{2})|([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+]([0-9]{1,2})(?::[0-9]{2})?))?)$/;

/** A plain scalar as PyYAML's SafeLoader resolves and constructs it. */
function resolvePlain(v: string): Py {
  if (PY_NULL.test(v)) return null;
  if (PY_TRUE.test(v)) return { other: `the bool ${v}`, truthy: true };
  if (PY_FALSE.test(v)) return { other: `the bool ${v}`, truthy: false };
  if (PY_INT.test(v)) {
    const digits = v.replace(/^[-+]?0[bx]/, '');
    return { other: `the number ${v}`, truthy: /^[-+]?0x/.test(v) ? /[1-9a-fA-F]/.test(digits) : /[1-9]/.test(digits) };
  }
  if (PY_FLOAT.test(v)) return { other: `the number ${v}`, truthy: /inf|nan/i.test(v) || /[1-9]/.test(v.replace(/[eE].*$/, '')) };
  const t = PY_TIMESTAMP.exec(v);
  if (t) {
    const [y, mo, d, h, mi, s, tz] = t[1] !== undefined ? [t[1], t[2], t[3]] : [t[4], t[5], t[6], t[7], t[8], t[9], t[10]];
    const end = new Date(0);
    end.setUTCFullYear(Number(y), Number(mo), 0);
    const days = end.getUTCDate();
    const ok = Number(y) >= 1 && Number(mo) >= 1 && Number(mo) <= 12 && Number(d) >= 1 && Number(d) <= days
      && Number(h ?? 0) <= 23 && Number(mi ?? 0) <= 59 && Number(s ?? 0) <= 59 && Number(tz ?? 0) <= 23;
    if (!ok) throw new SafeLoadStop(`has "${v}", a date or time out of range`);
    return { other: `the date ${v}`, truthy: true };
  }
  // tag:yaml.org,2002:value and a lone merge marker have no constructor in SafeLoader.
  if (v === '=' || v === '<<') throw new SafeLoadStop(`has the plain value ${v}`);
  return v;
}
