/**
 * What the bench cases that also run alone (bench/fp8-run.mjs, bench/fp4-run.mjs) need outside
 * bench/run.mjs: a Node child started with the RSS preload, and a file's SHA-256 for comparing outputs.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * runNode(script, args, cwd) for a bench run alone: the child's wall seconds, its peak RSS (MiB) and
 * CPU usage as bench/rss-preload.mjs records them, and its stderr; a non-zero exit rejects with it.
 */
export function standaloneRunNode(root) {
  const preload = pathToFileURL(join(root, 'bench', 'rss-preload.mjs')).href;
  return async (script, args, cwd) => {
    // A tag per run, so children started together never share a record file.
    const tag = Math.random().toString(36).slice(2);
    const rssFile = join(cwd, `rss-${tag}`), usageFile = join(cwd, `usage-${tag}`);
    const t0 = performance.now();
    const stderr = await new Promise((done, fail) => {
      const child = spawn(process.execPath, ['--import', preload, script, ...args], { cwd, env: { ...process.env, LORAMERGE_BENCH_RSS_FILE: rssFile, LORAMERGE_BENCH_USAGE_FILE: usageFile }, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.on('close', (code) => (code === 0 ? done(err) : fail(new Error(`${script} exited ${code}: ${err}`))));
    });
    const seconds = (performance.now() - t0) / 1000;
    const rssMiB = Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) / 1024;
    const usage = JSON.parse(await readFile(usageFile, 'utf8'));
    await rm(rssFile, { force: true });
    await rm(usageFile, { force: true });
    return { seconds, rssMiB, usage, stderr };
  };
}

/** A file's SHA-256 (hex), read as a stream. */
export async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}
