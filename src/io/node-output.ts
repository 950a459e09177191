/**
 * Where a CLI merge writes (Node only): one file, or a folder of files. Everything is written under
 * temporary names (`.loramerge-<pid>-<random>.tmp`, see temp-files.ts) and moved into place on
 * commit(); abort() deletes them, so a failed or cancelled merge leaves nothing at or beside --out.
 * A lock file (output-lock.ts) keeps a second merge from writing the same output at the same time.
 *
 * What --out may be:
 *   - kind 'file': a new file, or an existing one, replaced (atomically, by rename) only on commit.
 *     `--out DIR/` (a trailing separator) names a folder: the file keeps the base's file name there,
 *     and DIR is created on commit if it does not exist.
 *   - kind 'folder': a missing or empty folder; a non-empty one is refused (OUTPUT_EXISTS) unless
 *     `overwrite` is set, then it is replaced as a whole on commit (never merged into: stale shards
 *     from an older merge would otherwise mix with the new ones).
 *   - a symbolic link is written through: the file or folder it points to is replaced, the link stays.
 *   - a mount point cannot be renamed over: a folder is filled in place (files still appear only on
 *     commit, each by rename), a file's new content is copied into it on commit.
 *   - never the current folder or one that contains it, an input, a path inside an input folder, or
 *     a folder containing an input or a file an input folder links to: paths compared after
 *     resolving links, then folders and files by device and inode, so that an input, a folder
 *     holding one or an input folder reached under another path (a hard link, a bind mount) is
 *     refused as well.
 * Every filesystem failure is one line naming --out, what went wrong and what to do (fs-errors.ts).
 */
