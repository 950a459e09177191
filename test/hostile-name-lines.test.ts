/**
 * Names from hostile files never start a line of a library error's message: a tensor or module
 * name holding a line break (or a carriage return, U+2028 or an ANSI escape) is quoted with it
 * escaped, so an embedder (or the page) that shows `error.message` shows no line the file wrote.
 * The only line breaks a message keeps are those between the problems of a list.
 */
import { describe, expect, it } from 'vitest';
import { isMergeError, memoryInputFileSet, merge, prepareMerge } from '../src/index.js';
import { combineLoras } from '../src/adapter-jobs.js';
import { kohyaFile } from './helpers/adapter-fixtures.js';
import { dense } from './helpers/svd-reference.js';
import { buildGguf, tensorData } from './helpers/gguf-builder.js';
import { buildRawSafetensors, buildSafetensors, randomValues, seededRandom, type FixtureTensor } from './helpers/fixtures.js';

const rand = seededRandom(7);
const d = 8;
const r = 2;
const files = (record: Record<string, Uint8Array | string>) =>
  Object.entries(record).map(([path, bytes]) => new File([typeof bytes === 'string' ? bytes : (bytes as Uint8Array<ArrayBuffer>)], path));

/** A forged line after a line break, a carriage return that would hide a line's start, U+2028, and a colour escape. */
const HOSTILE = '\n  - forged: all is well\r\u2028\x1b[31m';
const ESCAPED = '\\u000a  - forged: all is well\\u000d\\u2028\\u001b[31m';

async function refusal(base: Record<string, Uint8Array | string>, adapter: Record<string, Uint8Array | string>): Promise<string> {
  const error = await merge({ base: files(base), adapters: [files(adapter)], backend: 'cpu' }).then(() => undefined, (e: unknown) => e);
  if (!isMergeError(error)) throw error ?? new Error('merged');
  return error.message;
}

const Q = 'model.layers.0.self_attn.q_proj';
const llamaBase = (): FixtureTensor[] => [{ name: `${Q}.weight`, dtype: 'F32', shape: [d, d], data: randomValues(d * d, rand) }];
const peftConfig = JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4 });
const peftPair = (module: string, out = d): FixtureTensor[] => [
  { name: `base_model.model.${module}.lora_A.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
  { name: `base_model.model.${module}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: randomValues(out * r, rand) },
];

/**
 * The message's lines: one, or a list's title ("n problems in …:") and its n problems. A line break
 * of any kind (\n, \r, U+2028, U+2029) anywhere else is one a name brought in.
 */
function expectOwnLines(message: string): string[] {
  expect(message).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]/);
  const lines = message.split(/\r\n|[\n\r\u2028\u2029]/);
  const title = /^(\d+) problems in [^\n]*:$/.exec(lines[0]);
  if (title) {
    expect(lines).toHaveLength(1 + Number(title[1]));
    for (const line of lines.slice(1)) expect(line).toMatch(/^  - /);
  } else {
    expect(lines).toHaveLength(1);
  }
  return lines;
}

const safetensorsBase = { 'model.safetensors': buildSafetensors(llamaBase()) };
const peftAdapter = { 'adapter_config.json': peftConfig, 'adapter_model.safetensors': buildSafetensors(peftPair(Q)) };
const kohyaPair = (module: string): FixtureTensor[] => [
  { name: `${module}.lora_down.weight`, dtype: 'F32', shape: [r, d], data: randomValues(r * d, rand) },
  { name: `${module}.lora_up.weight`, dtype: 'F32', shape: [d, r], data: randomValues(d * r, rand) },
  { name: `${module}.alpha`, dtype: 'F32', shape: [], data: [r] },
];

