/** How often the merge worker passes progress on to the page (demo/merge-worker.ts). */
import type { MergeProgress } from '../src/index.js';

/**
 * The merge's progress at most every `ms` milliseconds, and every change of phase: each event
 * restyles the page's bar and text, and the frame it causes costs about 5 ms of CPU across the
 * page's main thread, its compositor and the browser's GPU process. On a 2-core VM (other jobs
 * running, 16–17 s) a 2.73 GB merge spent 1.05–1.13 s of those three threads' CPU with an event
 * every 100 ms, 0.38–0.39 s every 500 ms; unthrottled, a 0.97 GB merge sent 275. `now` is the
 * clock (milliseconds).
 */
export function throttledProgress(
  send: (progress: MergeProgress) => void, ms = 500, now: () => number = () => performance.now(),
): (progress: MergeProgress) => void {
  let last = -Infinity;
  return (progress) => {
    const t = now();
    if (progress.phase === 'merge' && t - last < ms) return;
    last = t;
    send(progress);
  };
}