import { checkCallback, checkOptions, shown } from '../api-arguments.js';
import type { BigIntStats } from 'node:fs';
import { constants } from 'node:fs';
import { access, copyFile, lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { MergeError } from '../errors.js';
import { printable } from '../shown-text.js';
import { onPath } from './fs-errors.js';
import { isMountPoint } from './mount-points.js';
import { acquireOutputLock, type OutputLock } from './output-lock.js';
import { isLoramergeEntry, removeStaleTemporaries, temporaryPath } from './temp-files.js';
import { gatherSmallWrites } from './gathered-sink.js';
import type { ByteSink, OutputTarget } from './types.js';

/** Whether the output is one file or a folder. */
export type NodeOutputKind = 'file' | 'folder';

/** Options of {@link createNodeOutputTarget}. */
export interface NodeOutputOptions {
  /** Replace a non-empty output folder on commit instead of refusing it. */
  overwrite?: boolean;
  /** kind 'file' with an --out that names a folder (`out/`): the file name to write in it. */
  fileName?: string;
  /** Runs just before the output is moved into place; a throw aborts the commit (input checks). */
  beforeCommit?: () => Promise<void>;
  /** Things the user should hear about that do not stop the merge (stale temporaries removed). */
  onNotice?: (message: string) => void;
}

/** The longest file name (in bytes) the common file systems accept (ext4, XFS, APFS, NTFS). */
const NAME_MAX_BYTES = 255;

/**
 * An OutputTarget on disk that commits by rename (Node only); see the module comment for existing
 * outputs. `inputs`: the paths given for the inputs and the files read from them
 * (nodeInputFilePaths), none of which the output may replace.
 */
export async function createNodeOutputTarget(
  outPath: string,
  kind: NodeOutputKind,
  inputs: readonly string[],
  options: NodeOutputOptions = {},
): Promise<OutputTarget> {
  if (typeof outPath !== 'string') throw new MergeError('BAD_ARGUMENT', `createNodeOutputTarget: outPath must be a path, not ${shown(outPath)}`);
  if (outPath.trim() === '') throw new MergeError('BAD_ARGUMENT', '--out is empty; name the output file or folder');
  if (kind !== 'file' && kind !== 'folder') throw new MergeError('BAD_ARGUMENT', `createNodeOutputTarget: kind must be file or folder, not ${shown(kind)}`);
  if (!Array.isArray(inputs) || inputs.some((p) => typeof p !== 'string')) {
    throw new MergeError('BAD_ARGUMENT', `createNodeOutputTarget: inputs must be an array of the input paths (none of which the output may replace), not ${shown(inputs)}`);
  }
  checkOptions('createNodeOutputTarget options', options, ['overwrite', 'fileName', 'beforeCommit', 'onNotice']);
  checkCallback('createNodeOutputTarget: beforeCommit', options.beforeCommit);
  checkCallback('createNodeOutputTarget: onNotice', options.onNotice);
  const namesFolder = /[\\/]$/.test(outPath) || /(^|[\\/])\.\.?$/.test(outPath);
  let out = resolve(outPath);
  let createFolder = false;
  if (kind === 'file' && namesFolder) {
    if (!options.fileName) throw new MergeError('BAD_ARGUMENT', `${outPath}: names a folder; give the output file's name`);
    const folder = await followLinks(out);
    const info = await stat(folder).catch(() => undefined);
    if (info && !info.isDirectory()) throw new MergeError('OUTPUT_EXISTS', `${outPath}: exists and is not a folder`);
    createFolder = !info;
    out = join(folder, options.fileName);
  }
  out = await followLinks(out);
  await refuseWorkingFolder(outPath, out);
  const name = outPath;
  const parent = dirname(out);
  const parentInfo = createFolder ? await stat(dirname(parent)).catch(() => undefined) : await stat(parent).catch(() => undefined);
  if (!parentInfo?.isDirectory()) {
    // An --out that cannot be used is a usage error (exit 2), not a failed merge.
    const folder = createFolder ? dirname(parent) : parent;
    throw new MergeError('BAD_ARGUMENT', `${outPath}: folder ${folder} ${parentInfo ? 'is not a folder' : 'does not exist'}; create it or choose another --out`);
  }
  if (Buffer.byteLength(basename(out)) > NAME_MAX_BYTES) {
    throw new MergeError('FILESYSTEM', `${outPath}: the name is longer than ${NAME_MAX_BYTES} bytes, which file systems refuse (ENAMETOOLONG); choose a shorter --out`);
  }
  await refuseInputOverlap(outPath, out, await realOutputPath(out), inputs);

  const existing = await stat(out).catch(() => undefined);
  if (existing) {
    if (kind === 'file' && !existing.isFile()) {
      throw new MergeError('OUTPUT_EXISTS', `${outPath}: exists and is not a file; choose another output path`);
    }
    if (kind === 'folder' && !existing.isDirectory()) throw new MergeError('OUTPUT_EXISTS', `${outPath}: exists and is not a folder`);
  }
  const mountPoint = existing ? await isMountPoint(out) : false;
  // Temporaries and the lock live where the final rename happens: beside --out, or inside a
  // mounted folder (a rename out of or over a mount point fails).
  const workDir = kind === 'folder' && mountPoint ? out : createFolder ? dirname(parent) : parent;
  const lock = await acquireOutputLock(workDir, out, name);
  try {
    await removeStaleTemporaries(workDir, options.onNotice ?? (() => undefined));
    let replaceFolder = false;
    if (kind === 'folder' && existing) {
      const entries = await onPath(name, 'listing it', () => readdir(out));
      if (entries.some((e) => !isLoramergeEntry(e)) && !options.overwrite) {
        throw new MergeError('OUTPUT_EXISTS', `${outPath}: folder exists and is not empty; choose another --out, or pass --overwrite to replace it once the merge has succeeded`);
      }
      replaceFolder = true;
    }
    const common = { name, out, workDir, lock, beforeCommit: options.beforeCommit };
    return kind === 'file'
      ? new NodeFileOutput(common, { createFolder, writeThrough: mountPoint })
      : new NodeFolderOutput(common, { replaceExisting: replaceFolder, inPlace: mountPoint });
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/**
 * Refuses, before any input is read, an output path whose folder cannot take it, with the words
 * {@link createNodeOutputTarget} would use once the merge had planned: a folder that does not exist
 * or is no folder (BAD_ARGUMENT), or, for an output not there yet, a folder this process may not
 * write in (FILESYSTEM: permission denied, read-only). Checks only, creates nothing. The output's
 * kind follows the base, not opened yet, so what it decides (file or folder, an existing folder's
 * content, a mount point, which may be written in a folder that is not) is left to that call, which
 * checks all of this again.
 */
export async function checkOutputFolder(outPath: string): Promise<void> {
  // `DIR/` names a folder (created on commit for a one-file output): its parent must exist, as any output's.
  const out = await followLinks(resolve(outPath));
  const parent = dirname(out);
  const parentInfo = await stat(parent).catch(() => undefined);
  if (!parentInfo?.isDirectory()) {
    throw new MergeError('BAD_ARGUMENT', `${outPath}: folder ${parent} ${parentInfo ? 'is not a folder' : 'does not exist'}; create it or choose another --out`);
  }
  if (await lstat(out).catch(() => undefined)) return;
  await onPath(outPath, 'checking that its folder can be written', () => access(parent, constants.W_OK | constants.X_OK));
}

/** `--out .` would rename the folder the user stands in away; `--out ..` would swallow it. */
async function refuseWorkingFolder(outName: string, out: string): Promise<void> {
  const cwd = await realpath(process.cwd()).catch(() => process.cwd());
  const real = await realpath(out).catch(() => out);
  if (cwd === real || cwd.startsWith(real.endsWith(sep) ? real : real + sep)) {
    throw new MergeError('BAD_ARGUMENT', `${outName}: is the current folder or contains it; name a new folder for the output`);
  }
}

/** A symbolic link at `path` is followed (to its final target, which may not exist yet). */
async function followLinks(path: string): Promise<string> {
  for (let hops = 0; hops < 32; hops++) {
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isSymbolicLink()) return path;
    path = resolve(dirname(path), await readlink(path));
  }
  throw new MergeError('BAD_ARGUMENT', `${path}: too many levels of symbolic links`);
}

/** The real path --out will have: its own if it exists, else its real parent plus its name. */
async function realOutputPath(out: string): Promise<string> {
  try {
    return await realpath(out);
  } catch {
    return join(await realpath(dirname(out)).catch(() => dirname(out)), basename(out));
  }
}

/**
 * `inputs` should hold each input file as well as the paths given: a folder's files may be links to
 * elsewhere (a Hugging Face snapshot links into its blob store), so the folder's path alone does not
 * say what --out may replace. Paths are compared after resolving links; then by device and inode,
 * which a bind mount (or a second mount of the same file system) keeps under another path, so the
 * same three rules hold by identity too: --out may not be an input (a hard link or bind mount of
 * one), a folder that holds one at any depth (replaced whole with --overwrite, or on a mount point
 * emptied entry by entry: every input under it would go, not only one under a name the output
 * writes), or lie inside an input folder.
 */
async function refuseInputOverlap(outName: string, out: string, realOut: string, inputs: readonly string[]): Promise<void> {
  const outId = await stat(out, { bigint: true }).catch(() => undefined);
  const ids = new IdentityCache();
  const realInputs: string[] = [];
  for (const input of inputs) realInputs.push(await realpath(input).catch(() => resolve(input)));
  // Each overlap named as it is, an input file first ("would overwrite" read as false for a new
  // file in an input folder, and "inside the folder" hid that a file of it would be replaced).
  const inside = (child: string, folder: string) => child.startsWith(folder.endsWith(sep) ? folder : folder + sep);
  const overlaps: [(realIn: string) => boolean, string][] = [
    [(realIn) => realOut === realIn, 'output would overwrite input'],
    [(realIn) => inside(realOut, realIn), 'is inside input folder'],
    [(realIn) => inside(realIn, realOut), 'holds input'],
  ];
  for (const [test, what] of overlaps) {
    const i = realInputs.findIndex(test);
    if (i >= 0) throw new MergeError('OUTPUT_IS_INPUT', `${outName}: ${what} ${inputs[i]}; choose another output path`);
  }
  for (const input of inputs) {
    const inId = outId && await ids.of(input);
    if (inId && inId.dev === outId.dev && inId.ino === outId.ino) {
      throw new MergeError('OUTPUT_IS_INPUT', `${outName}: is input ${input} under another name (a hard link or a bind mount); choose another output path`);
    }
  }
  if (outId?.isDirectory()) {
    // Every folder above each input, by identity: a match is a folder holding that input.
    for (const [i, input] of inputs.entries()) {
      for (let folder = dirname(realInputs[i]); ; folder = dirname(folder)) {
        if (await ids.same(folder, outId)) {
          throw new MergeError('OUTPUT_IS_INPUT', `${outName}: is folder ${folder} under another path (a bind mount), which holds input ${input}; choose another output path`);
        }
        if (dirname(folder) === folder) break;
      }
    }
  }
  // Every folder above --out against each input folder: a match puts the output inside that input.
  const inputFolders: { input: string; id: BigIntStats }[] = [];
  for (const input of inputs) {
    const id = await ids.of(input);
    if (id?.isDirectory()) inputFolders.push({ input, id });
  }
  if (inputFolders.length === 0) return;
  for (let folder = dirname(realOut); ; folder = dirname(folder)) {
    for (const { input, id } of inputFolders) {
      if (await ids.same(folder, id)) {
        throw new MergeError('OUTPUT_IS_INPUT', `${outName}: would be written inside input ${input} (${folder} is that folder under another path, a bind mount); choose another output path`);
      }
    }
    if (dirname(folder) === folder) break;
  }
}

/** stat() of paths, each asked once (many inputs share their folders); undefined where it fails. */
class IdentityCache {
  private readonly known = new Map<string, Promise<BigIntStats | undefined>>();

  of(path: string): Promise<BigIntStats | undefined> {
    let id = this.known.get(path);
    if (!id) this.known.set(path, id = stat(path, { bigint: true }).catch(() => undefined));
    return id;
  }

  async same(path: string, other: BigIntStats): Promise<boolean> {
    const id = await this.of(path);
    // An inode number of 0 is no identity (some file systems report it for every file).
    return !!id && id.ino !== 0n && id.dev === other.dev && id.ino === other.ino;
  }
}

/**
 * Bytes written between flushes started in the background: the disk writes what came before while
 * the merge goes on, so that the flush before the final rename finds little left to do (it took
 * 0.25 s at the end of a 1 GB merge).
 */
const FLUSH_EVERY_BYTES = 128 * 1024 * 1024;

/** One file being written; close() flushes it to disk. Errors name --out, not the temporary. */
class NodeFileSink implements ByteSink {
  closed = false;
  private unflushed = 0;
  /** A background flush in flight; its failure is reported by the next write or close. */
  private flushing: Promise<void> | undefined;
  constructor(
    readonly path: string,
    private readonly name: string,
    private readonly handle: FileHandle,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: write after close`);
    await onPath(this.name, 'writing', async () => {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await this.handle.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
    });
    this.unflushed += chunk.byteLength;
    if (this.unflushed >= FLUSH_EVERY_BYTES) {
      if (this.flushing) await this.settleFlush();
      this.unflushed = 0;
      this.flushing = this.handle.datasync();
      this.flushing.catch(() => {}); // reported when settled
    }
  }

  private async settleFlush(): Promise<void> {
    const flushing = this.flushing;
    this.flushing = undefined;
    if (flushing) await onPath(this.name, 'flushing to disk', () => flushing);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.settleFlush();
    await onPath(this.name, 'flushing to disk', () => this.handle.sync());
    this.closed = true;
    await onPath(this.name, 'closing', () => this.handle.close());
  }

  /** For abort: release the handle whatever state it is in. */
  async release(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing?.catch(() => undefined);
    await this.handle.close().catch(() => undefined);
  }
}

async function openSink(path: string, name: string): Promise<NodeFileSink> {
  return new NodeFileSink(path, name, await onPath(name, 'creating it', () => open(path, 'wx')));
}

interface CommonOptions {
  /** --out as the user gave it, for messages. */
  name: string;
  /** The final path (links followed). */
  out: string;
  /** Where temporaries go. */
  workDir: string;
  lock: OutputLock;
  beforeCommit?: () => Promise<void>;
}

abstract class NodeOutput implements OutputTarget {
  protected readonly sinks: NodeFileSink[] = [];
  protected state: 'open' | 'committed' | 'aborted' = 'open';
  readonly name: string;
  protected readonly out: string;
  protected readonly temp: string;

  constructor(protected readonly common: CommonOptions) {
    this.name = common.name;
    this.out = common.out;
    this.temp = temporaryPath(common.workDir, 'tmp');
  }

  abstract createFile(path: string): Promise<ByteSink>;
  protected abstract moveIntoPlace(): Promise<void>;
  protected abstract removeTemporaries(): Promise<void>;

  async commit(): Promise<void> {
    this.requireOpen();
    const unfinished = this.sinks.find((s) => !s.closed);
    if (unfinished) throw new Error(`${unfinished.path}: still being written, cannot commit`);
    await this.common.beforeCommit?.();
    await this.moveIntoPlace();
    this.state = 'committed';
    await this.common.lock.release();
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    try {
      await Promise.all(this.sinks.map((s) => s.release()));
      await this.removeTemporaries();
    } finally {
      await this.common.lock.release();
    }
  }

  protected requireOpen(): void {
    if (this.state !== 'open') throw new Error(`${this.name}: output already ${this.state}`);
  }
}

/** --out is a single file: the one createFile() call writes it, whatever path it names. */
class NodeFileOutput extends NodeOutput {
  constructor(
    common: CommonOptions,
    private readonly how: { createFolder: boolean; writeThrough: boolean },
  ) {
    super(common);
  }

  async createFile(path: string): Promise<ByteSink> {
    this.requireOpen();
    if (this.sinks.length > 0) throw new MergeError('BAD_ARGUMENT', `${this.name}: is one file, but more than one is written ("${printable(path)}" too); give a folder instead`);
    const sink = await openSink(this.temp, this.name);
    this.sinks.push(sink);
    return gatherSmallWrites(sink, this.name);
  }

  protected async moveIntoPlace(): Promise<void> {
    if (this.sinks.length === 0) throw new Error(`${this.name}: nothing was written`);
    if (this.how.createFolder) await onPath(this.name, 'creating its folder', () => mkdir(dirname(this.out)).catch(ignoreExists));
    if (this.how.writeThrough) {
      // A bind-mounted file cannot be renamed over: copy the finished file into it.
      await onPath(this.name, 'copying into place', () => copyFile(this.temp, this.out));
      await rm(this.temp, { force: true });
      return;
    }
    await onPath(this.name, 'renaming into place', () => rename(this.temp, this.out));
  }

  protected removeTemporaries(): Promise<void> {
    return rm(this.temp, { force: true });
  }
}

function ignoreExists(e: NodeJS.ErrnoException): void {
  if (e.code !== 'EEXIST') throw e;
}

/** --out is a folder: files go into a temporary folder, moved to --out on commit. */
class NodeFolderOutput extends NodeOutput {
  private created = false;
  private readonly paths = new Set<string>();

  constructor(
    common: CommonOptions,
    private readonly how: { replaceExisting: boolean; inPlace: boolean },
  ) {
    super(common);
  }

  async createFile(path: string): Promise<ByteSink> {
    this.requireOpen();
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\'))) {
      throw new Error(`${this.name}: invalid output file path "${path}"`);
    }
    if (this.paths.has(path)) throw new Error(`${this.name}: "${path}" created twice`);
    this.paths.add(path);
    await this.ensureTemp();
    const full = join(this.temp, ...parts);
    if (parts.length > 1) await onPath(this.name, 'creating a folder in it', () => mkdir(dirname(full), { recursive: true }));
    const sink = await openSink(full, `${this.name}/${path}`);
    this.sinks.push(sink);
    return gatherSmallWrites(sink, `${this.name}/${path}`);
  }

  private async ensureTemp(): Promise<void> {
    if (this.created) return;
    await onPath(this.name, 'creating it', () => mkdir(this.temp));
    this.created = true;
  }

  protected async moveIntoPlace(): Promise<void> {
    await this.ensureTemp();
    if (this.how.inPlace) return this.moveEntriesIn();
    if (!this.how.replaceExisting) {
      await onPath(this.name, 'renaming into place', () => rename(this.temp, this.out));
      return;
    }
    // Move the old folder aside first so that at every moment --out is either old or new, whole.
    const old = temporaryPath(dirname(this.out), 'old');
    await onPath(this.name, 'moving the old folder aside', () => rename(this.out, old));
    try {
      await onPath(this.name, 'renaming into place', () => rename(this.temp, this.out));
    } catch (e) {
      await rename(old, this.out);
      throw e;
    }
    await rm(old, { recursive: true, force: true });
  }

  /** A mounted --out stays: its old entries go (when replacing), the new ones are renamed in. */
  private async moveEntriesIn(): Promise<void> {
    const ours = new Set([basename(this.temp), basename(this.common.lock.path)]);
    if (this.how.replaceExisting) {
      for (const entry of await onPath(this.name, 'listing it', () => readdir(this.out))) {
        if (!ours.has(entry)) await onPath(this.name, 'removing its old contents', () => rm(join(this.out, entry), { recursive: true, force: true }));
      }
    }
    for (const entry of await onPath(this.name, 'listing the new files', () => readdir(this.temp))) {
      await onPath(this.name, 'moving a file into place', () => rename(join(this.temp, entry), join(this.out, entry)));
    }
    await rm(this.temp, { recursive: true, force: true });
  }

  protected async removeTemporaries(): Promise<void> {
    if (this.created) await rm(this.temp, { recursive: true, force: true });
  }
}
