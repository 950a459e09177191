/** Section 4's progress bar: share of bytes written, the rate so far and the time left at that rate. */
import { messageNodes, shown } from './dom.js';
import { formatBytes, formatDuration } from './format.js';
import type { ProgressEvent } from './worker-protocol.js';

export class ProgressView {
  private started = 0;

  /** `unit` names what the progress counts (the adapter jobs count modules). */
  constructor(private readonly bar: HTMLProgressElement, private readonly text: HTMLElement, private readonly unit = 'tensors') {}

  start(message = 'Starting…'): void {
    this.started = performance.now();
    this.bar.value = 0;
    this.text.className = 'hint';
    this.text.textContent = shown(message);
  }

  update(p: ProgressEvent): void {
    const seconds = (performance.now() - this.started) / 1000;
    const fraction = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 0;
    this.bar.value = fraction;
    const rate = seconds > 0 ? p.bytesDone / seconds : 0;
    const left = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : Infinity;
    this.text.textContent = shown([
      `${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`,
      `${p.tensorsDone}/${p.tensorsTotal} ${this.unit}`,
      `${formatBytes(rate)}/s`,
      `${formatDuration(left)} left`,
      p.tensor ?? '',
    ].filter(Boolean).join(' · '));
  }

  finish(message: string): void {
    this.bar.value = 1;
    this.text.className = 'hint';
    this.text.textContent = shown(message);
  }

  /** A list of problems (one per line, src/plan/problems.ts) is shown as a list, as the plan's status shows it. */
  fail(message: string, keepBar = false): void {
    if (!keepBar) this.bar.value = 0;
    this.text.className = 'error-text';
    this.text.replaceChildren(...messageNodes(message));
  }
}
