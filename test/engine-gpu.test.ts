/**
 * WebGPU-specific behaviour: tensors larger than the (deliberately small) binding limit, dispatch
 * grids folded into 2-D, exact f16/bf16 conversions in WGSL, non-finite detection, bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MergeBackend, MergeOp } from '../src/engine/merge-op.js';
import { createBackend, createWebGpuBackend } from '../src/engine/create-backend.js';
import { requestAdapter, requestMergeDevice } from '../src/engine/gpu/gpu-device.js';
import { WebGpuBackend } from '../src/engine/gpu/webgpu-backend.js';
import { getNodeGpu, type NodeGpu } from '../src/engine/gpu/node-gpu.js';
import { MergeError } from '../src/errors.js';
import { compareWithReference, encodeValues, outputBits, randomOp, roundedBits, seededRandom, type OpSpec } from './helpers/reference-math.js';
import { exactMergeBits } from './helpers/exact-truth.js';

const MiB = 1024 * 1024;
let nodeGpu: NodeGpu;
let small: MergeBackend | undefined;
let folded: MergeBackend | undefined;
let plain: MergeBackend | undefined;
/** The kernel's two ways of converting f16/bf16, chosen explicitly. */
let withShifts: MergeBackend | undefined;
let shiftFree: MergeBackend | undefined;

beforeAll(async () => {
  nodeGpu = await getNodeGpu();
  try {
    plain = await createWebGpuBackend(nodeGpu.gpu);
    small = await createWebGpuBackend(nodeGpu.gpu, { maxStorageBufferBindingSize: MiB, maxBufferSize: MiB });
    folded = await createWebGpuBackend(nodeGpu.gpu, { maxComputeWorkgroupsPerDimension: 16 });
    withShifts = new WebGpuBackend(await requestMergeDevice(await requestAdapter(nodeGpu.gpu)), { shiftFree: false });
    // The shift-free conversion runs (and is exact) on SwiftShader only; elsewhere it is refused (below).
    const device = await requestMergeDevice(await requestAdapter(nodeGpu.gpu));
    shiftFree = /swiftshader/i.test(device.description) ? new WebGpuBackend(device, { shiftFree: true }) : undefined;
  } catch (e) {
    if ((e as { code?: string }).code !== 'GPU_UNAVAILABLE') throw e;
  }
});

afterAll(() => {
  for (const b of [plain, small, folded, withShifts, shiftFree]) b?.dispose();
  nodeGpu.dispose();
});

function expectClose(op: MergeOp, out: Uint8Array): void {
  const c = compareWithReference(op, out);
  if (op.outDtype === 'F32') expect(c.maxRelError, c.firstMismatch).toBeLessThanOrEqual(1e-5);
  else {
    expect(c.maxUlp, c.firstMismatch).toBeLessThanOrEqual(1);
    expect(c.exact / c.count, c.firstMismatch).toBeGreaterThanOrEqual(0.999);
  }
}

async function check(backend: MergeBackend | undefined, seed: number, spec: OpSpec, skip: (n?: string) => void): Promise<void> {
  if (!backend) return skip('no WebGPU adapter on this machine');
  const op = randomOp(seed, spec);
  expectClose(op, await backend.merge(op));
}

describe('tensors larger than a 1 MiB binding limit (row slabs)', () => {
  it('f32 700×513, r = 8 (1.4 MB)', async (ctx) => {
    await check(small, 1, { rows: 700, cols: 513, ranks: [8] }, ctx.skip);
  });
  it('f16 → bf16 1031×1001 with odd columns, r = 5 + 3 (2 MB)', async (ctx) => {
    await check(small, 2, { rows: 1031, cols: 1001, baseDtype: 'F16', outDtype: 'BF16', ranks: [5, 3], weights: [1, -0.5] }, ctx.skip);
  });
  it('in-out layout, bf16 → f32 999×600', async (ctx) => {
    await check(small, 3, { rows: 999, cols: 600, layout: 'in-out', baseDtype: 'BF16', outDtype: 'F32', ranks: [4] }, ctx.skip);
  });
  it('DoRA with column norms accumulated across slabs', async (ctx) => {
    await check(small, 4, { rows: 800, cols: 401, dora: 'in', epsilon: 1e-6, ranks: [4] }, ctx.skip);
  });
  it('DoRA with row norms, slabs, f16 → f16', async (ctx) => {
    await check(small, 5, { rows: 1201, cols: 450, dora: 'out', baseDtype: 'F16', ranks: [2] }, ctx.skip);
  });
});

