/**
 * Section 3: what the plan found, before anything is merged, as the CLI reports it: counts, every
 * error and warning (listed, and announced by main.ts), notes on what the merged model gains, the
 * modules left out and why, the chart, each module's algorithm, scale and size, and what happens to
 * each file written. Weight changes only redraw the chart and the table's last two columns; problems
 * are redrawn when a check at new weights brings others.
 */
import { byId, el, listed, messageNodes, textNodes, unlistedLine } from '../dom.js';
import { formatBytes, formatScale } from '../format.js';
import { CHART_CAPTION, MagnitudeChart } from '../magnitude-chart.js';
import { blockedBy, type PageState } from '../page-state.js';
import type { OutputFilePlan, PlanSummary, Problem } from '../worker-protocol.js';

function stat(value: string, label: string): HTMLElement {
  return el('div', { className: 'stat' }, el('b', { textContent: value }), el('span', { textContent: label }));
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What the merge does to one weight file, given the output dtype chosen. */
export function fileFate(file: OutputFilePlan, plan: PlanSummary, outDtype: string, mergedOnly = false): string {
  return tensorsFate(file, plan, outDtype, mergedOnly) + headFate(file);
}

/** A tied output head is no tensor of the file, or a new one: said, so the counts add up. */
function headFate(file: OutputFilePlan): string {
  const head = file.head;
  if (!head) return '';
  if (head.how === 'tied') return `; the output head ${head.name} stays tied to ${head.embedding} and changes with it`;
  return head.changed
    ? `; ${head.name} is written as a tensor of its own (untied from the embedding)`
    : `; ${head.name} is added as a tensor of its own, holding the embedding as it was (untied from it)`;
}

function tensorsFate(file: OutputFilePlan, plan: PlanSummary, outDtype: string, mergedOnly: boolean): string {
  const chosen = outDtype === 'same' ? undefined : outDtype;
  const safetensors = plan.base.container === 'safetensors';
  const dequantized = file.dequantized > 0 ? `; its ${plural(file.dequantized, 'quantized weight')} dequantized and written as ${chosen ?? 'floats'}` : '';
  if (chosen && mergedOnly) {
    const type = safetensors ? chosen : chosen.toUpperCase();
    if (file.changed > 0) return `merged: ${file.changed} of ${plural(file.tensors, 'tensor')} change and are written as ${type}; the others are copied as stored${dequantized}`;
    return file.dequantized > 0 ? `no adapter changes it${dequantized}, the rest copied as it is` : 'nothing in it changes: copied as it is';
  }
  if (file.changed > 0) {
    const written = !chosen ? '' : safetensors ? `, every float tensor written as ${chosen}` : `, every matrix llama-quantize quantizes written as ${chosen.toUpperCase()}`;
    return `merged: ${file.changed} of ${plural(file.tensors, 'tensor')} change${written}${dequantized}`;
  }
  if (chosen && safetensors) return `nothing in it changes; every float tensor converted to ${chosen} (copied as it is if already ${chosen})${dequantized}`;
  if (chosen) return `nothing in it changes; every matrix llama-quantize quantizes converted to ${chosen.toUpperCase()}`;
  if (dequantized) return `no adapter changes it${dequantized}, the rest copied as it is`;
  if (file.mirrorable) return 'nothing in it changes: copied byte for byte';
  return 'nothing in it changes: its tensors are copied as they are, with the merge’s record in its metadata';
}

export function mountPlanPanel(): (state: PageState) => void {
  const status = byId('plan-status');
  const blocked = byId('plan-blocked');
  const planBox = byId('plan');
  const stats = byId('plan-stats');
  const problemsHeading = byId('plan-problems-heading');
  const problems = byId<HTMLUListElement>('plan-problems');
  const notesBox = byId('plan-notes-box');
  const notes = byId<HTMLUListElement>('plan-notes');
  const leftOutBox = byId('left-out-box');
  const leftOutHeading = byId('left-out-heading');
  const leftOutBody = byId<HTMLTableElement>('left-out-table').tBodies[0];
  const modulesTable = byId<HTMLTableElement>('plan-modules');
  const body = modulesTable.tBodies[0];
  const filesBox = byId('plan-files-box');
  const files = byId<HTMLUListElement>('plan-files');
  const canvas = byId<HTMLCanvasElement>('magnitude-chart');
  const figure = canvas.closest('figure')!;
  const chart = new MagnitudeChart(canvas, byId('chart-readout'));
  byId('chart-caption').textContent = CHART_CAPTION;
  let shownModules: PlanSummary['modules'] | undefined;
  let shownProblems: Problem[] | undefined;
  let shownWeights = '';
  let shownFiles = '';

  return (state) => {
    const plan = state.plan.status === 'ready' ? state.plan.plan : undefined;
    const weights = state.adapters.map((a) => a.weight);
    status.className = 'hint';
    planBox.hidden = !plan;
    status.hidden = !!plan;
    if (state.plan.status === 'none') {
      // Only what is still missing: a picked base (or the user's adapter after the sample) is not asked for again.
      const missing = state.base ? 'Add at least one adapter' : state.adapters.length ? 'Pick a base model' : 'Pick a base model and at least one adapter';
      status.textContent = `${missing} to see what will change.`;
    }
    if (state.plan.status === 'planning') status.textContent = 'Reading headers and measuring each update…';
    if (state.plan.status === 'failed') {
      status.className = 'error-text';
      status.replaceChildren(...messageNodes(state.plan.message));
    }
    const blocker = blockedBy(state.plan, state.adapters);
    blocked.hidden = !blocker;
    blocked.textContent = blocker ?? '';
    if (!plan) {
      shownModules = undefined;
      shownProblems = undefined;
      shownFiles = '';
      return;
    }
    if (plan.modules !== shownModules) {
      // A new plan (a check at new weights keeps the modules and brings only problems).
      shownModules = plan.modules;
      shownWeights = '';
      stats.replaceChildren(
        stat(String(plan.modules.length), 'modules matched'),
        // Counted over the files written, not the modules' targets: a module may change a bias
        // beside its weight (RoAd turns it with the weight's rows, PEFT's lora_B.bias adds to it).
        stat(String(plan.files.reduce((n, f) => n + f.changed, 0)), 'base tensors changed'),
        ...(plan.leftOut.length ? [stat(String(plan.leftOut.length), 'modules left out')] : []),
        stat(String(plan.base.tensors), 'base tensors'),
        stat(formatBytes(plan.base.bytes), `base (${plan.base.dtype}, ${plan.base.container})`),
      );
      notesBox.hidden = plan.notes.length === 0;
      notes.replaceChildren(...plan.notes.map((n) => el('li', {}, ...textNodes(n))));
      leftOutBox.hidden = plan.leftOut.length === 0;
      leftOutHeading.textContent = `${plural(plan.leftOut.length, 'module')} left out, not merged`;
      const leftOut = listed(plan.leftOut);
      leftOutBody.replaceChildren(...leftOut.rows.map((m) => {
        const row = el('tr');
        // Names and reasons wrap after _ . - / on a phone (textNodes), not mid-word.
        for (const text of [plan.adapters[m.adapter]?.name ?? '', m.module, m.reason]) {
          row.append(el('td', { title: text }, ...textNodes(text)));
        }
        return row;
      }), ...unlistedRow(leftOut.more, 'modules left out', 3));
    }
    if (plan.problems !== shownProblems) {
      shownProblems = plan.problems;
      const errors = plan.problems.filter((p) => p.severity === 'error').length;
      const warnings = plan.problems.length - errors;
      problemsHeading.hidden = plan.problems.length === 0;
      problemsHeading.className = errors ? 'problems-heading' : 'warnings-heading';
      problemsHeading.textContent = errors
        ? `${plural(errors, 'error')} stop${errors === 1 ? 's' : ''} the merge${warnings ? `; ${plural(warnings, 'warning')}` : ''}`
        : `${plural(warnings, 'warning')}: the merge can run, but read ${warnings === 1 ? 'it' : 'them'} first`;
      // Cut short, the list still holds the errors first: the worker lists them before the warnings.
      const listedProblems = listed(plan.problems);
      problems.replaceChildren(...(plan.problems.length
        ? listedProblems.rows.map((p) => el('li', { className: p.severity }, ...textNodes(`${p.severity}: ${p.message}`)))
        : [el('li', { className: 'ok', textContent: '✓ Every adapter module found its base tensor.' })]),
      ...(listedProblems.more ? [el('li', { textContent: unlistedLine(listedProblems.more, 'errors and warnings') })] : []));
    }
    const filesKey = `${plan.base.name}\u0000${state.outDtype}\u0000${state.dtypeMergedOnly}\u0000${plan.files.length}`;
    if (filesKey !== shownFiles) {
      shownFiles = filesKey;
      // Only a folder needs saying: a one-file model is the one file it writes.
      filesBox.hidden = plan.files.length + plan.copied.length <= 1;
      files.replaceChildren(
        ...plan.files.map((f) => el('li', {}, el('code', { textContent: f.path, title: f.path }), `: ${fileFate(f, plan, state.outDtype, state.dtypeMergedOnly)}`)),
        ...(plan.copied.length ? [el('li', { textContent: `${plural(plan.copied.length, 'other file')} (configs, tokenizer, scheduler…) copied unchanged: ${copiedNames(plan.copied)}` })] : []),
      );
    }
    figure.hidden = plan.magnitudes.length === 0; // nothing matched: no chart to show
    // ... and no table to open (the errors say why).
    modulesTable.closest('details')!.hidden = plan.modules.length === 0;
    const key = weights.join(',');
    if (key !== shownWeights) {
      shownWeights = key;
      chart.update(plan.magnitudes, weights);
      // Each module's own bar before the chart averages it into its block: a bias-only module has none.
      const ratios = new Map(plan.magnitudes.map((m) => [`${m.adapter}\n${m.module}\n${m.target}`, m.ratio]));
      const modules = listed(plan.modules);
      body.replaceChildren(...modules.rows.map((m) => {
        const row = el('tr');
        const target = m.rows ? `${m.target} (${m.rows})` : m.target;
        const algorithm = m.rank !== undefined ? `${m.algorithm}, r = ${m.rank}` : m.algorithm;
        const ratio = ratios.get(`${m.adapter}\n${m.module}\n${m.target}`);
        // NaN: PEFT DEFT or PEANuT on a large weight, whose change needs every row of W (update-magnitudes.ts).
        const size = ratio !== undefined && Number.isNaN(ratio) ? 'not measured (needs all of W)'
          : ratio === undefined || !Number.isFinite(ratio) ? '—' : `${((weights[m.adapter] ?? 0) * ratio * 100).toPrecision(3)} %`;
        // Two adapters on the same tensors give rows alike but for the adapter, named as on its card;
        // the module is the row's header, so a screen reader says which module each cell is of.
        const adapter = plan.adapters[m.adapter]?.name ?? '';
        row.append(el('td', { title: adapter }, ...textNodes(adapter)), el('th', { scope: 'row', title: m.module }, ...textNodes(m.module)));
        row.append(el('td', { title: target }, ...textNodes(target)));
        for (const text of [algorithm, m.shape.join(' × '), formatScale(m.scale * (weights[m.adapter] ?? 0)), size]) {
          row.append(el('td', { textContent: text, title: text }));
        }
        return row;
      }), ...unlistedRow(modules.more, 'modules', 7));
    }
  };
}

/** A table's last row counting the rows it leaves out, across its `columns`; none when it lists all. */
function unlistedRow(more: number, what: string, columns: number): HTMLTableRowElement[] {
  return more ? [el('tr', {}, el('td', { colSpan: columns, textContent: unlistedLine(more, what) }))] : [];
}

/** The copied files' names, the first MAX_LISTED_ROWS of a folder of thousands (a dataset beside the weights), and how many more. */
function copiedNames(copied: readonly string[]): string {
  const { rows, more } = listed(copied);
  return rows.join(', ') + (more ? ` ${unlistedLine(more, 'files')}` : '');
}
