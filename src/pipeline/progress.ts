/** Progress events a merge emits; the CLI draws them as a bar, the demo page as a bar with a rate. */
export interface MergeProgress {
  /**
   * `merge` as the output is written (a merge's first event comes before any byte is); `done` once,
   * when every byte is written: the files appear at the output when the call resolves.
   */
  phase: 'merge' | 'done';
  tensorsDone: number;
  tensorsTotal: number;
  /** Bytes of output written so far, and in all. */
  bytesDone: number;
  bytesTotal: number;
  /** The tensor being worked on. */
  tensor?: string;
}

/** Receives {@link MergeProgress} events as the merge writes. */
export type ProgressListener = (event: MergeProgress) => void;
