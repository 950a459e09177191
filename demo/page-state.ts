/**
 * The page's state in one place, and the rules that keep results honest: changing the base or the
 * adapters withdraws an earlier result (its files are deleted); changing a weight or the dtype marks
 * it out of date. Panels read the state and call the actions; the store tells them to redraw.
 */
import type { BackendChoice, OutputTypeChoice } from '../src/index.js';
import { COFT_LABEL } from './page-wording.js';
import { ResultStore } from './result-store.js';
import { holdsGgufModel } from '../src/formats/open-model.js';
import type { AdapterReading, BackendInfo, MergedFile, PickedFile, PlanCheck, PlanSummary } from './worker-protocol.js';

/** A file or a folder as the user picked it; the sample's own files are marked so they never mix. */
export interface PickedSet {
  name: string;
  files: PickedFile[];
  origin: 'user' | 'sample';
  /**
   * True where `name` is the folder's the files were picked or dropped as (the library's
   * InputFileSet.namesFolder): a GGUF conversion takes general.name from it. Loose files are only
   * labelled (`PEFT adapter`), and a name made apart (`lora #2`) is no folder's.
   */
  namesFolder?: boolean;
}

/**
 * The sets named apart from `taken` and from each other: loose files are named after what they are
 * (two PEFT picks are both `PEFT adapter`, two folders may both be `lora`), so a second one becomes
 * `PEFT adapter #2`, and cards, weight sliders and messages tell them apart. The mark is `#n`, not
 * `(n)`, because `lora (2)` is what a browser or a file manager names a copied folder: a folder
 * really named so keeps its name and is never read as the page's second `lora`, nor doubled into
 * `lora (2) (2)`. A set's own name is kept before any made one is given out.
 */
export function namedApart(sets: readonly PickedSet[], taken: Iterable<string>): PickedSet[] {
  const names = new Set(taken);
  const keeps = sets.map((set) => !names.has(set.name) && (names.add(set.name), true));
  return sets.map((set, i) => {
    if (keeps[i]) return set;
    let name = '';
    for (let n = 2; names.has((name = `${set.name} #${n}`)); n++);
    names.add(name);
    const { namesFolder: _renamed, ...rest } = set;
    return { ...rest, name };
  });
}

export interface AdapterEntry {
  /** Stable across removals, for DOM keys. */
  id: number;
  set: PickedSet;
  weight: number;
  /**
   * The card's "OneTrainer COFT", offered where the plan says the file asks for it (a OneTrainer
   * OFT file of the COFT commits saved without its training config): false off, true on at
   * OneTrainer's default coft_eps, a number on at that coft_eps; undefined, not said (refused).
   */
  oneTrainerCoft?: boolean | number;
}

export type PlanState =
  | { status: 'none' }
  | { status: 'planning' }
  | { status: 'ready'; plan: PlanSummary }
  /** `adapters`: each adapter read alone (absent when the worker could not say). */
  | { status: 'failed'; message: string; adapters?: AdapterReading[] };

/**
 * When adapters cannot be read: which, and what to do, a sentence for each way out: a OneTrainer
 * OFT file whose COFT setting is not said yet (`adapters`: the page's entries, in the plan's order)
 * is read once it is said on its card; any other is removed, or fixed and picked again. The plan
 * is not made without them (that would be a merge of other adapters than the ones picked).
 */
export function blockedBy(plan: PlanState, adapters: readonly Pick<AdapterEntry, 'oneTrainerCoft'>[] = []): string | undefined {
  if (plan.status !== 'failed') return undefined;
  const unread = (plan.adapters ?? []).map((a, i) => ({ a, i })).filter(({ a }) => 'error' in a);
  if (unread.length === 0) return undefined;
  // A OneTrainer OFT file whose COFT setting is not said yet: its card has the setting that reads it.
  const asks = unread.filter(({ a, i }) => 'asksCoft' in a && a.asksCoft === true && adapters[i]?.oneTrainerCoft === undefined).map(({ a }) => a.name);
  const others = unread.map(({ a }) => a.name).filter((name) => !asks.includes(name));
  const sentences: string[] = [];
  if (asks.length) {
    const its = asks.length === 1 ? 'its card' : 'their cards';
    sentences.push(`The plan is blocked by ${asks.join(', ')}, which cannot be read until you say how ${asks.length === 1 ? 'it was' : 'they were'} trained: choose under “${COFT_LABEL}” on ${its}, or remove ${asks.length === 1 ? 'it' : 'them'}.`);
  }
  if (others.length) {
    const them = others.length === 1 ? 'it' : 'them';
    sentences.push(`The plan is blocked by ${others.join(', ')}, which cannot be read: remove ${them}, or fix ${them} and pick ${them} again.`);
  }
  return sentences.join(' ');
}

