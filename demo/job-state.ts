/**
 * The adapter jobs' state (combine, resize, extract, convert), apart from the merge's: which mode the page
 * is in, each mode's inputs, what runs, each mode's last result and the last failure's problems.
 * The same rules as the merge's keep results honest, per mode: changing a mode's input withdraws
 * that mode's result (its files are deleted) and no other; changing a setting marks out of date
 * every result that setting fed (the output format is every mode's).
 */
import { namedApart, type AdapterEntry, type PickedSet } from './page-state.js';
import type { AdapterFacts, JobDone, JobMode, ModelSlot } from './job-protocol.js';
import type { BaseFacts } from './worker-protocol.js';
import { ResultStore } from './result-store.js';

export type PageMode = 'merge' | JobMode;

export type AdapterInfo =
  | { status: 'reading' }
  | { status: 'ready'; facts: AdapterFacts }
  /** `refused`: read, but the mode's job cannot take it (convert's refusal of a kohya file), not unreadable. */
  | { status: 'failed'; message: string; refused?: boolean };

/** An extraction's base or fine-tuned model, or a conversion's model, read as soon as it is picked. */
export type ModelInfo =
  | { status: 'reading' }
  | { status: 'ready'; facts: BaseFacts }
  | { status: 'failed'; message: string };

export type { ModelSlot };

/** A conversion's adapter (`adapterId`) checked against its model (`target`): under way, or done with convert's refusal or none. */
export type ConvertCheck = { adapterId: number; target: PickedSet } & ({ status: 'checking' } | { status: 'done'; refusal?: string });

export interface JobAdapter extends AdapterEntry {
  info: AdapterInfo;
}

export interface JobResult extends JobDone {
  mode: JobMode;
  /** The name the downloads carry (`<stem>-combined`, …). */
  outName: string;
  /** The settings it was made with, to tell whether it is out of date. */
  settings: string;
  stale: boolean;
}

export interface JobState {
  mode: PageMode;
  /** combine's adapters. */
  adapters: JobAdapter[];
  /** resize's adapter. */
  single?: JobAdapter;
  /** convert's adapter. */
  toConvert?: JobAdapter;
  base?: PickedSet;
  tuned?: PickedSet;
  /** convert's model: the one the llama.cpp LoRA is for. */
  target?: PickedSet;
  /**
   * convert's adapter checked against its model once both were read (what convert refuses of that
   * adapter on that model); it stands for that adapter and model only.
   */
  convertCheck?: ConvertCheck;
  /** What reading the base's, the fine-tuned model's and convert's model's headers found (set with each pick). */
  modelInfo: Partial<Record<ModelSlot, ModelInfo>>;
  busy: boolean;
  /** Each mode's last result: one mode's new inputs or new run leave the others' as they are. */
  results: Partial<Record<JobMode, JobResult>>;
  /** The last failure, one problem per line. */
  errors: string[];
}

export class JobStore extends ResultStore<JobState, JobResult> {
  private nextId = 1;
  /** A key of every setting of `mode` besides the files (set by the options panel). */
  settingsKey: (mode: JobMode) => string = () => '';

  constructor() {
    super({ mode: 'merge', adapters: [], modelInfo: {}, busy: false, results: {}, errors: [] });
  }

  /** The current mode's result (none in the merge mode). */
  result(): JobResult | undefined {
    return this.current();
  }

  protected override current(): JobResult | undefined {
    return this.state.mode === 'merge' ? undefined : this.state.results[this.state.mode];
  }

  protected override place(result: JobResult | undefined): void {
    if (this.state.mode === 'merge') return;
    if (result) this.state.results[this.state.mode] = result;
    else delete this.state.results[this.state.mode];
  }

  /** Withdraws every mode's out-of-date result, not only the current mode's. */
  override withdrawStale(): void {
    const stale = Object.values(this.state.results).filter((result) => result.stale);
    for (const result of stale) {
      delete this.state.results[result.mode];
      this.onWithdraw(result);
    }
    if (stale.length) this.changed();
  }

  setMode(mode: PageMode): void {
    if (this.state.mode === mode) return;
    this.state.mode = mode;
    // Another mode works on other inputs: the last run's line and problems no longer describe them.
    this.inputsRevision++;
    this.state.errors = [];
    this.settingsChanged();
  }

  /** combine adds each set; resize and convert keep the last one picked. Returns the entries made (to be described). */
  addAdapters(sets: PickedSet[]): JobAdapter[] {
    if (sets.length === 0) return [];
    const one = this.state.mode === 'resize' || this.state.mode === 'convert';
    const taken = one ? [] : this.state.adapters.map((a) => a.set.name);
    const made = namedApart(sets, taken).map((set) => ({ id: this.nextId++, set, weight: 1, info: { status: 'reading' } as AdapterInfo }));
    if (this.state.mode === 'resize') this.state.single = made[made.length - 1];
    else if (this.state.mode === 'convert') this.state.toConvert = made[made.length - 1];
    else this.state.adapters.push(...made);
    this.inputsChanged();
    return one ? made.slice(-1) : made;
  }

