/**
 * Progress events a merge emits; the CLI draws them as a bar, the demo page as a bar with a rate.
 * Within one merge the totals do not change and `tensorsDone` and `bytesDone` never go down, so
 * `bytesDone / bytesTotal` is a fraction that only rises, reaching 1 on the last event, `done`.
 */
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