export interface MergeResultState {
  /** Browser-storage folder holding the files (deleted when withdrawn). */
  job?: string;
  files: MergedFile[];
  /** Where they went, in words, and the base name the downloads are named after. */
  where: string;
  baseName: string;
  seconds: number;
  backend: BackendInfo;
  /** What the merge itself found (NaN/Inf the base already held in tensors it copied…). */
  warnings: string[];
  /** The settings it was made with, to tell whether it is out of date. */
  settings: string;
  stale: boolean;
}

/** An importance matrix picked for a GGUF base (the CLI's --imatrix), read as soon as it is picked. */
export type ImatrixState =
  | { file: PickedFile; status: 'reading' }
  | { file: PickedFile; status: 'ready'; tensors: number }
  | { file: PickedFile; status: 'failed'; message: string };

export interface PageState {
  base?: PickedSet;
  /** Used only while the base is a GGUF (the box is shown then); kept across bases until removed. */
  imatrix?: ImatrixState;
  adapters: AdapterEntry[];
  outDtype: string;
  /** The output dtype for the tensors the merge changes only (the CLI's --dtype-merged-only). */
  dtypeMergedOnly: boolean;
  plan: PlanState;
  /** What runs now: buttons of that work stay disabled. */
  busy?: 'sample' | 'merge';
  result?: MergeResultState;
  /**
   * Threads of the CPU (the CLI's --threads), the count last committed in the header's "CPU
   * threads" box (a run commits what is typed there first: forRun), for every job the page runs
   * (the merge here, the adapter jobs through mountJobPanel); undefined where the page cannot have worker threads (not cross-origin
   * isolated: one thread, the library's say).
   */
  threads?: number;
  /** What is wrong with the box's entry as typed (0, 1.5, empty): Merge (and each job's run button) stays off until it is fixed. */
  threadsProblem?: string;
  /** The header's "Run on" choice, which every job the page runs takes. */
  backendChoice: BackendChoice;
  /** What the header's backend choice resolved to (`auto` picks per machine), once the worker says. */
  backend?: BackendInfo;
}

/**
 * What runs, as a drop refused meanwhile says it (`a merge was running`): in the past tense, since
 * the refusal stays on the page after the work has ended. Undefined when nothing runs.
 */
export function busyWith(state: PageState): string | undefined {
  if (state.busy === 'merge') return 'a merge was running';
  if (state.busy === 'sample') return 'the sample was being made';
  return undefined;
}

export class PageStore extends ResultStore<PageState, MergeResultState> {
  private nextAdapterId = 1;
  /** Called after the base or the adapters changed: the plan must be made again. */
  onInputsChanged: () => void = () => {};
  /** Called after a weight or the output dtype changed: the plan's warnings depend on them (weight 0, a GGUF re-quantized…). */
  onCheckSettingsChanged: () => void = () => {};

  constructor() {
    super({ adapters: [], outDtype: 'same', dtypeMergedOnly: false, plan: { status: 'none' }, backendChoice: 'auto' });
  }

  /** A key of everything a merge depends on besides the files (an importance matrix counts as a setting). */
  settingsKey(): string {
    const s = this.state;
    const imatrix = this.imatrixApplies() && s.imatrix ? [s.imatrix.file.path, s.imatrix.file.file.size, s.imatrix.file.file.lastModified] : null;
    return JSON.stringify([s.outDtype, s.outDtype !== 'same' && s.dtypeMergedOnly, s.adapters.map((a) => a.weight), imatrix, s.adapters.map((a) => a.oneTrainerCoft ?? null)]);
  }

  /** Whether the base is a GGUF, the one container an importance matrix is for (open-model.ts's rule). */
  imatrixApplies(): boolean {
    return this.state.base !== undefined && holdsGgufModel(this.state.base.files.map((f) => f.path));
  }

  /**
   * An importance matrix picked (undefined: removed); it is read next (setImatrixInfo). Removed, an
   * output type written only with one goes back to keeping each tensor's type: returns it, for the page to say.
   */
  setImatrix(file: PickedFile | undefined): string | undefined {
    const named = this.state.imatrix?.status === 'ready';
    this.state.imatrix = file && { file, status: 'reading' };
    const dropped = this.dropUnoffered();
    this.settingsChanged();
    // The plan's warnings named the matrix read: they no longer may.
    if (dropped || named) this.onCheckSettingsChanged();
    return dropped;
  }

