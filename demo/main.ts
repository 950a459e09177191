/**
 * The demo page: pick a base and adapters, read the plan, merge in a Web Worker, save the result;
 * or, in the other modes, combine, resize or extract adapters.
 * All library calls happen in the worker; this file only wires the panels to one store. Each panel
 * is one module with a render(state) function, so a new panel is one file and one line here.
 */
import { Announcer } from './announcer.js';
import { byId } from './dom.js';
import { PageStore } from './page-state.js';
import { mountAdaptersPanel } from './panels/adapters-panel.js';
import { mountBackendPanel } from './panels/backend-panel.js';
import { mountBasePanel } from './panels/base-panel.js';
import { mountJobPanel } from './panels/job-panel.js';
import { mountMergePanel } from './panels/merge-panel.js';
import { mountModePanel } from './panels/mode-panel.js';
import { mountPlanPanel } from './panels/plan-panel.js';
import { mountSamplePanel } from './panels/sample-panel.js';
import { MergeWorkerClient } from './worker-client.js';

const client = new MergeWorkerClient();
const store = new PageStore();
const announcer = new Announcer(byId('alert'), byId('status'));
const showError = (message: string) => announcer.error(message);

const mergePanel = mountMergePanel(store, client, announcer);
const renderers = [
  mountBackendPanel(client, showError),
  mountSamplePanel(store, client, mergePanel, showError),
  mountBasePanel(store, showError),
  mountAdaptersPanel(store, showError),
  mountPlanPanel(),
  mergePanel.render,
];
store.subscribe((state) => { for (const render of renderers) render(state); });

// Combine, resize and extract: a section, a store and a worker of their own, behind the mode switch.
const jobs = mountJobPanel(announcer);
const mode = mountModePanel((m) => jobs.setMode(m), (m) => announcer.say(m), () => store.state.busy !== undefined || jobs.busy());
store.subscribe(() => mode.render());
jobs.subscribe(() => mode.render());

// Results that must go take their files in browser storage with them.
store.onWithdraw = (result) => {
  if (result.job) client.withdraw(result.job).catch(() => {});
};

/** Only the newest plan request may update the page. */
let planRequest = 0;
store.onInputsChanged = () => {
  const request = ++planRequest;
  const { base, adapters } = store.state;
  if (!base || adapters.length === 0) return;
  client.plan(base.name, base.files, adapters.map((a) => ({ name: a.set.name, files: a.set.files, weight: 1 }))).then(
    (plan) => {
      if (request !== planRequest) return;
      store.setPlan({ status: 'ready', plan });
      const errors = plan.problems.filter((p) => p.severity === 'error');
      if (errors.length) announcer.error(`The plan has ${errors.length} error${errors.length === 1 ? '' : 's'}. First: ${errors[0].message}`);
      else announcer.say(`Plan ready: ${plan.modules.length} modules matched.`);
    },
    (error: Error) => {
      if (request !== planRequest) return;
      store.setPlan({ status: 'failed', message: error.message });
      announcer.error(error.message);
    },
  );
};

client.started.catch((error: Error) => showError(error.message));
store.changed();
