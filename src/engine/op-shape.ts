/**
 * Checks a MergeOp against itself (byte counts, ranks, slab bounds) before any backend touches it,
 * and derives the numbers every backend needs. Errors name the tensor.
 */
import { DTYPE_BYTES, isFloatDType, type FloatDType } from '../dtype.js';
import { MergeError } from '../errors.js';
import type { FloatTensorBytes, LowRankTerm, MergeOp, RowPlacement } from './merge-op.js';
import { needsColumnNorms, opSteps, storedAxis, type UpdateStep } from './update-steps.js';
import { checkPermutedBlocks } from './permuted-blocks.js';

export interface OpShape {
  /** First stored row held by `op.base`. */
  rowStart: number;
  /** Stored rows held by `op.base`. */
  rowCount: number;
  /** ΔW's dims: out × in. */
  outFeatures: number;
  inFeatures: number;
  /** Sum of the terms' ranks: all terms are applied in one pass over W (a slab may need fewer, low-rank-factors.ts). */
  totalRank: number;
  /** Which stored axis a DoRA norm runs along: 'row' = one norm per stored row. */
  doraNorm?: 'row' | 'col';
  /** The whole update in order (terms, dora, then op.steps). */
  steps: UpdateStep[];
}

function fail(op: MergeOp, what: string): never {
  throw new MergeError('SHAPE_MISMATCH', `tensor "${op.name}": ${what}`);
}

function expectBytes(op: MergeOp, label: string, t: FloatTensorBytes, elements: number): void {
  if (!isFloatDType(t.dtype)) {
    throw new MergeError('INVALID_DTYPE', `tensor "${op.name}": ${label} has dtype ${String(t.dtype)}, expected F32, F16 or BF16`);
  }
  const want = elements * DTYPE_BYTES[t.dtype];
  if (t.data.byteLength !== want) {
    fail(op, `${label} holds ${t.data.byteLength} bytes, expected ${want} (${elements} × ${t.dtype})`);
  }
}

/** A term's float64 factor values, where it carries them, are as many as its bytes hold. */
function expectExact(op: MergeOp, label: string, term: LowRankTerm, inFeatures: number, deltaRows: number): void {
  if (!term.exact) return;
  if (term.exact.a.length !== term.rank * inFeatures) fail(op, `${label} has ${term.exact.a.length} exact values of A, expected ${term.rank * inFeatures}`);
  if (term.exact.b.length !== deltaRows * term.rank) fail(op, `${label} has ${term.exact.b.length} exact values of B, expected ${deltaRows * term.rank}`);
}

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export function checkOp(op: MergeOp): OpShape {
  const { rows, cols } = op;
  if (!isCount(rows) || !isCount(cols) || rows === 0 || cols === 0) fail(op, `bad shape ${rows} × ${cols}`);
  const rowStart = op.rowStart ?? 0;
  const rowCount = op.rowCount ?? rows - rowStart;
  if (!isCount(rowStart) || !isCount(rowCount) || rowStart + rowCount > rows) {
    fail(op, `row slab [${rowStart}, ${rowStart + rowCount}) is outside its ${rows} rows`);
  }
  if (!isFloatDType(op.outDtype)) {
    throw new MergeError('INVALID_DTYPE', `tensor "${op.name}": output dtype ${String(op.outDtype)} is not F32, F16 or BF16`);
  }
  expectBytes(op, 'base slab', op.base, rowCount * cols);
  const outFeatures = op.layout === 'out-in' ? rows : cols;
  const inFeatures = op.layout === 'out-in' ? cols : rows;
  let totalRank = 0;
  op.terms.forEach((term, t) => {
    if (!Number.isSafeInteger(term.rank) || term.rank < 1) fail(op, `term ${t} has rank ${term.rank}`);
    if (!Number.isFinite(term.scale)) fail(op, `term ${t} has a non-finite scale ${term.scale}`);
    expectBytes(op, `term ${t} factor A (${term.rank} × ${inFeatures})`, term.a, term.rank * inFeatures);
    const deltaRows = term.placement ? checkPlacement(op, t, term.placement, outFeatures) : outFeatures;
    expectBytes(op, `term ${t} factor B (${deltaRows} × ${term.rank})`, term.b, deltaRows * term.rank);
    expectExact(op, `term ${t}`, term, inFeatures, deltaRows);
    totalRank += term.rank;
  });
  const shape: OpShape = { rowStart, rowCount, outFeatures, inFeatures, totalRank, steps: opSteps(op) };
  if (op.dora) {
    const { normAxis, magnitude } = op.dora;
    checkDoraScalars(op, op.dora, '');
    const count = doraCount(op, op.dora, outFeatures, inFeatures);
    expectBytes(op, `DoRA magnitude (${count})`, magnitude, count);
    // A norm per output feature runs over the input dim: per stored row when W is (out, in).
    const perOut = normAxis === 'out';
    shape.doraNorm = (perOut === (op.layout === 'out-in')) ? 'row' : 'col';
    if (shape.doraNorm === 'col' && rowCount !== rows) {
      throw new MergeError('PLAN_INVALID', `tensor "${op.name}": DoRA norms run across rows, so the op cannot be a row slab`);
    }
  }
  (op.steps ?? []).forEach((step, i) => checkStep(op, shape, step, `step ${i} (${step.kind})`));
  return shape;
}

