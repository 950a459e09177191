/**
 * `loramerge inspect` on the two module kinds whose update's rank is its parts' ranks together:
 * sd-scripts' split_qkv (networks/lora_flux.py, `--network_args "split_qkv=True"`: Flux's
 * `double_blocks.N.img_attn.qkv` saved as one fused pair, down (3·r, in) and up block-diagonal, each
 * part at α/r) and musubi-tuner's split_dims LoRA (numbered `lora_down.N`/`lora_up.N`, each part at
 * α/r). Each module line shows the parts and the update's rank (what combine and resize count), not
 * only the part rank its α is read against; a plain module beside them shows its rank as before.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { buildSafetensors, randomValues, seededRandom, tempDirs, type FixtureTensor } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);
const rand = seededRandom(2204_3317);

// Flux's hidden size and MLP width: sd-scripts and musubi split a module by these rows. Inputs cut to 7.
const H = 3072, MLP = 4 * H, IN = 7;
const QKV = 'lora_unet_double_blocks_0_img_attn_qkv';
const LINEAR1 = 'lora_unet_single_blocks_0_linear1';
const PROJ = 'lora_unet_double_blocks_0_img_attn_proj';

const t = (name: string, shape: number[], data: Float64Array | number[], dtype: FixtureTensor['dtype'] = 'F32'): FixtureTensor => ({ name, dtype, shape, data });

/** sd-scripts' LoRANetwork.state_dict under split_qkv: the parts' downs stacked, their ups on a block diagonal, one α. */
function fused(name: string, rows: number[], r: number, alpha: number): FixtureTensor[] {
  const cols = rows.length * r, total = rows.reduce((a, b) => a + b, 0);
  const up = new Float64Array(total * cols);
  let row = 0;
  rows.forEach((d, j) => {
    for (let o = 0; o < d; o++) for (let k = 0; k < r; k++) up[(row + o) * cols + j * r + k] = rand() - 0.5;
    row += d;
  });
  return [t(`${name}.lora_down.weight`, [cols, IN], randomValues(cols * IN, rand, 0.5)), t(`${name}.lora_up.weight`, [total, cols], up), t(`${name}.alpha`, [], [alpha])];
}

/** musubi-tuner's LoRAModule with split_dims: nn.ModuleList children numbered from 0, one α. */
function numbered(name: string, rows: number[], r: number, alpha: number): FixtureTensor[] {
  return [
    ...rows.flatMap((d, i) => [t(`${name}.lora_down.${i}.weight`, [r, IN], randomValues(r * IN, rand, 0.5)), t(`${name}.lora_up.${i}.weight`, [d, r], randomValues(d * r, rand, 0.5))]),
    t(`${name}.alpha`, [], [alpha]),
  ];
}

let dir = '';
beforeAll(() => {
  dir = temp.make({
    // sd-scripts' Flux LoRA at rank 1, α 0.5 (each part at 0.5/1).
    'flux_split_qkv.safetensors': buildSafetensors([...fused(QKV, [H, H, H], 1, 0.5), ...fused(LINEAR1, [H, H, H, MLP], 1, 0.5), ...fused(PROJ, [H], 1, 0.5)], {
      ss_network_module: 'networks.lora_flux', ss_network_dim: '1', ss_network_alpha: '0.5',
      ss_network_args: '{"split_qkv": "True"}', ss_base_model_version: 'flux1',
    }),
    // musubi-tuner's split_dims LoRA at rank 2, α 1 (each part at 1/2).
    'musubi_split_dims.safetensors': buildSafetensors([...numbered(QKV, [H, H, H], 2, 1), ...numbered(LINEAR1, [H, H, H, MLP], 2, 1)], {
      ss_network_module: 'networks.lora', ss_network_dim: '2', ss_network_alpha: '1',
      ss_network_args: JSON.stringify({ module_kwargs: `{'split_dims': [${H}, ${H}, ${H}, ${MLP}]}` }),
    }),
  });
});

async function inspect(file: string): Promise<string[]> {
  const r = await runCli(['inspect', join(dir, file)]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split('\n');
}

/** The module line of `key`, spaces collapsed. */
const lineOf = (lines: string[], key: string) => lines.find((l) => l.trim().startsWith(`${key} `))?.trim().replace(/\s+/g, ' ');

describe('inspect shows a split module as its parts and its update\'s rank', () => {
  it('sd-scripts split_qkv (rank 1): qkv 3×1, linear1 4×1, proj a plain rank 1', async () => {
    const lines = await inspect('flux_split_qkv.safetensors');
    expect(lineOf(lines, QKV)).toBe(`${QKV} r=3×1 (split_qkv, update rank 3) α=0.5 scale=0.5`);
    expect(lineOf(lines, LINEAR1)).toBe(`${LINEAR1} r=4×1 (split_qkv, update rank 4) α=0.5 scale=0.5`);
    expect(lineOf(lines, PROJ)).toBe(`${PROJ} r=1 α=0.5 scale=0.5`);
    expect(lines.find((l) => l.trim().startsWith('layers:'))?.trim()).toBe('layers: linear split_qkv ×2, linear ×1');
  });

  it('musubi split_dims (rank 2): qkv 3×2, linear1 4×2', async () => {
    const lines = await inspect('musubi_split_dims.safetensors');
    expect(lineOf(lines, QKV)).toBe(`${QKV} r=3×2 (split_dims, update rank 6) α=1 scale=0.5`);
    expect(lineOf(lines, LINEAR1)).toBe(`${LINEAR1} r=4×2 (split_dims, update rank 8) α=1 scale=0.5`);
  });
});