  /** What reading `file` found; dropped if another was picked meanwhile. One that failed takes its types with it (setImatrix). */
  setImatrixInfo(info: ImatrixState): void {
    if (this.state.imatrix?.file !== info.file) return;
    this.state.imatrix = info;
    const dropped = this.dropUnoffered();
    if (dropped) this.settingsChanged();
    // Read, the plan's warnings name it as the CLI's plan with --imatrix does (and its check against the base is made).
    if (dropped || (info.status === 'ready' && this.imatrixApplies())) this.onCheckSettingsChanged();
    this.changed();
  }

  /**
   * The output types the dtype menu offers: the base container's, and those written only with an
   * importance matrix (a GGUF's IQ2 types) while one is picked for a GGUF base and not refused.
   */
  offeredTypes(): OutputTypeChoice[] {
    const s = this.state;
    if (s.plan.status !== 'ready') return [];
    const { types, imatrixTypes = [] } = s.plan.plan.output;
    return this.imatrixApplies() && s.imatrix && s.imatrix.status !== 'failed' ? [...types, ...imatrixTypes] : [...types];
  }

  /** An output dtype the menu no longer offers becomes 'same' (keep each tensor's type); returns it. */
  private dropUnoffered(): string | undefined {
    const wanted = this.state.outDtype;
    if (this.state.plan.status !== 'ready' || wanted === 'same' || this.offeredTypes().some((t) => t.name === wanted)) return undefined;
    this.state.outDtype = 'same';
    return wanted;
  }

  setBase(set: PickedSet): void {
    const s = this.state;
    // The sample's adapter never meets the user's base, nor the sample's base the user's adapters.
    if (set.origin === 'user') s.adapters = s.adapters.filter((a) => a.set.origin === 'user');
    s.base = set;
    this.inputsChanged();
  }

  addAdapters(sets: PickedSet[]): void {
    const s = this.state;
    if (sets.length === 0) return;
    if (sets.some((x) => x.origin === 'user') && s.base?.origin === 'sample') s.base = undefined;
    s.adapters = s.adapters.filter((a) => a.set.origin === 'user' || sets.every((x) => x.origin === 'sample'));
    for (const set of namedApart(sets, s.adapters.map((a) => a.set.name))) s.adapters.push({ id: this.nextAdapterId++, set, weight: 1 });
    this.inputsChanged();
  }

  /** The sample replaces everything, the output dtype included (its base is a safetensors file). */
  useSample(base: PickedSet, adapter: PickedSet): void {
    this.state.outDtype = 'same';
    this.state.dtypeMergedOnly = false;
    this.state.base = base;
    this.state.adapters = [{ id: this.nextAdapterId++, set: adapter, weight: 1 }];
    this.inputsChanged();
  }

  removeAdapter(id: number): void {
    this.state.adapters = this.state.adapters.filter((a) => a.id !== id);
    this.inputsChanged();
  }

  setWeight(id: number, weight: number): void {
    const adapter = this.state.adapters.find((a) => a.id === id);
    if (!adapter || adapter.weight === weight) return;
    adapter.weight = weight;
    this.settingsChanged();
    this.onCheckSettingsChanged();
  }

  /**
   * The card's "OneTrainer COFT": how the file's modules are read, so the plan is made again (the
   * refusal goes, or comes back); a result made with another setting is out of date, as after a
   * weight changed (its files stay until the next merge).
   */
  setOneTrainerCoft(id: number, coft: boolean | number | undefined): void {
    const adapter = this.state.adapters.find((a) => a.id === id);
    if (!adapter || adapter.oneTrainerCoft === coft) return;
    if (coft === undefined) delete adapter.oneTrainerCoft;
    else adapter.oneTrainerCoft = coft;
    this.settingsChanged();
    this.state.plan = { status: 'planning' };
    this.changed();
    this.onInputsChanged();
  }

  setOutDtype(dtype: string): void {
    if (this.state.outDtype === dtype) return;
    this.state.outDtype = dtype;
    this.settingsChanged();
    this.onCheckSettingsChanged();
  }

  setDtypeMergedOnly(only: boolean): void {
    this.state.dtypeMergedOnly = only;
    this.settingsChanged();
    // Which tensors the output dtype reaches: what the importance matrix and the saved tensors' checks see.
    if (this.state.outDtype !== 'same') this.onCheckSettingsChanged();
  }

