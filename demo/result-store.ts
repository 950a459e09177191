/**
 * What the merge's store (page-state.ts) and the adapter jobs' (job-state.ts) share: the state in
 * one place with listeners told after each change, what runs, and the rule that keeps a result
 * honest: a new result, or new inputs, withdraw the one before (whoever listens to `onWithdraw`
 * deletes its files). Where the result lives is the store's own: the merge has one, the jobs one
 * per mode (new inputs of one mode withdraw that mode's result only).
 */
/** A store of state `S` whose current result (an `R`) is withdrawn, never silently replaced. */
export class ResultStore<S extends { busy?: unknown }, R extends { stale: boolean }> {
  private readonly listeners: ((state: S) => void)[] = [];
  /** Called with a result that must go (its files are deleted by whoever listens). */
  onWithdraw: (result: R) => void = () => {};
  /**
   * Counts changes of the inputs: a progress line written at another count speaks of a run on
   * other inputs (its result or its failure), so it is cleared rather than left as if current.
   */
  inputsRevision = 0;

  constructor(readonly state: S) {}

  /** `listener` is called with the state after every change. */
  subscribe(listener: (state: S) => void): void {
    this.listeners.push(listener);
  }

  /** Tells every listener the state changed. */
  changed(): void {
    for (const listener of this.listeners) listener(this.state);
  }

  /** What runs now: buttons of that work stay disabled. */
  setBusy(busy: S['busy']): void {
    this.state.busy = busy;
    this.changed();
  }

  /** The result the current inputs' slot holds (the merge's `state.result` unless a store keeps several). */
  protected current(): R | undefined {
    return (this.state as { result?: R }).result;
  }

  /** Puts `result` in the current inputs' slot (undefined: empties it). */
  protected place(result: R | undefined): void {
    (this.state as { result?: R }).result = result;
  }

  /** Withdraws the result shown, then shows `result` (undefined: none). */
  setResult(result: R | undefined): void {
    this.withdrawResult();
    this.place(result);
    this.changed();
  }

  /** New inputs: the result made from the old ones is withdrawn, and what was said of that run goes with it. */
  protected newInputs(): void {
    this.inputsRevision++;
    this.withdrawResult();
  }

  /** Withdraws the result shown if it is out of date (a new result was made: stored-results.ts). */
  withdrawStale(): void {
    if (!this.current()?.stale) return;
    this.withdrawResult();
    this.changed();
  }

  /** Takes the result off the page and hands it to `onWithdraw`. */
  withdrawResult(): void {
    const old = this.current();
    this.place(undefined);
    if (old) this.onWithdraw(old);
  }
}
