/**
 * The page's messages to its workers, watched from inside the page (its `Worker.prototype.postMessage`
 * wrapped before its scripts run): each backend request recorded, and a worker's messages held on
 * demand, so a merge or an adapter job is under way (the page busy, Cancel on) while its worker has
 * not started it, for as long as a test needs.
 */
import type { Page } from 'puppeteer';

/** What the page posted to its workers, as {@link watchWorkers} records it. */
export interface WorkerWatch {
  /** Each backend the page asked for: the menu's choice and the threads (null: the library's default). */
  backends: { choice: string; threads: number | null }[];
  /** From the first message of one of these types on, that worker's messages wait (in order) until release(). */
  hold(types: string[]): void;
  release(): void;
}

/** Reloads the page with its workers' postMessage watched (see {@link WorkerWatch}). */
export async function watchWorkers(page: Page): Promise<void> {
  await page.evaluateOnNewDocument(() => {
    const post = Worker.prototype.postMessage;
    const queue: [Worker, unknown, unknown[]][] = [];
    let holding: string[] | undefined;
    let held: Worker | undefined;
    const watch = {
      backends: [] as { choice: string; threads: number | null }[],
      hold(types: string[]) {
        holding = types;
        held = undefined;
      },
      release() {
        holding = held = undefined;
        for (const [worker, message, rest] of queue.splice(0)) (post as (...a: unknown[]) => void).call(worker, message, ...rest);
      },
    };
    Worker.prototype.postMessage = function (this: Worker, message: { type?: string; choice?: string; threads?: number }, ...rest: unknown[]) {
      if (message?.type === 'backend') watch.backends.push({ choice: message.choice!, threads: message.threads ?? null });
      if (holding && (held === this || (held === undefined && holding.includes(message?.type ?? '')))) {
        held = this;
        queue.push([this, message, rest]);
        return;
      }
      (post as (...a: unknown[]) => void).call(this, message, ...rest);
    } as typeof Worker.prototype.postMessage;
    (window as unknown as { workerWatch: typeof watch }).workerWatch = watch;
  });
  await page.reload({ waitUntil: 'load' });
}

/** The backends the page has asked its worker for, in order. */
export const backends = (page: Page) => page.evaluate(() => (window as unknown as { workerWatch: WorkerWatch }).workerWatch.backends);
/** Holds the next worker to be sent one of these message types (and its later messages). */
export const hold = (page: Page, ...types: string[]) => page.evaluate((t) => (window as unknown as { workerWatch: WorkerWatch }).workerWatch.hold(t), types);
/** Sends what was held, in order, and holds nothing more. */
export const release = (page: Page) => page.evaluate(() => (window as unknown as { workerWatch: WorkerWatch }).workerWatch.release());
