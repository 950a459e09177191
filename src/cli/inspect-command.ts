/** `loramerge inspect PATH`: what a base model or an adapter holds. */
import { isMergeError } from '../errors.js';
import { ADAPTER_FORMAT_NAMES, openAdapter, type ParsedAdapter } from '../formats/adapter.js';
import type { BaseModel } from '../formats/base-model.js';
import { isFromKnownAdapter } from '../formats/known-adapter.js';
import { openModel } from '../formats/open-model.js';
import type { InputFileSet } from '../io/types.js';
import type { InspectCommand } from './args.js';
import { explainUrlInputError, openCliInput } from './cli-inputs.js';
import { isRequestFailure } from '../io/url-input-files.js';
import { formatBytes } from '../format.js';
import { fileTypeName } from '../formats/gguf/file-type.js';
import { listingLine, oneLine, stdoutLine } from './terminal-text.js';
import { trainedFor } from '../formats/trained-for.js';
import type { AdapterModule } from '../formats/adapter.js';
import { factorRank, isSplitModule } from '../adapter-ops/module-updates.js';
import { SPLIT_QKV_PARTS } from '../formats/algorithms/kohya-split-qkv.js';

/** Errors that mean "this is not an adapter" rather than "this adapter is broken". */
const NOT_AN_ADAPTER = new Set(['UNSUPPORTED_FORMAT', 'NOT_FOUND', 'BAD_ARGUMENT']);

export async function runInspect(cmd: InspectCommand, print: (line: string) => void = stdoutLine): Promise<number> {
  // A path, or an http(s) URL of one file; nothing to cancel here: Ctrl-C ends the process.
  const input = await openCliInput(cmd.path, { what: 'inspect', splitGguf: true, adapter: true });
  const files = input.files;
  let adapter: ParsedAdapter | undefined;
  try {
    adapter = await openAdapter(files);
  } catch (e) {
    // A URL's failed request (an HTTP 404 for its α values) says nothing of what the file is.
    // An input already known as an adapter (a PEFT folder with its weights, a GGUF of general.type
    // "adapter") and refused is no model either: its refusal is the answer, not a listing as a base.
    if (!isMergeError(e) || !NOT_AN_ADAPTER.has(e.code) || isRequestFailure(e) || isFromKnownAdapter(e)) throw explainUrlInputError(e, [input]);
  }
  if (adapter) {
    try {
      describeAdapter(adapter).forEach((l) => print(listingLine(l)));
    } finally {
      await adapter.file.source.close();
    }
    return 0;
  }
  const base = await openModel(files);
  try {
    describeBase(files, base).forEach((l) => print(listingLine(l)));
  } finally {
    await base.close();
  }
  return 0;
}

function dtypeCounts(dtypes: Iterable<string>): string {
  const counts = new Map<string, number>();
  for (const d of dtypes) counts.set(d, (counts.get(d) ?? 0) + 1);
  return [...counts].map(([d, n]) => `${d} ×${n}`).join(', ');
}

function describeBase(files: InputFileSet, base: BaseModel): string[] {
  const tensors = [...base.tensors.values()];
  const bytes = tensors.reduce((sum, t) => sum + t.byteLength, 0);
  const lines = [
    `${files.name}: base model (${base.kind})`,
    `  files: ${base.shards.map((s) => s.path).join(', ')}${base.indexPath ? ' + index' : ''}`,
    `  tensors: ${tensors.length}, ${formatBytes(bytes)}; dtypes: ${dtypeCounts(tensors.map((t) => t.storedType))}`,
  ];
  if (base.kind === 'gguf' && base.metadata) lines.push(ggufIdentity(base.metadata.bind(base)));
  if (base.otherFiles.length) lines.push(`  other files (copied unchanged): ${base.otherFiles.join(', ')}`);
  // What a merge would leave out (a pipeline's root checkpoints, weight variants): said, not just unlisted.
  for (const w of base.warnings) lines.push(`  warning: ${oneLine(w)}`);
  const largest = [...tensors].sort((a, b) => b.byteLength - a.byteLength).slice(0, 5);
  lines.push('  largest tensors:');
  for (const t of largest) lines.push(`    ${t.name} [${t.shape.join('×')}] ${t.storedType} ${formatBytes(t.byteLength)}`);
  return lines;
}

