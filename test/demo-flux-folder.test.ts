/**
 * A FLUX.1-dev diffusers folder picked whole with the page's folder picker (the base folder input,
 * whose files the browser hands over with their paths), as the Hub lays it out: model_index.json,
 * transformer/ in three shards with their index, text_encoder/ (CLIP-L), text_encoder_2/ (T5 in two
 * shards), tokenizer/, tokenizer_2/, scheduler/ and vae/, under the real tensor names at small sizes
 * (the VAE's 512-channel convolutions at their real shape, 57 MB, so that a copy kept in memory
 * would show). A kohya FLUX LoRA (sd-scripts' BFL names, its CLIP-L modules as lora_te1_) merged end
 * to end: each transformer shard and the text encoder checked against float64 truth written here,
 * every other file byte for byte; the files lie in browser storage and no writer still holds one;
 * once the merge is over the page and its workers hold no more memory than before the pick but the
 * read-ahead windows kept for the next merge.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Page } from 'puppeteer';
import { describe, expect, it } from 'vitest';
import { DEFAULT_READ_AHEAD_BYTES, DEFAULT_READ_AHEAD_WINDOWS } from '../src/io/read-ahead.js';
import { PAGE_RETRY } from './helpers/browser.js';
import { announced, mergeEnabled, planReady, text, texts, upload, useDemoSession } from './helpers/demo-session.js';
import { FLUX, fluxDiffusersTensors, kohyaSpec, loraTensors, rowsFrom, tensor, truthTerms, type LoraSpec } from './helpers/diffusion-fixtures.js';
import { buildSafetensors, decodeSafetensors, encodeValues, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { expectMergedFile } from './helpers/merge-truth.js';
import { FLUX1_DEV } from './helpers/model-index.js';

const session = useDemoSession();
const rand = seededRandom(4242);
const json = (o: object) => JSON.stringify(o, null, 2);
const MIB = 2 ** 20;
const { h } = FLUX;

// --- transformer/: diffusers' FluxTransformer2DModel names (with FLUX.1-dev's guidance embedder), three shards
const TRANSFORMER: FixtureTensor[] = [
  ...fluxDiffusersTensors(rand, 'BF16'),
  tensor(rand, 'time_text_embed.guidance_embedder.linear_1.weight', [h, FLUX.time], 'BF16'),
  tensor(rand, 'time_text_embed.guidance_embedder.linear_2.weight', [h, h], 'BF16'),
];
const SHARD = (i: number) => `diffusion_pytorch_model-0000${i}-of-00003.safetensors`;
/** Which shard holds a tensor: the double blocks' first in shard 1, their second in 2, the single blocks and the rest in 3. */
const shardOf = (name: string) => (name.startsWith('transformer_blocks.1.') ? 2 : /^(single_transformer_blocks|norm_out|proj_out)/.test(name) ? 3 : 1);
const transformerShards = [1, 2, 3].map((i) => TRANSFORMER.filter((t) => shardOf(t.name) === i));

// --- text_encoder/: transformers' CLIPTextModel (CLIP-L's names, hidden 12, one layer)
const CLIP_HIDDEN = 12, CLIP_MLP = 48;
const L0 = 'text_model.encoder.layers.0';
const CLIP: FixtureTensor[] = [
  tensor(rand, 'text_model.embeddings.token_embedding.weight', [64, CLIP_HIDDEN], 'BF16'),
  tensor(rand, 'text_model.embeddings.position_embedding.weight', [16, CLIP_HIDDEN], 'BF16'),
  ...['q_proj', 'k_proj', 'v_proj', 'out_proj'].flatMap((p) => [
    tensor(rand, `${L0}.self_attn.${p}.weight`, [CLIP_HIDDEN, CLIP_HIDDEN], 'BF16'), tensor(rand, `${L0}.self_attn.${p}.bias`, [CLIP_HIDDEN], 'BF16'),
  ]),
  tensor(rand, `${L0}.layer_norm1.weight`, [CLIP_HIDDEN], 'BF16'), tensor(rand, `${L0}.layer_norm1.bias`, [CLIP_HIDDEN], 'BF16'),
  tensor(rand, `${L0}.mlp.fc1.weight`, [CLIP_MLP, CLIP_HIDDEN], 'BF16'), tensor(rand, `${L0}.mlp.fc1.bias`, [CLIP_MLP], 'BF16'),
  tensor(rand, `${L0}.mlp.fc2.weight`, [CLIP_HIDDEN, CLIP_MLP], 'BF16'), tensor(rand, `${L0}.mlp.fc2.bias`, [CLIP_HIDDEN], 'BF16'),
  tensor(rand, `${L0}.layer_norm2.weight`, [CLIP_HIDDEN], 'BF16'), tensor(rand, `${L0}.layer_norm2.bias`, [CLIP_HIDDEN], 'BF16'),
  tensor(rand, 'text_model.final_layer_norm.weight', [CLIP_HIDDEN], 'BF16'), tensor(rand, 'text_model.final_layer_norm.bias', [CLIP_HIDDEN], 'BF16'),
];

