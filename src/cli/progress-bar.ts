/**
 * The CLI's progress display: a bar with throughput and time left on a terminal, nothing when stderr
 * is not a TTY (logs and pipes stay clean).
 */
import cliProgress from 'cli-progress';
import { formatBytes } from '../format.js';
import type { MergeProgress } from '../pipeline/progress.js';
import { oneLine, printable } from './terminal-text.js';

export interface ProgressDisplay {
  update(event: MergeProgress): void;
  stop(): void;
}

export function createProgressDisplay(stream: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  if (!stream.isTTY) return { update() {}, stop() {} };
  const startedAt = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: ' {bar} {percentage}% | {done}/{size} | {rate} | {eta_formatted} left | {tensor}',
      barsize: 28,
      hideCursor: true,
      clearOnComplete: true,
      fps: 8,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(event) {
      const payload = {
        done: formatBytes(event.bytesDone),
        size: formatBytes(event.bytesTotal),
        rate: `${formatBytes(event.bytesDone / Math.max((Date.now() - startedAt) / 1000, 1e-3))}/s`,
        tensor: printable(oneLine(event.tensor ?? '')).slice(-40),
      };
      if (!started) {
        bar.start(Math.max(event.bytesTotal, 1), event.bytesDone, payload);
        started = true;
      } else {
        bar.setTotal(Math.max(event.bytesTotal, 1));
        bar.update(event.bytesDone, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

