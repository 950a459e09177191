/**
 * A plain transcription of what llama-quantize writes for IQ3_S without an importance matrix
 * (ggml/src/ggml-quants.c: quantize_iq3_s → quantize_row_iq3_s_impl with block_size 32 and
 * quant_weights = NULL, iq3_find_best_neighbour, nearest_int; the map and neighbour lists of
 * iq3xs_init_impl(512)) and of dequantize_row_iq3_s, written for the tests independently of
 * src/formats/gguf/codecs: C's function as it is, one 256-value super-block at a time, every float
 * operation rounded to float (Math.fround) (gcc -ffp-contract=off: no fused multiply-add),
 * f16 by round-to-nearest-even, the block packed as ggml-common.h's block_iq3_s (d, qs[64], qh[8],
 * signs[32], scales[4]). The 512 grid points are ggml-common.h's iq3s_grid as iq-grids.ts holds
 * it (a data table that test/gguf-iq-decoders.test.ts pins to ggml's by checksum and entries);
 * the map and neighbour lists are built here, and test/gguf-iq3-codecs.test.ts checks them and
 * this quantizer's blocks against ggml's own (test/reference/ggml-iq3-golden.json).
 */
import { getFloat16 } from '@petamoriken/float16';
import { iqGrid } from '../../src/formats/gguf/codecs/iq-grids.js';
import { f16BitsFromF64 } from './fixtures.js';

const cell = new Float32Array(1);
const cellBits = new Int32Array(cell.buffer);
/** One C float operation's result (a double-rounded +, −, ×, ÷ or √ of floats is the float one). */
const F = Math.fround;

/** ggml's nearest_int: add 1.5·2^23 in float and read the low mantissa bits (ties to even). */
function nearestInt(fval: number): number {
  cell[0] = F(fval + 12582912);
  return (cellBits[0] & 0x007fffff) - 0x00400000;
}

const FLT_MAX = 3.4028234663852886e38;

/** iq3xs_init_impl(512)'s tables: the grid as 2·level + 1 values, the map of 4 levels (3 bits each) to a grid entry, and each off-grid point's neighbours. */
export interface Iq3sTables {
  /** Entry e's four values (odd, 1…15) at 4e … 4e+3. */
  grid: Uint8Array;
  /** kmap_q3xs: u → grid entry, or −1 where u is not on the grid. */
  map: Int32Array;
  /** For u off the grid: the grid entries at its three nearest distances, by (distance², entry). */
  neighbours: Map<number, number[]>;
}

let tables: Iq3sTables | undefined;

/** The tables, built once as iq3xs_init_impl builds them (nwant = 3 for the 512-entry grid). */
export function iq3sTables(): Iq3sTables {
  if (tables) return tables;
  const grid = Uint8Array.from(iqGrid('IQ3S'));
  const map = new Int32Array(4096).fill(-1);
  for (let e = 0; e < 512; e++) {
    let u = 0;
    for (let k = 0; k < 4; k++) u |= ((grid[4 * e + k] - 1) / 2) << (3 * k);
    map[u] = e;
  }
  const neighbours = new Map<number, number[]>();
  for (let u = 0; u < 4096; u++) {
    if (map[u] >= 0) continue;
    const pos = [0, 1, 2, 3].map((k) => 2 * ((u >> (3 * k)) & 7) + 1);
    const dist: [number, number][] = [];
    for (let j = 0; j < 512; j++) {
      let d2 = 0;
      for (let k = 0; k < 4; k++) d2 += (grid[4 * j + k] - pos[k]) ** 2;
      dist.push([d2, j]);
    }
    dist.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    // All entries at the nearest distance, then at the next, then the one after: three distances.
    const list: number[] = [];
    let levels = 1;
    let d2 = dist[0][0];
    for (const [d, j] of dist) {
      if (d > d2) {
        if (levels === 3) break;
        d2 = d;
        levels++;
      }
      list.push(j);
    }
    neighbours.set(u, list);
  }
  tables = { grid, map, neighbours };
  return tables;
}