// --- text_encoder_2/: transformers' T5EncoderModel (T5-XXL's names, d_model 8, one block), two shards
const T5_BLOCK = 'encoder.block.0';
const T5_1: FixtureTensor[] = [
  tensor(rand, 'shared.weight', [32, 8], 'BF16'), tensor(rand, 'encoder.embed_tokens.weight', [32, 8], 'BF16'),
  ...['q', 'k', 'v', 'o'].map((p) => tensor(rand, `${T5_BLOCK}.layer.0.SelfAttention.${p}.weight`, [8, 8], 'BF16')),
  tensor(rand, `${T5_BLOCK}.layer.0.SelfAttention.relative_attention_bias.weight`, [32, 2], 'BF16'),
  tensor(rand, `${T5_BLOCK}.layer.0.layer_norm.weight`, [8], 'BF16'),
];
const T5_2: FixtureTensor[] = [
  tensor(rand, `${T5_BLOCK}.layer.1.DenseReluDense.wi_0.weight`, [20, 8], 'BF16'),
  tensor(rand, `${T5_BLOCK}.layer.1.DenseReluDense.wi_1.weight`, [20, 8], 'BF16'),
  tensor(rand, `${T5_BLOCK}.layer.1.DenseReluDense.wo.weight`, [8, 20], 'BF16'),
  tensor(rand, `${T5_BLOCK}.layer.1.layer_norm.weight`, [8], 'BF16'), tensor(rand, 'encoder.final_layer_norm.weight', [8], 'BF16'),
];

// --- vae/: diffusers' AutoencoderKL, its decoder's 512-channel up blocks at their real shape (bf16,
// 4.7 MB each), filled from one random 64 KiB block so that writing them costs nothing.
const VAE_CONVS = [0, 1].flatMap((b) => [0, 1, 2].flatMap((r) => [1, 2].map((c) => `decoder.up_blocks.${b}.resnets.${r}.conv${c}.weight`)));
function repeatedBf16(count: number): Uint8Array {
  const block = encodeValues(Array.from({ length: 32768 }, () => rand() * 2 - 1), 'BF16');
  const out = new Uint8Array(count * 2);
  for (let at = 0; at < out.length; at += block.length) out.set(block.subarray(0, Math.min(block.length, out.length - at)), at);
  return out;
}
const VAE = buildSafetensors([
  tensor(rand, 'decoder.conv_in.weight', [512, 16, 3, 3], 'BF16'), tensor(rand, 'decoder.conv_in.bias', [512], 'BF16'),
  ...VAE_CONVS.map((name): FixtureTensor => ({ name, dtype: 'BF16', shape: [512, 512, 3, 3], data: repeatedBf16(512 * 512 * 9) })),
]);

const index = (files: [string, FixtureTensor[]][], total: number) => json({
  metadata: { total_size: total },
  weight_map: Object.fromEntries(files.flatMap(([file, tensors]) => tensors.map((t) => [t.name, file])).sort(([a], [b]) => (a < b ? -1 : 1))),
});
const bytesOf = (tensors: FixtureTensor[]) => tensors.reduce((n, t) => n + (t.data instanceof Uint8Array ? t.data.length : t.data.length * 2), 0);

