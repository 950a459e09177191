/**
 * The surface fuzzer's `gguf-type-mixes` world (fuzz-surfaces.ts draws it): a small llama GGUF (BF16
 * matrices, F32 norms; 1 to 8 blocks, grouped-query attention of 1 to 8, a tied or untied head,
 * rows of 256 or of 32 to 128 values so that the fallbacks are reached) with a llama.cpp LoRA adapter
 * (`.lora_a` / `.lora_b`, adapter.lora.alpha) on some of blk.0's attn_v, attn_q, attn_output and the
 * last block's ffn_down, merged with `--dtype iq3_s_mix`, `iq3_m`, `q2_k_mix`, `q6_k_mix`,
 * `q4_0_mix`, `iq4_nl_mix` or `iq4_xs_mix` (llama-quantize's IQ3_S, IQ3_M, Q2_K, Q6_K, Q4_0,
 * IQ4_NL and IQ4_XS file types), or with `iq3_xs`, `iq3_xxs_mix` or
 * `q2_k_s`, which llama-quantize writes only with an importance matrix: refused.
 *
 * The truth: each tensor's type from llama.cpp's src/llama-quant.cpp (llama_tensor_get_type,
 * llama_tensor_get_type_impl and tensor_type_fallback, no importance matrix), written out below as
 * plain rules for these file types; its data the float64 merge W + w·(α/r)·B·A (the LoRA's
 * scale as llama.cpp's: α = 0 means the weight alone) quantized by the test helpers' reference
 * quantizers (ggml-reference.ts, ggml-iq4-reference.ts), byte for byte: the values are chosen
 * dyadic (base k/64, factors k/8, weights 1, 0.5, -1, 2.5), so the merge is exact in f32 and
 * quantizing it from f32 or from float64 is the same. IQ3_S has no reference quantizer in the
 * helpers: its tensors are checked for their type and shape only. general.file_type is the file
 * type's (10, 18, 26, 27, 2, 25, 30). At weight 40000 (not exact in f32) a merged tensor is held within twice
 * the reference quantizer's own error on the float64 merge (blockBound); at 1e30 the blocks' scales
 * overflow and the merge is refused.
 */