  /**
   * The CPU threads box's entry as it is typed: what is wrong with it (0, 1.5, empty), or undefined
   * for a count. The count itself is not taken here: a new count asks the header for a new backend
   * (with `auto`, a new calibration), so it is taken once committed (setThreads), not per key.
   */
  setThreadsProblem(problem: string | undefined): void {
    if (this.state.threadsProblem === problem) return;
    this.state.threadsProblem = problem;
    this.changed();
  }

  /**
   * The CPU threads box's committed count (Tab or a click away, Enter, an arrow key). Not in
   * settingsKey, as the backend is not: the merged bytes are the same for any count (the
   * library's guarantee), so a result made with other threads is still the current settings'
   * file, and its note says how many threads made it. The same count again changes nothing.
   */
  setThreads(threads: number): void {
    if (this.state.threads === threads && this.state.threadsProblem === undefined) return;
    this.state.threads = threads;
    this.state.threadsProblem = undefined;
    this.changed();
  }

  /**
   * Takes what the header's CPU threads box holds but has not committed (a count typed, the box not
   * yet left): set by the box, called by {@link forRun} only.
   */
  commitThreads: () => void = () => {};

  /**
   * The header's settings as a run starts, the box's typed count committed first. Every run the page
   * starts (Merge, the sample, Combine, Resize, Extract) reads its backend and threads here, however it
   * was started: a click or a key that moved no focus from the box (assistive tools, a script) left a
   * count typed there uncommitted, and the run took the older one while the box showed the new one.
   */
  forRun(): Pick<PageState, 'backendChoice' | 'threads' | 'threadsProblem'> {
    this.commitThreads();
    const { backendChoice, threads, threadsProblem } = this.state;
    return { backendChoice, threads, threadsProblem };
  }

  /** The header's "Run on" choice (asked for at once; what it resolves to comes with setBackend). */
  setBackendChoice(choice: BackendChoice): void {
    this.state.backendChoice = choice;
  }

  /** What the header's backend resolved to. */
  setBackend(backend: BackendInfo | undefined): void {
    this.state.backend = backend;
    this.changed();
  }

  /**
   * A new plan. An output dtype the base's container does not offer goes back to keeping each
   * tensor's type; returns the dtype dropped so, for the page to say.
   */
  setPlan(plan: PlanState): string | undefined {
    this.state.plan = plan;
    // A new plan means new inputs: no result is left to mark.
    const dropped = this.dropUnoffered();
    this.changed();
    return dropped;
  }

  /** The plan's problems at the current weights replace those it came with. */
  setCheck(check: PlanCheck): void {
    if (this.state.plan.status !== 'ready') return;
    this.state.plan = { status: 'ready', plan: { ...this.state.plan.plan, ...check } };
    this.changed();
  }

  private inputsChanged(): void {
    this.newInputs();
    this.state.plan = this.state.base && this.state.adapters.length ? { status: 'planning' } : { status: 'none' };
    this.changed();
    this.onInputsChanged();
  }

  private settingsChanged(): void {
    const result = this.state.result;
    if (result) result.stale = result.settings !== this.settingsKey();
    this.changed();
  }

  /** Why merging is not possible now, or undefined when it is. */
  mergeBlocker(): string | undefined {
    const s = this.state;
    if (s.busy === 'merge') return 'A merge is running.';
    if (s.busy === 'sample') return 'The sample is being prepared.';
    if (!s.base) return 'Pick a base model first.';
    if (s.adapters.length === 0) return 'Add at least one adapter.';
    if (s.plan.status === 'planning') return 'Checking the plan…';
    if (s.plan.status === 'failed') return blockedBy(s.plan, s.adapters) ?? 'The inputs could not be read: see the plan.';
    if (s.plan.status === 'ready' && !s.plan.plan.mergeable) {
      const n = s.plan.plan.problems.filter((p) => p.severity === 'error').length;
      return `The plan has ${n} error${n === 1 ? '' : 's'}: fix ${n === 1 ? 'it' : 'them'} first.`;
    }
    if (s.plan.status === 'ready' && s.plan.plan.output.refused[s.outDtype]) {
      return `This model cannot be written as ${s.outDtype}: choose another output dtype.`;
    }
    if (s.threadsProblem) return s.threadsProblem;
    if (s.imatrix && this.imatrixApplies()) {
      if (s.imatrix.status === 'reading') return 'Reading the importance matrix…';
      if (s.imatrix.status === 'failed') return `${s.imatrix.file.path} cannot be used: remove it or pick another importance matrix.`;
    }
    return undefined;
  }
}
