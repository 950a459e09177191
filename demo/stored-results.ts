/**
 * What the page keeps in browser storage (OPFS) while it is open: the live results, at most one per
 * mode (merge, combine, resize, extract), each until its own mode's inputs change or it is made
 * again. A result left out of date (a weight or a setting changed after it ran) stays, marked, so
 * it can still be saved; but a new result of any mode is the moment its files go: out-of-date
 * results of every mode are withdrawn (their links gone, their files deleted) before the new one
 * is shown. Whatever an earlier visit left is deleted when the page starts (browser-storage.ts).
 */

/** A store of results that can drop its out-of-date ones. */
export interface StaleResults {
  /** Withdraws every result it holds that is out of date (its files deleted by whoever listens). */
  withdrawStale(): void;
}

const stores: StaleResults[] = [];

/** `store`'s out-of-date results go whenever any mode makes a new result. */
export function keepResultsOf(store: StaleResults): void {
  stores.push(store);
}

/** Called as a new result is about to be shown: every store's out-of-date results are withdrawn. */
export function beforeNewResult(): void {
  for (const store of stores) store.withdrawStale();
}
