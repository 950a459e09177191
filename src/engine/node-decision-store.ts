/**
 * The Node store of `auto`'s timed decisions: one JSON file in the user's cache folder
 * ($XDG_CACHE_HOME/loramerge, else ~/.cache/loramerge). LORAMERGE_BACKEND_CACHE=refresh times
 * again and rewrites it, =off neither reads nor writes it.
 */
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MAX_DOCUMENT_CHARS, type DecisionCacheMode, type DecisionStore } from './backend-decision-cache.js';

export function decisionCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec ignores relative paths.
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'loramerge');
}

export function decisionCacheMode(env: NodeJS.ProcessEnv = process.env): DecisionCacheMode {
  const v = env.LORAMERGE_BACKEND_CACHE?.trim().toLowerCase();
  return v === 'refresh' ? 'refresh' : v === 'off' || v === '0' || v === 'no' ? 'off' : 'use';
}

export function nodeDecisionStore(dir: string = decisionCacheDir()): DecisionStore {
  const file = join(dir, 'backend-decisions.json');
  return {
    async load() {
      // Non-blocking, so a FIFO put in its place cannot hang the merge; only a small regular file is read.
      const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
      if (!handle) return undefined;
      try {
        const s = await handle.stat();
        if (!s.isFile() || s.size > MAX_DOCUMENT_CHARS) return undefined;
        const buf = Buffer.alloc(s.size);
        const { bytesRead } = await handle.read(buf, 0, s.size, 0);
        return buf.subarray(0, bytesRead).toString('utf8');
      } finally {
        await handle.close();
      }
    },
    async save(text) {
      await mkdir(dir, { recursive: true });
      // A new file renamed over the old: readers never see half a document, and a symlink there is replaced, not followed.
      const tmp = `${file}.${process.pid}.${Date.now().toString(36)}.tmp`;
      try {
        await writeFile(tmp, text, { mode: 0o644, flag: 'wx' });
        await rename(tmp, file);
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
    },
  };
}
