/**
 * Checks of what plain-JavaScript callers pass to the library's entry points, made before any file
 * is opened: a wrong type, a number that is none, an unknown option name (most likely a typo, which
 * would otherwise be ignored without a word) is a BAD_ARGUMENT MergeError naming the argument and
 * what to pass instead, never a TypeError from deep inside or an option silently dropped.
 */
import { MergeError } from './errors.js';
import { MAX_THREADS } from './limits.js';
import type { InputFileSet, OutputTarget } from './io/types.js';
import type { ImportanceMatrix } from './formats/gguf/imatrix.js';

/** A MergeError of code BAD_ARGUMENT. */
export function badArgument(message: string): MergeError {
  return new MergeError('BAD_ARGUMENT', message);
}

/** A value as a message shows it: `the string "0.8"`, `null`, `NaN`, `a Blob`, `an array`… */
export function shown(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)}`;
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : `the number ${String(value)}`;
  if (typeof value === 'bigint') return `the bigint ${String(value)}n`;
  if (typeof value === 'boolean' || typeof value === 'symbol') return `${typeof value} ${String(value)}`;
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (typeof File !== 'undefined' && value instanceof File) return 'a File';
  if (typeof Blob !== 'undefined' && value instanceof Blob) return 'a Blob';
  if (value instanceof URL) return `the URL ${value.href}`;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== 'Object' && name !== '' ? `a ${name}` : 'an object';
}

/** Edit distance of two short strings (insertions, deletions, substitutions): how far a typed name is from a real one. */
export function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length];
}

/** The valid name `key` is most likely a typo of: a few edits away, or one that starts the other. */
export function nearestName(key: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of names) {
    const d = editDistance(key.toLowerCase(), name.toLowerCase());
    const prefix = Math.min(key.length, name.length) >= 3
      && (key.toLowerCase().startsWith(name.toLowerCase()) || name.toLowerCase().startsWith(key.toLowerCase()));
    const score = prefix ? Math.min(d, 1) : d;
    if (score < bestDistance) [best, bestDistance] = [name, score];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/**
 * `options` must be a plain object whose set keys (not undefined) are all in `known`. An unknown
 * one is refused naming it and the valid one it is nearest to, or `hints[key]` where a name is
 * often guessed (`weights` for the per-adapter `weight`).
 */
export function checkOptions(what: string, options: unknown, known: readonly string[], hints: Readonly<Record<string, string>> = {}): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw badArgument(`${what} must be an object of options ({ ${known.join(', ')} }), not ${shown(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (known.includes(key) || (options as Record<string, unknown>)[key] === undefined) continue;
    const hint = Object.hasOwn(hints, key) ? hints[key] : undefined;
    const near = nearestName(key, known);
    const instead = hint ?? (near ? `did you mean "${near}"?` : `the options are ${known.join(', ')}`);
    throw badArgument(`${what}: unknown option "${key}"; ${instead}`);
  }
}

/** An AbortSignal (or one from another realm or a polyfill: `aborted` and `addEventListener`). */
export function checkSignal(what: string, signal: unknown): asserts signal is AbortSignal | undefined {
  if (signal === undefined) return;
  const s = signal as { aborted?: unknown; addEventListener?: unknown } | null;
  if (typeof s !== 'object' || s === null || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw badArgument(`${what} must be an AbortSignal (abortController.signal), not ${shown(signal)}`);
  }
}

/** A function or nothing (callbacks such as onProgress). */
export function checkCallback(what: string, callback: unknown): void {
  if (callback !== undefined && typeof callback !== 'function') throw badArgument(`${what} must be a function, not ${shown(callback)}`);
}

/** An adapter's weight: a finite number or nothing (then 1). */
export function checkWeight(what: string, weight: unknown): void {
  if (weight === undefined) return;
  if (typeof weight !== 'number' || !Number.isFinite(weight)) {
    const hint = typeof weight === 'string' && Number.isFinite(Number(weight)) && weight.trim() !== '' ? ` (write ${Number(weight)}, without quotes)` : '';
    throw badArgument(`${what} must be a finite number (default 1; negative subtracts), not ${shown(weight)}${hint}`);
  }
}

/** An adapter's oneTrainerCoft: false, true, a coft_eps above 0, or nothing. */
export function checkOneTrainerCoft(what: string, coft: unknown): void {
  if (coft === undefined || typeof coft === 'boolean' || (typeof coft === 'number' && Number.isFinite(coft) && coft > 0)) return;
  throw badArgument(`${what} must be false (COFT off), true (on at OneTrainer's default coft_eps 1e-4) or a coft_eps above 0, not ${shown(coft)}`);
}

/** A count (of threads, a limit in bytes): a positive integer, or nothing (then the default). */
export function checkPositiveInteger(what: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)) {
    throw badArgument(`${what} must be a positive integer, not ${shown(value)}`);
  }
}

/** A count of CPU threads: a positive integer up to MAX_THREADS, or nothing (then the default). */
export function checkThreadCount(what: string, threads: unknown): void {
  checkPositiveInteger(what, threads);
  if (typeof threads === 'number' && threads > MAX_THREADS) {
    throw badArgument(`${what} is ${threads}; at most ${MAX_THREADS} (the limit MAX_THREADS: each thread adds about 14 MiB, started at once)`);
  }
}

