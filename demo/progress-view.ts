/** Section 4's progress bar: share of bytes written, the rate so far and the time left at that rate. */
import { messageNodes, shown } from './dom.js';
import { formatBytes, formatDuration } from './format.js';
import type { ProgressEvent } from './worker-protocol.js';

export class ProgressView {
  private started = 0;
  /** The inputs revision of the run the bar and line speak of; undefined while they are empty. */
  private shownRevision?: number;

  /**
   * `unit` names what the progress counts (the adapter jobs count modules); `inputsRevision` is the
   * store's count of input changes (ResultStore.inputsRevision), read when a run starts.
   */
  constructor(private readonly bar: HTMLProgressElement, private readonly text: HTMLElement, private readonly unit = 'tensors',
    private readonly inputsRevision: () => number = () => 0) {}

  start(message = 'Starting…'): void {
    this.shownRevision = this.inputsRevision();
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

  /**
   * Empties the bar and the line once the inputs changed since their run started: a "Merged 6 KB"
   * or a failure left there after a new pick reads as news of the new inputs. Called when idle.
   */
  forgetIfOutdated(): void {
    if (this.shownRevision === undefined || this.shownRevision === this.inputsRevision()) return;
    this.shownRevision = undefined;
    this.bar.value = 0;
    this.text.className = 'hint';
    this.text.replaceChildren();
  }

  /** A run that did not start, said where its line would be, as news of the current inputs. */
  refuse(message: string): void {
    this.shownRevision = this.inputsRevision();
    this.fail(message);
  }

  /** A list of problems (one per line, src/plan/problems.ts) is shown as a list, as the plan's status shows it. */
  fail(message: string, keepBar = false): void {
    if (!keepBar) this.bar.value = 0;
    this.text.className = 'error-text';
    this.text.replaceChildren(...messageNodes(message));
  }
}
