/**
 * An importance matrix matched to a GGUF model: which written tensors are quantized with which
 * weights, as `llama-quantize --imatrix` does it (llama-quant.cpp): the entry of the tensor's own
 * name, of ne0·ne2 values (a stacked expert tensor's expert e takes values e·ne0 … (e+1)·ne0), for
 * every row of expert e; a tensor without an entry is quantized without weights (llama-quantize
 * logs "did not find weights" and goes on). Where loramerge cannot write what llama-quantize
 * would, the merge is refused, naming the tensor.
 */
import { MergeError } from '../../errors.js';
import { blockCodec, CODEC_TYPE_NAMES, imatrixExempt, needsImportanceFor } from './codecs/registry.js';
import { ggmlTypeByName } from './ggml-types.js';
import type { ImportanceMatrix } from './imatrix.js';

/** A tensor of the model, as the merge writes it. */
export interface ImportanceTarget {
  name: string;
  /** Slowest dimension first (rows of shape[last] values). */
  shape: readonly number[];
  /** The stored type it is read from, and the one it is written in. */
  type: string;
  outType: string;
  /** Whether the merge changes it (else it is copied, or converted by `--dtype`). */
  changed: boolean;
}

/** A tensor's importance weights: `cols` per expert; row r (over the whole tensor) takes expert ⌊r / rowsPerExpert⌋'s. */
export interface RowWeights {
  /** The importance matrix's file, for messages. */
  file: string;
  values: Float32Array;
  cols: number;
  rowsPerExpert: number;
}

/** The GGML types whose quantizer loramerge runs with importance weights. */
export const WEIGHTED_TYPE_NAMES: readonly string[] = CODEC_TYPE_NAMES.filter((n) => blockCodec(ggmlTypeByName(n)!)?.encodeWeighted);

/**
 * Checks `im` against the model's tensors and returns the row weights of each merged tensor
 * llama-quantize would quantize with them. Refused: an entry naming no tensor of the model (the
 * first), an entry whose length is not the tensor's ne0·ne2, and a tensor the merge writes in a
 * type whose weighted quantizer loramerge lacks.
 */
export function importanceRows(im: ImportanceMatrix, tensors: readonly ImportanceTarget[]): Map<string, RowWeights> {
  const refuse = (why: string): never => {
    throw new MergeError('BAD_ARGUMENT', `importance matrix ${im.file}: ${why}`);
  };
  const byName = new Map(tensors.map((t) => [t.name, t]));
  for (const name of im.entries.keys()) {
    if (!byName.has(name)) refuse(`its entry "${name}" is no tensor of this model (was it made for another model?)`);
  }
  const rows = new Map<string, RowWeights>();
  /** llama-quantize stops on a tensor of a type it writes only with weights when the imatrix has none for it. */
  const needsEntry = (t: ImportanceTarget, why: string) => {
    const written = ggmlTypeByName(t.outType);
    if (written && needsImportanceFor(written, t.name) && (t.changed || t.outType !== t.type)) {
      // tensor_requires_imatrix exempts token_embd/output, and ggml's IQ1_S, IQ2_XXS and IQ2_XS quantizers then abort: GGML_ASSERT(quant_weights).
      const stops = imatrixExempt(t.name)
        ? `llama-quantize stops there too: it exempts ${t.name} from its importance matrix check, and ggml's ${t.outType} quantizer then aborts ("missing quantization weights")`
        : 'llama-quantize stops there too: "Missing importance matrix for tensor"';
      refuse(`"${t.name}" is written as ${t.outType}, which is quantized only with importance weights, and ${why} (${stops}); write it in another type (--dtype, or --dtype-merged-only), or use an imatrix made for this model`);
    }
  };
  for (const t of tensors) {
    const entry = im.entries.get(t.name);
    if (!entry) {
      needsEntry(t, 'this importance matrix has no entry for it');
      continue;
    }
    const d = t.shape.length;
    const ne0 = t.shape[d - 1] ?? 1;
    const ne1 = d >= 2 ? t.shape[d - 2] : 1;
    const ne2 = d >= 3 ? t.shape[d - 3] : 1;
    const ne3 = d >= 4 ? t.shape[d - 4] : 1;
    if (entry.length !== ne0 * ne2 || ne3 !== 1) {
      // llama-quantize quantizes token_embd.weight without weights then (its entry, where an
      // imatrix has one, never fits); any other mismatch stops it.
      if (t.name === 'token_embd.weight') {
        needsEntry(t, `its entry has ${entry.length} values, not the ${ne0} the tensor takes`);
        continue;
      }
      refuse(`its entry "${t.name}" has ${entry.length} values, but the tensor [${t.shape.join(', ')}] takes ${ne0}${ne2 > 1 ? ` × ${ne2} experts` : ''} (was it made for another model?)`);
    }
    const codec = blockCodec(ggmlTypeByName(t.outType)!);
    if (!codec || codec.ignoresImportance) continue;
    if (!t.changed) {
      if (t.outType === t.type) continue; // byte-copied
      refuse(`"${t.name}" is converted to ${t.outType} by --dtype without being merged, and loramerge applies the imatrix to merged tensors only; add --dtype-merged-only, or leave out --imatrix`);
    }
    if (!codec.encodeWeighted) {
      refuse(`"${t.name}" is written as ${t.outType}, which loramerge does not yet quantize with an importance matrix (it does ${WEIGHTED_TYPE_NAMES.join(', ')}); leave out --imatrix to write it as llama-quantize does without one, or write f16 and run llama-quantize --imatrix`);
    }
    rows.set(t.name, { file: im.file, values: entry, cols: ne0, rowsPerExpert: ne1 });
  }
  return rows;
}
