/**
 * Runs in the merge and job workers: the bytes the base's reading took when it was picked (its headers, its
 * configs; the same for each adapter a job reads on pick), served again to the plan, the checks and the merge that follow, so a base's headers
 * are read from disk once, not once on pick and again by each plan (hundreds of shards, or a
 * GGUF's metadata of tens of MB, are seconds each time).
 * Only the same file is served: the same File the page picked (a File crosses to the worker as a
 * new object each time, so the page names each of its Files by a key), with the same size and
 * modification time. A read not made on pick goes to the file as before.
 */
import type { ByteSource, InputFileSet } from '../src/index.js';
import type { PickedFile } from './worker-protocol.js';

/** More than this many bytes of one base are not kept (a read past it goes to the file again). */
const MAX_KEPT_BYTES = 64 * 1024 * 1024;

interface KeptFile {
  key: number;
  size: number;
  lastModified: number;
  /** Bytes by `offset:length`, as the reading asked for them. */
  reads: Map<string, Uint8Array>;
  text?: string;
}

/** Per slot (the merge's base; extract's base and fine-tuned model; each job adapter), the last model read on pick: what each of its files gave, by path. */
const kept = new Map<string, { files: Map<string, KeptFile>; bytes: number }>();

/** Adapters' slots (adapterSlot) together keep at most this many bytes: the oldest read go first. */
const MAX_KEPT_ADAPTER_BYTES = 64 * 1024 * 1024;

/**
 * The slot of an adapter picked for a job: its Files' keys, so the job reads through what the
 * reading on pick kept of those very Files (an adapter is its own slot: combine holds several).
 */
export function adapterSlot(files: readonly PickedFile[]): string | undefined {
  return files.every((f) => f.key !== undefined) ? `adapter:${files.map((f) => f.key).join(',')}` : undefined;
}

/** Keeps `recording` in `slot`; adapters' slots past MAX_KEPT_ADAPTER_BYTES dropped oldest first. */
function keepIn(slot: string, recording: { files: Map<string, KeptFile>; bytes: number }): void {
  kept.delete(slot); // (re-inserted last: the newest)
  kept.set(slot, recording);
  const adapters = [...kept].filter(([name]) => name.startsWith('adapter:'));
  let bytes = adapters.reduce((n, [, r]) => n + r.bytes, 0);
  for (const [name, r] of adapters) {
    if (bytes <= MAX_KEPT_ADAPTER_BYTES || name === slot) break;
    kept.delete(name);
    bytes -= r.bytes;
  }
}

/** The kept file for `picked` in `slot`, where it is the very file read on pick and unchanged. */
function keptFor(slot: string, picked: PickedFile | undefined): KeptFile | undefined {
  if (!picked || picked.key === undefined) return undefined;
  const file = kept.get(slot)?.files.get(picked.path);
  const same = file && file.key === picked.key && file.size === picked.file.size && file.lastModified === picked.file.lastModified;
  return same ? file : undefined;
}

/**
 * `set` (a model's files as picked) reading through what the pick's reading kept in `slot`.
 * `record`: this is the pick's own reading; what it reads is kept (in place of the slot's model
 * kept before) once `keep()` is called, after it succeeded.
 */
export function reusingHeaders(set: InputFileSet, picked: readonly PickedFile[], record = false, slot = 'base'): { files: InputFileSet; keep(): void } {
  const byPath = new Map(picked.map((f) => [f.path, f]));
  const recording = { files: new Map<string, KeptFile>(), bytes: 0 };
  const entry = (path: string): KeptFile | undefined => {
    const file = byPath.get(path);
    if (!record) return keptFor(slot, file);
    if (!file || file.key === undefined) return undefined;
    let made = recording.files.get(path);
    if (!made) {
      made = { key: file.key, size: file.file.size, lastModified: file.file.lastModified, reads: new Map() };
      recording.files.set(path, made);
    }
    return made;
  };
  const files: InputFileSet = {
    name: set.name,
    ...(set.namesFolder && { namesFolder: true }),
    list: () => set.list(),
    open: async (path) => wrapSource(await set.open(path), entry(path), record ? recording : undefined),
    readText: async (path) => {
      const file = entry(path);
      if (!record && file?.text !== undefined) return file.text;
      const text = await set.readText(path);
      if (record && file && recording.bytes + text.length <= MAX_KEPT_BYTES) {
        file.text = text;
        recording.bytes += text.length;
      }
      return text;
    },
    ...(set.fileName ? { fileName: (path: string) => set.fileName!(path) } : {}),
  };
  return { files, keep: () => { if (record) keepIn(slot, recording); } };
}

/** `source`, its reads served from (or, recording, kept in) `file`'s. */
function wrapSource(source: ByteSource, file: KeptFile | undefined, recording: { bytes: number } | undefined): ByteSource {
  if (!file) return source;
  return {
    name: source.name,
    size: source.size,
    read: async (offset, length, into) => {
      const at = `${offset}:${length}`;
      const known = recording ? undefined : file.reads.get(at);
      // A copy each time: whoever reads may write over or hand on the memory it is given.
      if (known) return into && into.byteLength === length ? (into.set(known), into) : known.slice();
      const bytes = await source.read(offset, length, into);
      if (recording && recording.bytes + length <= MAX_KEPT_BYTES && !file.reads.has(at)) {
        file.reads.set(at, bytes.slice());
        recording.bytes += length;
      }
      return bytes;
    },
    close: () => source.close(),
  };
}
