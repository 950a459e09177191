/**
 * One refusal seen from both sides: the built CLI's one `error:` line (no stack, nothing left in the
 * output's folder) and the library's one message for the same inputs.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import type { MergeBackend } from '../../src/index.js';
import { listDir, mergeFolders } from './cli.js';
import { refusalsInMemory } from './merge-backends.js';

export async function expectRefusedByCliAndLibrary(
  makeDir: (files: Record<string, Uint8Array | string>) => string, backend: MergeBackend,
  base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>, message: RegExp,
): Promise<void> {
  const { run, out, lines } = await mergeFolders(makeDir, base, adapter);
  expect(run.code).not.toBe(0);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(message);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(listDir(join(out, '..'))).toEqual(['adapter', 'base']);
  const refusals = await refusalsInMemory({ backend, base, adapters: [{ files: adapter }] });
  expect(refusals).toHaveLength(1);
  expect(refusals[0]).toMatch(message);
}
