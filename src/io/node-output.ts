/**
 * Where a CLI merge writes (Node only): one file, or a folder of files. Everything is written under
 * temporary dot-names beside --out and renamed into place on commit(); abort() deletes them, so a
 * failed or cancelled merge leaves nothing at or beside --out.
 *
 * Existing outputs:
 *   - kind 'file': an existing file at --out is replaced (atomically, by rename) only on commit.
 *   - kind 'folder': a missing or empty folder is fine; a non-empty one is refused (OUTPUT_EXISTS)
 *     unless `overwrite` is set, in which case it is replaced as a whole on commit (never merged
 *     into: stale shards from an older merge would otherwise mix with the new ones).
 *   - anything of the other kind at --out (a folder for 'file', a file for 'folder') is refused.
 * The output may not be an input, lie inside an input folder, or contain an input (OUTPUT_IS_INPUT);
 * paths are compared after resolving links.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { MergeError } from '../errors.js';
import type { ByteSink, OutputTarget } from './types.js';

/** Whether the output is one file or a folder. */
export type NodeOutputKind = 'file' | 'folder';

/** Options of {@link createNodeOutputTarget}. */
export interface NodeOutputOptions {
  /** Replace a non-empty output folder on commit instead of refusing it. */
  overwrite?: boolean;
}

/** An OutputTarget on disk that commits by rename (Node only); see the module comment for existing outputs. */
export async function createNodeOutputTarget(
  outPath: string,
  kind: NodeOutputKind,
  inputs: readonly string[],
  options: NodeOutputOptions = {},
): Promise<OutputTarget> {
  const out = resolve(outPath);
  const parent = dirname(out);
  const parentInfo = await stat(parent).catch(() => undefined);
  if (!parentInfo?.isDirectory()) throw new MergeError('NOT_FOUND', `${outPath}: folder ${parent} does not exist`);
  await refuseInputOverlap(outPath, await realOutputPath(out), inputs);
  const existing = await stat(out).catch(() => undefined);
  let replaceFolder = false;
  if (existing) {
    if (kind === 'file' && !existing.isFile()) {
      throw new MergeError('OUTPUT_EXISTS', `${outPath}: exists and is not a file; choose another output path`);
    }
    if (kind === 'folder') {
      if (!existing.isDirectory()) throw new MergeError('OUTPUT_EXISTS', `${outPath}: exists and is not a folder`);
      const empty = (await readdir(out)).length === 0;
      if (!empty && !options.overwrite) {
        throw new MergeError('OUTPUT_EXISTS', `${outPath}: folder exists and is not empty; remove it or allow overwriting`);
      }
      replaceFolder = true;
    }
  }
  return kind === 'file' ? new NodeFileOutput(outPath, out) : new NodeFolderOutput(outPath, out, replaceFolder);
}

/** The real path --out will have: its own if it exists, else its real parent plus its name. */
async function realOutputPath(out: string): Promise<string> {
  try {
    return await realpath(out);
  } catch {
    return join(await realpath(dirname(out)), basename(out));
  }
}

async function refuseInputOverlap(outName: string, realOut: string, inputs: readonly string[]): Promise<void> {
  for (const input of inputs) {
    const realIn = await realpath(input).catch(() => resolve(input));
    const inside = (child: string, folder: string) => child.startsWith(folder.endsWith(sep) ? folder : folder + sep);
    if (realOut === realIn || inside(realOut, realIn) || inside(realIn, realOut)) {
      throw new MergeError('OUTPUT_IS_INPUT', `${outName}: output would overwrite input ${input}; choose another output path`);
    }
  }
}

function tempName(finalPath: string, suffix: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.loramerge-${randomBytes(6).toString('hex')}.${suffix}`);
}

/** One file being written; close() flushes it to disk. */
class NodeFileSink implements ByteSink {
  closed = false;
  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: write after close`);
    let done = 0;
    while (done < chunk.byteLength) {
      const { bytesWritten } = await this.handle.write(chunk, done, chunk.byteLength - done);
      done += bytesWritten;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.handle.sync();
    await this.handle.close();
    this.closed = true;
  }

  /** For abort: release the handle whatever state it is in. */
  async release(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close().catch(() => undefined);
  }
}