describe('a name from a hostile file in a library error is quoted on its line, escaped', () => {
  it('a safetensors base tensor whose dtype is unknown', async () => {
    const header = { [`${Q}${HOSTILE}.weight`]: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } };
    const message = await refusal({ 'model.safetensors': buildRawSafetensors(JSON.stringify(header), new Uint8Array(4)) }, peftAdapter);
    expect(expectOwnLines(message)).toEqual([`model.safetensors: tensor "${Q}${ESCAPED}.weight": unknown dtype "F33", which is no safetensors dtype: the file is damaged or not safetensors; download it again`]);
  });

  it('a GGUF base tensor declared twice', async () => {
    const name = `blk.0.attn_q${HOSTILE}.weight`;
    const tensor = { name, type: 'F32', ne: [d, d], data: tensorData('F32', randomValues(d * d, rand)) };
    const gguf = buildGguf({ metadata: [['general.architecture', { type: 'string', value: 'llama' }]], tensors: [tensor, tensor] });
    const message = await refusal({ 'model.gguf': gguf }, peftAdapter);
    expect(expectOwnLines(message)).toEqual([`model.gguf: tensor "blk.0.attn_q${ESCAPED}.weight" is declared twice`]);
  });

  it('a PEFT adapter tensor that is no LoRA factor, in a list of problems', async () => {
    const message = await refusal(safetensorsBase, { 'adapter_config.json': peftConfig, 'adapter_model.safetensors': buildSafetensors([...peftPair(Q), ...peftPair(`${Q}${HOSTILE}`)]) });
    expect(expectOwnLines(message)).toEqual([
      '2 problems in selected files:',
      `  - adapter_model.safetensors: tensor "base_model.model.${Q}${ESCAPED}.lora_A.weight" is neither a LoRA factor nor listed in modules_to_save`,
      `  - adapter_model.safetensors: tensor "base_model.model.${Q}${ESCAPED}.lora_B.weight" is neither a LoRA factor nor listed in modules_to_save`,
    ]);
  });

  it('kohya modules the base does not have, in the merge plan\'s list', async () => {
    const message = await refusal(safetensorsBase, { 'lora.safetensors': buildSafetensors([...kohyaPair(`lora_unet_a${HOSTILE}`), ...kohyaPair('lora_unet_b')]) });
    expect(expectOwnLines(message)).toEqual([
      '2 problems in the merge plan:',
      `  - lora.safetensors: module "lora_unet_a${ESCAPED}": no matching tensor in the base model`,
      '  - lora.safetensors: module "lora_unet_b": no matching tensor in the base model',
    ]);
  });

  it('prepareMerge\'s plan.problems quoting a kohya module the base does not have', async () => {
    const prepared = await prepareMerge(memoryInputFileSet({ 'model.safetensors': safetensorsBase['model.safetensors'] as Uint8Array }, 'model'), [
      { files: memoryInputFileSet({ 'lora.safetensors': buildSafetensors([...kohyaPair(`lora_unet_a${HOSTILE}`), ...kohyaPair('lora_unet_b')]) }, 'adapter') },
    ]);
    try {
      expect(prepared.plan.problems.map((p) => p.message)).toEqual([
        `adapter: module "lora_unet_a${ESCAPED}": no matching tensor in the base model`,
        'adapter: module "lora_unet_b": no matching tensor in the base model',
      ]);
    } finally {
      await prepared.close();
    }
  });

  it('a warning of combineLoras quoting a module whose rank grows', async () => {
    // Rank 2 asked up to 4 by svd: the warning lists the module, its line break escaped.
    const module = { name: `lora_unet_a${HOSTILE}`, b: dense(d, 2, () => rand() - 0.5), a: dense(2, d, () => rand() - 0.5), alpha: 2 };
    const source = memoryInputFileSet({ 'one.safetensors': kohyaFile([module]) }, 'one.safetensors');
    const outcome = await combineLoras({ adapters: [source], method: 'svd', rank: 4, backend: 'cpu' });
    const warning = outcome.warnings.find((w) => w.includes('zero-filled'));
    expect(warning, outcome.warnings.join('|')).toBeDefined();
    expectOwnLines(warning!);
    expect(warning).toContain(`lora_unet_a${ESCAPED} (rank 2)`);
  });

  it('a warning of merge()\'s outcome quoting a base tensor that is copied with NaN in it', async () => {
    const norm = { name: `model.norm${HOSTILE}.weight`, dtype: 'F32' as const, shape: [d], data: [NaN, ...randomValues(d - 1, rand)] };
    const outcome = await merge({ base: files({ 'model.safetensors': buildSafetensors([...llamaBase(), norm]) }), adapters: [files(peftAdapter)], backend: 'cpu' });
    const warning = outcome.warnings.find((w) => w.includes('copied as it is'));
    expect(warning).toBeDefined();
    expectOwnLines(warning!);
    expect(warning).toContain(`model.norm${ESCAPED}.weight (1 value)`);
  });
});
