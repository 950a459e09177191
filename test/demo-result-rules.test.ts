/**
 * The rules that keep the page's results honest, without a browser, for the merge's store and the
 * adapter jobs' alike: a new result or new inputs withdraw the result before (handed to onWithdraw
 * once, whose listener deletes its files); a changed setting only marks it out of date; every
 * change tells the listeners.
 */
import { describe, expect, it } from 'vitest';
import { JobStore, type JobResult } from '../demo/job-state.js';
import { PageStore, type MergeResultState, type PickedSet } from '../demo/page-state.js';

const set = (name: string): PickedSet => ({ name, files: [], origin: 'user' });

describe('results withdrawn and marked out of date', () => {
  it('the merge: a new result or a new base withdraws the old one; a weight marks it out of date', () => {
    const store = new PageStore();
    const withdrawn: MergeResultState[] = [];
    let told = 0;
    store.onWithdraw = (r) => withdrawn.push(r);
    store.subscribe(() => told++);
    store.addAdapters([set('lora')]);
    const first = { job: 'a', settings: store.settingsKey(), stale: false } as MergeResultState;
    const second = { job: 'b', settings: store.settingsKey(), stale: false } as MergeResultState;
    store.setBusy('merge');
    expect(store.state.busy).toBe('merge');
    store.setResult(first);
    expect(withdrawn).toEqual([]);
    store.setResult(second);
    expect(withdrawn).toEqual([first]);
    expect(store.state.result).toBe(second);
    store.setWeight(store.state.adapters[0].id, 0.5);
    expect(second.stale).toBe(true);
    expect(withdrawn).toEqual([first]);
    store.setBase(set('model'));
    expect(withdrawn).toEqual([first, second]);
    expect(store.state.result).toBeUndefined();
    // addAdapters, setBusy, 2 × setResult, setWeight, setBase: one call each at least.
    expect(told).toBeGreaterThanOrEqual(6);
  });

  it('the jobs: a new result or a new adapter withdraws the old one; another mode marks it out of date', () => {
    const store = new JobStore();
    const withdrawn: JobResult[] = [];
    let told = 0;
    store.onWithdraw = (r) => withdrawn.push(r);
    store.subscribe(() => told++);
    store.setMode('combine');
    const first = { job: 'a', mode: 'combine', settings: '', stale: false } as unknown as JobResult;
    const second = { job: 'b', mode: 'combine', settings: '', stale: false } as unknown as JobResult;
    store.setBusy(true);
    expect(store.state.busy).toBe(true);
    store.setResult(first);
    store.setResult(second);
    expect(withdrawn).toEqual([first]);
    store.setMode('resize');
    expect(second.stale).toBe(true);
    expect(withdrawn).toEqual([first]);
    store.addAdapters([set('lora')]);
    expect(withdrawn).toEqual([first, second]);
    expect(store.state.result).toBeUndefined();
    expect(told).toBeGreaterThanOrEqual(6);
  });
});