/** iq3_find_best_neighbour: the listed entry nearest x at `scale` (weighted), its levels into L[at…at+3]. */
function bestNeighbour(list: readonly number[], t: Iq3sTables, xval: Float32Array, weight: Float32Array, at: number, scale: number, L: Int8Array): number {
  let bestD2 = FLT_MAX;
  let gridIndex = -1;
  for (const j of list) {
    let d2 = 0;
    for (let i = 0; i < 4; i++) {
      const diff = F(F(scale * t.grid[4 * j + i]) - xval[at + i]);
      d2 = F(d2 + F(F(weight[at + i] * diff) * diff));
    }
    if (d2 < bestD2) {
      bestD2 = d2;
      gridIndex = j;
    }
  }
  if (gridIndex < 0) throw new Error('iq3_find_best_neighbour: no neighbour nearer than FLT_MAX (ggml aborts)');
  for (let i = 0; i < 4; i++) L[at + i] = (t.grid[4 * gridIndex + i] - 1) / 2;
  return gridIndex;
}

/**
 * quantize_row_iq3_s_impl(32, x, …, quant_weights) for one super-block of 256 values: a 110-byte
 * block_iq3_s. `qw`: the super-block's 256 importance weights (C's quant_weights + QK_K·ibl), or
 * absent for NULL.
 */
