/**
 * The cheap NaN/Inf bit test against decoded values (every f16 and bf16 bit pattern, f32 edge
 * cases, odd lengths and offsets), the input stamps that catch a file changed mid-merge, and
 * filesystem errors as one line.
 */
import { closeSync, openSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isMergeError } from '../src/errors.js';
import { exitCodeFor } from '../src/cli/exit-codes.js';
import { fsError } from '../src/io/fs-errors.js';
import { stampInputFiles } from '../src/io/input-stamps.js';
import { countNonFinite, hasNonFinite } from '../src/pipeline/value-checks.js';
import { decodeValues, tempDirs } from './helpers/fixtures.js';

const temp = tempDirs();
afterAll(temp.removeAll);

describe('the NaN/Inf bit test', () => {
  it('agrees with the decoded value for every f16 and bf16 bit pattern, in either half of a word', () => {
    for (const dtype of ['F16', 'BF16'] as const) {
      for (let bits = 0; bits < 65536; bits++) {
        const finite = Number.isFinite(decodeValues(new Uint8Array([bits & 0xff, bits >> 8]), dtype)[0]);
        const low = new Uint8Array([bits & 0xff, bits >> 8, 0, 0x3c]);
        const high = new Uint8Array([0, 0x3c, bits & 0xff, bits >> 8]);
        if (hasNonFinite(low, dtype) === finite || hasNonFinite(high, dtype) === finite) throw new Error(`${dtype} ${bits.toString(16)}`);
      }
    }
  });

  it('finds f32 NaN and ±Inf and nothing else, at any position, length and byte offset', () => {
    const values = [0, -0, 1, -1, 3.4e38, -3.4e38, 1e-45, Infinity, -Infinity, NaN];
    for (const v of values) {
      for (const length of [1, 2, 7]) {
        for (let at = 0; at < length; at++) {
          const f = new Float32Array(length).fill(0.5);
          f[at] = v;
          const bytes = new Uint8Array(f.buffer);
          const shifted = new Uint8Array(bytes.length + 1).subarray(1); // misaligned copy
          shifted.set(bytes);
          const want = !Number.isFinite(v);
          expect(hasNonFinite(bytes, 'F32')).toBe(want);
          expect(hasNonFinite(shifted, 'F32')).toBe(want);
          expect(countNonFinite(shifted, 'F32')).toBe(want ? 1 : 0);
        }
      }
    }
    const odd = new Uint8Array([0, 0x3c, 0, 0x3c, 0, 0x7c]); // three f16: 1, 1, +Inf (in the tail)
    expect(hasNonFinite(odd, 'F16')).toBe(true);
    expect(countNonFinite(odd, 'F16')).toBe(1);
    expect(hasNonFinite(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 'I32')).toBe(false);
  });
});

describe('input stamps', () => {
  it('pass for untouched files and name a file rewritten in place, resized, or only re-timed', async () => {
    const dir = temp.make({ 'a.bin': new Uint8Array(64), 'b.bin': 'x' });
    const a = join(dir, 'a.bin');
    const stamps = await stampInputFiles([a, join(dir, 'b.bin')]);
    await stamps.verify();
    const fd = openSync(a, 'r+');
    writeSync(fd, new Uint8Array([1]), 0, 1, 10); // dd conv=notrunc: same size, new bytes
    closeSync(fd);
    utimesSync(a, new Date(), new Date(Date.now() + 5000)); // a coarse clock must not hide it
    await expect(stamps.verify()).rejects.toThrow(/a\.bin was modified while the merge read it; nothing was written/);
    const resized = await stampInputFiles([a]);
    writeFileSync(a, new Uint8Array(65));
    await expect(resized.verify()).rejects.toThrow(/a\.bin changed size from 64 to 65 bytes/);
  });
});

describe('filesystem errors', () => {
  it('are one line naming the path and what to do, with exit code 3', () => {
    const cases: [string, RegExp][] = [
      ['ENOSPC', /no space left on the device while writing \(ENOSPC\); free some space or choose another --out/],
      ['EROFS', /the file system is read-only while writing \(EROFS\); choose an --out on a writable file system/],
      ['EACCES', /permission denied while writing \(EACCES\); check the permissions/],
      ['EBUSY', /busy \(a mount point or in use by another program\) while writing \(EBUSY\)/],
      ['ENAMETOOLONG', /the name is too long for the file system while writing \(ENAMETOOLONG\); choose a shorter --out/],
      ['ENOTEMPTY', /appeared while merging \(another merge into the same place\?\) while writing \(ENOTEMPTY\)/],
      ['EWHATEVER', /writing failed \(EWHATEVER: boom\)/],
    ];
    for (const [code, message] of cases) {
      const raw = Object.assign(new Error(`${code}: boom`), { code });
      const mapped = fsError(raw, '/data/merged.safetensors', 'writing');
      expect(isMergeError(mapped)).toBe(true);
      expect((mapped as Error).message).toMatch(/^\/data\/merged\.safetensors: /);
      expect((mapped as Error).message).toMatch(message);
      expect((mapped as Error).message).not.toContain('\n');
      expect(exitCodeFor(mapped)).toBe(3);
    }
  });
});
