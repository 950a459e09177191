/**
 * The demo page: pick a base and adapters, read the plan, merge in a Web Worker, save the result;
 * or, in the other modes, combine, resize or extract adapters.
 * All library calls happen in the worker; this file only wires the panels to one store. Each panel
 * is one module with a render(state) function, so a new panel is one file and one line here.
 */
import { Announcer } from './announcer.js';
import { byId, messageNodes, spokenMessage } from './dom.js';
import { blockedBy, PageStore } from './page-state.js';
import { mountAdaptersPanel } from './panels/adapters-panel.js';
import { mountBackendPanel } from './panels/backend-panel.js';
import { mountBasePanel } from './panels/base-panel.js';
import { mountImatrixPanel } from './panels/imatrix-panel.js';
import { mountJobPanel } from './panels/job-panel.js';
import { mountMergePanel } from './panels/merge-panel.js';
import { mountModePanel } from './panels/mode-panel.js';
import { mountPlanPanel } from './panels/plan-panel.js';
import { mountSamplePanel } from './panels/sample-panel.js';
import { mountThreadsPanel } from './panels/threads-panel.js';
import { keepResultsOf } from './stored-results.js';
import { MergeWorkerClient, PlanFailedError } from './worker-client.js';
import type { PlanSummary } from './worker-protocol.js';

const client = new MergeWorkerClient();
const store = new PageStore();
const announcer = new Announcer(byId('alert'), byId('status'));
const pageError = byId('page-error');
const showError = (message: string) => {
  announcer.error(spokenMessage(message, 'on the page'));
  pageError.replaceChildren(...messageNodes(message));
  pageError.hidden = false;
};
// A new pick or drop clears the last refusal (capture: before the pick's own handler may set another).
for (const type of ['change', 'drop']) {
  document.addEventListener(type, (event) => {
    if (type === 'drop' || (event.target as HTMLInputElement).type === 'file') pageError.hidden = true;
  }, { capture: true });
}

const mergePanel = mountMergePanel(store, client, announcer);
// Combine, resize and extract: a section, a store and a worker of their own, behind the mode switch;
// the header's backend and CPU threads (this page store's) govern them as they govern the merge.
const jobs = mountJobPanel(announcer, { now: () => store.state, forRun: () => store.forRun() }, showError);
// The threads box before the backend: the backend is asked for with its count.
const renderThreads = mountThreadsPanel(store, announcer, { runLabel: () => jobs.runLabel(), jobBusy: () => jobs.busy() });
const renderBackend = mountBackendPanel(store, client, showError, () => jobs.busy());
const renderers = [
  renderThreads,
  renderBackend,
  mountSamplePanel(store, client, mergePanel, showError),
  mountBasePanel(store, showError, client, announcer),
  mountAdaptersPanel(store, showError),
  mountPlanPanel(),
  mountImatrixPanel(store, client, announcer),
  mergePanel.render,
];
store.subscribe((state) => { for (const render of renderers) render(state); });
// A new thread count (or a refused entry) changes whether a job may run; a job running holds the
// header (the backend and the threads box), as a merge does.
store.subscribe(() => jobs.refresh());
jobs.subscribe(() => {
  renderThreads(store.state);
  renderBackend(store.state);
});

// Another mode: the last error spoke of the mode left (its plan, its job), and a screen reader going
// through the page met it in the alert as if it were about this one; that mode shows it again.
const mode = mountModePanel((m) => jobs.setMode(m), (m) => {
  announcer.clearError();
  announcer.say(m);
}, () => store.state.busy !== undefined || jobs.busy());
store.subscribe(() => mode.render());
jobs.subscribe(() => mode.render());

// Results that must go take their files in browser storage with them (the policy: stored-results.ts).
store.onWithdraw = (result) => {
  if (result.job) client.withdraw(result.job).catch(() => {});
};
keepResultsOf(store);

