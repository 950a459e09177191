/**
 * JSON configs, shard indexes and JSON in safetensors metadata (kohya's ss_network_args, diffusers'
 * lora_adapter_metadata, ComfyUI's _quantization_metadata) from the internet, parsed only once they
 * are known to be of a sane shape: JSON.parse on 30 MB of `[[[[…` or of a million-element array
 * builds gigabytes before any field can be checked. One linear pass counts nesting and values first.
 */
import { MergeError, type MergeErrorCode } from '../errors.js';
import { MAX_CONFIG_NESTING, MAX_CONFIG_VALUES } from '../limits.js';
import { FOREIGN_SNIFF_BYTES, foreignFileKind } from './foreign-file.js';

/** JSON.parse(text), after checking nesting depth and value count against limits.ts. */
export function parseBoundedJson(text: string, file: string, code: MergeErrorCode = 'BAD_CONFIG'): unknown {
  // Python's json refuses it too ("Unexpected UTF-8 BOM"), so PEFT and transformers cannot load the
  // file; JSON.parse's own message showed the invisible character and nothing else.
  if (text.charCodeAt(0) === 0xfeff) {
    throw new MergeError(code, `${file}: starts with a byte-order mark (U+FEFF), which Python's json (PEFT, transformers) refuses; save it as UTF-8 without one`);
  }
  checkJsonBounds(text, file);
  try {
    return parsePythonJson(text);
  } catch (e) {
    // An empty file, a login page or a Git LFS pointer is what an interrupted or mistaken download
    // leaves; JSON.parse's "Unexpected token '<'" says neither that nor what to do.
    const kind = text.trim() === '' ? 'empty, not JSON (an interrupted download?): download the file again'
      : foreignFileKind(new TextEncoder().encode(text.slice(0, FOREIGN_SNIFF_BYTES)), 'json');
    throw new MergeError(code, `${file}: ${kind ?? `not valid JSON (${(e as Error).message})`}`, { cause: e });
  }
}

/**
 * JSON.parse, accepting as Python's json.loads does (json.dumps writes them) the bare literals
 * `NaN`, `Infinity` and `-Infinity` outside strings: a config saved from a float that was NaN still
 * loads in PEFT and transformers, and the field checks then judge the value where it matters.
 */
function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const replaced = replaceNonFiniteLiterals(text);
    if (replaced === undefined) throw e;
    // A NaN becomes a string no key or value of the text holds, turned back into NaN as it is read.
    return JSON.parse(replaced.text, (_key, v: unknown) => (v === replaced.nan ? Number.NaN : v));
  }
}

/**
 * The text with each bare NaN, Infinity or -Infinity outside strings replaced by JSON that parses
 * to it (Infinity as 1e999, which JSON.parse reads as Infinity; NaN as a unique string); undefined
 * when there is none. Any other bare word is left for JSON.parse to refuse.
 */
function replaceNonFiniteLiterals(text: string): { text: string; nan: string } | undefined {
  // A string can hold NUL only as the escape \u0000 (JSON.parse refuses it raw), so one of more
  // NULs than the text writes in a row is no string of the text. The longest run is measured in one
  // pass: a hostile config of a long run must not cost a scan per NUL.
  let longest = 0;
  for (const run of text.matchAll(/(?:\\u0000)+/g)) longest = Math.max(longest, run[0].length / 6);
  const nan = `NaN${'\u0000'.repeat(longest + 1)}`;
  const parts: string[] = [];
  let from = 0;
  let found = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      continue;
    }
    const word = text.startsWith('NaN', i) ? 'NaN' : text.startsWith('Infinity', i) ? 'Infinity' : undefined;
    // Only a whole word: `NaNx` or `xNaN` is not Python's literal either.
    if (!word || /[\w.]/.test(text[i - 1] ?? '') || /[\w.]/.test(text[i + word.length] ?? '')) continue;
    parts.push(text.slice(from, i), word === 'NaN' ? JSON.stringify(nan) : '1e999');
    from = i + word.length;
    i = from - 1;
    found = true;
  }
  return found ? { text: parts.join('') + text.slice(from), nan } : undefined;
}

/**
 * A config value as an error quotes it: JSON, but a number as JavaScript reads it (JSON.stringify
 * turns 1e400, read as Infinity, into "null"), and no more than 80 characters of a long one.
 */
export function shownValue(v: unknown): string {
  const text = typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/**
 * Refuses JSON text that nests deeper than MAX_CONFIG_NESTING or holds more than MAX_CONFIG_VALUES
 * values, before anything parses it; `where` names it in the error. Syntax is JSON.parse's to judge.
 */
export function checkJsonBounds(text: string, where: string): void {
  let depth = 0;
  let values = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_CONFIG_NESTING) {
        throw new MergeError('LIMIT_EXCEEDED', `${where}: nests deeper than ${MAX_CONFIG_NESTING} levels (the limit MAX_CONFIG_NESTING); not a config this tool reads`);
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x2c && ++values > MAX_CONFIG_VALUES) {
      throw new MergeError('LIMIT_EXCEEDED', `${where}: holds more than ${MAX_CONFIG_VALUES} values (the limit MAX_CONFIG_VALUES); not a config this tool reads`);
    }
  }
}
