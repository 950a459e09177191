/**
 * The plain JavaScript baseline: the merge a user would write by hand, with no library. For each
 * tensor of the base file: read it, and if the adapter has factors for it, decode W to f32, add
 * s·B·A with simple loops (f32 arithmetic, one tensor at a time), encode back to f16 (round to
 * nearest even) and write; other tensors are copied as read.
 *
 * usage: node bench/js-merge.mjs BASE.safetensors ADAPTER_DIR OUT.safetensors
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';

async function readHeader(handle) {
  const len = Buffer.alloc(8);
  await handle.read(len, 0, 8, 0);
  const n = Number(len.readBigUInt64LE(0));
  const json = Buffer.alloc(n);
  await handle.read(json, 0, n, 8);
  const header = JSON.parse(json.toString('utf8'));
  delete header.__metadata__;
  return { header, start: 8 + n, raw: Buffer.concat([len, json]) };
}

async function readTensor(handle, start, info) {
  const [b, e] = info.data_offsets;
  const out = new Uint8Array(e - b);
  let done = 0;
  while (done < out.length) done += (await handle.read(out, done, out.length - done, start + b + done)).bytesRead;
  return out;
}

// f16 ↔ f32 through the float bits, the way a short user script (or a Stack Overflow answer) does it.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f16ToF32(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function f32ToF16(v) {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 112;
  let mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    const h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    return sign | (rest > half || (rest === half && h & 1) ? h + 1 : h);
  }
  const h = (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (rest > 0x1000 || (rest === 0x1000 && h & 1) ? h + 1 : h);
}

function mergeTensor(wBytes, a, b, scale, rows, cols, rank) {
  const w = new Uint16Array(wBytes.buffer, wBytes.byteOffset, rows * cols);
  const row = new Float32Array(cols);
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < cols; i++) row[i] = f16ToF32(w[o * cols + i]);
    for (let k = 0; k < rank; k++) {
      const c = Math.fround(scale * b[o * rank + k]);
      for (let i = 0; i < cols; i++) row[i] += c * a[k * cols + i];
    }
    for (let i = 0; i < cols; i++) w[o * cols + i] = f32ToF16(row[i]);
  }
}

async function main([basePath, adapterDir, outPath]) {
  const config = JSON.parse(await readFile(join(adapterDir, 'adapter_config.json'), 'utf8'));
  const scale = config.lora_alpha / config.r;
  const adapter = await open(join(adapterDir, 'adapter_model.safetensors'));
  const ah = await readHeader(adapter);
  const base = await open(basePath);
  const bh = await readHeader(base);
  const out = await open(outPath, 'w');
  await out.write(bh.raw);
  const names = Object.keys(bh.header).sort((x, y) => bh.header[x].data_offsets[0] - bh.header[y].data_offsets[0]);
  for (const name of names) {
    const info = bh.header[name];
    const data = await readTensor(base, bh.start, info);
    const key = `base_model.model.${name.replace(/\.weight$/, '')}`;
    const aInfo = ah.header[`${key}.lora_A.weight`];
    if (aInfo) {
      const a = new Float32Array((await readTensor(adapter, ah.start, aInfo)).buffer);
      const b = new Float32Array((await readTensor(adapter, ah.start, ah.header[`${key}.lora_B.weight`])).buffer);
      mergeTensor(data, a, b, scale, info.shape[0], info.shape[1], aInfo.shape[0]);
    }
    await out.write(data);
  }
  await out.sync();
  await Promise.all([out.close(), base.close(), adapter.close()]);
}

await main(process.argv.slice(2));
