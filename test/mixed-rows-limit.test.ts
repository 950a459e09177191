/**
 * MAX_MIXED_ROWS_BYTES: where a merge must hold a run of rows together (a BOFT's last butterfly
 * factor mixes every output row; a ComfyUI-GGUF tensor stored reshaped holds whole blocks only in
 * runs of rows), the run is bounded, and a tensor past the bound is refused naming it and the
 * limit rather than read whole. The bases are sparse files on disk whose headers declare tensors
 * of 2^27 values and more: only the plan runs, so nothing is read or held.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, prepareMerge } from '../src/index.js';
import { MAX_MIXED_ROWS_BYTES } from '../src/limits.js';
import { openNodeInputFileSet } from '../src/node.js';
import { buildSafetensors } from './helpers/fixtures.js';
import { buildGguf, type MetaValue } from './helpers/gguf-builder.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'loramerge-mixed-rows-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `header` written at the start of a file `size` bytes long (the rest a hole). */
async function sparseFile(name: string, header: Uint8Array, size: number): Promise<string> {
  const path = join(dir, name);
  const handle = await open(path, 'w');
  try {
    await handle.write(header, 0, header.byteLength, 0);
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
  return path;
}

/** A safetensors file whose one F16 tensor `name` (rows × cols) is a hole. */
async function sparseSafetensors(file: string, name: string, rows: number, cols: number): Promise<string> {
  const bytes = rows * cols * 2;
  const json = JSON.stringify({ [name]: { dtype: 'F16', shape: [rows, cols], data_offsets: [0, bytes] } });
  const text = new TextEncoder().encode(json);
  const header = new Uint8Array(8 + text.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(text.byteLength), true);
  header.set(text, 8);
  return sparseFile(file, header, header.byteLength + bytes);
}

async function planProblems(basePath: string, adapter: Record<string, Uint8Array>): Promise<{ updates: string[]; messages: string[] }> {
  const prepared = await prepareMerge(await openNodeInputFileSet(basePath), [{ files: memoryInputFileSet(adapter, 'adapter'), weight: 1 }]);
  try {
    return { updates: prepared.plan.updates.map((u) => u.baseKey), messages: prepared.plan.problems.map((p) => `${p.code}: ${p.message}`) };
  } finally {
    await prepared.close();
  }
}

const TO_Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';

/** A LyCORIS BOFT module for `out` rows: b = 2, n = out / 2 blocks, log2(n) + 1 factors (zeros: only shapes are planned). */
function boftAdapter(out: number): Record<string, Uint8Array> {
  const n = out / 2, m = Math.log2(n) + 1;
  return {
    'boft.safetensors': buildSafetensors([
      { name: `lora_unet_${TO_Q.replace(/\./g, '_')}.oft_blocks`, dtype: 'F16', shape: [m, n, 2, 2], data: new Uint8Array(m * n * 4 * 2) },
      { name: `lora_unet_${TO_Q.replace(/\./g, '_')}.alpha`, dtype: 'F32', shape: [], data: [0] },
    ]),
  };
}

describe('MAX_MIXED_ROWS_BYTES', () => {
  it('is the bound these cases are sized against', () => {
    expect(MAX_MIXED_ROWS_BYTES).toBe(2 ** 30);
  });

  it('refuses a BOFT whose tensor is past it (merged as one slab of float64 rows), and plans one within it', async () => {
    // 16384 × 8193 rows of float64: 1 GiB and 128 KiB.
    const big = await sparseSafetensors('big.safetensors', `${TO_Q}.weight`, 16384, 8193);
    const refused = await planProblems(big, boftAdapter(16384));
    expect(refused.updates).toEqual([]);
    expect(refused.messages).toHaveLength(1);
    expect(refused.messages[0]).toMatch(new RegExp(`^LIMIT_EXCEEDED: .*mixes runs of 16384 rows of ${TO_Q.replace(/\./g, '\\.')}\\.weight \\(16384, 8193\\), which are merged together in 1025 MiB, above the limit MAX_MIXED_ROWS_BYTES \\(1024 MiB\\)`));
    // 16384 × 8192: exactly 1 GiB, which is allowed.
    const edge = await sparseSafetensors('edge.safetensors', `${TO_Q}.weight`, 16384, 8192);
    const planned = await planProblems(edge, boftAdapter(16384));
    expect(planned.messages).toEqual([]);
    expect(planned.updates).toEqual([`${TO_Q}.weight`]);
  });

  it('names a GGUF tensor stored reshaped whose runs of whole blocks are past it, so a LoRA on it says why it does not fit', async () => {
    // Q4_K (256 values in 144 bytes); real shape (256, 524289): an odd row length, so only runs of
    // 256 rows hold whole blocks, 256 × 524289 float64 values = 1 GiB and 2 KiB. Stored as
    // (524289, 256), as ComfyUI-GGUF's shape_fix writes it.
    const rows = 256, cols = 524289;
    const name = 'input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight';
    const metadata: [string, MetaValue][] = [
      ['general.architecture', { type: 'string', value: 'sdxl' }],
      [`comfy.gguf.orig_shape.${name}`, { type: 'array', itemType: 'i32', value: [rows, cols] }],
    ];
    const dataBytes = (rows * cols / 256) * 144;
    const header = buildGguf({ metadata, tensors: [{ name, type: 'Q4_K', ne: [256, rows * cols / 256], data: new Uint8Array(0) }] });
    const base = await sparseFile('sdxl.gguf', header, header.byteLength + dataBytes);
    const flat = 'lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q';
    const { updates, messages } = await planProblems(base, {
      'lora.safetensors': buildSafetensors([
        { name: `${flat}.lora_down.weight`, dtype: 'F16', shape: [1, cols], data: new Uint8Array(cols * 2) },
        { name: `${flat}.lora_up.weight`, dtype: 'F16', shape: [rows, 1], data: new Uint8Array(rows * 2) },
      ]),
    });
    expect(updates).toEqual([]);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/does not fit base .*\(524289, 256\).*is stored reshaped to \(524289, 256\) from \(256, 524289\) \(comfy\.gguf\.orig_shape\.…\), whose rows hold whole Q4_K blocks only in runs of 256 \(1025 MiB\), above the limit MAX_MIXED_ROWS_BYTES \(1024 MiB\)/);
  });
});