/** Magnitudes a DoRA spec must have: one per output feature, or per group of input features. */
function doraCount(op: MergeOp, dora: NonNullable<MergeOp['dora']>, outFeatures: number, inFeatures: number): number {
  const group = dora.group ?? 1;
  if (!Number.isSafeInteger(group) || group < 1 || (group > 1 && (dora.normAxis !== 'in' || inFeatures % group !== 0))) {
    fail(op, `DoRA group ${group} does not divide the ${inFeatures} input features`);
  }
  return dora.normAxis === 'out' ? outFeatures : inFeatures / group;
}

/** A DoRA spec's ε and strength, the same on the op's own DoRA and a DoRA step (`where` prefixes the message). */
function checkDoraScalars(op: MergeOp, dora: NonNullable<MergeOp['dora']>, where: string): void {
  if (!(dora.epsilon >= 0 && Number.isFinite(dora.epsilon))) fail(op, `${where}DoRA epsilon ${dora.epsilon} is not a finite number ≥ 0`);
  if (dora.strength !== undefined && !Number.isFinite(dora.strength)) fail(op, `${where}DoRA strength ${dora.strength} is not finite`);
  if (dora.normFloor !== undefined && !(dora.normFloor > 0 && Number.isFinite(dora.normFloor))) fail(op, `${where}DoRA norm floor ${dora.normFloor} is not a finite number > 0`);
}

