/**
 * Checks that two merged model files hold the same tensors with values at most `maxUlp` apart
 * (f16, bf16 or f32 compared as ordered integers), reading both tensor by tensor in chunks.
 * Headers may differ in metadata (each tool writes its own); names, dtypes and shapes may not.
 */
import { openSafetensors } from '../dist/formats/safetensors-reader.js';
import { openNodeByteSource } from '../dist/io/node-byte-source.js';

const CHUNK_BYTES = 16 * 1024 * 1024;

/** Float bits as integers that order like the floats, so that |a − b| counts ulps. */
function ordered(bits, signBit) {
  return bits & signBit ? -(bits & (signBit - 1)) : bits;
}

function compareChunk(a, b, dtype, tally) {
  const wide = dtype === 'F32';
  const x = wide ? new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4) : new Uint16Array(a.buffer, a.byteOffset, a.byteLength / 2);
  const y = wide ? new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  const signBit = wide ? 0x80000000 : 0x8000;
  for (let i = 0; i < x.length; i++) {
    if (x[i] === y[i]) continue;
    tally.differing++;
    const ulp = Math.abs(ordered(x[i], signBit) - ordered(y[i], signBit));
    if (ulp > tally.maxUlp) tally.maxUlp = ulp;
  }
  tally.elements += x.length;
}

/** Returns { elements, differing, maxUlp }; throws if the files do not hold the same tensors. */
export async function compareModelFiles(pathA, pathB) {
  const [fa, fb] = await Promise.all([openNodeByteSource(pathA), openNodeByteSource(pathB)].map(async (s) => openSafetensors(await s)));
  const tally = { elements: 0, differing: 0, maxUlp: 0 };
  try {
    if (fa.tensors.length !== fb.tensors.length) throw new Error(`${pathA} and ${pathB} hold different numbers of tensors`);
    for (const ea of fa.tensors) {
      const eb = fb.get(ea.name);
      if (!eb || eb.dtype !== ea.dtype || eb.shape.join() !== ea.shape.join()) {
        throw new Error(`tensor "${ea.name}" differs in name, dtype or shape between ${pathA} and ${pathB}`);
      }
      if (!['F16', 'BF16', 'F32'].includes(ea.dtype)) throw new Error(`tensor "${ea.name}": cannot compare ${ea.dtype}`);
      for (let at = 0; at < ea.byteLength; at += CHUNK_BYTES) {
        const n = Math.min(CHUNK_BYTES, ea.byteLength - at);
        const [a, b] = await Promise.all([fa.readPart(ea, at, n), fb.readPart(eb, at, n)]);
        compareChunk(a, b, ea.dtype, tally);
      }
    }
  } finally {
    await Promise.all([fa.source.close(), fb.source.close()]);
  }
  return tally;
}