describe('dispatch grid folded into 2-D (16 workgroups per dimension)', () => {
  it('300×200 f32 (59 workgroups → 16×4)', async (ctx) => {
    await check(folded, 6, { rows: 300, cols: 200, ranks: [3] }, ctx.skip);
  });
  it('more tiles than one 16×16 grid holds: several slabs', async (ctx) => {
    await check(folded, 13, { rows: 1001, cols: 403, baseDtype: 'BF16', ranks: [3] }, ctx.skip);
  });
  it('DoRA on both axes', async (ctx) => {
    await check(folded, 7, { rows: 777, cols: 301, dora: 'in', ranks: [3] }, ctx.skip);
    await check(folded, 8, { rows: 901, cols: 37, dora: 'out', ranks: [3] }, ctx.skip);
  });
});

// The host's part of the certification: the elements the kernel lists are settled in float64
// (A read transposed) or exactly; a list that overflows reruns the slab with a bigger list.
describe('certified outputs at ranks 1, 16 and 128, bit for bit against exact truth', () => {
  const cases: [string, number, OpSpec][] = [
    ['r = 1, f16, out-in', 11, { rows: 97, cols: 75, baseDtype: 'F16', outDtype: 'F16', ranks: [1] }],
    ['r = 16, bf16, in-out', 12, { rows: 83, cols: 120, layout: 'in-out', baseDtype: 'BF16', outDtype: 'BF16', ranks: [16] }],
    ['r = 128 (two terms), f16 → bf16, in-out', 13, { rows: 64, cols: 40, layout: 'in-out', baseDtype: 'F16', outDtype: 'BF16', ranks: [120, 8], weights: [1, -0.5] }],
    ['r = 128, f16, out-in', 14, { rows: 120, cols: 96, baseDtype: 'F16', outDtype: 'F16', ranks: [128] }],
  ];
  it.for(cases)('%s', async ([, seed, spec], ctx) => {
    if (!plain) return ctx.skip();
    const gpu = plain as WebGpuBackend;
    const op = randomOp(seed, spec);
    const before = { ...gpu.certification }, relists = gpu.relists;
    const got = outputBits(await gpu.merge(op), op.outDtype);
    const want = exactMergeBits(op);
    let wrong = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) wrong++;
    expect(`${wrong} of ${want.length} wrong`).toBe(`0 of ${want.length} wrong`);
    const listed = gpu.certification.listed - before.listed;
    expect(listed).toBeGreaterThan(0);
    if (spec.ranks[0] === 128 && spec.layout !== 'in-out') {
      // More listed than the first list holds: the slab ran again, and only the listed were settled.
      expect(gpu.relists).toBe(relists + 1);
      expect(listed).toBeLessThan(want.length / 2);
    }
  });
});

describe('outputs given back (MergeBackend.recycle)', () => {
  it('a recycled output is reused for the next op of its size and every byte of it rewritten', async (ctx) => {
    if (!small) return ctx.skip();
    // Two row slabs under the 1 MiB limit, so a stale byte would survive in either.
    const spec: OpSpec = { rows: 1031, cols: 500, baseDtype: 'F16', outDtype: 'F16', ranks: [16] };
    const first = await small.merge(randomOp(21, spec));
    const firstBuffer = first.buffer;
    first.fill(0xff); // as if another tensor's bytes were left in it
    small.recycle!(first);
    const op = randomOp(22, spec);
    const again = await small.merge(op);
    expect(again.buffer === firstBuffer, 'the recycled buffer was reused').toBe(true); // (toBe on buffers would diff a megabyte)
    const got = outputBits(again, op.outDtype), want = exactMergeBits(op);
    let wrong = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) wrong++;
    expect(`${wrong} of ${want.length} wrong`).toBe(`0 of ${want.length} wrong`);
    // Not given back: the next output is fresh memory.
    expect((await small.merge(op)).buffer === firstBuffer).toBe(false);
  });
});