export function quantizeIq3sBlock(x: ArrayLike<number>, qw?: ArrayLike<number>): Uint8Array {
  const t = iq3sTables();
  for (let i = 0; i < 256; i++) if (!Number.isFinite(x[i])) throw new Error('IQ3_S of a non-finite value: ggml aborts');
  const kMaxQ = 8;
  const blockSize = 32, bs4 = 8, bs8 = 4;
  const out = new Uint8Array(110);
  const qs = out.subarray(2, 66), qh = out.subarray(66, 74), signs = out.subarray(74, 106), scalesOut = out.subarray(106, 110);
  const scales = new Float32Array(8);
  const weight = new Float32Array(blockSize), waux = new Float32Array(blockSize), xval = new Float32Array(blockSize);
  const L = new Int8Array(blockSize), Laux = new Int8Array(blockSize);
  const isOnGrid = new Array<boolean>(bs4), isOnGridAux = new Array<boolean>(bs4);
  const blockSigns = new Uint8Array(bs8);
  let maxScale = 0;
  // C advances its qs and signs pointers only past a sub-block it quantizes: after an all-zero
  // 32 the later sub-blocks' entries and signs sit earlier (qh is indexed by sub-block).
  let qsAt = 0, signsAt = 0;
  /** Σ w·x·q and Σ w·q² over the block for levels `levels` (q = 2l + 1), in f32 as ggml sums them. */
  const weightedSums = (levels: Int8Array): [number, number] => {
    let sumqx = 0, sumq2 = 0;
    for (let i = 0; i < blockSize; i++) {
      const w = weight[i];
      const q = 2 * levels[i] + 1;
      sumqx = F(sumqx + F(F(w * xval[i]) * q));
      sumq2 = F(sumq2 + F(F(w * q) * q));
    }
    return [sumqx, sumq2];
  };
  let sumx2 = 0;
  for (let i = 0; i < 256; i++) sumx2 = F(sumx2 + F(F(x[i]) * F(x[i])));
  const sigma2 = F(F(2 * sumx2) / 256);
  for (let ib = 0; ib < 256 / blockSize; ib++) {
    const xb = (i: number) => F(x[blockSize * ib + i]);
    if (qw) for (let i = 0; i < blockSize; i++) weight[i] = F(F(qw[blockSize * ib + i]) * F(Math.sqrt(F(sigma2 + F(xb(i) * xb(i))))));
    else for (let i = 0; i < blockSize; i++) weight[i] = F(xb(i) * xb(i));
    for (let i = 0; i < blockSize; i++) waux[i] = F(Math.sqrt(weight[i]));
    for (let k = 0; k < bs8; k++) {
      let s = 0;
      for (let i = 0; i < 8; i++) {
        const v = xb(8 * k + i);
        if (v >= 0) xval[8 * k + i] = v;
        else {
          xval[8 * k + i] = -v;
          s |= 1 << i;
        }
      }
      blockSigns[k] = s;
    }
    let max = xval[0];
    for (let i = 1; i < blockSize; i++) max = max > xval[i] ? max : xval[i];
    L.fill(0);
    if (!max) {
      scales[ib] = 0;
      continue;
    }
    let best = 0;
    let scale = F(max / (2 * kMaxQ - 1));
    isOnGrid.fill(false);
    for (let is = -9; is <= 9; is++) {
      const id = F(F(2 * kMaxQ - 1 + F(is * F(0.2))) / max);
      const thisScale = F(1 / id);
      for (let k = 0; k < bs4; k++) {
        for (let i = 0; i < 4; i++) {
          const l = nearestInt(F(0.5 * F(F(id * xval[4 * k + i]) - 1)));
          Laux[4 * k + i] = Math.max(0, Math.min(kMaxQ - 1, l));
        }
        let u = 0;
        for (let i = 0; i < 4; i++) u |= Laux[4 * k + i] << (3 * i);
        isOnGridAux[k] = true;
        if (t.map[u] < 0) {
          isOnGridAux[k] = false;
          bestNeighbour(t.neighbours.get(u)!, t, xval, waux, 4 * k, thisScale, Laux);
        }
      }
      const [sumqx, sumq2] = weightedSums(Laux);
      if (sumq2 > 0 && F(sumqx * sumqx) > F(best * sumq2)) {
        scale = F(sumqx / sumq2);
        best = F(scale * sumqx);
        L.set(Laux);
        for (let k = 0; k < bs4; k++) isOnGrid[k] = isOnGridAux[k];
      }
    }
    const notOnGrid = isOnGrid.filter((g) => !g).length;
    if (notOnGrid > 0 && scale > 0) {
      const id = F(1 / scale);
      for (let k = 0; k < bs4; k++) {
        let u = 0;
        for (let i = 0; i < 4; i++) {
          let l = nearestInt(F(0.5 * F(F(id * xval[4 * k + i]) - 1)));
          l = Math.max(0, Math.min(kMaxQ - 1, l));
          u |= l << (3 * i);
        }
        let gridIndex = t.map[u];
        if (gridIndex < 0) gridIndex = bestNeighbour(t.neighbours.get(u)!, t, xval, waux, 4 * k, scale, L);
        for (let i = 0; i < 4; i++) L[4 * k + i] = (t.grid[4 * gridIndex + i] - 1) / 2;
      }
      const [sumqx, sumq2] = weightedSums(L);
      if (sumq2 > 0) scale = F(sumqx / sumq2);
    }
    if (scale < 0) {
      scale = -scale;
      for (let k = 0; k < bs8; k++) blockSigns[k] = ~blockSigns[k] & 0xff;
    }
    for (let k = 0; k < bs4; k++) {
      let u = 0;
      for (let i = 0; i < 4; i++) u |= L[4 * k + i] << (3 * i);
      const gridIndex = t.map[u];
      if (gridIndex < 0) throw new Error(`Oops: found point ${u} not on grid (ggml aborts)`);
      qs[qsAt + k] = gridIndex & 255;
      qh[(ib * bs4 + k) >> 3] |= (gridIndex >> 8) << ((ib * bs4 + k) % 8);
    }
    qsAt += bs4;
    signs.set(blockSigns, signsAt);
    signsAt += bs8;
    scales[ib] = scale;
    maxScale = maxScale > scale ? maxScale : scale;
  }
  if (!maxScale) return out; // d = +0 and everything else 0, as memset leaves it
  const d = F(maxScale / 31);
  const dh = f16BitsFromF64(F(d * F(1.033)));
  out[0] = dh & 0xff;
  out[1] = dh >> 8;
  const id = F(1 / d);
  for (let ib = 0; ib < 8; ib += 2) {
    const l1 = Math.max(0, Math.min(15, nearestInt(F(0.5 * F(F(id * scales[ib]) - 1)))));
    const l2 = Math.max(0, Math.min(15, nearestInt(F(0.5 * F(F(id * scales[ib + 1]) - 1)))));
    scalesOut[ib / 2] = l1 | (l2 << 4);
  }
  return out;
}

/** dequantize_row_iq3_s for one block: y = d·(1 + 2·scale) · grid value · sign, each product in float. */
export function dequantizeIq3sBlock(b: Uint8Array): number[] {
  const t = iq3sTables();
  const d = getFloat16(new DataView(b.buffer, b.byteOffset, 2), 0, true);
  const y: number[] = [];
  for (let i = 0; i < 256; i++) {
    const ib = i >> 5, k = i >> 2;
    const sc = b[106 + (ib >> 1)];
    const db = F(d * (1 + 2 * (ib & 1 ? sc >> 4 : sc & 15)));
    const entry = b[2 + k] | (((b[66 + (k >> 3)] >> (k & 7)) & 1) << 8);
    const sign = (b[74 + (i >> 3)] >> (i & 7)) & 1 ? -1 : 1;
    y.push(F(F(db * t.grid[4 * entry + (i & 3)]) * sign));
  }
  return y;
}

/** IQ3_S for gguf-builder's tensorData / tensorValues. */
export const IQ3S_REF = {
  IQ3_S: { size: 256, bytes: 110, quantize: quantizeIq3sBlock, dequantize: dequantizeIq3sBlock },
};
