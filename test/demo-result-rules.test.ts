/**
 * The rules that keep the page's results honest, without a browser, for the merge's store and the
 * adapter jobs' alike: a new result or new inputs withdraw the result before (handed to onWithdraw
 * once, whose listener deletes its files), the jobs' per mode; a changed setting only marks out of
 * date the results it fed; every change tells the listeners.
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

  it('the jobs: a mode\'s new result or new adapter withdraws that mode\'s result only; a setting marks the results it fed', () => {
    const store = new JobStore();
    const withdrawn: JobResult[] = [];
    let told = 0;
    // The output format is every mode's setting; the rank is resize's alone.
    const settings = { format: 'peft', rank: '8' };
    store.settingsKey = (mode) => (mode === 'resize' ? `${settings.format} ${settings.rank}` : settings.format);
    store.onWithdraw = (r) => withdrawn.push(r);
    store.subscribe(() => told++);
    store.setMode('combine');
    const first = { job: 'a', mode: 'combine', settings: 'peft', stale: false } as unknown as JobResult;
    const second = { job: 'b', mode: 'combine', settings: 'peft', stale: false } as unknown as JobResult;
    const resized = { job: 'c', mode: 'resize', settings: 'peft 8', stale: false } as unknown as JobResult;
    store.setBusy(true);
    expect(store.state.busy).toBe(true);
    store.setResult(first);
    store.setResult(second);
    expect(withdrawn).toEqual([first]);
    // Another mode: its inputs and its run leave the combination as it is.
    store.setMode('resize');
    expect(store.result()).toBeUndefined();
    expect(second.stale).toBe(false);
    store.addAdapters([set('lora')]);
    store.setResult(resized);
    expect(withdrawn).toEqual([first]);
    // resize's rank fed the resized adapter only; the format fed both.
    settings.rank = '4';
    store.settingsChanged();
    expect([second.stale, resized.stale]).toEqual([false, true]);
    settings.format = 'kohya';
    store.settingsChanged();
    expect([second.stale, resized.stale]).toEqual([true, true]);
    settings.format = 'peft';
    settings.rank = '8';
    store.settingsChanged();
    expect([second.stale, resized.stale]).toEqual([false, false]);
    // Back in combine, its result is there; a new adapter there withdraws it, and only it.
    store.setMode('combine');
    expect(store.result()).toBe(second);
    store.addAdapters([set('other')]);
    expect(withdrawn).toEqual([first, second]);
    expect(store.result()).toBeUndefined();
    store.setMode('resize');
    expect(store.result()).toBe(resized);
    expect(told).toBeGreaterThanOrEqual(6);
  });
});