import fc from 'fast-check';
import { tensorData, type FixtureTensor as GgufTensor, type MetaValue } from './gguf-builder.js';
import { blockBound, type Decoded, type GgufExpected, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

type Mix = 'iq3_s_mix' | 'iq3_m' | 'q2_k_mix' | 'q6_k_mix' | 'q4_0_mix' | 'iq4_nl_mix' | 'iq4_xs_mix';
type Refused = 'iq3_xs' | 'iq3_xxs_mix' | 'q2_k_s';
/** llama-quantize's file type of each mix: the LLAMA_FTYPE_MOSTLY_* name and number (llama.h). */
const FTYPE: Record<Mix, { name: keyof typeof DEFAULT; id: number }> = {
  iq3_s_mix: { name: 'IQ3_S', id: 26 }, iq3_m: { name: 'IQ3_M', id: 27 }, q2_k_mix: { name: 'Q2_K', id: 10 }, q6_k_mix: { name: 'Q6_K', id: 18 },
  q4_0_mix: { name: 'Q4_0', id: 2 }, iq4_nl_mix: { name: 'IQ4_NL', id: 25 }, iq4_xs_mix: { name: 'IQ4_XS', id: 30 },
};
/** llama_ftype_get_default_type. */
const DEFAULT = { IQ3_S: 'IQ3_S', IQ3_M: 'IQ3_S', Q2_K: 'Q2_K', Q6_K: 'Q6_K', Q4_0: 'Q4_0', IQ4_NL: 'IQ4_NL', IQ4_XS: 'IQ4_XS' } as const;
/** ggml_blck_size of the types these rules reach. */
const BLOCK: Record<string, number> = { Q2_K: 256, Q3_K: 256, Q4_K: 256, Q5_K: 256, Q6_K: 256, IQ3_S: 256, IQ4_NL: 32, IQ4_XS: 256, Q4_0: 32, Q5_0: 32, Q5_1: 32, Q8_0: 32, F16: 1 };
/** tensor_type_fallback's table (rows that are not whole blocks of the type asked for). */
const FALLBACK: Record<string, string> = { IQ3_S: 'IQ4_NL', IQ4_XS: 'IQ4_NL', Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };

/**
 * The type llama-quantize gives `name` (ne0 values per row) under file type `ftype`, for a llama
 * model of `layers` blocks, n_gqa `gqa`, dense (n_expert 0, so no 8-expert rule), not sized 70B
 * (fewer than 80 blocks), `tied` without output.weight. Read from llama-quant.cpp:
 *   - output.weight, and token_embd.weight when tied: Q8_0 when ne0 is not whole blocks of the
 *     default type, else Q6_K;
 *   - attn_v: Q2_K → Q4_K if n_gqa ≥ 4 else Q3_K; IQ3_S → Q4_K if n_gqa ≥ 4; IQ3_M → Q4_K;
 *     IQ4_NL and IQ4_XS → Q5_K if n_gqa ≥ 4;
 *   - ffn_down (i_ffn_down: its block here, n_ffn_down the block count): Q2_K → Q3_K; IQ3_M →
 *     Q4_K for i < n/8; IQ4_NL and IQ4_XS → Q5_K for i < n/8 (without an importance matrix);
 *   - attn_output (not falcon, not 8 experts): Q2_K → Q3_K; IQ3_M → Q4_K;
 *   - everything else (attn_q, attn_k, ffn_gate, ffn_up, the untied token_embd): the default;
 * then tensor_type_fallback when ne0 is not whole blocks: IQ3_S and IQ4_XS → IQ4_NL, Q2_K/Q3_K → Q4_0, Q4_K
 * → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 when that does not fit either.
 */
export function llamaQuantizeType(ftype: keyof typeof DEFAULT, name: string, ne0: number, model: { layers: number; gqa: number; tied: boolean }): string {
  let type: string = DEFAULT[ftype];
  const block = /^blk\.(\d+)\./.exec(name);
  const layer = block ? Number(block[1]) : -1;
  if (name === 'output.weight' || (model.tied && name === 'token_embd.weight')) {
    type = ne0 % BLOCK[type] !== 0 ? 'Q8_0' : 'Q6_K';
  } else if (name.includes('attn_v.weight')) {
    if (ftype === 'Q2_K') type = model.gqa >= 4 ? 'Q4_K' : 'Q3_K';
    else if (ftype === 'IQ3_S' && model.gqa >= 4) type = 'Q4_K';
    else if (ftype === 'IQ3_M') type = 'Q4_K';
    else if ((ftype === 'IQ4_NL' || ftype === 'IQ4_XS') && model.gqa >= 4) type = 'Q5_K';
  } else if (name.includes('ffn_down')) {
    if (ftype === 'Q2_K') type = 'Q3_K';
    else if (ftype === 'IQ3_M' && layer < Math.floor(model.layers / 8)) type = 'Q4_K';
    else if ((ftype === 'IQ4_NL' || ftype === 'IQ4_XS') && layer < Math.floor(model.layers / 8)) type = 'Q5_K';
  } else if (name.includes('attn_output.weight')) {
    if (ftype === 'Q2_K') type = 'Q3_K';
    else if (ftype === 'IQ3_M') type = 'Q4_K';
  }
  if (ne0 % BLOCK[type] === 0) return type;
  const fallback = FALLBACK[type];
  return ne0 % BLOCK[fallback] === 0 ? fallback : 'F16';
}

/** Dyadic values: k/den for k drawn in [-den, den] (exact in BF16 for den ≤ 128, and their products and sums exact in f32). */
const dyadic = (rand: () => number, n: number, den: number) => Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * den) / den);

