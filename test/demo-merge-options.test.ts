/**
 * The page offers what the CLI offers, used as a person would: the output dtype menu of the base's
 * container (fp8 picked, its saturation rule on screen, the downloaded file checked against
 * float64 truth; GGML types for a GGUF base), a whole diffusers pipeline picked as a folder (the
 * touched text encoder merged, every other file byte for byte), and everything the plan and the
 * merge say: warnings that follow the sliders, left-out modules with the reason, each module's
 * algorithm, a NaN the base holds, all listed and announced, with the axe scan in both themes and
 * the 390 px layout in that state.
 */
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DemoPage } from './helpers/browser.js';
import { announced, mergeEnabled, planReady, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { downloadBytes, readSafetensors } from './helpers/demo-merge-check.js';
import { FLUX, fluxBflTensors, loraTensors, type LoraSpec } from './helpers/diffusion-fixtures.js';
import {
  buildSafetensors, decodeSafetensors, randomValues, roundF8Saturating, roundForDType, seededRandom, type FixtureTensor,
} from './helpers/fixtures.js';
import { readGguf, tensorData, tensorValues, typeName } from './helpers/gguf-builder.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama, truthWithLora } from './helpers/gguf-models.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { llamaWithPeft, sdxlPipelineWithTextEncoderLora } from './helpers/page-fixtures.js';
import { readStoredZip } from './helpers/stored-zip.js';
import { PAGE_RETRY } from './helpers/browser.js';

const session = useDemoSession();
const { dirs } = session;
let demo: DemoPage;


describe('the page offers what the CLI does', PAGE_RETRY, () => {
  it('writes fp8 when picked: the saturation rule beside the menu, values checked against float64 truth', async () => {
    const fixture = llamaWithPeft(31);
    // An untouched tensor with values beyond e4m3's ±448: they saturate instead of becoming NaN.
    const rand = seededRandom(32);
    const norm = Array.from(randomValues(16, rand), (x, i) => (i === 0 ? 1000 : i === 1 ? -600 : x));
    const base = buildSafetensors([
      ...[...decodeSafetensors(fixture.base).tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.values } as FixtureTensor)),
      { name: 'model.norm.weight', dtype: 'F16', shape: [16], data: norm },
    ]);
    const dir = dirs.make({ ...fixture.files, 'llama.safetensors': base });
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    // The menu is the safetensors container's: keep, then the five float types the CLI's --dtype takes.
    expect(await page.$$eval('[data-testid="out-dtype"] option', (os) => os.map((o) => (o as HTMLOptionElement).value)))
      .toEqual(['same', 'f32', 'f16', 'bf16', 'f8_e4m3', 'f8_e5m2']);
    await page.select('[data-testid="out-dtype"]', 'f8_e4m3');
    const hint = await text(page, '[data-testid="out-dtype-hint"]');
    expect(hint).toMatch(/e4m3fn.*±448.*saturating: finite values beyond the largest finite one become it/);
    expect(await page.$eval('[data-testid="out-dtype"]', (s) => s.getAttribute('aria-describedby'))).toBe('out-dtype-hint');
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readSafetensors(await downloadBytes(page));
    expect(await page.$eval('[data-testid="download-link"]', (a) => (a as HTMLAnchorElement).download)).toBe('llama-merged.safetensors');

    const scale = fixture.alpha / fixture.rank;
    const adapter = readSafetensors(fixture.adapter);
    let exact = 0;
    let merges = 0;
    for (const [name, w] of decodeSafetensors(base).tensors) {
      const got = merged.get(name)!;
      expect(got.dtype, name).toBe('F8_E4M3');
      expect(got.shape, name).toEqual(w.shape);
      const module = `base_model.model.${name.replace(/\.weight$/, '')}`;
      const a = adapter.get(`${module}.lora_A.weight`);
      const b = adapter.get(`${module}.lora_B.weight`);
      const cols = w.shape[w.shape.length - 1];
      for (let i = 0; i < w.values.length; i++) {
        let truth = w.values[i];
        if (a && b) {
          const [o, c] = [Math.floor(i / cols), i % cols];
          for (let k = 0; k < fixture.rank; k++) truth += scale * b.values[o * fixture.rank + k] * a.values[k * cols + c];
        }
        const want = roundF8Saturating(truth, 'F8_E4M3');
        if (!a) {
          expect(got.values[i], `${name}[${i}]`).toBe(want); // converted once: exact
          continue;
        }
        merges++;
        if (got.values[i] === want) exact++;
        // f32 accumulation may fall on the other side of a near-tie: one e4m3 step at most.
        else expect(Math.abs(got.values[i] - truth), `${name}[${i}]`).toBeLessThanOrEqual(2 ** (Math.max(Math.floor(Math.log2(Math.abs(truth))), -6) - 3));
      }
    }
    expect(exact / merges).toBeGreaterThan(0.99);
    expect(Array.from(merged.get('model.norm.weight')!.values.slice(0, 2))).toEqual([448, -448]);
  });

  it('offers a GGUF base the GGML types it writes, with the requantization note; an fp8 choice goes back to keep, said aloud', async () => {
    const llama = llamaWithPeft(33);
    const gguf = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const dir = dirs.make({ ...llama.files, 'tiny-llama-Q4_K_M.gguf': gguf.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes });
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'llama.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'llama-lora/adapter_config.json'), join(dir, 'llama-lora/adapter_model.safetensors'));
    await planReady(page);
    await page.select('[data-testid="out-dtype"]', 'f8_e5m2');
    await page.click('[data-testid="adapter"] .remove');
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora.gguf'));
    await page.waitForFunction(() => /gguf/.test(document.getElementById('plan-stats')?.textContent ?? ''), { timeout: 30_000 });
    expect(await page.$$eval('[data-testid="out-dtype"] option', (os) => os.map((o) => (o as HTMLOptionElement).value)))
      .toEqual(['same', 'f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'mxfp4', 'nvfp4', 'q1_0', 'q2_0', 'tq1_0', 'tq2_0', 'iq3_xxs', 'iq3_s', 'iq4_nl', 'iq4_xs', 'q1_0_mix', 'q2_0_mix', 'q4_0_mix', 'q4_1_mix', 'q5_0_mix', 'q5_1_mix', 'tq1_0_mix', 'tq2_0_mix', 'q2_k_mix', 'q3_k_s', 'q3_k_m', 'q3_k_l', 'q4_k_s', 'q4_k_m', 'q5_k_s', 'q5_k_m', 'q6_k_mix', 'iq3_s_mix', 'iq3_m', 'iq4_nl_mix', 'iq4_xs_mix', 'mxfp4_moe']);
    expect(await page.$eval('[data-testid="out-dtype"]', (s) => (s as HTMLSelectElement).value)).toBe('same');
    expect(await announced(page, /back to keeping each tensor/)).toContain('cannot be written as f8_e5m2');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/requantized to Q4_K .*adds the quantization error once more/);
    // The plan's own requantization warning is listed with the others.
    expect((await texts(page, '[data-testid="plan-problems"] li')).join('\n')).toMatch(/^warning: .*unless another Output dtype is chosen, the merged tensors \(1 Q4_K\) are re-quantized to their own types/m);
    await page.select('[data-testid="out-dtype"]', 'q8_0');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/requantized to Q8_0 .*blocks of 32/);
    // The plan is checked again at the chosen type: written as Q8_0, nothing is re-quantized to its own type.
    const requantizeWarningShown = (shown: boolean) => page.waitForFunction(
      (want) => [...document.querySelectorAll('[data-testid="plan-problems"] li')].some((li) => /re-quantized to their own types/.test(li.textContent ?? '')) === want,
      { timeout: 30_000 }, shown);
    await requantizeWarningShown(false);
    await page.select('[data-testid="out-dtype"]', 'same');
    await requantizeWarningShown(true);
    await page.select('[data-testid="out-dtype"]', 'q8_0');
    await page.select('[data-testid="out-dtype"]', 'mxfp4_moe');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/MXFP4_MOE mix \(gpt-oss’s own: stacked expert tensors MXFP4, the other matrices and the output head Q8_0/);
    expect(await page.$$eval('[data-testid="out-dtype"] optgroup', (gs) => gs.map((g) => [(g as HTMLOptGroupElement).label, g.children.length])))
      .toEqual([['llama-quantize file types', 22]]);
    await page.select('[data-testid="out-dtype"]', 'q4_k_m');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/Q4_K_M mix \(Q4_K, with half of attn_v and ffn_down/);
    // A mix whose llama-quantize name is also a type's is offered as <name>_mix, named as llama-quantize names it.
    await page.select('[data-testid="out-dtype"]', 'iq3_s_mix');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/llama-quantize’s IQ3_S mix \(IQ3_S, with attn_v Q4_K under grouped-query attention/);
  });

  it('requantizes only the merged tensors when asked (export-lora\'s way): the box appears with a type, by keyboard, and the file holds the expected types', async () => {
    const gguf = q4kmLlama();
    const target = 'blk.0.attn_output.weight';
    const lora = ggufLoraAdapter([{ tensor: target, rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const dir = dirs.make({ 'tiny-llama-Q4_K_M.gguf': gguf.files['tiny-llama-Q4_K_M.gguf'], 'lora.gguf': lora.bytes });
    demo = await session.open();
    const { page } = demo;
    const box = '[data-testid="dtype-merged-only"]';
    const shown = () => page.$eval(box, (e) => (e as HTMLElement).offsetParent !== null);
    await upload(page, 'base-input', join(dir, 'tiny-llama-Q4_K_M.gguf'));
    await upload(page, 'adapter-input', join(dir, 'lora.gguf'));
    await planReady(page);
    expect(await shown()).toBe(false); // keeping each tensor's type leaves nothing to limit
    // By keyboard: the menu, then the box beside it, labelled.
    await page.focus('[data-testid="out-dtype"]');
    await page.select('[data-testid="out-dtype"]', 'q8_0');
    await page.waitForFunction((s: string) => document.querySelector<HTMLElement>(s)!.offsetParent !== null, {}, box);
    expect(await page.$eval(box, (e) => [...(e as HTMLInputElement).labels!].map((l) => l.textContent).join(' '))).toBe('only for the tensors the merge changes');
    await page.keyboard.press('Tab');
    expect(await page.evaluate((s) => document.activeElement?.matches(s), box)).toBe(true);
    await page.keyboard.press('Space');
    expect(await page.$eval(box, (e) => (e as HTMLInputElement).checked)).toBe(true);
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    const merged = readGguf(await downloadBytes(page));

    const input = readGguf(gguf.files['tiny-llama-Q4_K_M.gguf']);
    // Q8_0 for the merged tensor; every other tensor byte for byte as stored, in its own type.
    expect(merged.tensors.map((t) => [t.name, typeName(t.typeId)]))
      .toEqual(input.tensors.map((t) => [t.name, t.name === target ? 'Q8_0' : typeName(t.typeId)]));
    for (const t of merged.tensors) {
      if (t.name !== target) expect(Buffer.compare(t.data, input.tensors.find((x) => x.name === t.name)!.data), t.name).toBe(0);
    }
    const want = truthWithLora(gguf.tensors.get(target)!.values, LLAMA.hidden, LLAMA.hidden, lora.factors.get(target)!, 8 / 4, false);
    const got = tensorValues('Q8_0', merged.tensors.find((t) => t.name === target)!.data);
    const direct = tensorValues('Q8_0', tensorData('Q8_0', want));
    let worst = 0;
    let worstDirect = 0;
    for (let i = 0; i < want.length; i++) {
      worst = Math.max(worst, Math.abs(got[i] - want[i]));
      worstDirect = Math.max(worstDirect, Math.abs(direct[i] - want[i]));
    }
    expect(worst).toBeLessThan(1.5 * worstDirect);

    // Unticked, the same type goes to every matrix llama-quantize quantizes: the earlier result is marked.
    await page.click(box);
    await page.waitForSelector('[data-testid="download-link-stale"]', { timeout: 30_000 });
  });

  it('refuses, before the click, an output dtype this model cannot take (a scaled fp8 checkpoint keeps its fp8 type), saying why', async () => {
    const rand = seededRandom(36);
    const weights = fluxBflTensors(rand, 'F32').map((t): FixtureTensor => (t.shape.length < 2
      ? { ...t, dtype: 'BF16', data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(x, 'BF16')) }
      : { ...t, dtype: 'F8_E4M3', data: Array.from(t.data as ArrayLike<number>, (x) => roundForDType(60 * x, 'F8_E4M3')) }));
    const scales = weights.filter((t) => t.shape.length >= 2)
      .map((t): FixtureTensor => ({ name: t.name.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], data: [1 / 60] }));
    const base = buildSafetensors([...weights, ...scales, { name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], data: [] }]);
    const lora = buildSafetensors(loraTensors(rand, [{
      down: 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', up: 'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight',
      r: 2, out: 3 * FLUX.h, in: FLUX.h, lands: [], scale: 1,
    }], 'BF16'));
    const dir = dirs.make({ 'flux1-dev-fp8-scaled.safetensors': base, 'flux-lora.safetensors': lora });
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'flux1-dev-fp8-scaled.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'flux-lora.safetensors'));
    await planReady(page);
    await mergeEnabled(page);
    // The menu says which types this model cannot take before one is chosen: no fp8 type on a base with scale tensors.
    expect(await page.$$eval('[data-testid="out-dtype"] option', (options) => options.map((o) => o.textContent))).toEqual([
      'keep each tensor’s type', 'f32', 'f16', 'bf16', 'f8_e4m3 (not for this model)', 'f8_e5m2 (not for this model)',
    ]);
    // bf16 dequantizes it; another fp8 type cannot hold its codes.
    await page.select('[data-testid="out-dtype"]', 'f8_e5m2');
    expect(await text(page, '[data-testid="out-dtype-hint"]')).toMatch(/^Not for this model: tensor ".*\.weight": a scaled fp8 checkpoint \(a scale_weight per tensor\) keeps its weights in F8_E4M3/);
    expect(await announced(page, /cannot be written as f8_e5m2/)).toMatch(/scaled fp8 checkpoint/);
    expect(await page.$eval('[data-testid="merge-button"]', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    expect(await text(page, '[data-testid="merge-blocked"]')).toBe('This model cannot be written as f8_e5m2: choose another output dtype.');
    await page.select('[data-testid="out-dtype"]', 'bf16');
    await mergeEnabled(page);
    await page.select('[data-testid="out-dtype"]', 'same');
    await mergeEnabled(page);
  });

  it('merges a whole diffusers pipeline picked as a folder: the touched text encoder merged, every other file byte for byte, as a zip or into a picked folder', async () => {
    const { pipeline, lora, te1 } = sdxlPipelineWithTextEncoderLora(34);
    // As the Hub's downloader leaves it: dot-files beside the pipeline, which the CLI skips too.
    const hubLeftovers = { 'sdxl-base/.gitattributes': '*.safetensors filter=lfs\n', 'sdxl-base/.cache/huggingface/download/unet.lock': '' };
    const dir = dirs.make({ ...Object.fromEntries(Object.entries(pipeline).map(([p, b]) => [`sdxl-base/${p}`, b])), ...hubLeftovers, 'te-style.safetensors': lora });
    demo = await session.open();
    const { page } = demo;
    // "A folder I choose" answered with a folder of the page's own storage, as a person would pick one.
    await page.evaluateOnNewDocument(() => {
      (window as unknown as { showDirectoryPicker(): Promise<FileSystemDirectoryHandle> }).showDirectoryPicker =
        async () => (await navigator.storage.getDirectory()).getDirectoryHandle('picked', { create: true });
    });
    await page.reload({ waitUntil: 'load' });
    // The folder picker: the browser hands over every file under the chosen folder.
    await upload(page, 'base-folder-input', join(dir, 'sdxl-base'));
    await page.waitForFunction(() => /sdxl-base · 14 files/.test(document.querySelector('[data-testid="base-summary"]')?.textContent ?? ''));
    await upload(page, 'adapter-input', join(dir, 'te-style.safetensors'));
    await planReady(page);
    expect(await text(page, '#plan-stats')).toContain('2modules matched');
    const fates = await texts(page, '[data-testid="plan-files"] li');
    expect(fates).toContain('text_encoder/model.safetensors: merged: 2 of 3 tensors change');
    expect(fates).toContain('unet/diffusion_pytorch_model-00001-of-00002.safetensors: nothing in it changes: copied byte for byte');
    expect(fates).toContain('vae/diffusion_pytorch_model.safetensors: nothing in it changes: copied byte for byte');
    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    const links = await page.$$eval('[data-testid^="download-link"]', (as) => as.map((a) => (a as HTMLAnchorElement).download));
    expect(links).toContain('text_encoder_model.safetensors');
    expect(links).toContain('unet_config.json');

    await page.click('[data-testid="zip-button"]');
    const zip = readStoredZip(await downloadBytes(page, 'download-zip'));
    const written = Object.keys(pipeline).map((p) => `sdxl-base-merged/${p}`);
    expect([...zip.keys()].sort()).toEqual(written.sort());
    for (const [path, bytes] of Object.entries(pipeline)) {
      if (path === 'text_encoder/model.safetensors') continue;
      const want = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
      expect(Buffer.compare(zip.get(`sdxl-base-merged/${path}`)!, want), path).toBe(0);
    }
    // Saved into a picked folder instead: a new sub-folder named after the base, the same files.
    await page.select('[data-testid="destination"]', 'picked');
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => /into picked\/sdxl-base-merged\//.test(document.getElementById('results-note')?.textContent ?? ''), { timeout: 60_000 });
    const saved = await page.evaluate(async () => {
      const out: Record<string, string> = {};
      const walk = async (dir: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
        for await (const [name, handle] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
          if (handle.kind === 'directory') await walk(handle as FileSystemDirectoryHandle, `${prefix}${name}/`);
          else {
            const bytes = new Uint8Array(await (await (handle as FileSystemFileHandle).getFile()).arrayBuffer());
            out[`${prefix}${name}`] = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''));
          }
        }
      };
      await walk(await (await navigator.storage.getDirectory()).getDirectoryHandle('picked'), '');
      return out;
    });
    expect(Object.keys(saved).sort()).toEqual(written.sort());
    for (const [path, base64] of Object.entries(saved)) expect(Buffer.compare(Buffer.from(base64, 'base64'), zip.get(path)!), path).toBe(0);

    const adapter = readSafetensors(lora);
    expectMergedFile(
      readSafetensors(pipeline['text_encoder/model.safetensors'] as Uint8Array),
      readSafetensors(zip.get('sdxl-base-merged/text_encoder/model.safetensors')!),
      te1.map((m) => ({ baseKey: m.tensor, a: adapter.get(`${m.module}.lora_down.weight`)!, b: adapter.get(`${m.module}.lora_up.weight`)!, scale: m.alpha / m.rank })),
    );
  });

  it('lists and announces every warning, left-out module, algorithm and merge-time warning; axe-clean in both themes and 390 px wide', async () => {
    const rand = seededRandom(35);
    const { h } = FLUX;
    // Flux in BFL naming, bf16, whose final layer already holds a NaN (a copied tensor: a warning, not an error).
    const fluxTensors = fluxBflTensors(rand, 'BF16').map((t) => (t.name === 'final_layer.linear.weight'
      ? { ...t, data: Array.from(t.data as ArrayLike<number>, (x, i) => (i === 3 ? NaN : x)) } : t));
    const kohya = (name: string, r: number, out: number, inF: number, alpha: number): LoraSpec => ({
      down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, r, out, in: inF, lands: [], scale: alpha / r,
      extra: [{ name: `${name}.alpha`, dtype: 'F32', shape: [], data: [alpha] }],
    });
    const specs = [
      kohya('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, 4),
      kohya('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, 12, 12, 2),
      kohya('lora_te1_text_model_encoder_layers_0_mlp_fc1', 2, 24, 12, 2),
    ];
    // A LoKr module (LyCORIS) beside the LoRA ones: W' = W + kron(w1, w2) on single_blocks.0.linear2 (h × 5h).
    const lokr = 'lora_unet_single_blocks_0_linear2';
    const lora = buildSafetensors([
      ...loraTensors(rand, specs, 'BF16'),
      { name: `${lokr}.lokr_w1`, dtype: 'BF16', shape: [2, 4], data: randomValues(8, rand, 0.1).map((x) => roundForDType(x, 'BF16')) },
      { name: `${lokr}.lokr_w2`, dtype: 'BF16', shape: [h / 2, 10], data: randomValues(h * 5, rand, 0.1).map((x) => roundForDType(x, 'BF16')) },
      { name: `${lokr}.alpha`, dtype: 'F32', shape: [], data: [1] },
    ], { ss_network_module: 'networks.lora_flux' });
    const dir = dirs.make({ 'flux1-dev-bf16-with-a-very-long-checkpoint-name.safetensors': buildSafetensors(fluxTensors), 'flux-style-lora-v2.safetensors': lora });
    demo = await session.open();
    const { page } = demo;
    await upload(page, 'base-input', join(dir, 'flux1-dev-bf16-with-a-very-long-checkpoint-name.safetensors'));
    // The same adapter twice: legal, said aloud.
    await upload(page, 'adapter-input', join(dir, 'flux-style-lora-v2.safetensors'));
    await upload(page, 'adapter-input', join(dir, 'flux-style-lora-v2.safetensors'));
    await planReady(page);
    const said = await announced(page, /Plan ready/);
    expect(said).toMatch(/4 modules left out/);
    // The page names the second pick apart, so the warning says which two picks are one file.
    expect(said).toMatch(/flux-style-lora-v2\.safetensors #2 is the same adapter as flux-style-lora-v2\.safetensors \(identical files\): it is applied twice/);
    const problems = (await texts(page, '[data-testid="plan-problems"] li')).join('\n');
    expect(problems).toMatch(/^warning: flux-style-lora-v2\.safetensors: 2 modules left out, not merged: they name text encoder 1 \(CLIP-L\), which the base does not hold/m);
    expect(problems).toMatch(/^warning: flux-style-lora-v2\.safetensors #2 is the same adapter as .*applied twice/m);
    expect(await text(page, '#plan-problems-heading')).toMatch(/warnings: the merge can run/);
    // Which modules were left out and why, in a table of their own.
    const leftOut = await page.$$eval('[data-testid="left-out"] tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    expect(leftOut.map((r) => r[1])).toEqual([
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'lora_te1_text_model_encoder_layers_0_mlp_fc1',
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 'lora_te1_text_model_encoder_layers_0_mlp_fc1',
    ]);
    expect(leftOut[0][2]).toMatch(/text encoder 1 \(CLIP-L\), which the base does not hold/);
    // Each module's algorithm and scale.
    await page.$eval('#modules-details', (d) => { (d as HTMLDetailsElement).open = true; });
    const rows = await page.$$eval('#plan-modules tbody tr', (trs) => trs.map((r) => [...r.children].slice(1).map((td) => td.textContent)));
    expect(rows.find((r) => r[0] === 'lora_unet_double_blocks_0_img_attn_qkv')?.slice(2, 5)).toEqual(['LoRA, r = 4', `${3 * h} × ${h}`, '1']);
    expect(rows.find((r) => r[0] === lokr)?.[2]).toMatch(/^LoKr/);
    expect(await text(page, '[data-testid="adapter-facts"]')).toContain('kohya/LyCORIS · LoRA ×3 · LoKr ×1 · 4 modules');
    // The chart groups Flux by its double and single blocks.
    expect(await page.$eval('[data-testid="magnitude-chart"]', (c) => c.getAttribute('aria-label'))).toContain('2 blocks');

    // Weight 0 on the second copy: the warnings follow, listed and announced.
    await page.evaluate(() => {
      const slider = document.querySelectorAll<HTMLInputElement>('[data-testid="adapter-weight"]')[1];
      slider.value = '0';
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    });
    expect(await announced(page, /weight 0 changes nothing/)).toMatch(/^Warning: flux-style-lora-v2\.safetensors #2: weight 0 changes nothing/);
    expect((await texts(page, '[data-testid="plan-problems"] li')).join('\n')).toMatch(/weights 1 and 0 adding up to 1/);

    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await downloadBytes(page);
    // What the merge itself found: the base's NaN, copied as it is.
    const mergeWarnings = await texts(page, '[data-testid="merge-warnings"] li');
    expect(mergeWarnings).toEqual([expect.stringMatching(/^warning: flux1-dev-bf16-with-a-very-long-checkpoint-name\.safetensors: 1 tensor already holds NaN or Inf in the base and is copied as it is: final_layer\.linear\.weight \(1 value\)/)]);
    expect(await announced(page, /Merged/)).toMatch(/Warning: .*already holds NaN or Inf/);

    await page.addScriptTag({ path: createRequire(import.meta.url).resolve('axe-core/axe.min.js') });
    const seriousViolations = () => page.evaluate(async () => {
      const result = await (window as unknown as { axe: { run(o: object): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } })
        .axe.run({ resultTypes: ['violations'] });
      return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
    });
    mkdirSync('test-output', { recursive: true });
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      expect(await seriousViolations(), scheme).toEqual([]);
      await page.screenshot({ path: `test-output/demo-warnings-${scheme}.png`, fullPage: true });
    }
    // 390 px wide, long real names wrap: nothing widens the page, merge stays on screen. (Width only:
    // switching puppeteer to a mobile device reloads the page, and this state would be lost.)
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.$$eval('[data-testid="left-out"] tbody tr', (rows) => rows.length)).toBe(4);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    const box = await page.$eval('[data-testid="merge-button"]', (b) => b.getBoundingClientRect().toJSON());
    expect([box.left >= 0, box.right <= 390]).toEqual([true, true]);
    expect(await seriousViolations(), '390 px').toEqual([]);
    await page.screenshot({ path: 'test-output/demo-warnings-390px.png', fullPage: true });
  });
});
