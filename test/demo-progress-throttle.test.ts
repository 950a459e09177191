/**
 * How often the merge worker passes a merge's progress on to the page (demo/progress-throttle.ts):
 * 'merge' events at most every 500 ms (the first at once), 'done' always, on a clock the test sets.
 */
import { describe, expect, it } from 'vitest';
import { throttledProgress } from '../demo/progress-throttle.js';
import type { MergeProgress } from '../src/index.js';

/** A 0.97 GB Llama merge's event as mergeModel sends it, after `done` of its 75 tensors. */
const event = (phase: MergeProgress['phase'], done: number): MergeProgress => ({
  phase, tensorsDone: done, tensorsTotal: 75, bytesDone: done * 12_891_535, bytesTotal: 966_865_104,
  tensor: `model.layers.${Math.floor(done / 9)}.mlp.down_proj.weight`,
});

describe('throttledProgress', () => {
  it('passes every phase change at once, and merge events 500 ms after the last event passed', () => {
    let clock = 0;
    const sent: [number, MergeProgress['phase'], number][] = [];
    const onProgress = throttledProgress((p) => sent.push([clock, p.phase, p.tensorsDone]), undefined, () => clock);
    // An event every 40 ms for 1.3 s (the pace of 4 MiB slabs at 100 MB/s), the first before any
    // byte is written, as mergeModel sends it.
    for (let i = 0; i <= 32; i++) {
      clock = i * 40;
      onProgress(event('merge', i));
    }
    clock = 1300;
    onProgress(event('done', 75));
    expect(sent).toEqual([
      [0, 'merge', 0],
      [520, 'merge', 13], // the first at least 500 ms after the last one passed
      [1040, 'merge', 26], // and 500 ms after that
      [1300, 'done', 75],
    ]);
  });
});
