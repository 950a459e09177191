/**
 * The `general.*` keys llama.cpp's convert_lora_to_gguf.py writes to a LoRA GGUF, from what it reads
 * of the adapter's folder (ModelBase.prepare_metadata with dir_model_card = the LoRA folder, and
 * gguf-py's Metadata.load / set_gguf_meta_model):
 * - the folder's README.md front matter (YAML): `name` / `model_name`, `author` / `model_author` /
 *   `model_creator`, `version`, `organization`, `description`, `finetune`, `basename` (also
 *   `model_type`), `size_label`, `url` … as general.source.*, `base_model` (or `base_models`,
 *   `base_model_sources`) as general.base_model.N.*, `datasets` as general.dataset.N.*, `license`,
 *   `tags` + `pipeline_tag`, `language(s)`;
 * - the folder's config.json `_name_or_path`, where it is a model id (at most one `/`);
 * - the folder's own name, split as a model id (`Llama-3.1-8B-Instruct-v2`: basename, size label,
 *   finetune, version), its words title-cased for general.name.
 * Each earlier source wins over the later ones. LoRAs count their size negated (gguf-py's
 * get_total_parameter_count: each pair as out × A's last ne), which the size-label heuristic reads.
 * The front matter is read as far as a plain YAML subset goes (`key: scalar`, `key:` with `- item`
 * lines, one-line `[a, b]`, quoted strings); a card whose keys used here go beyond it (a nested
 * base_model entry, a block scalar, a value YAML reads as no string) gives no card keys at all,
 * and {@link ggufCardProblem} says why.
 */
import { GGUFValueType, type GgufKeyValue } from './gguf-metadata.js';

/** What convert_lora_to_gguf reads of the adapter's folder for the general.* keys. */
export interface GgufLoraCard {
  /** The folder's name (the script's lora_path's last component); absent for files given without their folder. */
  folder?: string;
  /** README.md and config.json of the folder, as text, when there. */
  readme?: string;
  config?: string;
}

type CardValue = string | null | CardValue[];
type Card = Map<string, CardValue>;

/** Keys of the front matter Metadata.apply_metadata_heuristic reads. */
const SCALAR_KEYS = [
  'name', 'model_name', 'author', 'model_author', 'model_creator', 'version', 'model_version', 'organization', 'model_organization',
  'description', 'model_description', 'finetune', 'model_finetune', 'basename', 'model_basename', 'model_type', 'size_label', 'model_size_label',
  'url', 'model_url', 'doi', 'model_doi', 'uuid', 'model_uuid', 'repo_url', 'model_repo_url', 'license_name', 'license_link',
];
const LIST_KEYS = ['base_model', 'base_models', 'base_model_sources', 'datasets', 'dataset', 'dataset_sources', 'license', 'tags', 'pipeline_tag', 'languages', 'language'];
const USED = new Set([...SCALAR_KEYS, ...LIST_KEYS]);

/** Why the README.md front matter gives no general.* keys here, or undefined when it gives them (or there is none). */
export function ggufCardProblem(readme: string | undefined): string | undefined {
  if (readme === undefined) return undefined;
  const read = readFrontMatter(readme);
  return 'why' in read ? read.why : undefined;
}

