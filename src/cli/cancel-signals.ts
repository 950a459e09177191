/**
 * Cancelling by signal (CANCEL_SIGNALS: Ctrl-C, SIGTERM, SIGHUP). The part of a command that creates
 * and writes its output runs inside cancellable(): the first signal aborts it, it removes what it
 * wrote (temporaries, the lock) and the command ends with EXIT_CANCELLED. Later signals must not end
 * the process before that cleanup is done: the commands used to take their handlers off once their
 * part ended, so a second Ctrl-C in the moments before the exit killed the process by the signal,
 * without our exit code. Outside such a part there is nothing to clean up, so a signal ends the
 * process at once. main.ts installs this for the process; a program that runs runCommandLine itself
 * and wants the same calls handleCancelSignals.
 */
import { CANCEL_SIGNALS, EXIT_CANCELLED } from './exit-codes.js';

/**
 * What a cancelled command says, the same whether the signal came before its output existed or while
 * it was written: someone who pressed Ctrl-C wants to know that no half-written file is left.
 */
export function cancelledMessage(command: string, out: string | undefined): string {
  return out === undefined ? `${command} cancelled` : `${command} cancelled; nothing was written to ${out}`;
}

/** The value of `--out` on a command line (`--out X` or `--out=X`), for a cancel before it is parsed. */
export function outArgument(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out') return args[i + 1];
    if (args[i].startsWith('--out=')) return args[i].slice('--out='.length);
  }
  return undefined;
}

const running = new Set<AbortController>();

/**
 * Runs `work` with a signal that the cancel signals abort. The part counts as running until `work`
 * has settled, its cleanup included, so no signal ends the process in between.
 */
export async function cancellable<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  running.add(controller);
  try {
    return await work(controller.signal);
  } finally {
    running.delete(controller);
  }
}

/**
 * Handles the cancel signals for the rest of the process's life: while a cancellable part runs,
 * each one aborts it (again: a no-op), and the command ends with EXIT_CANCELLED once it has cleaned
 * up; while none runs (before the output is created, or after the cleanup), `exit` is called with
 * `code()`: EXIT_CANCELLED unless the command has already finished with a code of its own.
 */
export function handleCancelSignals(exit: (code: number) => void, code: () => number = () => EXIT_CANCELLED): void {
  for (const signal of CANCEL_SIGNALS) {
    process.on(signal, () => {
      if (running.size === 0) return exit(code());
      for (const controller of running) controller.abort();
    });
  }
}