/** Only the newest plan request may update the page, and a check only the plan it was made for. */
let planRequest = 0;
let checkRequest = 0;
/** The plan and the check under way in the worker: newer inputs (or settings) cancel them there, so stale work stops reading. */
let planWork: AbortController | undefined;
let checkWork: AbortController | undefined;
let checkTimer: ReturnType<typeof setTimeout> | undefined;
const inputs = () => ({
  base: store.state.base!,
  adapters: store.state.adapters.map((a) => ({ name: a.set.name, files: a.set.files, weight: a.weight, ...(a.oneTrainerCoft !== undefined ? { oneTrainerCoft: a.oneTrainerCoft } : {}) })),
});
/** The importance matrix a plan names: one read for a GGUF base (a matrix being read, or refused, is not: the plan is made again when it is read). */
const readImatrix = () => (store.imatrixApplies() && store.state.imatrix?.status === 'ready' ? store.state.imatrix.file : undefined);
const checkSettingsKey = () => JSON.stringify([store.state.outDtype, store.state.dtypeMergedOnly, store.state.adapters.map((a) => a.weight), readImatrix()?.path ?? null]);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What a new plan says aloud: errors at once; otherwise, politely, what matched, what was left out and each warning's gist. */
function announcePlan(plan: PlanSummary, droppedDtype: string | undefined): void {
  const errors = plan.problems.filter((p) => p.severity === 'error');
  const warnings = plan.problems.filter((p) => p.severity === 'warning');
  if (errors.length) {
    announcer.error(`The plan has ${plural(errors.length, 'error')}. First: ${errors[0].message}`);
    return;
  }
  announcer.clearError();
  const parts = [`Plan ready: ${plural(plan.modules.length, 'module')} matched.`];
  if (plan.leftOut.length) parts.push(`${plural(plan.leftOut.length, 'module')} left out, not merged: the plan lists which and why.`);
  if (warnings.length) {
    const more = warnings.length > 3 ? ` · and ${warnings.length - 3} more, listed in the plan` : '';
    parts.push(`${plural(warnings.length, 'warning')}: ${warnings.slice(0, 3).map((w) => w.message).join(' · ')}${more}`);
  }
  if (plan.notes.length) parts.push(`${plural(plan.notes.length, 'note')}: ${plan.notes.join(' · ')}`);
  if (droppedDtype) parts.push(`The output dtype is back to keeping each tensor’s type: a ${plan.base.container} model cannot be written as ${droppedDtype}.`);
  announcer.say(parts.join(' '));
}

store.onInputsChanged = () => {
  const request = ++planRequest;
  checkRequest++;
  planWork?.abort();
  checkWork?.abort();
  planWork = checkWork = undefined;
  announcer.clearStatus();
  if (!store.state.base || store.state.adapters.length === 0) return;
  const sent = checkSettingsKey();
  const { base, adapters } = inputs();
  const imatrix = readImatrix();
  planWork = new AbortController();
  client.plan(base.name, base.files, adapters, imatrix, planWork.signal).then(
    (plan) => {
      if (request !== planRequest) return;
      const dropped = store.setPlan({ status: 'ready', plan });
      announcePlan(plan, dropped);
      // A slider moved or an importance matrix was read or removed while the plan was made, or a dtype is chosen (the plan is made without one).
      if (checkSettingsKey() !== sent || store.state.outDtype !== 'same' || readImatrix() !== imatrix) scheduleCheck();
    },
    (error: Error) => {
      if (request !== planRequest) return;
      const plan = { status: 'failed', message: error.message, ...(error instanceof PlanFailedError ? { adapters: error.adapters } : {}) } as const;
      store.setPlan(plan);
      const blocked = blockedBy(plan, store.state.adapters);
      announcer.error(blocked ? `${spokenMessage(error.message)} ${blocked}` : spokenMessage(error.message));
    },
  );
};

/** Weight 0, the same adapter twice, DoRA at another weight, a GGUF re-quantized…: the warnings follow the sliders and the dtype menu. */
function scheduleCheck(): void {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(runCheck, 200);
}
store.onCheckSettingsChanged = scheduleCheck;

function runCheck(): void {
  if (store.state.plan.status !== 'ready') return; // a plan on its way checks when it arrives
  const request = ++checkRequest;
  const forPlan = planRequest;
  const before = new Set(store.state.plan.plan.problems.map((p) => p.message));
  const { base, adapters } = inputs();
  checkWork?.abort();
  checkWork = new AbortController();
  client.check(base.name, base.files, adapters, { outDtype: store.state.outDtype, dtypeMergedOnly: store.state.dtypeMergedOnly, imatrix: readImatrix() }, checkWork.signal).then(
    (check) => {
      if (request !== checkRequest || forPlan !== planRequest) return;
      store.setCheck(check);
      const fresh = check.problems.filter((p) => !before.has(p.message));
      const errors = fresh.filter((p) => p.severity === 'error');
      if (errors.length) announcer.error(errors.map((p) => `Error: ${p.message}`).join(' '));
      else if (fresh.length) announcer.say(fresh.map((p) => `Warning: ${p.message}`).join(' '));
    },
    (error: Error) => {
      if (request !== checkRequest || forPlan !== planRequest) return;
      announcer.error(spokenMessage(error.message));
    },
  );
}

store.changed();
