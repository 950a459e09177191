// What the ggml golden generators (ggml-iq1-golden.mjs, ggml-iq2-golden.mjs, ggml-iq3-golden.mjs)
// share: a seeded generator, 256-value blocks, hex and FNV-1a encodings, and a harness run over
// the blocks (a block ggml aborted on comes back as 0xff bytes, written null).
import { execFileSync } from 'node:child_process';

/** mulberry32 from `seed`, with a Box–Muller gaussian drawn from it (two draws each). */
export function seededRandom(seed) {
  let state = seed >>> 0;
  const rand = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(rand() || 1e-12)) * Math.cos(2 * Math.PI * rand());
  return { rand, gauss };
}

/** A block of 256 f32 values, value i being f(i). */
export const block = (f) => Float32Array.from({ length: 256 }, (_, i) => f(i));

export const hex = (b) => Buffer.from(b).toString('hex');

/** FNV-1a (32-bit) of a text's UTF-16 code units. */
export const fnv = (text) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
};

/** The harness run with `args` on the f32 `input`: each of `count` blocks of `size` bytes as hex, or null where ggml aborted. */
export function harnessBlocks(harness, args, input, count, size) {
  const out = execFileSync(harness, args, { input: Buffer.from(input.buffer) });
  return Array.from({ length: count }, (_, i) => {
    const b = out.subarray(i * size, (i + 1) * size);
    return b.every((v) => v === 0xff) ? null : hex(b);
  });
}

/** FNV-1a of the harness's `tables` dump for `which`. */
export const tablesChecksum = (harness, which) => fnv(execFileSync(harness, ['tables', String(which)], { maxBuffer: 1 << 28 }).toString());

/** Cases of [name, values, importance] as the weighted harnesses read them: each block's 256 values, then its 256 weights. */
export function valuesAndWeights(cases) {
  const all = new Float32Array(cases.length * 512);
  cases.forEach(([, x, w], i) => {
    all.set(x, i * 512);
    all.set(w, i * 512 + 256);
  });
  return all;
}
