/**
 * The merged folder's files other than weights: the base's, copied as they are, except config.json
 * when the merge changes what it says (plan/model-folder.ts) and tokenizer files an adapter folder
 * carries, which take the place of the base's (and of a base chat template that would override theirs).
 */
import type { FloatDType } from '../dtype.js';
import { throwIfAborted } from '../errors.js';
import { jsonNumberTexts, jsonPath, numberOfText } from '../formats/json-number-texts.js';
import { rewriteModelConfig } from '../formats/model-config-output.js';
import { copyInputFile } from '../io/copy-file.js';
import type { OutputTarget } from '../io/types.js';
import type { PreparedMerge } from './prepare-merge.js';

/** Writes them all; returns their paths. `dtype`: what most written tensors are in. */
export async function writeModelFiles(
  prepared: PreparedMerge, output: OutputTarget, dtype: FloatDType | undefined, signal?: AbortSignal,
): Promise<string[]> {
  const folder = prepared.modelFolder;
  const written: string[] = [];
  const fromAdapter = new Map<string, string>();
  folder.tokenizer?.names.forEach((name, i) => fromAdapter.set(name, folder.tokenizer!.paths[i]));
  for (const path of prepared.base.otherFiles) {
    throwIfAborted(signal);
    if (fromAdapter.has(path) || folder.tokenizer?.leftOut?.includes(path)) continue;
    const widened = folder.widened?.find((c) => c.path === path);
    if (widened) {
      await writeJson(output, path, rewriteModelConfig(widened.raw, widened.changes), await prepared.baseFiles.readText(path));
    } else if (folder.config && path === folder.config.path) {
      await writeJson(output, path, rewriteModelConfig(folder.config.raw, { ...folder.changes, ...(dtype ? { dtype } : {}) }), await prepared.baseFiles.readText(path));
    } else {
      await copyInputFile(prepared.baseFiles, path, output);
    }
    written.push(path);
  }
  for (const [name, source] of fromAdapter) {
    throwIfAborted(signal);
    await copyInputFile(folder.tokenizer!.files, source, output, name);
    written.push(name);
  }
  return written;
}

/**
 * A rewritten config, as transformers and diffusers write theirs (two-space indent, final newline),
 * each number left as `original` wrote it where the rewrite kept its value.
 */
async function writeJson(output: OutputTarget, path: string, value: unknown, original: string): Promise<void> {
  const sink = await output.createFile(path);
  await sink.write(new TextEncoder().encode(pythonJson(value, '', [], jsonNumberTexts(original)) + '\n'));
  await sink.close();
}

/**
 * JSON.stringify(value, null, 2), but a number written as the base's config wrote it where it
 * still has that value (`texts`, by jsonPath), and a NaN or an infinite number as Python's
 * json.dumps writes it (`NaN`, `Infinity`, `-Infinity`), as transformers reads it back:
 * JSON.stringify turned such a field into null, another value.
 */
function pythonJson(value: unknown, indent: string, path: (string | number)[], texts: ReadonlyMap<string, string>): string {
  if (typeof value === 'number') {
    const text = texts.get(jsonPath(path));
    if (text !== undefined && Object.is(numberOfText(text), value)) return text;
    return Number.isFinite(value) ? JSON.stringify(value) : Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
  }
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    return value.length === 0 ? '[]' : `[\n${value.map((v, i) => inner + pythonJson(v, inner, [...path, i], texts)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? '{}' : `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pythonJson(v, inner, [...path, k], texts)}`).join(',\n')}\n${indent}}`;
}
