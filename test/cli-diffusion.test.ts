/**
 * The command line with diffusion files: --dry-run lists where fused modules land (row ranges) and
 * which modules are left out and why; a merge says it in a warning and records it in the output;
 * --dtype f8_e4m3 converts a bf16 Flux file to fp8, and the error for a bad --dtype names the
 * choices.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { runCli } from './helpers/cli.js';
import { buildSafetensors, decodeSafetensors, roundF8Saturating, seededRandom, tempDirs } from './helpers/fixtures.js';
import { FLUX, fluxBflTensors, loraTensors, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';

const rand = seededRandom(99);
const { h } = FLUX;
const temp = tempDirs();
afterAll(temp.removeAll);

const SPECS: LoraSpec[] = [
  {
    down: 'transformer.single_transformer_blocks.0.proj_mlp.lora_A.weight', up: 'transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight',
    r: 2, out: 4 * h, in: h, scale: 1, lands: [{ key: 'single_blocks.0.linear1.weight', rows: [{ src: 0, dst: 3 * h, count: 4 * h }] }],
  },
  {
    down: 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight', up: 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight',
    r: 2, out: 12, in: 12, scale: 1, lands: [],
  },
];
const base = buildSafetensors(fluxBflTensors(rand, 'BF16'));
const lora = buildSafetensors(loraTensors(rand, SPECS, 'BF16'));

describe('loramerge with diffusion files', () => {
  it('--dry-run shows row placements and left-out modules; the merge warns and records them', async () => {
    const dir = temp.make({ 'flux1-dev.safetensors': base, 'lora.safetensors': lora });
    const args = ['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'lora.safetensors'), '--backend', 'cpu'];
    const dry = await runCli([...args, '--out', join(dir, 'out.safetensors'), '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/single_blocks\.0\.linear1\.weight \[56×8\] out-in ← transformer\.single_transformer_blocks\.0\.proj_mlp LoRA r=2 scale=1 → rows 24–55/);
    expect(dry.stdout).toMatch(/left out: \S*lora\.safetensors:text_encoder\.text_model\.encoder\.layers\.0\.self_attn\.q_proj: names text encoder 1 \(CLIP-L\), which the base does not hold/);
    expect(dry.stderr).toMatch(/warning: \S*lora\.safetensors: 1 module left out, not merged: it names text encoder 1 \(CLIP-L\)/);

    const out = join(dir, 'merged.safetensors');
    const run = await runCli([...args, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out)));
    expect(JSON.parse(merged.metadata['loramerge.left_out'])).toEqual([{
      adapter: 'lora.safetensors', module: 'text_encoder.text_model.encoder.layers.0.self_attn.q_proj',
      reason: 'names text encoder 1 (CLIP-L), which the base does not hold (it holds the UNet/transformer)',
    }]);
    expectMergedFile(decodeSafetensors(base).tensors, merged.tensors, truthTerms(decodeSafetensors(lora).tensors, SPECS, 1));
  });

  it('--dtype f8_e4m3 writes every float tensor in fp8; a bad --dtype names the choices', async () => {
    const dir = temp.make({ 'flux1-dev.safetensors': base, 'lora.safetensors': lora });
    const out = join(dir, 'fp8.safetensors');
    const run = await runCli(['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'lora.safetensors'), '--out', out, '--dtype', 'f8_e4m3', '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const merged = decodeSafetensors(new Uint8Array(readFileSync(out)));
    expect(new Set([...merged.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F8_E4M3']));
    // Untouched tensors: their bf16 values rounded once to e4m3fn; the merged one: W + ΔW rounded once.
    const original = decodeSafetensors(base).tensors;
    for (const [key, t] of merged.tensors) {
      if (key === 'single_blocks.0.linear1.weight') continue;
      expect(Array.from(t.values), key).toEqual(Array.from(original.get(key)!.values, (x) => roundF8Saturating(x, 'F8_E4M3')));
    }
    const linear1 = 'single_blocks.0.linear1.weight';
    expectMergedFile(new Map([[linear1, original.get(linear1)!]]), new Map([[linear1, merged.tensors.get(linear1)!]]),
      truthTerms(decodeSafetensors(lora).tensors, SPECS, 1));
    const bad = await runCli(['merge', '--base', join(dir, 'flux1-dev.safetensors'), '--adapter', join(dir, 'lora.safetensors'), '--out', join(dir, 'x.safetensors'), '--dtype', 'fp8']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--dtype fp8 is two types: choose f8_e4m3 (torch.float8_e4m3fn, which fp8 checkpoints hold) or f8_e5m2');
  });
});
