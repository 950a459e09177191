/**
 * Where `auto` keeps the backends it timed, so that each machine and adapter is timed once. The
 * store holds one small JSON document; anything in it that is not exactly what this module writes
 * (truncated, hand-edited, hostile, too big) is ignored and rewritten on the next save. Losing the
 * cache only costs a timing run, so every failure to read or write it is silent.
 */

/** The document's text, wherever it lives (a file in Node, localStorage in a page). */
export interface DecisionStore {
  /** The stored text, or undefined when there is none (or it cannot be read). */
  load(): Promise<string | undefined>;
  /** Replaces the stored text. */
  save(text: string): Promise<void>;
}

/** One timed decision. */
export interface CachedDecision {
  backend: 'cpu' | 'webgpu';
  cpuMs: number;
  gpuMs: number;
  /** When it was timed (ms since the epoch). */
  at: number;
}

/** `use` reads and writes; `refresh` times again and rewrites; `off` neither reads nor writes. */
export type DecisionCacheMode = 'use' | 'refresh' | 'off';

const FORMAT = 'loramerge backend decisions 1';
/** Bigger than any document this module writes (MAX_ENTRIES short entries). */
export const MAX_DOCUMENT_CHARS = 64 * 1024;
const MAX_ENTRIES = 64;
const MAX_KEY_CHARS = 1024;

function validEntry(v: unknown): v is CachedDecision {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const e = v as Record<string, unknown>;
  const finite = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  return (e.backend === 'cpu' || e.backend === 'webgpu') && finite(e.cpuMs) && finite(e.gpuMs) && finite(e.at);
}

/** The valid entries of a document, oldest first; an invalid document has none. */
export function parseDecisions(text: string | undefined): Map<string, CachedDecision> {
  const out = new Map<string, CachedDecision>();
  if (typeof text !== 'string' || text.length > MAX_DOCUMENT_CHARS) return out;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return out;
  }
  if (typeof doc !== 'object' || doc === null || (doc as { format?: unknown }).format !== FORMAT) return out;
  const entries = (doc as { entries?: unknown }).entries;
  if (!Array.isArray(entries)) return out;
  for (const item of entries.slice(-MAX_ENTRIES)) {
    if (!Array.isArray(item) || item.length !== 2) continue;
    const [key, value] = item as [unknown, unknown];
    if (typeof key !== 'string' || key.length > MAX_KEY_CHARS || !validEntry(value)) continue;
    out.set(key, { backend: value.backend, cpuMs: value.cpuMs, gpuMs: value.gpuMs, at: value.at });
  }
  return out;
}

export function formatDecisions(entries: Map<string, CachedDecision>): string {
  const list = [...entries].slice(-MAX_ENTRIES);
  return JSON.stringify({ format: FORMAT, entries: list }, null, 1) + '\n';
}

/** The decision kept for `key`, if the store holds a valid one. */
export async function readDecision(store: DecisionStore, key: string): Promise<CachedDecision | undefined> {
  try {
    return parseDecisions(await store.load()).get(key);
  } catch {
    return undefined;
  }
}

/** Keeps `decision` under `key`, with the store's other valid entries (the newest MAX_ENTRIES). */
export async function writeDecision(store: DecisionStore, key: string, decision: CachedDecision): Promise<void> {
  if (key.length > MAX_KEY_CHARS) return;
  try {
    let entries: Map<string, CachedDecision>;
    try {
      entries = parseDecisions(await store.load());
    } catch {
      entries = new Map();
    }
    entries.delete(key); // re-inserted last: the newest survive the cap
    entries.set(key, decision);
    await store.save(formatDecisions(entries));
  } catch {
    // A cache that cannot be written costs one timing run next time, nothing else.
  }
}

/** The page's store: localStorage where the context has it (a window, not a worker). */
export function localStorageDecisionStore(): DecisionStore | undefined {
  // Node's own localStorage (an experimental global) warns when touched: Node keeps a file instead.
  if ((globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node) return undefined;
  let storage: Storage | undefined;
  try {
    storage = (globalThis as { localStorage?: Storage }).localStorage;
  } catch {
    return undefined; // access denied (e.g. storage blocked for the site)
  }
  if (!storage) return undefined;
  const name = 'loramerge.backend-decisions';
  return {
    load: async () => storage.getItem(name) ?? undefined,
    save: async (text) => storage.setItem(name, text),
  };
}
