/**
 * What the plan's magnitudes (‖ΔW‖ / ‖W‖, the page's chart) read of the base for PEFT DEFT, whose
 * ΔW = Q_P·(s·R − rightᵀ·W) sums over every output row of W. A Llama with 28 layers and grouped
 * key-value heads, a DEFT adapter on q, k, v and o, read through the library's Blob file set without
 * read-ahead (as the page plans), every byte a slice hands over counted by where it lies in the
 * file. The sizes are scaled down (hidden 256) with the thresholds (a tensor of at most 2^14
 * elements read whole, 2^12 sampled from a larger one), so that k_proj and v_proj (64 × 256) are
 * read whole and q_proj and o_proj (256 × 256) sampled, as a real model's are at 2^20 and 2^18.
 * The truth is PEFT's formula in float64.
 */
import { describe, expect, it } from 'vitest';
import { blobInputFileSet, estimateUpdateMagnitudes, prepareMerge } from '../src/index.js';
import { pickedFileSet } from '../demo/picked-file-set.js';
import { summarizePlan } from '../demo/plan-summary.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';
import { peftFolder } from './helpers/hf-folder.js';
import { fixtureTensor as t, gridValues } from './helpers/peft-method-folder.js';

const HIDDEN = 256, HEADS = 8, KV_HEADS = 2, LAYERS = 28, R = 4, INTERMEDIATE = 64;
const KV = (HIDDEN / HEADS) * KV_HEADS;
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const shapes: Record<string, [number, number]> = { q_proj: [HIDDEN, HIDDEN], k_proj: [KV, HIDDEN], v_proj: [KV, HIDDEN], o_proj: [HIDDEN, HIDDEN] };
const OPTIONS = { exactElements: 2 ** 14, sampleElements: 2 ** 12, sampleChunks: 8 };

const modelConfig = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: HIDDEN, intermediate_size: INTERMEDIATE,
  num_attention_heads: HEADS, num_key_value_heads: KV_HEADS, num_hidden_layers: LAYERS, vocab_size: 128,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, hidden_act: 'silu', tie_word_embeddings: false, torch_dtype: 'float16',
};
/** The fields PEFT writes to a DEFT adapter_config.json (DeftConfig and PeftConfig's own). */
const deftConfig = {
  peft_type: 'DEFT', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-3B', peft_version: '0.19.0', revision: null, auto_mapping: null,
  inference_mode: true, r: R, target_modules: TARGETS, exclude_modules: null, decomposition_method: 'relu', init_scale: 1.0, alpha: null,
  para: false, fan_in_fan_out: false, deft_dropout: 0.0, init_weights: true, layers_to_transform: null, layers_pattern: null, bias: 'none', modules_to_save: null,
};

const rand = seededRandom(131);
const vals = gridValues(rand);
const key = (layer: number, m: string) => `model.layers.${layer}.self_attn.${m}`;

/** ‖Q_P·(s·R − relu(P)ᵀ·W)‖_F in float64, W (out, in). */
function deftNorm(w: Float64Array, out: number, inF: number, p: Float64Array, r: Float64Array): number {
  let ss = 0;
  const m = new Float64Array(R * inF);
  for (let k = 0; k < R; k++) for (let i = 0; i < inF; i++) {
    let x = r[k * inF + i];
    for (let o = 0; o < out; o++) x -= Math.max(p[o * R + k], 0) * w[o * inF + i];
    m[k * inF + i] = x;
  }
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let d = 0;
    for (let k = 0; k < R; k++) d += p[o * R + k] * m[k * inF + i];
    ss += d * d;
  }
  return Math.sqrt(ss);
}

/** A Blob as a picked File, recording the byte range of every slice read out of it. */
function counted(blob: Blob, ranges: [number, number][], streams: { n: number }): Blob {
  const wrap = (b: Blob, at: number): Blob => ({
    size: b.size,
    type: '',
    slice: (start = 0, end = b.size) => wrap(b.slice(start, end), at + start),
    arrayBuffer: async () => {
      const bytes = await b.arrayBuffer();
      ranges.push([at, at + bytes.byteLength]);
      return bytes;
    },
    stream: () => {
      streams.n++;
      return b.stream();
    },
  }) as unknown as Blob;
  return wrap(blob, 0);
}

/** Bytes of the recorded ranges that fall in [start, end). */
const within = (ranges: readonly [number, number][], start: number, end: number) =>
  ranges.reduce((n, [a, b]) => n + Math.max(0, Math.min(b, end) - Math.max(a, start)), 0);