/** The folder as `huggingface-cli download black-forest-labs/FLUX.1-dev` leaves its diffusers part. */
const FOLDER: Record<string, string | Uint8Array> = {
  'model_index.json': json(FLUX1_DEV),
  'scheduler/scheduler_config.json': json({
    _class_name: 'FlowMatchEulerDiscreteScheduler', _diffusers_version: '0.30.0.dev0', base_image_seq_len: 256, base_shift: 0.5,
    max_image_seq_len: 4096, max_shift: 1.15, num_train_timesteps: 1000, shift: 3.0, use_dynamic_shifting: true,
  }),
  'text_encoder/config.json': json({
    _name_or_path: 'openai/clip-vit-large-patch14', architectures: ['CLIPTextModel'], hidden_size: CLIP_HIDDEN, intermediate_size: CLIP_MLP,
    max_position_embeddings: 16, model_type: 'clip_text_model', num_attention_heads: 2, num_hidden_layers: 1, projection_dim: 768, torch_dtype: 'bfloat16', vocab_size: 64,
  }),
  'text_encoder/model.safetensors': buildSafetensors(CLIP),
  'text_encoder_2/config.json': json({
    _name_or_path: 'google/t5-v1_1-xxl', architectures: ['T5EncoderModel'], d_ff: 20, d_kv: 4, d_model: 8, feed_forward_proj: 'gated-gelu',
    model_type: 't5', num_heads: 2, num_layers: 1, relative_attention_num_buckets: 32, torch_dtype: 'bfloat16', vocab_size: 32,
  }),
  'text_encoder_2/model-00001-of-00002.safetensors': buildSafetensors(T5_1),
  'text_encoder_2/model-00002-of-00002.safetensors': buildSafetensors(T5_2),
  'text_encoder_2/model.safetensors.index.json': index([['model-00001-of-00002.safetensors', T5_1], ['model-00002-of-00002.safetensors', T5_2]], bytesOf([...T5_1, ...T5_2])),
  'tokenizer/merges.txt': '#version: 0.2\ni n\nt h\n',
  'tokenizer/special_tokens_map.json': json({ bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' }),
  'tokenizer/tokenizer_config.json': json({ model_max_length: 77, tokenizer_class: 'CLIPTokenizer' }),
  'tokenizer/vocab.json': json({ '<|startoftext|>': 49406, '<|endoftext|>': 49407, 'in</w>': 530 }),
  'tokenizer_2/special_tokens_map.json': json({ eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>' }),
  'tokenizer_2/spiece.model': new Uint8Array([0x0a, 0x0b, 0x0a, 0x05, 0x3c, 0x70, 0x61, 0x64, 0x3e, 0x15, 0, 0, 0, 0, 0x18, 0x03]),
  'tokenizer_2/tokenizer.json': json({ version: '1.0', model: { type: 'Unigram', unk_id: 2, vocab: [['<pad>', 0], ['</s>', 0], ['<unk>', 0]] } }),
  'tokenizer_2/tokenizer_config.json': json({ model_max_length: 512, tokenizer_class: 'T5Tokenizer' }),
  'transformer/config.json': json({
    _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.30.0.dev0', attention_head_dim: h / 2, guidance_embeds: true, in_channels: FLUX.inChannels,
    joint_attention_dim: FLUX.txt, num_attention_heads: 2, num_layers: 2, num_single_layers: 2, patch_size: 1, pooled_projection_dim: FLUX.vec,
  }),
  ...Object.fromEntries(transformerShards.map((tensors, i) => [`transformer/${SHARD(i + 1)}`, buildSafetensors(tensors)])),
  'transformer/diffusion_pytorch_model.safetensors.index.json': index(transformerShards.map((tensors, i) => [SHARD(i + 1), tensors]), bytesOf(TRANSFORMER)),
  'vae/config.json': json({
    _class_name: 'AutoencoderKL', _diffusers_version: '0.30.0.dev0', block_out_channels: [128, 256, 512, 512], in_channels: 3, latent_channels: 16,
    out_channels: 3, scaling_factor: 0.3611, shift_factor: 0.1159, use_post_quant_conv: false, use_quant_conv: false,
  }),
  'vae/diffusion_pytorch_model.safetensors': VAE,
};

// --- the LoRA: sd-scripts' networks.lora_flux (BFL names, lora_down/lora_up/alpha), r 4, α 8 on the transformer, r 2, α 2 on CLIP-L
const T = (rest: string) => `transformer.${rest}.weight`;
const LORA_SPECS: LoraSpec[] = [
  kohyaSpec('lora_unet_double_blocks_0_img_attn_qkv', 4, 3 * h, h, ['to_q', 'to_k', 'to_v'].map((p, i) => ({ key: T(`transformer_blocks.0.attn.${p}`), rows: rowsFrom(i * h, h) })), 8),
  kohyaSpec('lora_unet_double_blocks_0_txt_attn_proj', 4, h, h, [{ key: T('transformer_blocks.0.attn.to_add_out') }], 8),
  kohyaSpec('lora_unet_single_blocks_1_linear1', 4, 7 * h, h, [
    ...['to_q', 'to_k', 'to_v'].map((p, i) => ({ key: T(`single_transformer_blocks.1.attn.${p}`), rows: rowsFrom(i * h, h) })),
    { key: T('single_transformer_blocks.1.proj_mlp'), rows: rowsFrom(3 * h, 4 * h) },
  ], 8),
  kohyaSpec('lora_unet_single_blocks_0_linear2', 4, h, 5 * h, [{ key: T('single_transformer_blocks.0.proj_out') }], 8),
  kohyaSpec('lora_te1_text_model_encoder_layers_0_self_attn_q_proj', 2, CLIP_HIDDEN, CLIP_HIDDEN, [{ key: `text_encoder.${L0}.self_attn.q_proj.weight` }], 2),
  kohyaSpec('lora_te1_text_model_encoder_layers_0_mlp_fc1', 2, CLIP_MLP, CLIP_HIDDEN, [{ key: `text_encoder.${L0}.mlp.fc1.weight` }], 2),
];
const LORA = buildSafetensors(loraTensors(rand, LORA_SPECS, 'BF16'), {
  ss_network_module: 'networks.lora_flux', ss_base_model_version: 'flux1', ss_network_dim: '4', ss_network_alpha: '8',
});

/** BFL's own files at the folder's root (the transformer in BFL's names, the autoencoder), which the merge leaves out. */
const ROOT_CHECKPOINTS: Record<string, Uint8Array> = {
  'ae.safetensors': buildSafetensors([tensor(rand, 'decoder.conv_in.weight', [8, 16, 3, 3], 'F32'), tensor(rand, 'encoder.conv_in.weight', [8, 3, 3, 3], 'F32')]),
  'flux1-dev.safetensors': buildSafetensors([
    tensor(rand, 'double_blocks.0.img_attn.qkv.weight', [3 * h, h], 'BF16'), tensor(rand, 'single_blocks.0.linear2.weight', [h, 5 * h], 'BF16'),
  ]),
};

const ROOT_WARNING = 'FLUX.1-dev: ae.safetensors, flux1-dev.safetensors not written: they are outside the folders model_index.json lists, which the diffusers pipeline loads and the merge writes, '
  + 'and copies would be left unmerged (a single-file checkpoint beside those folders is the base model as it was), so they are left out of the output; '
  + 'to merge one of them, give that file as the base on its own';

/** What the merge writes: every file of the folder (the untouched ones copied), under the same paths. */
const WRITTEN = Object.keys(FOLDER).sort();
/** The weight files the LoRA changes. */
const MERGED = [`transformer/${SHARD(1)}`, `transformer/${SHARD(3)}`, 'text_encoder/model.safetensors'];

/**
 * JavaScript heap in use plus ArrayBuffer backing stores, summed over the page and every worker it
 * runs at the time (the merge worker and its browser-storage writer at least), each after a full
 * garbage collection: what the page's code still holds.
 */
async function heldBytes(page: Page): Promise<{ bytes: number; contexts: number }> {
  const sessions = [await page.createCDPSession(), ...page.workers().map((w) => w.client)];
  let bytes = 0;
  for (const cdp of sessions) {
    await cdp.send('HeapProfiler.collectGarbage');
    const usage = await cdp.send('Runtime.getHeapUsage');
    bytes += usage.usedSize + usage.backingStorageSize;
  }
  await sessions[0].detach();
  return { bytes, contexts: sessions.length };
}

/** A file in the page's browser storage: its path, size, and 'free' where a synchronous access handle opens on it (none is held), else the error's name. */
type Stored = { path: string; size: number; free: string };
/** Every file in the page's browser storage (see {@link Stored}). */
function storedFiles(page: Page): Promise<Stored[]> {
  return page.evaluate(() => new Promise<Stored[]>((resolve, reject) => {
    // Synchronous access handles exist in dedicated workers only; one open on a file makes another fail.
    const source = `onmessage = async () => {
      const out = [];
      const walk = async (dir, prefix) => {
        for await (const [name, handle] of dir.entries()) {
          if (handle.kind === 'directory') { await walk(handle, prefix + name + '/'); continue; }
          try {
            const sync = await handle.createSyncAccessHandle();
            out.push({ path: prefix + name, size: sync.getSize(), free: 'free' });
            sync.close();
          } catch (e) {
            out.push({ path: prefix + name, size: -1, free: e.name });
          }
        }
      };
      await walk(await navigator.storage.getDirectory(), '');
      postMessage(out);
    };`;
    const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    const worker = new Worker(url);
    worker.onmessage = (event) => {
      worker.terminate();
      URL.revokeObjectURL(url);
      resolve(event.data as Stored[]);
    };
    worker.onerror = (event) => reject(new Error(event.message));
    worker.postMessage(null);
  }));
}

/** Each download link's file (its path is the link's title): size, SHA-256, and the bytes of those under 1 MiB. */
function downloads(page: Page): Promise<{ path: string; size: number; sha256: string; base64?: string }[]> {
  return page.$$eval('[data-testid="download-link"], [data-testid="download-link-extra"]', async (links) => Promise.all(links.map(async (link) => {
    const blob = await (await fetch((link as HTMLAnchorElement).href)).blob();
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const sha256 = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
    let base64: string | undefined;
    if (bytes.length < 2 ** 20) {
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      base64 = btoa(s);
    }
    return { path: (link as HTMLAnchorElement).title, size: blob.size, sha256, base64 };
  })));
}

const sha256 = (bytes: string | Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('a FLUX.1-dev diffusers folder picked whole', PAGE_RETRY, () => {
  it('a kohya FLUX LoRA merged into its sharded transformer and CLIP-L, every other file copied; the files in browser storage with no handle held, no memory kept', async () => {
    expect(VAE.length).toBeGreaterThan(54 * MIB);
    const dir = session.dirs.make({
      ...Object.fromEntries(Object.entries(FOLDER).map(([p, b]) => [`FLUX.1-dev/${p}`, b])),
      'FLUX.1-dev/.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n',
      'FLUX.1-dev/.cache/huggingface/download/transformer/diffusion_pytorch_model-00001-of-00003.safetensors.metadata': 'x\n',
      // BFL's single files beside the diffusers folders, as a whole download of the repository holds them.
      ...Object.fromEntries(Object.entries(ROOT_CHECKPOINTS).map(([p, b]) => [`FLUX.1-dev/${p}`, b])),
      'my_flux_lora.safetensors': LORA,
    });
    const { page } = await session.open('?backend=cpu');
    const idle = await heldBytes(page);

    await upload(page, 'base-folder-input', join(dir, 'FLUX.1-dev'));
    await page.waitForFunction(() => !document.querySelector<HTMLElement>('[data-testid="base-summary"]')!.hidden, { timeout: 30_000 });
    expect(await text(page, '[data-testid="base-summary"] > div')).toMatch(/^FLUX\.1-dev · 25 files, /);
    // The Hub's dot-files and its download cache left out, the rest listed.
    expect(await texts(page, '[data-testid="base-summary"] li')).toEqual([...WRITTEN, ...Object.keys(ROOT_CHECKPOINTS)].sort());
    await upload(page, 'adapter-input', join(dir, 'my_flux_lora.safetensors'));
    await planReady(page);
    expect(await announced(page, /Plan ready/)).toBe(`Plan ready: 11 modules matched. 1 warning: ${ROOT_WARNING}`);
    expect(await texts(page, '[data-testid="plan-files"] li')).toEqual([
      `text_encoder/model.safetensors: merged: 2 of ${CLIP.length} tensors change`,
      `text_encoder_2/model-00001-of-00002.safetensors: nothing in it changes: copied byte for byte`,
      `text_encoder_2/model-00002-of-00002.safetensors: nothing in it changes: copied byte for byte`,
      `transformer/${SHARD(1)}: merged: 4 of ${transformerShards[0].length} tensors change`,
      `transformer/${SHARD(2)}: nothing in it changes: copied byte for byte`,
      `transformer/${SHARD(3)}: merged: 5 of ${transformerShards[2].length} tensors change`,
      'vae/diffusion_pytorch_model.safetensors: nothing in it changes: copied byte for byte',
      '14 other files (configs, tokenizer, scheduler…) copied unchanged: ' + WRITTEN.filter((p) => !/\.safetensors(\.index\.json)?$/.test(p)).join(', '),
    ]);

    // flux1-dev.safetensors and ae.safetensors are not merged, so not written: one warning names them.
    expect((await texts(page, '[data-testid="plan-problems"] li')).filter((m) => m.includes('flux1-dev.safetensors'))).toEqual([`warning: ${ROOT_WARNING}`]);
    // The long warning wraps at phone width, in both themes.
    const viewport = page.viewport();
    await page.setViewport({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
      await (await page.$('#plan-section'))!.screenshot({ path: `test-output/demo-flux-folder-root-warning-390px-${scheme}.png` });
    }
    await page.emulateMediaFeatures([]);
    if (viewport) await page.setViewport(viewport);

    await mergeEnabled(page);
    await page.click('[data-testid="merge-button"]');
    await page.waitForFunction(() => !!document.querySelector<HTMLAnchorElement>('[data-testid="download-link"]')?.href, { timeout: 90_000 });
    expect(await text(page, '[data-testid="progress-text"]')).toMatch(/^Merged /);

    // What the page holds once the merge is over, before anything here reads the files back: the
    // merge worker's read-ahead windows kept for the next merge (four of 8 MiB; a heap snapshot
    // showed nothing else above 1 MiB) and a few MiB of heap, not the 54 MiB VAE it copied.
    const after = await heldBytes(page);
    expect(after.contexts).toBeGreaterThanOrEqual(3); // the page, the merge worker, its browser-storage writer
    const grown = (after.bytes - idle.bytes) / MIB;
    const spareWindows = ((DEFAULT_READ_AHEAD_WINDOWS + 1) * DEFAULT_READ_AHEAD_BYTES) / MIB;
    expect(grown, `${grown.toFixed(1)} MiB more held after the merge than before the pick (${after.contexts} contexts)`).toBeLessThan(spareWindows + 8);

    // In browser storage, one folder for the merge holding every file; no writer holds any.
    const stored = await storedFiles(page);
    const job = stored[0]?.path.split('/').slice(0, 2).join('/');
    expect(job).toMatch(/^loramerge-merges\/merge-[^/]+$/);
    expect(stored.map((f) => f.path.slice(job.length + 1)).sort()).toEqual(WRITTEN);
    expect(stored.filter((f) => f.free !== 'free')).toEqual([]);

    const files = await downloads(page);
    expect(files.map((f) => f.path).sort()).toEqual(WRITTEN);
    const got = new Map(files.map((f) => [f.path, f]));
    for (const f of stored) expect(f.size, f.path).toBe(got.get(f.path.slice(job.length + 1))!.size);
    for (const path of WRITTEN) {
      if (MERGED.includes(path) || path.endsWith('.index.json')) continue;
      expect(got.get(path)!.sha256, `${path} is copied byte for byte`).toBe(sha256(FOLDER[path]));
    }
    for (const path of WRITTEN.filter((p) => p.endsWith('.index.json'))) {
      const want = JSON.parse(FOLDER[path] as string), written = JSON.parse(Buffer.from(got.get(path)!.base64!, 'base64').toString());
      expect(written.weight_map, path).toEqual(want.weight_map);
      expect(written.metadata.total_size, path).toBe(want.metadata.total_size);
    }
    const terms = truthTerms(decodeSafetensors(LORA).tensors, LORA_SPECS, 1);
    let checked = 0;
    for (const path of MERGED) {
      const folder = path.slice(0, path.indexOf('/'));
      const base = decodeSafetensors(FOLDER[path] as Uint8Array).tensors;
      // The terms landing on this file's tensors (a shard holds part of its folder's).
      const local = terms.filter((t) => t.baseKey.startsWith(`${folder}.`)).map((t) => ({ ...t, baseKey: t.baseKey.slice(folder.length + 1) })).filter((t) => base.has(t.baseKey));
      checked += local.length;
      expectMergedFile(base, decodeSafetensors(new Uint8Array(Buffer.from(got.get(path)!.base64!, 'base64'))).tensors, local);
    }
    expect(checked).toBe(terms.length); // every term landed in a file checked: 11 (qkv 3, txt proj 1, linear1 4, linear2 1, CLIP-L 2)
    expect(terms.length).toBe(11);
  }, 180_000);
});
