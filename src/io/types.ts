/**
 * Byte-level I/O as the rest of the library sees it. Formats read through ByteSource (random access,
 * never the whole file) and write through ByteSink (sequential). Node files and browser
 * Blobs/File System Access handles implement these; nothing above this layer knows which.
 */

/** Random-access, read-only bytes: a Node file handle, a browser File/Blob. */
export interface ByteSource {
  /** Path or file name, used in error messages. */
  readonly name: string;
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset`; throws TRUNCATED naming the file if fewer exist. `into`
   * (`length` bytes) is a buffer the caller offers for them: a source may fill and return it, or
   * return other memory; callers use what is returned.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Optional, for sources whose plain reads allocate fresh memory each time (a browser Blob): the
   * same bytes, read into `buffer` (at least `length` bytes, not shared), which the call may detach;
   * the returned view is over the memory the bytes are in, which the caller may offer again.
   */
  readTransferring?(offset: number, length: number, buffer: ArrayBuffer): Promise<Uint8Array>;
  /** Releases the file. */
  close(): Promise<void>;
}

/** Sequential writer for one output file. */
export interface ByteSink {
/** Appends `chunk`; the caller may reuse it once this resolves. */
  write(chunk: Uint8Array): Promise<void>;
  /** Flushes and finishes the file (it becomes visible only when the OutputTarget commits). */
  close(): Promise<void>;
}

/**
 * Input files as the user gave them: a folder on disk, a single file, or files dropped in a page.
 * Paths are relative and use '/'; a single file is a set with one entry.
 */
export interface InputFileSet {
  /** The folder or file as the user named it, for messages. */
  readonly name: string;
  /**
   * True where `name` (its last path segment) is the name of the folder the files are in, or one
   * the caller gave them: a folder on disk or picked as a folder, a Hub repository, a name passed
   * in. Absent for files given without their folder, whose `name` is only a label ("selected
   * files"): a converted GGUF's general.* keys take no name from it.
   */
  readonly namesFolder?: boolean;
  /** Relative paths of every file, sorted. */
  list(): string[];
/** Opens one of the listed files for reading. */
  open(path: string): Promise<ByteSource>;
  /** Whole small file as UTF-8 (configs, indexes); text that is not UTF-8 is refused. */
  readText(path: string): Promise<string>;
  /**
   * How messages name the file at `path`, where that is not `${name}/${path}`: a Hub adapter is
   * named by the URL given, and its config is at its own download link, not under that URL.
   */
  fileName?(path: string): string;
}

/**
 * Where a merge writes. Files are written under temporary names and appear at their real paths only
 * on commit(); abort() removes everything written, so a failed or cancelled merge leaves nothing.
 */
export interface OutputTarget {
  readonly name: string;
/** Starts a file at the relative `path` (written under a temporary name until commit). */
  createFile(path: string): Promise<ByteSink>;
/** Makes every finished file appear at its real path. */
  commit(): Promise<void>;
/** Removes everything written; nothing is left at the output. */
  abort(): Promise<void>;
}