// Bit shifts are what hardware GPUs run; the shift-free conversion is SwiftShader's default.
describe.each([
  ['shift-free (float arithmetic)', () => shiftFree],
  ['bit shifts', () => withShifts],
])('exact conversions in WGSL, %s', (_name, backendOf) => {
  it('every finite f16 value decodes exactly (f16 → f32, no terms)', async (ctx) => {
    const backend = backendOf();
    if (!backend) return ctx.skip();
    const halves = new Uint16Array(0x7c00 * 2 - 1);
    let n = 0;
    for (let h = 0; h < 0x7c00; h++) {
      halves[n++] = h;
      if (h) halves[n++] = h | 0x8000;
    }
    const op: MergeOp = { name: 'all-f16', rows: n, cols: 1, layout: 'out-in', outDtype: 'F32', terms: [],
      base: { dtype: 'F16', data: new Uint8Array(halves.buffer) } };
    const out = new Float32Array((await backend.merge(op)).buffer);
    const expected = new Float32Array(n);
    const view = new DataView(halves.buffer);
    for (let i = 0; i < n; i++) {
      const h = view.getUint16(i * 2, true);
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      expected[i] = (h & 0x8000 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
    }
    expect(out).toEqual(expected);
  });

  it('f32 → f16 and f32 → bf16 round to nearest even: ties, subnormals, near-overflow', async (ctx) => {
    const backend = backendOf();
    if (!backend) return ctx.skip();
    const rand = seededRandom(9);
    // (No -0: Vulkan does not promise to keep the sign of a zero through an addition.)
    const values: number[] = [0, 65504, -65504, 65519.99, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -25 * 1.0001, 6.1e-5, 1e-8];
    // Exact ties of f16 at every exponent, and their neighbours one f32 ulp away.
    for (let e = -24; e < 15; e++) {
      for (let k = 0; k < 8; k++) {
        const tie = (1024 + Math.floor(rand() * 1024) + 0.5) * 2 ** (e - 10);
        values.push(tie, -tie, tie * (1 + 2 ** -23), tie * (1 - 2 ** -23));
      }
    }
    for (let i = 0; i < 4000; i++) values.push((rand() - 0.5) * 2 ** (Math.floor(rand() * 50) - 40));
    const f32 = encodeValues(values, 'F32');
    const exact = values.map((v) => new Float32Array([v])[0]);
    for (const outDtype of ['F16', 'BF16'] as const) {
      const op: MergeOp = { name: 'ties', rows: 1, cols: values.length, layout: 'out-in', outDtype, terms: [], base: { dtype: 'F32', data: f32 } };
      const got = outputBits(await backend.merge(op), outDtype);
      expect(Array.from(got)).toEqual(exact.map((v) => roundedBits(v, outDtype)));
    }
  });

  it('random ops in every 2-byte dtype pair, odd sizes, several terms', async (ctx) => {
    const backend = backendOf();
    if (!backend) return ctx.skip();
    const pairs = [['F16', 'F16'], ['BF16', 'BF16'], ['F16', 'BF16'], ['BF16', 'F16'], ['F32', 'F16'], ['BF16', 'F32']] as const;
    for (const [i, [baseDtype, outDtype]] of pairs.entries()) {
      const op = randomOp(40 + i, { rows: 67 + 13 * i, cols: 45 + 7 * i, baseDtype, outDtype, ranks: [1 + i, 3], weights: [1, -0.75] });
      expectClose(op, await backend.merge(op));
    }
  });
});

describe('errors', () => {
  const withBase = (values: number[]): MergeOp => ({
    name: 'model.layers.0.mlp.up_proj.weight', rows: 2, cols: values.length / 2, layout: 'out-in', outDtype: 'F16', terms: [],
    base: { dtype: 'F32', data: encodeValues(values, 'F32') },
  });

  it('NaN in W → NON_FINITE naming the tensor', async (ctx) => {
    if (!plain) return ctx.skip();
    const err = await plain.merge(withBase([1, 2, NaN, 4, 5, 6])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MergeError);
    expect((err as MergeError).code).toBe('NON_FINITE');
    expect((err as MergeError).message).toContain('tensor "model.layers.0.mlp.up_proj.weight": merged values are not finite');
  });

  it('a result beyond f16 range → NON_FINITE (detected in a later slab)', async (ctx) => {
    if (!small) return ctx.skip();
    const op = randomOp(10, { rows: 1500, cols: 300, ranks: [2], outDtype: 'F16' });
    new Float32Array(op.base.data.buffer)[1400 * 300 + 7] = 70000;
    await expect(small.merge(op)).rejects.toMatchObject({ code: 'NON_FINITE' });
  });

  it('concurrent merges on one backend each get their own result', async (ctx) => {
    if (!plain) return ctx.skip();
    const ops = [1, 2, 3].map((i) => randomOp(20 + i, { rows: 40 + i, cols: 24 + 8 * i, ranks: [i], baseDtype: 'F16' }));
    const outs = await Promise.all(ops.map((op) => plain!.merge(op)));
    ops.forEach((op, i) => expectClose(op, outs[i]));
  });

  it('the backend still works after an error', async (ctx) => {
    if (!plain) return ctx.skip();
    await check(plain, 11, { rows: 5, cols: 6, ranks: [2] }, ctx.skip);
  });

  it('device loss → GPU_FAILURE naming the tensor, not a hang; later ops fail the same way', async (ctx) => {
    if (!plain) return ctx.skip();
    const gpu = await requestMergeDevice(await requestAdapter(nodeGpu.gpu));
    const backend = new WebGpuBackend(gpu);
    const op = randomOp(14, { rows: 16, cols: 16, ranks: [2], name: 'lost.weight' });
    await backend.merge(op);
    gpu.device.destroy();
    const failure = { code: 'GPU_FAILURE', message: expect.stringContaining('tensor "lost.weight"') };
    await expect(backend.merge(op)).rejects.toMatchObject(failure);
    await expect(backend.merge(op)).rejects.toMatchObject(failure);
  });

  it('cancellation → ABORTED', async (ctx) => {
    if (!plain) return ctx.skip();
    const ctl = new AbortController();
    ctl.abort();
    await expect(plain.merge(randomOp(15, { rows: 4, cols: 4, ranks: [1] }), ctl.signal)).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('wrong byte counts → SHAPE_MISMATCH naming the tensor and factor', async (ctx) => {
    if (!plain) return ctx.skip();
    const op = randomOp(12, { rows: 4, cols: 4, ranks: [2], name: 'q_proj.weight' });
    op.terms[0].a.data = op.terms[0].a.data.subarray(4);
    await expect(plain.merge(op)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH', message: expect.stringContaining('tensor "q_proj.weight": term 0 factor A') });
  });

  it('webgpu without any GPU → GPU_UNAVAILABLE; auto → CPU', async () => {
    const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
    await expect(createBackend({ kind: 'webgpu', gpu: noAdapter })).rejects.toMatchObject({ code: 'GPU_UNAVAILABLE' });
    const auto = await createBackend({ kind: 'auto', gpu: noAdapter });
    expect(auto.kind).toBe('cpu');
    expect(auto.description).toMatch(/^CPU \(.*auto, chosen by rule: no usable GPU/);
  });

  it('describes the adapter; auto takes the CPU on a software adapter and the GPU on a hardware one, by rule, without a test merge', async (ctx) => {
    if (!plain) return ctx.skip();
    expect(plain.description).toMatch(/^WebGPU: /);
    // The shift-free conversion by default on SwiftShader only.
    expect((plain as WebGpuBackend).shiftFree).toBe(/swiftshader/i.test(plain.description));
    const auto = await createBackend({ kind: 'auto', gpu: nodeGpu.gpu });
    try {
      if ((plain as WebGpuBackend).isSoftware) {
        expect(auto.kind).toBe('cpu');
        expect(auto.description).toMatch(/auto, chosen by rule: the only GPU adapter is a software one \(.*swiftshader/i);
      } else {
        expect(auto.kind).toBe('webgpu');
        expect(auto.description).toMatch(/auto, chosen by rule: a hardware GPU/);
      }
      expect(auto.description).not.toMatch(/test merge/);
    } finally {
      auto.dispose();
    }
  });

  it('refuses the shift-free conversion on any adapter but SwiftShader', async (ctx) => {
    if (!plain) return ctx.skip();
    const device = await requestMergeDevice(await requestAdapter(nodeGpu.gpu));
    // The same device under a hardware adapter's description (as an NVIDIA H200's reads through Dawn).
    const hardware = { ...device, description: 'nvidia (NVIDIA: 580.159.04 580.159.4.0)', isSoftware: false };
    expect(() => new WebGpuBackend(hardware, { shiftFree: true })).toThrow(
      new MergeError('GPU_UNAVAILABLE', 'the shift-free f16/bf16 conversion is exact on SwiftShader only, not on nvidia (NVIDIA: 580.159.04 580.159.4.0)'));
    const shifts = new WebGpuBackend(hardware, { shiftFree: false });
    expect(shifts.shiftFree).toBe(false);
    shifts.dispose();
    device.device.destroy();
  });
});