/** The general.* keys convert_lora_to_gguf writes for `card`, in its order; `totalParams` as gguf-py counts the LoRA (negative). */
export function ggufLoraGeneral(card: GgufLoraCard, totalParams: number): GgufKeyValue[] {
  const m: Meta = {};
  const read = card.readme === undefined ? { card: new Map() as Card } : readFrontMatter(card.readme);
  if ('card' in read) fromCard(m, read.card, totalParams);
  const config = parseConfig(card.config);
  const id = config?._name_or_path;
  if (typeof id === 'string' && (id.match(/\//g) ?? []).length <= 1) fromId(m, id, totalParams);
  if (card.folder !== undefined) fromId(m, card.folder, totalParams);
  return keyValues(m);
}

/** gguf-py's get_total_parameter_count for LoRA pairs: Σ (B's numpy shape without its last) × A's last numpy dim, negated. */
export function ggufLoraTotalParams(pairs: readonly { aNe: readonly number[]; bNe: readonly number[] }[]): number {
  let total = 0;
  for (const { aNe, bNe } of pairs) total += bNe.slice(1).reduce((p, d) => p * d, 1) * aNe[0];
  return pairs.length > 0 ? -total : 0;
}

interface Meta {
  name?: string; author?: string; version?: string; organization?: string; finetune?: string; basename?: string; description?: string;
  size_label?: string; license?: string; license_name?: string; license_link?: string;
  source_url?: string; source_doi?: string; source_uuid?: string; source_repo_url?: string;
  base_models?: Source[]; datasets?: Source[]; tags?: string[]; languages?: string[];
}
type Source = { name?: string; organization?: string; version?: string; repo_url?: string };

function fromCard(m: Meta, card: Card, total: number): void {
  const str = (k: string) => {
    const v = card.get(k);
    return typeof v === 'string' ? v : undefined;
  };
  const use = (field: keyof Meta, key: string) => {
    if (m[field] === undefined && str(key) !== undefined) (m as Record<string, unknown>)[field] = str(key);
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
    const key = keys.find((k) => card.has(k));
    if (key === undefined) return undefined;
    const v = card.get(key)!;
    return (typeof v === 'string' ? [v] : Array.isArray(v) ? (v as string[]) : []).map((id) => sourceOf(id, total));
  };
  m.base_models = sources(['base_model', 'base_models', 'base_model_sources']);
  m.datasets = sources(['datasets', 'dataset', 'dataset_sources']);
  const license = card.get('license');
  if (typeof license === 'string') m.license = license;
  else if (Array.isArray(license)) m.license = (license as string[]).join(',');
  use('license_name', 'license_name');
  use('license_link', 'license_link');
  const list = (keys: readonly string[]) => {
    let out: string[] | undefined;
    for (const k of keys) {
      const v = card.get(k);
      if (v === undefined || v === null) continue;
      out = [...(out ?? []), ...(typeof v === 'string' ? [v] : (v as string[]))];
    }
    return out;
  };
  m.tags = list(['tags', 'pipeline_tag']);
  m.languages = list(['languages', 'language']);
}

/** A base model or data set named in the card: a URL, or a Hugging Face id. */
function sourceOf(id: string, total: number): Source {
  const s: Source = {};
  if (/^(https?|ssh):\/\//.test(id)) {
    s.repo_url = id;
    const hub = id.includes('huggingface.co') ? /^https?:\/\/huggingface\.co\/([^/]+\/[^/]+)$/.exec(id) : null;
    if (hub) {
      const c = idComponents(hub[1], total);
      s.name = idToTitle(c.full);
      if (c.org !== undefined) s.organization = idToTitle(c.org);
      if (c.version !== undefined) s.version = c.version;
    }
    return s;
  }
  const c = idComponents(id, total);
  s.name = idToTitle(c.full);
  if (c.org !== undefined) s.organization = idToTitle(c.org);
  if (c.version !== undefined) s.version = c.version;
  if (c.org !== undefined) s.repo_url = `https://huggingface.co/${c.org}/${c.full}`;
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

function keyValues(m: Meta): GgufKeyValue[] {
  const out: GgufKeyValue[] = [];
  // gguf-py's add_string writes no empty string.
  const s = (key: string, value: string | undefined) => {
    if (value) out.push({ key, type: GGUFValueType.STRING, value });
  };
  s('general.name', m.name);
  s('general.author', m.author);
  s('general.version', m.version);
  s('general.organization', m.organization);
  s('general.finetune', m.finetune);
  s('general.basename', m.basename);
  s('general.description', m.description);
  s('general.size_label', m.size_label);
  s('general.license', m.license);
  s('general.license.name', m.license_name);
  s('general.license.link', m.license_link);
  s('general.source.url', m.source_url);
  s('general.source.doi', m.source_doi);
  s('general.source.uuid', m.source_uuid);
  s('general.source.repo_url', m.source_repo_url);
  for (const [what, list] of [['base_model', m.base_models], ['dataset', m.datasets]] as const) {
    if (list === undefined) continue;
    out.push({ key: `general.${what}.count`, type: GGUFValueType.UINT32, value: list.length });
    list.forEach((e, i) => {
      s(`general.${what}.${i}.name`, e.name);
      s(`general.${what}.${i}.version`, e.version);
      s(`general.${what}.${i}.organization`, e.organization);
      s(`general.${what}.${i}.repo_url`, e.repo_url);
    });
  }
  // gguf-py's add_array writes no empty array.
  for (const [key, list] of [['general.tags', m.tags], ['general.languages', m.languages]] as const) {
    if (list && list.length > 0) out.push({ key, type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING, value: list });
  }
  return out;
}

function parseConfig(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
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

// ---- the README.md front matter, as gguf-py's load_model_card reads it (a plain YAML subset) ----

/** Python's str.splitlines() boundaries. */
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;

/** The front matter's keys read here, or why they cannot be read as PyYAML would. */
function readFrontMatter(readme: string): { card: Card } | { why: string } {
  const lines = readme.split(LINE_BREAK);
  if (readme.endsWith('\n') || LINE_BREAK.test(readme.at(-1) ?? '')) lines.pop();
  if (lines.length === 0 || lines[0] !== '---') return { card: new Map() };
  const body: string[] = [];
  for (const line of lines.slice(1)) {
    if (line === '---') break;
    body.push(line);
  }
  // load_model_card's own fixes before yaml.safe_load: the Norway problem, and tabs as two spaces.
  const text = `${body.join('\n')}\n`.replaceAll('- no\n', '- "no"\n').replaceAll('\t', '  ');
  return parseYamlSubset(text.split('\n').slice(0, -1));
}

/** A scalar, or `undefined` where YAML would read it as something else than a string or null (or it is not plain enough to tell). */
function scalar(raw: string): CardValue | undefined {
  let v = raw.replace(/\s+#.*$/, '').trim();
  if (v === '' || v === '~' || /^(null|Null|NULL)$/.test(v)) return null;
  if (v.startsWith("'")) {
    const m = /^'((?:[^']|'')*)'$/.exec(v);
    return m ? m[1].replace(/''/g, "'") : undefined;
  }
  if (v.startsWith('"')) {
    const m = /^"((?:[^"\\]|\\["\\/])*)"$/.exec(v);
    return m ? m[1].replace(/\\(["\\/])/g, '$1') : undefined;
  }
  if (v.startsWith('[')) {
    if (!v.endsWith(']') || /[[\]{}]/.test(v.slice(1, -1))) return undefined;
    const inner = v.slice(1, -1).trim();
    if (inner === '') return [];
    const items = inner.split(',').map((x) => scalar(x));
    return items.some((x) => typeof x !== 'string') ? undefined : (items as string[]);
  }
  // A plain scalar YAML 1.1 may read as a number, bool, date or other node: not taken.
  if (/^[-?:,[\]{}#&*!|>'"%@`]/.test(v) && !/^-[^\s]/.test(v)) return undefined;
  if (/^[-+]?[\d.]/.test(v) || /^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/.test(v)) return undefined;
  if (/:\s|:$/.test(v)) return undefined;
  return v;
}

function parseYamlSubset(lines: readonly string[]): { card: Card } | { why: string } {
  const card: Card = new Map();
  const ignorable = (l: string) => /^\s*(#.*)?$/.test(l);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (ignorable(line)) continue;
    const m = /^([A-Za-z_][\w.-]*)\s*:(?:\s+(.*))?$/.exec(line);
    if (!m) {
      if (/^\S/.test(line)) return { why: `README.md front matter line ${i + 2} ("${line.slice(0, 60)}") is not a plain "key: value"` };
      continue;
    }
    const [, key, rest] = m;
    // The lines that belong to this key: indented ones, and `- item` lines at the key's own column.
    const own: string[] = [];
    while (i + 1 < lines.length && (ignorable(lines[i + 1]) || /^\s/.test(lines[i + 1]) || /^-(\s|$)/.test(lines[i + 1]))) own.push(lines[++i]);
    if (!USED.has(key)) continue;
    const items = own.filter((l) => !ignorable(l));
    const bad = `README.md front matter "${key}" is not a plain string or list of strings`;
    if (rest !== undefined && rest.replace(/\s+#.*$/, '').trim() !== '') {
      const v = scalar(rest);
      if (v === undefined || items.length > 0) return { why: bad };
      if (Array.isArray(v) && SCALAR_KEYS.includes(key)) return { why: bad };
      card.set(key, v);
      continue;
    }
    if (items.length === 0) {
      card.set(key, null);
      continue;
    }
    const indent = /^\s*/.exec(items[0])![0].length;
    const list: string[] = [];
    for (const item of items) {
      const im = /^(\s*)-(?:\s+(.*))?$/.exec(item);
      if (!im || im[1].length !== indent) return { why: bad };
      const v = scalar(im[2] ?? '');
      if (typeof v !== 'string') return { why: bad };
      list.push(v);
    }
    if (SCALAR_KEYS.includes(key)) return { why: bad };
    card.set(key, list);
  }
  return { card };
}
