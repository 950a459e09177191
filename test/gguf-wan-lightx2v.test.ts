/**
 * LightX2V's Wan distill LoRAs (`Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32`: `diffusion_model.`
 * + Wan's names, lora_down/lora_up with `.alpha`, `.diff_b` of biases, `.diff` of the norms,
 * `<block>.diff_m` and `head.diff_m` of the adaLN tables) onto Wan GGUF files as city96's
 * ComfyUI-GGUF converter (tools/convert.py, `ModelWan`) writes them: `general.architecture` "wan",
 * the checkpoint's own bare names, 1-D tensors and small ones F32, `.modulation` kept F32 at any
 * size (`keys_hiprec`), the (1, 6, dim) tables stored with ne [dim, 6, 1]; the weights BF16 (the
 * -BF16 files) or quantized (Q8_0). A diff_m lands on the F32 table as LightX2V's loader adds it:
 * base + strength · diff. The truth is float64, written out below.
 */
import { describe, expect, it } from 'vitest';
import { buildSafetensors, seededRandom, type FixtureTensor as SafeTensor } from './helpers/fixtures.js';
import { buildGguf, randomTensors, readGguf, tensorValues, typeName, type MetaValue } from './helpers/gguf-builder.js';
import { expectMerged } from './helpers/expect-merged.js';
import { mergeBackends, mergeFileInMemory, refusalsInMemory } from './helpers/merge-backends.js';

const backends = mergeBackends({ cpu: 'default' });
const rand = seededRandom(20261205);
const sym = () => 2 * rand() - 1;
const str = (value: string): MetaValue => ({ type: 'string', value });
const u32 = (value: number): MetaValue => ({ type: 'u32', value });

// Wan 2.1 14B is 5120 wide with FFN 13824; scaled to 64 and 96, 2 blocks; head out 16·(1·2·2).
const DIM = 64, FFN = 96, OUT = 64, R = 4;
const D = 'diffusion_model.';

/** Wan's tensors as convert.py stores them, ne fastest first; `weights` is the 2-D weights' type. */
function wanGgufSpecs(weights: 'BF16' | 'Q8_0') {
  const specs: { name: string; ne: number[]; type: string }[] = [
    { name: 'text_embedding.2.weight', ne: [DIM, DIM], type: weights }, { name: 'head.head.weight', ne: [DIM, OUT], type: weights },
    { name: 'head.head.bias', ne: [OUT], type: 'F32' }, { name: 'head.modulation', ne: [DIM, 2, 1], type: 'F32' },
  ];
  for (let i = 0; i < 2; i++) {
    const b = `blocks.${i}`;
    specs.push(
      { name: `${b}.modulation`, ne: [DIM, 6, 1], type: 'F32' },
      { name: `${b}.self_attn.q.weight`, ne: [DIM, DIM], type: weights }, { name: `${b}.self_attn.q.bias`, ne: [DIM], type: 'F32' },
      { name: `${b}.self_attn.norm_q.weight`, ne: [DIM], type: 'F32' },
      { name: `${b}.cross_attn.k.weight`, ne: [DIM, DIM], type: weights },
      { name: `${b}.norm3.weight`, ne: [DIM], type: 'F32' }, { name: `${b}.norm3.bias`, ne: [DIM], type: 'F32' },
      { name: `${b}.ffn.0.weight`, ne: [DIM, FFN], type: weights }, { name: `${b}.ffn.0.bias`, ne: [FFN], type: 'F32' },
    );
  }
  return specs;
}

function wanGguf(weights: 'BF16' | 'Q8_0') {
  const { tensors, values } = randomTensors(wanGgufSpecs(weights), sym);
  const bytes = buildGguf({
    metadata: [['general.architecture', str('wan')], ['general.quantization_version', u32(2)], ['general.file_type', u32(weights === 'BF16' ? 32 : 7)]],
    tensors,
  });
  return { bytes, values };
}

/** One change of the adapter: a diff of the tensor `lands` (torch shape `shape`) or a LoRA pair with α. */
type Change = { kind: 'diff'; name: string; lands: string; shape: number[] } | { kind: 'lora'; module: string; lands: string; out: number; in: number; alpha: number };

const diff = (name: string, lands: string, shape: number[]): Change => ({ kind: 'diff', name, lands, shape });
const lora = (module: string, lands: string, out: number, inF: number, alpha: number): Change => ({ kind: 'lora', module, lands, out, in: inF, alpha });

/** The diffs: both blocks' and the head's tables, norm3, a bias. */
const DIFFS: Change[] = [
  diff(`${D}blocks.0.diff_m`, 'blocks.0.modulation', [1, 6, DIM]), diff(`${D}blocks.1.diff_m`, 'blocks.1.modulation', [1, 6, DIM]),
  diff(`${D}head.diff_m`, 'head.modulation', [1, 2, DIM]),
  diff(`${D}blocks.1.norm3.diff`, 'blocks.1.norm3.weight', [DIM]), diff(`${D}blocks.1.norm3.diff_b`, 'blocks.1.norm3.bias', [DIM]),
  diff(`${D}blocks.0.self_attn.q.diff_b`, 'blocks.0.self_attn.q.bias', [DIM]),
];
const LORAS: Change[] = [
  lora(`${D}blocks.0.self_attn.q`, 'blocks.0.self_attn.q.weight', DIM, DIM, R),
  lora(`${D}blocks.1.cross_attn.k`, 'blocks.1.cross_attn.k.weight', DIM, DIM, 2 * R),
  lora(`${D}blocks.0.ffn.0`, 'blocks.0.ffn.0.weight', FFN, DIM, R),
  lora(`${D}head.head`, 'head.head.weight', OUT, DIM, R),
];