async function openSink(path: string, name: string): Promise<NodeFileSink> {
  try {
    return new NodeFileSink(path, await open(path, 'wx'));
  } catch (e) {
    throw new MergeError('BAD_ARGUMENT', `${name}: cannot create output file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
}

abstract class NodeOutput implements OutputTarget {
  protected readonly sinks: NodeFileSink[] = [];
  protected state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(readonly name: string) {}

  abstract createFile(path: string): Promise<ByteSink>;
  protected abstract moveIntoPlace(): Promise<void>;
  protected abstract removeTemporaries(): Promise<void>;

  async commit(): Promise<void> {
    this.requireOpen();
    const unfinished = this.sinks.find((s) => !s.closed);
    if (unfinished) throw new Error(`${unfinished.path}: still being written, cannot commit`);
    await this.moveIntoPlace();
    this.state = 'committed';
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await Promise.all(this.sinks.map((s) => s.release()));
    await this.removeTemporaries();
  }

  protected requireOpen(): void {
    if (this.state !== 'open') throw new Error(`${this.name}: output already ${this.state}`);
  }
}

/** --out is a single file: the one createFile() call writes it, whatever path it names. */
class NodeFileOutput extends NodeOutput {
  private readonly temp: string;

  constructor(name: string, private readonly out: string) {
    super(name);
    this.temp = tempName(out, 'tmp');
  }

  async createFile(_path: string): Promise<ByteSink> {
    this.requireOpen();
    if (this.sinks.length > 0) throw new Error(`${this.name}: a single-file output holds one file`);
    const sink = await openSink(this.temp, this.name);
    this.sinks.push(sink);
    return sink;
  }

  protected async moveIntoPlace(): Promise<void> {
    if (this.sinks.length === 0) throw new Error(`${this.name}: nothing was written`);
    await rename(this.temp, this.out);
  }

  protected removeTemporaries(): Promise<void> {
    return rm(this.temp, { force: true });
  }
}

/** --out is a folder: files go into a temporary sibling folder, renamed to --out on commit. */
class NodeFolderOutput extends NodeOutput {
  private readonly temp: string;
  private created = false;
  private readonly paths = new Set<string>();

  constructor(
    name: string,
    private readonly out: string,
    private readonly replaceExisting: boolean,
  ) {
    super(name);
    this.temp = tempName(out, 'tmp');
  }

  async createFile(path: string): Promise<ByteSink> {
    this.requireOpen();
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\'))) {
      throw new Error(`${this.name}: invalid output file path "${path}"`);
    }
    if (this.paths.has(path)) throw new Error(`${this.name}: "${path}" created twice`);
    this.paths.add(path);
    if (!this.created) {
      await mkdir(this.temp);
      this.created = true;
    }
    const full = join(this.temp, ...parts);
    if (parts.length > 1) await mkdir(dirname(full), { recursive: true });
    const sink = await openSink(full, `${this.name}/${path}`);
    this.sinks.push(sink);
    return sink;
  }

  protected async moveIntoPlace(): Promise<void> {
    if (!this.created) await mkdir(this.temp);
    this.created = true;
    if (!this.replaceExisting) {
      await rename(this.temp, this.out);
      return;
    }
    // Move the old folder aside first so that at every moment --out is either old or new, whole.
    const old = tempName(this.out, 'old');
    await rename(this.out, old);
    try {
      await rename(this.temp, this.out);
    } catch (e) {
      await rename(old, this.out);
      throw e;
    }
    await rm(old, { recursive: true, force: true });
  }

  protected async removeTemporaries(): Promise<void> {
    if (this.created) await rm(this.temp, { recursive: true, force: true });
  }
}