function checkStep(op: MergeOp, shape: OpShape, step: UpdateStep, label: string): void {
  const { outFeatures, inFeatures, rowStart, rowCount } = shape;
  const axisLength = (axis: 'out' | 'in') => (axis === 'out' ? outFeatures : inFeatures);
  const finite = (x: number, what: string) => {
    if (!Number.isFinite(x)) fail(op, `${label} has a non-finite ${what} ${x}`);
  };
  switch (step.kind) {
    case 'add':
      step.terms.forEach((term, t) => {
        if (!Number.isSafeInteger(term.rank) || term.rank < 1) fail(op, `${label} term ${t} has rank ${term.rank}`);
        finite(term.scale, 'scale');
        expectBytes(op, `${label} term ${t} factor A (${term.rank} × ${inFeatures})`, term.a, term.rank * inFeatures);
        const deltaRows = term.placement ? checkPlacement(op, t, term.placement, outFeatures) : outFeatures;
        expectBytes(op, `${label} term ${t} factor B (${deltaRows} × ${term.rank})`, term.b, deltaRows * term.rank);
        expectExact(op, `${label} term ${t}`, term, inFeatures, deltaRows);
      });
      (step.dense ?? []).forEach((d, t) => {
        finite(d.scale, 'scale');
        if (d.exact) {
          if (d.exact.length !== rowCount * op.cols) fail(op, `${label} dense term ${t} has ${d.exact.length} exact values, expected ${rowCount * op.cols}`);
        } else expectBytes(op, `${label} dense term ${t} (${rowCount} × ${op.cols})`, d.values, rowCount * op.cols);
      });
      return;
    case 'dora': {
      checkDoraScalars(op, step.dora, `${label}: `);
      const { magnitude } = step.dora;
      expectBytes(op, `${label} DoRA magnitude`, magnitude, doraCount(op, step.dora, outFeatures, inFeatures));
      if (needsColumnNorms(op, step) && rowCount !== op.rows) {
        throw new MergeError('PLAN_INVALID', `tensor "${op.name}": ${label}: DoRA norms run across rows; resolve them over all slabs first`);
      }
      return;
    }
    case 'scale':
      expectBytes(op, `${label} factors`, step.factors, axisLength(step.axis));
      return;
    case 'self':
      if (op.layout !== 'out-in') fail(op, `${label} needs W stored (out, in)`);
      if (!Number.isSafeInteger(step.rank) || step.rank < 1) fail(op, `${label} has rank ${step.rank}`);
      finite(step.scale, 'scale');
      expectBytes(op, `${label} P (${inFeatures} × ${step.rank})`, step.p, inFeatures * step.rank);
      expectBytes(op, `${label} Q (${step.rank} × ${inFeatures})`, step.q, step.rank * inFeatures);
      return;
    case 'hadamard':
      if (!Number.isSafeInteger(step.rank) || step.rank < 1) fail(op, `${label} has rank ${step.rank}`);
      finite(step.scale, 'scale');
      expectBytes(op, `${label} A (${step.rank} × ${inFeatures})`, step.a, step.rank * inFeatures);
      expectBytes(op, `${label} B (${outFeatures} × ${step.rank})`, step.b, outFeatures * step.rank);
      return;
    case 'tiles': {
      const b = step.size;
      if (op.layout !== 'out-in') fail(op, `${label} needs W stored (out, in)`);
      if (!Number.isSafeInteger(b) || b < 1 || op.rows % b !== 0 || op.cols % b !== 0) fail(op, `${label}: tile size ${b} does not divide ${op.rows} × ${op.cols}`);
      finite(step.scale, 'scale');
      expectBytes(op, `${label} blocks (${op.rows / b} × ${b} × ${b})`, step.blocks, op.rows * b);
      return;
    }
    case 'rotate': {
      const b = step.blockSize;
      const n = axisLength(step.axis);
      if (!Number.isSafeInteger(b) || b < 1 || n % b !== 0) fail(op, `${label}: block size ${b} does not divide ${n}`);
      expectBytes(op, `${label} blocks (${n / b} × ${b} × ${b})`, step.blocks, n * b);
      if (storedAxis(op, step.axis) === 'row' && (rowStart % b !== 0 || (rowCount % b !== 0 && rowStart + rowCount !== op.rows))) {
        fail(op, `${label}: row slab [${rowStart}, ${rowStart + rowCount}) splits a block of ${b} rows`);
      }
      return;
    }
    case 'permuted-blocks':
      checkPermutedBlocks(op, step, axisLength(step.axis), storedAxis(op, step.axis) === 'row', rowStart, rowCount, label);
      return;
  }
}

/**
 * A row placement must read rows ΔW has and write rows W has, each W row at most once, and only
 * where W's rows are its output features. Returns ΔW's row count.
 */
function checkPlacement(op: MergeOp, t: number, placement: RowPlacement, outFeatures: number): number {
  if (op.layout !== 'out-in') fail(op, `term ${t} has a row placement, which needs the out-in layout`);
  const { deltaRows, segments } = placement;
  if (!isCount(deltaRows) || deltaRows === 0) fail(op, `term ${t} has ${deltaRows} ΔW rows`);
  const spans: [number, number][] = [];
  for (const { src, dst, count } of segments) {
    if (!isCount(src) || !isCount(dst) || !isCount(count) || src + count > deltaRows || dst + count > outFeatures) {
      fail(op, `term ${t}: row segment ${src}→${dst} × ${count} is outside ΔW's ${deltaRows} rows or W's ${outFeatures}`);
    }
    spans.push([dst, dst + count]);
  }
  spans.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) fail(op, `term ${t}: row segments overlap at W row ${spans[i][0]}`);
  }
  return deltaRows;
}

export function elementBytes(dtype: FloatDType): number {
  return DTYPE_BYTES[dtype];
}
