/**
 * `merge --dry-run` on a GGUF base with a PEFT adapter whose modules_to_save lm_head (written over
 * output.weight) the merge refuses: with --imatrix, with --dtype-merged-only, and for values
 * finite in f32 that the output type's blocks cannot hold (their f16 scales overflow), the dry run
 * gives the real run's error line and exit code, and neither writes anything.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectDryRunRefusesAsMerge } from './helpers/cli.js';
import { buildSafetensors, tempDirs, type FixtureTensor } from './helpers/fixtures.js';
import { imatrixDat } from './helpers/imatrix-dat.js';
import { LLAMA, peftLlamaAdapter, q4kmLlama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(() => temp.removeAll());

const { hidden: H, vocab: V } = LLAMA;
const BASE = q4kmLlama().files;

/** The llama PEFT adapter (LoRA on attn_q and the rest) with lm_head saved whole: small values, `bad` at `at`. */
function adapterWithHead(bad: number, at: number[]): Record<string, Uint8Array | string> {
  const peft = peftLlamaAdapter();
  const config = { ...JSON.parse(peft.files['adapter_config.json'] as string), modules_to_save: ['lm_head'] };
  const head = Float64Array.from({ length: V * H }, (_, i) => 0.01 * Math.cos(i));
  for (const i of at) head[i] = bad;
  const tensors: FixtureTensor[] = peft.factors.flatMap((f) => [
    { name: `base_model.model.${f.module}.lora_A.weight`, dtype: 'BF16' as const, shape: [f.rank, f.in], data: f.a },
    { name: `base_model.model.${f.module}.lora_B.weight`, dtype: 'BF16' as const, shape: [f.out, f.rank], data: f.b },
  ]);
  tensors.push({ name: 'base_model.model.lm_head.modules_to_save.default.weight', dtype: 'F32', shape: [V, H], data: head });
  return { 'adapter_config.json': JSON.stringify(config), 'adapter_model.safetensors': buildSafetensors(tensors) };
}

/** The dry run's and the real run's error line on the adapter, the same; nothing written, no input changed. */
async function bothRefuse(adapter: Record<string, Uint8Array | string>, extra: string[]): Promise<{ line: string; stdout: string; lora: string; base: string }> {
  const base = temp.make({ ...BASE, 'llama.imatrix.dat': imatrixDat([{ name: 'blk.0.attn_q.weight', ncall: 4, sums: new Array(H).fill(8) }]) });
  const lora = temp.make(adapter);
  const out = join(temp.make(), 'merged.gguf');
  const args = ['merge', '--base', join(base, 'tiny-llama-Q4_K_M.gguf'), '--adapter', lora, '--backend', 'cpu', ...extra.map((a) => a.replace('IMATRIX', join(base, 'llama.imatrix.dat')))];
  return { ...(await expectDryRunRefusesAsMerge(args, out, [base, lora])), lora, base };
}

describe('merge --dry-run on a GGUF base: a modules_to_save lm_head the merge refuses, in the real run\'s words', () => {
  const nanHead = () => adapterWithHead(NaN, [3 * H + 1, 12 * H + 7]);
  const nanLine = (lora: string) =>
    `error: ${lora}: tensor "base_model.model.lm_head.modules_to_save.default.weight" (replacing output.weight, modules_to_save) holds 2 NaN or Inf values (first in row 3, last in row 12); the adapter file is broken`;

  it('NaN in rows 3 and 12, with --imatrix (--dtype q4_k_m)', async () => {
    const { line, stdout, lora } = await bothRefuse(nanHead(), ['--dtype', 'q4_k_m', '--imatrix', 'IMATRIX']);
    expect(line).toBe(nanLine(lora));
    expect(stdout).toContain(`problem: ${line.slice('error: '.length)}`);
  });

  it('NaN in rows 3 and 12, with --dtype q8_0 --dtype-merged-only', async () => {
    const { line, lora } = await bothRefuse(nanHead(), ['--dtype', 'q8_0', '--dtype-merged-only']);
    expect(line).toBe(nanLine(lora));
  });

  it('9e6 in rows 3 and 12, finite in f32, too large for Q8_0 blocks (with --imatrix, --dtype-merged-only): the dry run refuses it as the merge does', async () => {
    const { line, base } = await bothRefuse(adapterWithHead(9e6, [3 * H + 1, 12 * H + 7]), ['--dtype', 'q8_0', '--dtype-merged-only', '--imatrix', 'IMATRIX']);
    expect(line).toBe(
      `error: ${join(base, 'tiny-llama-Q4_K_M.gguf')}: tensor "output.weight": merged values up to 9.00e+6 are too large for Q8_0 blocks: 64 values (first in row 3, last in row 12) would be NaN or Inf, the blocks' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight`,
    );
  });
});