describe('the plan of a PEFT DEFT adapter reads a bounded part of W', () => {
  it(`on a ${LAYERS}-layer Llama, q/k/v/o: k and v (read whole) exact, q and o not measured, and no more of q or o read than ‖W‖'s samples`, async () => {
    const base: FixtureTensor[] = [t('model.embed_tokens.weight', 'F16', [128, HIDDEN], vals(128 * HIDDEN, 'F16'))];
    const adapter: FixtureTensor[] = [];
    const weights = new Map<string, Float64Array>(), factors = new Map<string, [Float64Array, Float64Array]>();
    for (let layer = 0; layer < LAYERS; layer++) {
      for (const m of TARGETS) {
        const [out, inF] = shapes[m];
        const w = vals(out * inF, 'F16'), p = vals(out * R, 'F32'), r = vals(R * inF, 'F32');
        weights.set(`${key(layer, m)}.weight`, w);
        factors.set(`${key(layer, m)}.weight`, [p, r]);
        base.push(t(`${key(layer, m)}.weight`, 'F16', [out, inF], w));
        adapter.push(t(`base_model.model.${key(layer, m)}.deft_P`, 'F32', [out, R], p), t(`base_model.model.${key(layer, m)}.deft_R`, 'F32', [R, inF], r));
      }
    }
    const model = buildSafetensors(base, { format: 'pt' });
    const ranges: [number, number][] = [], streams = { n: 0 };
    const files = blobInputFileSet('llama', new Map([
      ['config.json', new Blob([JSON.stringify(modelConfig)])],
      ['model.safetensors', counted(new Blob([model as Uint8Array<ArrayBuffer>]), ranges, streams)],
    ]), undefined, { readAhead: false });
    const adapterSet = blobInputFileSet('deft', new Map(Object.entries(peftFolder(deftConfig, adapter)).map(([path, bytes]) => [path, new Blob([bytes as Uint8Array<ArrayBuffer>])])), undefined, { readAhead: false });
    const prepared = await prepareMerge(files, [{ files: adapterSet }]);
    try {
      expect(prepared.plan.problems).toEqual([]);
      const before = ranges.length;
      const magnitudes = await estimateUpdateMagnitudes(prepared.plan, (k, r0, n) => prepared.base.readRows(k, r0, n), OPTIONS);
      const read = ranges.slice(before);
      expect(magnitudes).toHaveLength(LAYERS * TARGETS.length);
      // Where each tensor's bytes lie in the file: the header's offsets after its 8-byte length.
      const headerBytes = Number(new DataView(model.buffer, model.byteOffset).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(model.subarray(8, 8 + headerBytes))) as Record<string, { data_offsets: [number, number] }>;
      let sampledBytes = 0;
      for (const m of magnitudes) {
        const [out, inF] = shapes[m.moduleType];
        const [s, e] = header[m.baseKey].data_offsets.map((x) => x + 8 + headerBytes);
        const pulled = within(read, s, e);
        if (out * inF <= OPTIONS.exactElements) {
          const [p, r] = factors.get(m.baseKey)!;
          expect(m.updateNormExact, m.baseKey).toBe(true);
          expect(m.updateNorm, m.baseKey).toBeCloseTo(deftNorm(weights.get(m.baseKey)!, out, inF, p, r), 4);
        } else {
          expect(Number.isNaN(m.updateNorm) && Number.isNaN(m.ratio), m.baseKey).toBe(true);
          expect(m.updateNormExact).toBe(false);
          // Only ‖W‖'s 8 runs of ⌊2^12 / 8 / 256⌋ = 2 rows, 16 of the 256 rows, and what a 64 KiB
          // window for small reads, started by the tensor before (v_proj read whole), spills into it.
          expect(pulled, m.baseKey).toBeGreaterThanOrEqual(16 * inF * 2);
          expect(pulled, m.baseKey).toBeLessThanOrEqual(16 * inF * 2 + 64 * 1024);
          sampledBytes += pulled;
        }
      }
      // At most one window's spill a layer: under a third of q and o (whole, 7.3 MB; the plan read them
      // whole at least once before it left them unmeasured).
      expect(sampledBytes).toBeLessThanOrEqual(LAYERS * (2 * 16 * HIDDEN * 2 + 64 * 1024));
      // In all: k and v once each (‖W‖, the pass forming rightᵀ·W and ΔW share their pieces), q's and
      // o's samples, a window's spill a layer; 3.2 MB measured, where reading q and o whole for
      // rightᵀ·W and k and v three times pulled 12.9 MB of a 9.2 MB file.
      const total = read.reduce((n, [a, b]) => n + b - a, 0);
      expect(total).toBeLessThanOrEqual(LAYERS * (2 * KV * HIDDEN * 2 + 2 * 16 * HIDDEN * 2 + 64 * 1024));
      expect(streams.n).toBe(0);
    } finally {
      await prepared.close();
    }
  });

  it('on a GPT-2 Conv1D (W stored (in, out)), from the sampled stored rows alone: exact columns of ΔW, scaled up', async () => {
    const c = 'transformer.h.0.attn.c_attn', inF = 64, out = 192, rows = 8;
    const w = vals(inF * out, 'F32'), p = vals(out * R, 'F32'), rv = vals(R * inF, 'F32');
    const prepared = await prepareMerge(
      blobInputFileSet('gpt2', new Map([['model.safetensors', new Blob([buildSafetensors([t(`${c}.weight`, 'F32', [inF, out], w)]) as Uint8Array<ArrayBuffer>])]]), undefined, { readAhead: false }),
      [{ files: blobInputFileSet('deft', new Map(Object.entries(peftFolder({ ...deftConfig, fan_in_fan_out: true, target_modules: ['c_attn'] }, [
        t(`base_model.model.${c}.deft_P`, 'F32', [out, R], p), t(`base_model.model.${c}.deft_R`, 'F32', [R, inF], rv),
      ])).map(([path, bytes]) => [path, new Blob([bytes as Uint8Array<ArrayBuffer>])])), undefined, { readAhead: false }) }],
    );
    try {
      let furthest = 0;
      // One run of the first `rows` stored rows (inputs 0–7), for ‖W‖ and ΔW alike.
      const [m] = await estimateUpdateMagnitudes(prepared.plan, (k, r0, n) => {
        furthest = Math.max(furthest, r0 + n);
        return prepared.base.readRows(k, r0, n);
      }, { exactElements: 1024, sampleElements: rows * out, sampleChunks: 1 });
      expect(furthest).toBe(rows);
      // ΔW (out, in) in float64 over W as (out, in), its first `rows` columns, scaled by in / rows.
      let ss = 0;
      const col = (k: number, i: number) => {
        let x = rv[k * inF + i];
        for (let o = 0; o < out; o++) x -= Math.max(p[o * R + k], 0) * w[i * out + o];
        return x;
      };
      for (let i = 0; i < rows; i++) {
        const mcol = Array.from({ length: R }, (_, k) => col(k, i));
        for (let o = 0; o < out; o++) ss += mcol.reduce((s, x, k) => s + p[o * R + k] * x, 0) ** 2;
      }
      expect(m.updateNormExact).toBe(false);
      expect(m.updateNorm).toBeCloseTo(Math.sqrt((ss * inF) / rows), 4);
    } finally {
      await prepared.close();
    }
  });

  it('on the page, a q_proj of 1024 × 1040 (over 2^20 elements) is listed, its size not measured, W read only where ‖W‖ samples it', async () => {
    const q = 'model.layers.0.self_attn.q_proj', out = 1024, inF = 1040;
    const ranges: [number, number][] = [], streams = { n: 0 };
    const model = buildSafetensors([t(`${q}.weight`, 'F16', [out, inF], vals(out * inF, 'F16'))]);
    const adapter = peftFolder({ ...deftConfig, target_modules: ['q_proj'] }, [
      t(`base_model.model.${q}.deft_P`, 'F32', [out, R], vals(out * R, 'F32')), t(`base_model.model.${q}.deft_R`, 'F32', [R, inF], vals(R * inF, 'F32')),
    ]);
    const file = (bytes: Uint8Array | string, name: string) => new File([bytes as Uint8Array<ArrayBuffer>], name);
    const summary = await summarizePlan(
      pickedFileSet('llama', [{ path: 'model.safetensors', file: counted(new Blob([model as Uint8Array<ArrayBuffer>]), ranges, streams) as File }], 'plan'),
      [{ files: pickedFileSet('deft', Object.entries(adapter).map(([path, bytes]) => ({ path, file: file(bytes, path) })), 'plan'), weight: 1 }],
    );
    expect(summary.modules.map((m) => m.target)).toEqual([`${q}.weight`]);
    expect(summary.magnitudes).toHaveLength(1);
    expect(Number.isNaN(summary.magnitudes[0].ratio)).toBe(true);
    // Headers (prepared twice: at the sliders' weights and at 1) and ‖W‖'s 8 runs of ⌊2^18 / 8 / 1040⌋ = 31 rows, of 2 MiB.
    const headerBytes = 8 + Number(new DataView(model.buffer, model.byteOffset).getBigUint64(0, true));
    const pulled = ranges.reduce((n, [a, b]) => n + b - a, 0);
    expect(pulled).toBeGreaterThanOrEqual(8 * 31 * inF * 2);
    expect(pulled).toBeLessThanOrEqual(2 * headerBytes + 8 * 31 * inF * 2 + 8 * 64 * 1024);
    expect(streams.n).toBe(0);
  });
});