/** One of `choices` (a string), or nothing. */
export function checkChoice(what: string, value: unknown, choices: readonly string[]): void {
  if (value === undefined || (typeof value === 'string' && choices.includes(value))) return;
  const near = typeof value === 'string' ? nearestName(value.trim(), choices) : undefined;
  throw badArgument(`${what} must be ${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}, not ${shown(value)}${near ? ` (did you mean "${near}"?)` : ''}`);
}

/** An output type name (`f16`, `bf16`, `q8_0`…; the base's container checks which), or nothing. */
export function checkDtypeName(what: string, dtype: unknown): void {
  if (dtype === undefined) return;
  if (typeof dtype !== 'string' || dtype.trim() === '') {
    throw badArgument(`${what} must be a type name such as "f16", "bf16" or "q8_0" (leave it out to keep the base's types), not ${shown(dtype)}`);
  }
}

/** An array with an element in every slot (no holes, no null or undefined); `item` says what each is. */
export function checkList(what: string, list: unknown, item: string): asserts list is readonly unknown[] {
  if (!Array.isArray(list)) {
    const iterable = typeof list === 'object' && list !== null && Symbol.iterator in list;
    const wrap = list === undefined || list === null ? '' : iterable ? ' (spread it into one: [...list])' : ' (wrap a single one in [ ])';
    throw badArgument(`${what} must be an array, each element ${item}${wrap}; not ${shown(list)}`);
  }
  if (list.length === 0) throw badArgument(`${what} is an empty array; give at least one element, ${item}`);
  for (let i = 0; i < list.length; i++) {
    if (!(i in list) || list[i] === undefined || list[i] === null) {
      throw badArgument(`${what}[${i}] is ${i in list ? shown(list[i]) : 'an empty slot'}; each element must be ${item}`);
    }
  }
}

/** Is this an InputFileSet (something with `list` and `open`)? */
export function isInputFileSet(x: unknown): x is InputFileSet {
  return typeof x === 'object' && x !== null && typeof (x as InputFileSet).list === 'function' && typeof (x as InputFileSet).open === 'function';
}

/** An InputFileSet, as the step-by-step API takes its inputs. */
export function checkInputFileSet(what: string, files: unknown): asserts files is InputFileSet {
  if (!isInputFileSet(files) || typeof (files as InputFileSet).readText !== 'function') {
    throw badArgument(`${what} must be an InputFileSet (from blobInputFileSet, inputFileSetFromFiles, urlInputFileSet, memoryInputFileSet or openNodeInputFileSet), not ${shown(files)}`);
  }
}

/** Is this an OutputTarget (createFile, commit, abort)? */
export function isOutputTarget(x: unknown): x is OutputTarget {
  const t = x as OutputTarget | null;
  return typeof t === 'object' && t !== null && typeof t.createFile === 'function' && typeof t.commit === 'function' && typeof t.abort === 'function';
}

/** Is this a File System Access handle of the given kind (a picked file or folder, OPFS included)? Judged by the methods used. */
export function isFileSystemHandle(x: unknown, kind: 'file' | 'directory'): boolean {
  const h = x as { kind?: unknown; createWritable?: unknown; getFileHandle?: unknown } | null;
  if (typeof h !== 'object' || h === null || (h.kind !== undefined && h.kind !== kind)) return false;
  return kind === 'file' ? typeof h.createWritable === 'function' : typeof h.getFileHandle === 'function';
}

/** A Blob, or something read like one (a size and `slice`). */
export function isBlobLike(x: unknown): x is Blob {
  if (typeof Blob !== 'undefined' && x instanceof Blob) return true;
  return typeof x === 'object' && x !== null && typeof (x as Blob).size === 'number' && typeof (x as Blob).slice === 'function';
}

/** The scheme of a string that starts with one (`ftp:`, `file:`, `data:`), lower-cased; `c:` of a Windows path is none. */
export function urlScheme(text: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]+):/i.exec(text.trim());
  return m ? m[1].toLowerCase() : undefined;
}

/** The scheme of a `scheme://…` URL (`ftp`, `file`, `http`), lower-cased; none for a path, even one with a colon. */
export function schemeOfUrl(text: string): string | undefined {
  return /^[a-z][a-z0-9+.-]+:\/\//i.test(text.trim()) ? urlScheme(text) : undefined;
}

/** Does this string name a remote file read over HTTP (`http://…`, `https://…`, any case)? A path otherwise, where paths are taken. */
export function isHttpUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/** Refuses an `importance` option that is not what readImportanceMatrix returned (`what` names it). */
export function checkImportanceArgument(what: string, value: unknown): void {
  const importance = value as Partial<ImportanceMatrix> | undefined;
  if (importance !== undefined && (typeof importance !== 'object' || importance === null || !(importance.entries instanceof Map) || typeof importance.file !== 'string')) {
    throw badArgument(`${what} must be what readImportanceMatrix returned, not ${shown(value)}`);
  }
}
