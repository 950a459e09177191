/**
 * The API documentation builds from the library's TSDoc with nothing missing: typedoc (typedoc.json:
 * every exported function, class, interface, type, variable and method documented, links valid,
 * warnings treated as errors) over both entry points, emitting nothing.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

describe('API docs', () => {
  it('document every export of the browser and Node entry points', () => {
    const run = spawnSync(process.execPath, [join(root, 'node_modules/typedoc/bin/typedoc'), '--emit', 'none'], { cwd: root, encoding: 'utf8' });
    const problems = `${run.stdout}${run.stderr}`.split('\n').filter((line) => /\[(warning|error)\]/.test(line));
    expect(problems).toEqual([]);
    expect(run.status).toBe(0);
  }, 180_000);
});