/** The helpers' reference quantizers cover these; IQ3_S they do not. */
const HAS_REFERENCE = new Set(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_0', 'Q5_0', 'Q5_1', 'Q8_0', 'IQ4_NL', 'IQ4_XS']);

export const typeMixesWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    mix: fc.oneof({ weight: 6, arbitrary: fc.constantFrom<Mix>('iq3_s_mix', 'iq3_m', 'q2_k_mix', 'q6_k_mix', 'q4_0_mix', 'iq4_nl_mix', 'iq4_xs_mix') }, { weight: 1, arbitrary: fc.constantFrom<Refused>('iq3_xs', 'iq3_xxs_mix', 'q2_k_s') }),
    layers: fc.constantFrom(1, 1, 2, 3, 8), hidden: fc.constantFrom(256, 256, 96), heads: fc.constantFrom(4, 8), kvDiv: fc.constantFrom(1, 2, 4, 8),
    wideFfn: fc.boolean(), tied: fc.boolean(), r: fc.integer({ min: 1, max: 2 }), alpha: fc.constantFrom(0, 1, 2, 4),
    targets: fc.subarray(['attn_v', 'attn_q', 'attn_output', 'ffn_down'], { minLength: 1 }), seed: fc.integer(),
  })
  .map(({ mix, layers, hidden, heads, kvDiv, wideFfn, tied, r, alpha, targets, seed }) => {
    let s = seed >>> 0;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const kvHeads = Math.max(1, heads / kvDiv);
    const HD = 16, VOCAB = 8;
    // Eight blocks of 256-wide ffn_down rows would make a slow case: the wide FFN only with few blocks.
    const ffn = wideFfn && layers < 8 ? 256 : 32;
    /** (out, in) of each matrix; ne is [in, out]. */
    const shapes: [string, number, number][] = [['token_embd.weight', VOCAB, hidden]];
    for (let i = 0; i < layers; i++) {
      shapes.push([`blk.${i}.attn_norm.weight`, hidden, 0], [`blk.${i}.attn_q.weight`, heads * HD, hidden], [`blk.${i}.attn_k.weight`, kvHeads * HD, hidden],
        [`blk.${i}.attn_v.weight`, kvHeads * HD, hidden], [`blk.${i}.attn_output.weight`, hidden, heads * HD], [`blk.${i}.ffn_norm.weight`, hidden, 0],
        [`blk.${i}.ffn_gate.weight`, ffn, hidden], [`blk.${i}.ffn_up.weight`, ffn, hidden], [`blk.${i}.ffn_down.weight`, hidden, ffn]);
    }
    shapes.push(['output_norm.weight', hidden, 0]);
    if (!tied) shapes.push(['output.weight', VOCAB, hidden]);
    const ne = (o: number, i: number) => (i ? [i, o] : [o]);
    const tensors: GgufTensor[] = shapes.map(([name, o, i]) => (i
      ? { name, type: 'BF16', ne: ne(o, i), data: tensorData('BF16', dyadic(rand, o * i, 64)) }
      : { name, type: 'F32', ne: [o], data: tensorData('F32', dyadic(rand, o, 64).map((x) => 1 + x)) }));
    const u32 = (value: number): MetaValue => ({ type: 'u32', value });
    const str = (value: string): MetaValue => ({ type: 'string', value });
    const modules = targets.map((t) => (t === 'ffn_down' ? `blk.${layers - 1}.ffn_down.weight` : `blk.0.${t}.weight`));
    const loraTensors: GgufTensor[] = modules.flatMap((m) => {
      const [, o, i] = shapes.find(([n]) => n === m)!;
      return [
        { name: `${m}.lora_a`, type: 'F32', ne: [i, r], data: tensorData('F32', dyadic(rand, i * r, 8)) },
        { name: `${m}.lora_b`, type: 'F32', ne: [r, o], data: tensorData('F32', dyadic(rand, r * o, 8)) },
      ];
    });
    const files: Record<string, SpecFile> = {
      'tiny-llama-BF16.gguf': {
        kind: 'gguf',
        build: {
          metadata: [
            ['general.architecture', str('llama')], ['general.name', str('Tiny Llama BF16')], ['llama.block_count', u32(layers)], ['llama.context_length', u32(2048)],
            ['llama.embedding_length', u32(hidden)], ['llama.feed_forward_length', u32(ffn)], ['llama.attention.head_count', u32(heads)],
            ['llama.attention.head_count_kv', u32(kvHeads)], ['llama.rope.freq_base', { type: 'f32', value: 500000 }],
            ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }], ['general.file_type', u32(32)], ['general.quantization_version', u32(2)],
          ],
          tensors,
        },
      },
      'lora.gguf': {
        kind: 'gguf',
        build: {
          metadata: [['general.architecture', str('llama')], ['general.type', str('adapter')], ['adapter.type', str('lora')], ['adapter.lora.alpha', { type: 'f32', value: alpha }]],
          tensors: loraTensors,
        },
      },
    };
    return {
      name: 'llama GGUF + llama.cpp LoRA',
      files, base: 'tiny-llama-BF16.gguf', adapter: 'lora.gguf', out: 'merged.gguf', refusalsChecked: true, fixedDtype: mix,
      truth: (d: Decoded, w: number): Truth => {
        if (!(mix in FTYPE)) return { kind: 'invalid', why: `--dtype ${mix}: llama-quantize writes it only with an importance matrix` };
        const ftype = FTYPE[mix as Mix];
        // A block's f16 scale cannot hold values of 1e10 (Q8_0's d = amax/127, a K-quant's d ≥ amax/(63·31)): refused.
        if (Math.abs(w) >= 1e10) return { kind: 'invalid', why: `weight ${w}: the merged blocks' f16 scales overflow` };
        // The merge is exact in f32 only for the weights drawn small and the values as written; at
        // another weight a merged tensor is held within twice the reference quantizer's error (blockBound).
        const exact = [1, 0.5, -1, 2.5].includes(w);
        for (const [k, t] of d.tensors) if (t.values.some((x) => !Number.isFinite(x) || Math.abs(x) > 4 || Math.round(x * 64) !== x * 64)) return { kind: 'unknown', why: `${k}: an edited value (not exact in f32)` };
        const kv = d.gguf.get('lora.gguf')!.get('adapter.lora.alpha');
        if (!kv || kv.type !== 6) return { kind: 'unknown', why: 'adapter.lora.alpha of another type' };
        if ((kv.value as number) !== alpha) return { kind: 'unknown', why: 'adapter.lora.alpha edited' };
        const arch = d.gguf.get('lora.gguf')!.get('general.architecture');
        if (arch?.value !== 'llama' || d.gguf.get('tiny-llama-BF16.gguf')!.get('general.architecture')?.value !== 'llama') return { kind: 'unknown', why: 'general.architecture edited' };
        const scale = alpha === 0 ? w : (w * alpha) / r;
        const model = { layers, gqa: Math.floor(heads / kvHeads), tied };
        const want: GgufExpected = { tensors: [], meta: { 'general.file_type': ftype.id, 'general.architecture': 'llama' } };
        for (const [name, o, i] of shapes) {
          const base = d.tensors.get(`/${name}`)!;
          if (!i) {
            want.tensors.push({ name, type: 'F32', ne: [o], bytes: base.bytes });
            continue;
          }
          const values = Float64Array.from(base.values);
          if (modules.includes(name)) {
            // lora_a ne [in, r] is torch (r, in); lora_b ne [r, out] is (out, r).
            const a = d.tensors.get(`/${name}.lora_a`)!.values, b = d.tensors.get(`/${name}.lora_b`)!.values;
            for (let y = 0; y < o; y++) for (let x = 0; x < i; x++) {
              let sum = 0;
              for (let k = 0; k < r; k++) sum += b[y * r + k] * a[k * i + x];
              values[y * i + x] += scale * sum;
            }
          }
          const type = llamaQuantizeType(ftype.name, name, i, model);
          const merged = modules.includes(name);
          if (HAS_REFERENCE.has(type)) want.tensors.push(exact || !merged ? { name, type, ne: [i, o], bytes: tensorData(type, values) } : { name, type, ne: [i, o], values, bound: blockBound(type, values) });
          else want.tensors.push(type === 'F16' ? { name, type, ne: [i, o], values, magnitude: maxAbs(values) } : { name, type, ne: [i, o] });
        }
        return { kind: 'expected', merged: new Map(), gguf: want };
      },
    };
  });