  removeAdapter(id: number): void {
    if (this.state.single?.id === id) this.state.single = undefined;
    if (this.state.toConvert?.id === id) this.state.toConvert = undefined;
    this.state.adapters = this.state.adapters.filter((a) => a.id !== id);
    this.inputsChanged();
  }

  setWeight(id: number, weight: number): void {
    const adapter = this.state.adapters.find((a) => a.id === id);
    if (!adapter || adapter.weight === weight) return;
    adapter.weight = weight;
    this.settingsChanged();
  }

  setAdapterInfo(id: number, info: AdapterInfo): void {
    const adapter = this.state.adapters.find((a) => a.id === id) ?? [this.state.single, this.state.toConvert].find((a) => a?.id === id);
    if (!adapter) return;
    adapter.info = info;
    this.changed();
  }

  setModel(which: ModelSlot, set: PickedSet): void {
    this.state[which] = set;
    this.state.modelInfo[which] = { status: 'reading' };
    this.inputsChanged();
  }

  /** What reading `set`'s headers found; dropped if another model took its place meanwhile. */
  setModelInfo(which: ModelSlot, set: PickedSet, info: ModelInfo): void {
    if (this.state[which] !== set) return;
    this.state.modelInfo[which] = info;
    this.changed();
  }

  /** The conversion's check of its adapter against its model: kept only while both are still the ones checked. */
  setConvertCheck(check: ConvertCheck): void {
    if (this.state.toConvert?.id !== check.adapterId || this.state.target !== check.target) return;
    this.state.convertCheck = check;
    this.changed();
  }

  /** convert's refusal of its adapter on its model, where both are the ones checked and it was refused. */
  convertRefusal(): string | undefined {
    const check = this.currentConvertCheck();
    return check?.status === 'done' ? check.refusal : undefined;
  }

  private currentConvertCheck(): ConvertCheck | undefined {
    const check = this.state.convertCheck;
    return check && check.adapterId === this.state.toConvert?.id && check.target === this.state.target ? check : undefined;
  }

  setErrors(errors: string[]): void {
    this.state.errors = errors;
    this.changed();
  }

  /** Re-checks whether each mode's result matches that mode's current settings. */
  settingsChanged(): void {
    for (const result of Object.values(this.state.results)) result.stale = result.settings !== this.settingsKey(result.mode);
    this.changed();
  }

  private inputsChanged(): void {
    this.newInputs();
    this.state.errors = [];
    this.changed();
  }

  /** The adapters the current mode works on. */
  modeAdapters(): JobAdapter[] {
    if (this.state.mode === 'combine') return this.state.adapters;
    if (this.state.mode === 'resize') return this.state.single ? [this.state.single] : [];
    if (this.state.mode === 'convert') return this.state.toConvert ? [this.state.toConvert] : [];
    return [];
  }

  /** Why the current mode's job cannot run now, or undefined when it can. */
  blocker(): string | undefined {
    const s = this.state;
    if (s.busy) return 'A job is running.';
    if (s.mode === 'combine' && s.adapters.length === 0) return 'Add the adapters to combine.';
    if (s.mode === 'resize' && !s.single) return 'Pick the adapter to resize.';
    if (s.mode === 'extract' && !s.base) return 'Pick the base model.';
    if (s.mode === 'extract' && !s.tuned) return 'Pick the fine-tuned model.';
    if (s.mode === 'convert' && !s.toConvert) return 'Pick the PEFT adapter to convert.';
    // An adapter convert refuses whatever the model: no model to ask for first.
    if (s.mode === 'convert' && s.toConvert?.info.status === 'failed' && s.toConvert.info.refused) return `${s.toConvert.set.name} cannot be converted: remove it or pick another.`;
    if (s.mode === 'convert' && !s.target) return 'Pick the model the LoRA is for.';
    if (s.mode === 'extract' || s.mode === 'convert') {
      const slots = s.mode === 'extract' ? (['base', 'tuned'] as const) : (['target'] as const);
      const models = slots.map((which) => ({ set: s[which]!, info: s.modelInfo[which] }));
      const failed = models.find((m) => m.info?.status === 'failed');
      if (failed) return `${failed.set.name} could not be read: pick another.`;
      if (models.some((m) => m.info?.status === 'reading')) return s.mode === 'extract' ? 'Reading the models’ headers…' : 'Reading the model’s headers…';
    }
    const adapters = this.modeAdapters();
    if (adapters.some((a) => a.info.status === 'reading')) return 'Reading the adapters…';
    const failed = adapters.find((a) => a.info.status === 'failed');
    if (failed?.info.status === 'failed' && failed.info.refused) return `${failed.set.name} cannot be converted: remove it or pick another.`;
    if (failed) return `${failed.set.name} could not be read: remove it or pick another.`;
    if (s.mode === 'convert') {
      const check = this.currentConvertCheck();
      if (!check || check.status === 'checking') return 'Checking the adapter against the model…';
      if (check.refusal !== undefined) return `${s.toConvert!.set.name} cannot be converted for ${s.target!.name}: pick another adapter or model.`;
    }
    return undefined;
  }
}
