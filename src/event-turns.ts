/**
 * Long synchronous work split into turns of the event loop. Planning tens of thousands of modules
 * is one loop of seconds; while it runs no signal handler (the CLI's Ctrl-C) and no abort() of an
 * AbortSignal can run, so a plan of a large adapter could be neither cancelled nor killed by
 * SIGTERM. A {@link Pacer} gives the event loop a turn every {@link TURN_MS} and stops the work
 * there once its signal fired.
 */
import { throwIfAborted } from './errors.js';

/** How long synchronous work runs before it gives the event loop a turn, in milliseconds. */
export const TURN_MS = 50;

/** Resolves in a later task: setImmediate in Node, a message to ourselves in a page (no timer clamp). */
export function nextTask(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  if (typeof MessageChannel !== 'function') return new Promise((resolve) => setTimeout(resolve, 0));
  const channel = new MessageChannel();
  return new Promise((resolve) => {
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/**
 * Paces one piece of long work: call `await pacer.tick()` once per unit (a module, a phase). A
 * tick within the turn costs a clock read; past {@link TURN_MS} it yields to the event loop and
 * then throws ABORTED (a MergeError named AbortError, its cause the signal's reason) if `signal`
 * fired. Work that takes less than one turn never yields, so small plans cost no more than before.
 */
export class Pacer {
  private last = performance.now();
  constructor(private readonly signal?: AbortSignal, private readonly turnMs = TURN_MS) {}

  /** Yields (and checks the signal) when the current turn has run its time; otherwise nothing. */
  tick(): Promise<void> | undefined {
    if (performance.now() - this.last < this.turnMs) return undefined;
    return this.yield();
  }

  private async yield(): Promise<void> {
    throwIfAborted(this.signal);
    await nextTask();
    this.last = performance.now();
    throwIfAborted(this.signal);
  }
}