function describeAdapter(adapter: ParsedAdapter): string[] {
  const lines = [
    `${adapter.name}: ${ADAPTER_FORMAT_NAMES[adapter.format]} LoRA${adapter.format === 'peft' || adapter.format === 'gguf' ? ' adapter' : ''} (${adapter.modules.length} module${adapter.modules.length === 1 ? '' : 's'}` +
      `${adapter.replacements.length ? `, ${adapter.replacements.length} full tensors` : ''})`,
    `  factor dtypes: ${dtypeCounts(adapter.modules.flatMap((m) => [...Object.values(m.tensors), ...(m.biasB ? [m.biasB] : [])].map((t) => t.dtype)))}`,
  ];
  const trained = trainedFor(adapter);
  if (trained) lines.push(`  trained for: ${trained}`);
  const kinds = new Map<string, number>();
  for (const m of adapter.modules) {
    const kind = m.update.kind === 'none' ? (m.gloraBias ? 'bias only (GLoRA bias path)' : 'bias only')
      : `${m.kind}${m.algorithm === 'lora' ? '' : ` ${m.algorithm}`}${m.options?.[SPLIT_QKV_PARTS] !== undefined ? ' split_qkv' : ''}${m.dora ? '+dora' : ''}${m.biasB ? '+bias' : ''}${m.gloraBias ? '+glora bias path' : ''}${m.fanInFanOut ? ' (fan_in_fan_out)' : ''}`;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  lines.push(`  layers: ${[...kinds].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  for (const w of adapter.warnings) lines.push(`  warning: ${oneLine(w)}`);
  // Without a base, a diffusers-named file on FLUX.1's names is taken as FLUX.1's (diffusers-flux-alphas.ts).
  if (adapter.modules.some((m) => m.diffusersFluxAlpha)) {
    lines.push('  scales: by diffusers\' FLUX.1 rule (FluxLoraLoaderMixin), taking the file as FLUX.1\'s (or Chroma\'s); merged onto a HunyuanVideo, FLUX.2 or Qwen-Image base, which share these names, each module takes its own .alpha over its rank instead (none: 1)');
  }
  lines.push(`  modules (r, ${adapter.modules.some((m) => m.scaleOrigin?.kind === 'alpha') ? 'α, ' : ''}scale):`);
  for (const m of adapter.modules) {
    const bias = m.biasB ? `${m.update.kind === 'none' ? '' : ' + '}bias ${m.biasB.name.startsWith(`${m.key}.`) ? m.biasB.name.slice(m.key.length + 1) : m.biasB.name} scale=${+(m.biasBScale ?? m.scale).toPrecision(6)}`
      : m.gloraBias ? `${m.update.kind === 'none' ? '' : ' + '}GLoRA bias path (b ⊙ D + E + W·C)` : '';
    lines.push(`    ${m.key}  ${m.update.kind === 'none' ? '' : `r=${rankText(m)}${m.scaleOrigin?.kind === 'alpha' ? ` α=${m.alpha}` : ''} scale=${+m.scale.toPrecision(6)}${m.scaleOrigin?.kind === 'method' ? ` (${m.scaleOrigin.what})` : ''}`}${bias}`);
  }
  for (const r of adapter.replacements) lines.push(`    ${r.key}  full tensor [${r.tensor.shape.join('×')}]`);
  return lines;
}

/**
 * A module's rank as inspect shows it: r, or for a split module (n parts of rank r on consecutive
 * rows, each at the scale of rank r) n×r and the rank of its update, n·r, which is what combine's
 * default rank and resize count (factorRank), not the r its α is read against.
 */
function rankText(m: AdapterModule): string {
  if (!isSplitModule(m)) return String(m.rank);
  const whole = factorRank(m);
  return `${whole / m.rank}×${m.rank} (${m.options?.[SPLIT_QKV_PARTS] !== undefined ? 'split_qkv' : 'split_dims'}, update rank ${whole})`;
}

/**
 * What a llama.cpp user reads a GGUF by: the architecture (which a llama.cpp LoRA must name too)
 * and the file type llama-quantize wrote.
 */
function ggufIdentity(metadata: (key: string) => unknown): string {
  const arch = metadata('general.architecture');
  const fileType = metadata('general.file_type');
  const named = typeof fileType === 'number' ? fileTypeName(fileType) : undefined;
  return `  gguf: architecture ${typeof arch === 'string' ? arch : 'none'} (general.architecture)${typeof fileType === 'number' ? `, file type ${named ?? 'unknown'} (general.file_type ${fileType})` : ''}`;
}