/** The adapter in BF16 (LightX2V's output dtype), and its values by name. */
function adapter(changes: Change[]) {
  const tensors: SafeTensor[] = [];
  const values = new Map<string, Float64Array>();
  const add = (name: string, shape: number[], scale = 0.5) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float64Array.from({ length: n }, () => scale * sym());
    tensors.push({ name, dtype: 'BF16', shape, data });
  };
  for (const c of changes) {
    if (c.kind === 'diff') add(c.name, c.shape);
    else {
      add(`${c.module}.lora_down.weight`, [R, c.in], 0.3);
      add(`${c.module}.lora_up.weight`, [c.out, R], 0.3);
      tensors.push({ name: `${c.module}.alpha`, dtype: 'BF16', shape: [], data: [c.alpha] });
    }
  }
  const bytes = buildSafetensors(tensors);
  // The values the file holds (rounded to BF16), read back through the GGUF reader's BF16 decoding.
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    values.set(t.name, bf16(Float64Array.from({ length: n }, (_, i) => (t.data as ArrayLike<number>)[i])));
  }
  return { bytes, values };
}

/** x rounded to BF16 (round to nearest even), as the file stores it. */
function bf16(x: Float64Array): Float64Array {
  const f = new Float32Array(x), u = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >> 16) & 1)) >>> 16) << 16;
  return Float64Array.from(f);
}

/** base + w · diff, base + w · (α/r) · up·down, in float64, for each tensor a change lands on. */
function truthOf(base: Map<string, Float64Array>, changes: Change[], ad: Map<string, Float64Array>, w: number): Map<string, Float64Array> {
  const truth = new Map<string, Float64Array>();
  for (const c of changes) {
    const t = truth.get(c.lands) ?? base.get(c.lands)!.slice();
    truth.set(c.lands, t);
    if (c.kind === 'diff') {
      const d = ad.get(c.name)!;
      for (let i = 0; i < t.length; i++) t[i] += w * d[i];
      continue;
    }
    const down = ad.get(`${c.module}.lora_down.weight`)!, up = ad.get(`${c.module}.lora_up.weight`)!;
    for (let o = 0; o < c.out; o++) {
      for (let i = 0; i < c.in; i++) {
        let s = 0;
        for (let k = 0; k < R; k++) s += up[o * R + k] * down[k * c.in + i];
        t[o * c.in + i] += w * (c.alpha / R) * s;
      }
    }
  }
  return truth;
}

const CASES = [
  { name: 'wan2.1-t2v-14b-BF16.gguf ← the distill LoRA (LoRA pairs on BF16 weights, diffs on F32 tables, norms and biases)', weights: 'BF16' as const, changes: [...DIFFS, ...LORAS], weight: 1 },
  { name: 'wan2.1-t2v-14b-Q8_0.gguf ← its diffs alone (the Q8_0 weights are copied byte for byte)', weights: 'Q8_0' as const, changes: DIFFS, weight: 0.75 },
];

for (const c of CASES) {
  describe(c.name, () => {
    const base = wanGguf(c.weights);
    const ad = adapter(c.changes);
    const truth = truthOf(base.values, c.changes, ad.values, c.weight);

    it.for(['cpu', 'webgpu'])('lands each diff and pair on the tensor it names, keeps every type and shape, on %s', async (kind, ctx) => {
      const backend = backends[kind];
      if (!backend) return ctx.skip();
      const { bytes } = await mergeFileInMemory({
        backend, base: { [c.name.split(' ')[0]]: base.bytes },
        adapters: [{ files: { 'Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors': ad.bytes }, weight: c.weight }], slabBytes: 2048,
      });
      const input = readGguf(base.bytes), out = readGguf(bytes);
      expect(out.tensors.map((t) => [t.name, typeName(t.typeId), t.ne])).toEqual(input.tensors.map((t) => [t.name, typeName(t.typeId), t.ne]));
      for (const t of input.tensors) {
        const got = out.tensors.find((x) => x.name === t.name)!;
        const want = truth.get(t.name);
        if (!want) expect(Buffer.from(got.data).equals(Buffer.from(t.data)), `${t.name} is copied unchanged`).toBe(true);
        else expectMerged(tensorValues(typeName(t.typeId), got.data), want, typeName(t.typeId) as 'F32' | 'BF16', t.name);
      }
      expect(out.metadata.get('general.architecture')!.value).toBe('wan');
    });
  });
}

describe('a table stored without its leading 1 (ne [dim, 6]: a file whose writer dropped it)', () => {
  it('is refused, naming the table and both shapes, as ComfyUI skips a diff of another shape', async () => {
    const specs = wanGgufSpecs('BF16').map((s) => (s.name === 'blocks.0.modulation' ? { ...s, ne: [DIM, 6] } : s));
    const bytes = buildGguf({ metadata: [['general.architecture', str('wan')]], tensors: randomTensors(specs, sym).tensors });
    const problems = await refusalsInMemory({
      backend: backends.cpu!, base: { 'wan2.1-t2v-14b-BF16.gguf': bytes }, adapters: [{ files: { 'lightx2v.safetensors': adapter([DIFFS[0]]).bytes } }],
    });
    expect(problems).toEqual([expect.stringMatching(/module "diffusion_model\.blocks\.0\.modulation": ΔW \(1, 6, 64\) does not fit base blocks\.0\.modulation \(6, 64\)/)]);
  });
});
