/**
 * The engine's messages in the library's words (src/library-wording.ts): a caller of merge(),
 * combineLoras, resizeLora or extractLora is told the call's options (`out`, `overwrite: true`,
 * `dtype: 'bf16'`, an adapter's `{ source, weight }`, `base`, `adapters`), not the command line's.
 * The engine's sentences come from the functions that build them where those are cheap to call,
 * else copied word for word from their source, filled in; each library sentence is written out here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryInputFileSet, MergeError, type DoraSpec } from '../src/index.js';
import { combineLoras, createNodeOutputTarget } from '../src/node.js';
import { merge } from '../src/node-merge.js';
import { inLibraryWords, libraryWording } from '../src/library-wording.js';
import { doraFactor } from '../src/engine/column-norms.js';
import { notWritten } from '../src/formats/gguf/gguf-blocks.js';
import { keptScaleTypeProblem } from '../src/formats/gguf/kept-scales.js';
import { PURE_FILE_TYPES } from '../src/formats/gguf/type-mixes.js';
import { GGUF_OUTPUT_TYPES } from '../src/formats/output-types.js';
import type { ScaledFp8Base } from '../src/formats/scaled-fp8.js';
import { fsError } from '../src/io/fs-errors.js';
import { scaledFp8Note } from '../src/pipeline/scaled-fp8-output.js';
import { generateSample } from '../src/sample/index.js';
import { pageWording } from '../demo/page-wording.js';
import { REPO_ROOT } from './helpers/cli.js';
import { tempDirs } from './helpers/fixtures.js';
import { ggufLoraAdapter, LLAMA, q4kmLlama } from './helpers/gguf-models.js';
import { llamaWithPeft } from './helpers/page-fixtures.js';

const dirs = tempDirs();
afterAll(() => dirs.removeAll());

/**
 * The loramerge command line's options (its usage text, src/cli/args.ts and adapter-args.ts); the
 * usage also names llama-quantize's --pure, which is not one of them.
 */
const CLI_OPTIONS = [
  'adapter', 'backend', 'base', 'clamp-quantile', 'density', 'dry-run', 'dtype', 'dtype-merged-only', 'energy', 'help', 'majority-sign',
  'method', 'onetrainer-coft', 'out', 'overwrite', 'rank', 'seed', 'sv-cumulative', 'sv-fro', 'sv-ratio', 'threads', 'tuned', 'version', 'weight',
];
const CLI_OPTION = new RegExp(`(?<![\\w-])--(${CLI_OPTIONS.join('|')})(?![\\w-])`);

/** Where a merge() caller gives an adapter's weight. */
const WEIGHT = '(adapters: [{ source, weight }])';

/** Errno errors as Node makes them: a code and Node's own message. */
const errno = (code: string) => Object.assign(new Error(`${code}: failed, write`), { code });
const fsMessage = (code: string) => (fsError(errno(code), 'merged.safetensors', 'writing') as Error).message;

const weights = new Map([['model.layers.0.mlp.down_proj.weight', {}]]) as unknown as ScaledFp8Base['weights'];
const fp8Note = (scaled: Partial<ScaledFp8Base>) => scaledFp8Note({ unread: [], ...scaled } as ScaledFp8Base)!;
function doraMessage(): string {
  try {
    doraFactor('model.layers.0.self_attn.q_proj.weight', { epsilon: 0, normAxis: 'out' } as DoraSpec, 3, 1, Infinity);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('no refusal');
}
const codecList = /choose --dtype q4_k \(or ([a-z0-9_, ]+)\)$/.exec(notWritten('Q8_K'))![1];

/** [the engine's sentence, the library's]: every message a library caller can get that names a loramerge option. */
const SENTENCES: readonly (readonly [string, string])[] = [
  // Output paths (src/io/node-output.ts, output-lock.ts, fs-errors.ts; adapter-ops/module-updates.ts).
  [
    '/data/merged: folder exists and is not empty; choose another --out, or pass --overwrite to replace it once the merge has succeeded',
    '/data/merged: folder exists and is not empty; choose another out, or pass overwrite: true to replace it once the merge has succeeded',
  ],
  [
    '/data/merged: another merge (process 4242) is writing this output; wait for it to finish or choose another --out',
    '/data/merged: another merge (process 4242) is writing this output; wait for it to finish or choose another out',
  ],
  ['/data/x/merged: folder /data/x does not exist; create it or choose another --out', '/data/x/merged: folder /data/x does not exist; create it or choose another out'],
  [
    '/data/m.safetensors: the name is longer than 255 bytes, which file systems refuse (ENAMETOOLONG); choose a shorter --out',
    '/data/m.safetensors: the name is longer than 255 bytes, which file systems refuse (ENAMETOOLONG); choose a shorter out',
  ],
  ['--out is empty; name the output file or folder', 'out is empty; name the output file or folder'],
  [
    'style.safetensors: a kohya adapter\'s module names (lora_unet_…) cannot be written as a PEFT folder; give --out a .safetensors name instead of combined/',
    'style.safetensors: a kohya adapter\'s module names (lora_unet_…) cannot be written as a PEFT folder; give out a .safetensors name instead of combined/',
  ],
  [fsMessage('ENOSPC'), 'merged.safetensors: no space left on the device while writing (ENOSPC); free some space or choose another out'],
  [fsMessage('EDQUOT'), 'merged.safetensors: disk quota exceeded while writing (EDQUOT); free some space or choose another out'],
  [fsMessage('EFBIG'), 'merged.safetensors: the file would be larger than the file-size limit (ulimit -f) or the file system allows while writing (EFBIG); raise the limit or choose an out on another file system'],
  [fsMessage('EROFS'), 'merged.safetensors: the file system is read-only while writing (EROFS); choose an out on a writable file system'],
  [fsMessage('EACCES'), 'merged.safetensors: permission denied while writing (EACCES); check the permissions of the folder or choose another out'],
  [fsMessage('EPERM'), 'merged.safetensors: operation not permitted while writing (EPERM); check the permissions of the folder or choose another out'],
  [fsMessage('EBUSY'), 'merged.safetensors: busy (a mount point or in use by another program) while writing (EBUSY); choose another out'],
  [fsMessage('ENAMETOOLONG'), 'merged.safetensors: the name is too long for the file system while writing (ENAMETOOLONG); choose a shorter out'],
  [fsMessage('ENOTEMPTY'), 'merged.safetensors: appeared while merging (another merge into the same place?) while writing (ENOTEMPTY); remove it or choose another out, then run again'],
  [fsMessage('EEXIST'), 'merged.safetensors: appeared while merging (another merge into the same place?) while writing (EEXIST); remove it or choose another out, then run again'],
  [fsMessage('EXDEV'), 'merged.safetensors: cannot be moved across file systems while writing (EXDEV); choose an out on one file system'],
  // Values out of range (src/pipeline/value-checks.ts, plan/merge-plan.ts, engine/column-norms.ts).
  [
    'base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight": merged values up to 3.09e+5 overflow F16 (largest finite 65504): 140 values (first in row 0, last in row 15), after the update from lora module "model.layers.0.self_attn.q_proj" (scale 2000000); write with --dtype bf16 or f32, or lower --weight',
    `base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight": merged values up to 3.09e+5 overflow F16 (largest finite 65504): 140 values (first in row 0, last in row 15), after the update from lora module "model.layers.0.self_attn.q_proj" (scale 2000000); write with dtype: 'bf16' or 'f32', or lower the adapter's weight ${WEIGHT}`,
  ],
  [
    'base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.bias": the merged bias overflows BF16 (largest finite 3.39e+38); write with --dtype f32, or lower --weight',
    `base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.bias": the merged bias overflows BF16 (largest finite 3.39e+38); write with dtype: 'f32', or lower the adapter's weight ${WEIGHT}`,
  ],
  [
    'm.safetensors: tensor "model.norm.weight": values overflow F16 (largest finite 65504) when converted from F32; write with --dtype bf16 or f32, or keep the base\'s dtype',
    'm.safetensors: tensor "model.norm.weight": values overflow F16 (largest finite 65504) when converted from F32; write with dtype: \'bf16\' or \'f32\', or keep the base\'s dtype',
  ],
  [
    'm.gguf: tensor "blk.0.attn_v.weight": merged values up to 9.00e+6 are too large for Q8_0 blocks: 1024 values (first in row 0, last in row 15) would be NaN or Inf, the blocks\' f16 scales overflow; write with --dtype f32 or bf16, or lower --weight',
    `m.gguf: tensor "blk.0.attn_v.weight": merged values up to 9.00e+6 are too large for Q8_0 blocks: 1024 values (first in row 0, last in row 15) would be NaN or Inf, the blocks' f16 scales overflow; write with dtype: 'f32' or 'bf16', or lower the adapter's weight ${WEIGHT}`,
  ],
  [
    'base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight": the update from lora module "model.layers.0.self_attn.q_proj" (scale 2e+40) makes 189 values (first in row 0, last in row 15) too large for any float dtype; check the adapter and --weight',
    `base/model.safetensors: tensor "model.layers.0.self_attn.q_proj.weight": the update from lora module "model.layers.0.self_attn.q_proj" (scale 2e+40) makes 189 values (first in row 0, last in row 15) too large for any float dtype; check the adapter and its weight ${WEIGHT}`,
  ],
  [
    'lora: module "model.layers.0.self_attn.q_proj": its scale 2 times the weight 1e+308 is past float64; use a smaller --weight',
    `lora: module "model.layers.0.self_attn.q_proj": its scale 2 times the weight 1e+308 is past float64; use a smaller weight ${WEIGHT}`,
  ],
  [
    doraMessage(),
    `tensor "model.layers.0.self_attn.q_proj.weight": DoRA norm of output feature 3: W + ΔW before the DoRA step is too large for its squares in float64 (past 1.3e154); lower the adapter's weight ${WEIGHT}`,
  ],
  // Quantized checkpoints (src/pipeline/scaled-fp8-output.ts, fp8-requantize.ts, formats/comfy-int8.ts).
  [
    fp8Note({ kind: 'comfy-scaled-fp8', rule: 'comfy', weights }),
    fp8Note({ kind: 'comfy-scaled-fp8', rule: 'comfy', weights }).replace('or dequantized with --dtype f32/f16/bf16', "or dequantized with dtype: 'f32'/'f16'/'bf16'"),
  ],
  [
    fp8Note({ kind: 'block-fp8', rule: 'reciprocal', weights, quantizationOnly: ['model.layers.0.self_attn.k_scale'] }),
    fp8Note({ kind: 'block-fp8', rule: 'reciprocal', weights, quantizationOnly: ['model.layers.0.self_attn.k_scale'] })
      .replace('or dequantized with --dtype f32/f16/bf16', "or dequantized with dtype: 'f32'/'f16'/'bf16'")
      .replace('; --dtype also leaves out its 1 KV-cache', '; dtype also leaves out its 1 KV-cache'),
  ],
  [
    fp8Note({ kind: 'gptq', rule: 'dequantize-only', weights }),
    fp8Note({ kind: 'gptq', rule: 'dequantize-only', weights }).replace('with --dtype bf16 (or f16, f32) only', "with dtype: 'bf16' (or 'f16', 'f32') only"),
  ],
  [
    'model: tensor "w" is stored quantized, with its scale in w.scale, in a form not read here (no quantization config that names it), so --dtype would write its codes as if they were the weights; leave out --dtype (unchanged tensors are copied as they are)',
    'model: tensor "w" is stored quantized, with its scale in w.scale, in a form not read here (no quantization config that names it), so dtype would write its codes as if they were the weights; leave out dtype (unchanged tensors are copied as they are)',
  ],
  [
    'model: tensor "w" cannot be dequantized: it is stored quantized in a way not read here; leave out --dtype',
    'model: tensor "w" cannot be dequantized: it is stored quantized in a way not read here; leave out dtype',
  ],
  [
    'model: its GPTQ weights are written only dequantized (re-quantizing them to GPTQ is not supported); merge with --dtype bf16 (or f16, f32)',
    'model: its GPTQ weights are written only dequantized (re-quantizing them to GPTQ is not supported); merge with dtype: \'bf16\' (or \'f16\', \'f32\')',
  ],
  [
    'model: tensor "w" (block-wise fp8) keeps its codes and scales or is written dequantized: --dtype f8_e5m2 would convert its scale tensors (such as "w_scale_inv") as if they were weights, with or without --dtype-merged-only; leave out --dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized',
    'model: tensor "w" (block-wise fp8) keeps its codes and scales or is written dequantized: dtype: \'f8_e5m2\' would convert its scale tensors (such as "w_scale_inv") as if they were weights, with or without mergeModel\'s dtypeMergedOnly; leave out dtype (merged weights are written in their format again), or choose bf16 (or f16, f32) to write the model dequantized',
  ],
  [
    'model: --dtype-merged-only would leave its block-wise fp8 weights half dequantized; leave it out (every block-wise fp8 weight is then dequantized) or leave out --dtype',
    'model: mergeModel\'s dtypeMergedOnly would leave its block-wise fp8 weights half dequantized; leave it out (every block-wise fp8 weight is then dequantized) or leave out dtype',
  ],
  [
    'model: quantization_config.scale_fmt "ue8m0" (scales of a special form) is not written here; merge with --dtype bf16 (or f16, f32) to write the merged weights dequantized',
    'model: quantization_config.scale_fmt "ue8m0" (scales of a special form) is not written here; merge with dtype: \'bf16\' (or \'f16\', \'f32\') to write the merged weights dequantized',
  ],
  [
    'model: tensor "w.weight_scale_inv" holds 0.0005 (block at row 0, column 128), not a power of two, though config.json\'s quantization_config.scale_fmt is "ue8m0": the file contradicts its config, so the merged w.weight is not written with scales of either form; merge with --dtype bf16 (or f16, f32) to write the merged weights dequantized',
    'model: tensor "w.weight_scale_inv" holds 0.0005 (block at row 0, column 128), not a power of two, though config.json\'s quantization_config.scale_fmt is "ue8m0": the file contradicts its config, so the merged w.weight is not written with scales of either form; merge with dtype: \'bf16\' (or \'f16\', \'f32\') to write the merged weights dequantized',
  ],
  [
    'tensor "w": its merged block at row 0, column 0 (largest magnitude 1e+40) needs a scale that w.weight_scale (F8_E4M3) cannot hold (it would be Infinity, its factor 1); merge with --dtype bf16 (or f16, f32) to write the weights dequantized',
    'tensor "w": its merged block at row 0, column 0 (largest magnitude 1e+40) needs a scale that w.weight_scale (F8_E4M3) cannot hold (it would be Infinity, its factor 1); merge with dtype: \'bf16\' (or \'f16\', \'f32\') to write the weights dequantized',
  ],
  // GGUF (src/formats/gguf/*).
  [
    'tiny-llama-Q4_K_M.gguf: unless --dtype chooses another type, the merged tensors (1 Q4_K) are re-quantized to their own types by llama.cpp\'s reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)',
    'tiny-llama-Q4_K_M.gguf: unless dtype chooses another type, the merged tensors (1 Q4_K) are re-quantized to their own types by llama.cpp\'s reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)',
  ],
  [
    'NOT_A_TYPE cannot be decoded (loramerge reads F32, F16), so it cannot be converted to Q8_0; leave out --dtype to copy it as stored',
    'NOT_A_TYPE cannot be decoded (loramerge reads F32, F16), so it cannot be converted to Q8_0; leave out dtype to copy it as stored',
  ],
  ['rows of 4 values are not whole Q4_K blocks of 256; choose another --dtype', 'rows of 4 values are not whole Q4_K blocks of 256; choose another dtype'],
  [
    keptScaleTypeProblem(new Set(['output.scale']), { name: 'output.weight', type: 'NVFP4' }, 'Q8_0')!,
    keptScaleTypeProblem(new Set(['output.scale']), { name: 'output.weight', type: 'NVFP4' }, 'Q8_0')!
      .replace('keep it NVFP4 (--dtype nvfp4, or --dtype-merged-only when the head is not merged)', 'keep it NVFP4 (dtype: \'nvfp4\', or mergeModel\'s dtypeMergedOnly when the head is not merged)'),
  ],
  [
    'F32 to IQ4_NL: it holds NaN or Inf, which IQ4_NL blocks cannot store (ggml\'s quantizer would write NaN); leave out --dtype to copy it as stored, or choose f16, bf16 or f32',
    'F32 to IQ4_NL: it holds NaN or Inf, which IQ4_NL blocks cannot store (ggml\'s quantizer would write NaN); leave out dtype to copy it as stored, or choose f16, bf16 or f32',
  ],
  [
    'converting F32 to Q6_K writes 256 values (row 3) as zeros (ggml\'s quantizer overflows f32 on values this large); choose --dtype f32 or bf16',
    'converting F32 to Q6_K writes 256 values (row 3) as zeros (ggml\'s quantizer overflows f32 on values this large); choose dtype: \'f32\' or \'bf16\'',
  ],
  [
    'converting F32 to F16 overflows F16 (values finite before); choose --dtype bf16 or f32',
    'converting F32 to F16 overflows F16 (values finite before); choose dtype: \'bf16\' or \'f32\'',
  ],
  [
    'values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ggml\'s IQ3 quantizer overflows f32 on them and aborts, so llama-quantize cannot write them either; choose --dtype f16, bf16 or f32',
    'values too large (or not finite) for an IQ3 block in 2 rows (first in row 2, last in row 13): ggml\'s IQ3 quantizer overflows f32 on them and aborts, so llama-quantize cannot write them either; choose dtype: \'f16\', \'bf16\' or \'f32\'',
  ],
  [
    notWritten('Q8_K'),
    notWritten('Q8_K').replace(`choose --dtype q4_k (or ${codecList})`, `choose dtype: 'q4_k' (or ${codecList.split(', ').map((t) => `'${t}'`).join(', ')})`),
  ],
  [PURE_FILE_TYPES.Q8_0_MIX, PURE_FILE_TYPES.Q8_0_MIX.replace('; --dtype q8_0 writes that file', '; dtype: \'q8_0\' writes that file')],
  [
    'oft.safetensors: module "lora_unet_x" is OneTrainer\'s OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 (its ot_revision), which had COFT (oft_coft, off by default), without its training config (ot_config): whether COFT projected its blocks cannot be told; add ot_config with the run\'s peft_type "OFT_2", oft_coft and coft_eps (as OneTrainer writes it with include_train_config) to the file\'s metadata, or, knowing how it was trained, merge it with --onetrainer-coft off, --onetrainer-coft on (coft_eps 1e-4, OneTrainer\'s default) or --onetrainer-coft EPS',
    'oft.safetensors: module "lora_unet_x" is OneTrainer\'s OFT saved by a OneTrainer of 14 November 2025 – 10 May 2026 (its ot_revision), which had COFT (oft_coft, off by default), without its training config (ot_config): whether COFT projected its blocks cannot be told; add ot_config with the run\'s peft_type "OFT_2", oft_coft and coft_eps (as OneTrainer writes it with include_train_config) to the file\'s metadata, or, knowing how it was trained, merge it with oneTrainerCoft: false, true (coft_eps 1e-4, OneTrainer\'s default) or the run\'s coft_eps (adapters: [{ source, oneTrainerCoft }])',
  ],
  [
    'lora.gguf: is a LoRA adapter (general.type = adapter), not a base model; pass it with --adapter',
    'lora.gguf: is a LoRA adapter (general.type = adapter), not a base model; pass it in adapters',
  ],
  [
    'a/model.gguf: a GGUF model, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): is it the base, given as an adapter? pass a base model with --base',
    'a/model.gguf: a GGUF model, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): is it the base, given as an adapter? pass a base model as base',
  ],
];

/** Messages that name no loramerge option, or only other programs' options or quoted names holding one. */
const UNTOUCHED = [
  'tensors already quantized (3 Q4_K) are quantized again to Q8_0, as llama-quantize --allow-requantize does: that adds the new type\'s error to the old one (quantizing from an F16 or BF16 model is better)',
  'lora.safetensors: tensor "transformer.transformer.norm.weight" is a norm weight under "transformer." twice (as diffusers\' train_control_lora_flux.py saves --train_norm_layers), which FluxControlPipeline.load_lora_weights does not load',
  'dtype q4_k_m: not a type of this model; choose q4_k_m, or dtype f16 and run llama-quantize --imatrix afterwards',
  'model: tensor "blk.0 --weight 2 --dtype f16 --out x": merged values up to 1e5 are too large',
  'out "m.safetensors": the base is a folder, so the merged model is a folder of the same files; name out as a folder, without .safetensors',
  ...GGUF_OUTPUT_TYPES.types.map((t) => t.note),
];

/** loramerge's --imatrix is merge()'s `importance`; llama-quantize's own --imatrix stays as it is. */
const IMATRIX_SENTENCES: readonly (readonly [string, string])[] = [
  [
    '--dtype iq2_xxs: IQ2_XXS is written only with an importance matrix: ggml\'s IQ2_XXS quantizer requires one, and llama-quantize refuses IQ2_XXS without --imatrix; give --imatrix FILE (made by llama-imatrix for this model), or choose another --dtype',
    'dtype: \'iq2_xxs\': IQ2_XXS is written only with an importance matrix: ggml\'s IQ2_XXS quantizer requires one, and llama-quantize refuses IQ2_XXS without --imatrix; give importance (readImportanceMatrix of llama-imatrix\'s file for this model), or choose another dtype',
  ],
  [
    'model: the merged tensors (1 IQ2_XS: blk.0.attn_q.weight) are written as F16, as llama.cpp\'s export-lora writes a merged tensor, unless an importance matrix is given (--imatrix): llama-quantize writes IQ2_XS only with one, and with one loramerge quantizes it to IQ2_XS as llama-quantize --imatrix does',
    'model: the merged tensors (1 IQ2_XS: blk.0.attn_q.weight) are written as F16, as llama.cpp\'s export-lora writes a merged tensor, unless an importance matrix is given (importance): llama-quantize writes IQ2_XS only with one, and with one loramerge quantizes it to IQ2_XS as llama-quantize --imatrix does',
  ],
  ['the importance matrix gives NaN scales: make the importance matrix again, or leave out --imatrix', 'the importance matrix gives NaN scales: make the importance matrix again, or leave out importance'],
];

describe('the engine’s messages in the library’s words', () => {
  it.each(IMATRIX_SENTENCES)('%s', (engine, library) => {
    expect(libraryWording(engine)).toBe(library);
  });

  it.each(SENTENCES)('%s', (engine, library) => {
    expect(engine).toMatch(CLI_OPTION);
    expect(libraryWording(engine)).toBe(library);
  });

  it('leaves other programs’ options, quoted names and messages already in the call’s words as they are', () => {
    expect(UNTOUCHED.some((m) => m.includes('--pure')) && UNTOUCHED.some((m) => m.includes('--imatrix'))).toBe(true);
    for (const message of UNTOUCHED) expect(libraryWording(message)).toBe(message);
  });

  it('a MergeError keeps its code and cause; one already in the call’s words, and other errors, come back as they were', () => {
    const cause = errno('ENOSPC');
    const engine = fsError(cause, 'merged.safetensors', 'writing') as MergeError;
    const worded = inLibraryWords(engine) as MergeError;
    expect(worded).toBeInstanceOf(MergeError);
    expect([worded.code, worded.message, worded.cause]).toEqual(['FILESYSTEM', 'merged.safetensors: no space left on the device while writing (ENOSPC); free some space or choose another out', cause]);
    expect(worded.cause).toBe(cause);
    const plain = new MergeError('BAD_ARGUMENT', 'dtype must be a string');
    expect(inLibraryWords(plain)).toBe(plain);
    const bug = new Error('choose another --out');
    expect(inLibraryWords(bug)).toBe(bug);
  });

  it('the page’s words are its own: the shared rules leave each front end’s sentence to its file', () => {
    const engine = SENTENCES.find(([e]) => e.includes('overflow F16') && e.includes('lower --weight'))![0];
    expect(pageWording(engine)).toMatch(/choose bf16 or f32 as the Output dtype, or lower the adapter’s weight$/);
    expect(libraryWording(engine)).toMatch(/write with dtype: 'bf16' or 'f32', or lower the adapter's weight \(adapters: \[\{ source, weight \}\]\)$/);
  });
});

/** Every line of src/ outside the command line's own code that is not a comment and names a loramerge option. */
function sourceLinesNamingOptions(): { where: string; line: string }[] {
  const src = join(REPO_ROOT, 'src');
  const found: { where: string; line: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (path !== join(src, 'cli')) walk(path);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.generated.ts')) {
        readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
          if (/^\s*(\/\/|\/\*|\*)/.test(line) || !CLI_OPTION.test(line)) return;
          found.push({ where: `${relative(REPO_ROOT, path)}:${i + 1}`, line });
        });
      }
    }
  };
  walk(src);
  return found;
}

describe('no loramerge option is left in a library caller’s message', () => {
  it('every sentence above, and every line of src/ that names one (src/cli/ aside), reads without one', () => {
    for (const [engine] of SENTENCES) expect(libraryWording(engine)).not.toMatch(CLI_OPTION);
    const lines = sourceLinesNamingOptions();
    // The messages found by hand above are among them (so the scan does look where they are).
    expect(lines.map((l) => l.where.replace(/:\d+$/, ''))).toEqual(expect.arrayContaining([
      'src/io/node-output.ts', 'src/io/output-lock.ts', 'src/io/fs-errors.ts', 'src/pipeline/value-checks.ts', 'src/plan/merge-plan.ts',
      'src/pipeline/scaled-fp8-output.ts', 'src/formats/gguf/gguf-model.ts', 'src/formats/gguf/gguf-adapter.ts', 'src/engine/column-norms.ts',
    ]));
    const left = lines.filter(({ line }) => CLI_OPTION.test(libraryWording(line))).map(({ where, line }) => `${where}: ${line.trim()}`);
    expect(left).toEqual([]);
  });
});

describe('merge() and the jobs from loramerge/node name the call’s options', () => {
  const llama = llamaWithPeft(71);
  const adapterFiles = { 'adapter_config.json': llama.files['llama-lora/adapter_config.json'], 'adapter_model.safetensors': llama.adapter };
  const base = () => memoryInputFileSet({ 'llama.safetensors': llama.base }, 'llama');
  const adapter = () => memoryInputFileSet(adapterFiles, 'lora');
  const refusal = (job: Promise<unknown>) => job.then(() => { throw new Error('no refusal'); }, (e: MergeError) => e);

  it('a non-empty out folder without overwrite: choose another out, or pass overwrite: true', async () => {
    const sample = await generateSample('small');
    const baseDir = dirs.make(sample.base), adapterDir = dirs.make(sample.adapter);
    const out = dirs.make({ 'notes.txt': 'mine' });
    const e = await refusal(merge({ base: baseDir, adapters: [adapterDir], out, backend: 'cpu' }));
    expect([e.code, e.message]).toEqual(['OUTPUT_EXISTS', `${out}: folder exists and is not empty; choose another out, or pass overwrite: true to replace it once the merge has succeeded`]);
    expect(readdirSync(out)).toEqual(['notes.txt']);
    // A job likewise.
    const job = await refusal(combineLoras({ adapters: [adapterDir, adapterDir], method: 'cat', out, backend: 'cpu' }));
    expect([job.code, job.message]).toEqual(['OUTPUT_EXISTS', `${out}: folder exists and is not empty; choose another out, or pass overwrite: true to replace it once the merge has succeeded`]);
    expect(readdirSync(out)).toEqual(['notes.txt']);
  });

  it('an out another merge is writing (OUTPUT_BUSY): choose another out', async () => {
    const sample = await generateSample('small');
    const baseDir = dirs.make(sample.base), adapterDir = dirs.make(sample.adapter);
    const out = join(dirs.make(), 'merged');
    const first = await createNodeOutputTarget(out, 'folder', []);
    try {
      const e = await refusal(merge({ base: baseDir, adapters: [adapterDir], out, backend: 'cpu' }));
      expect([e.code, e.message]).toEqual(['OUTPUT_BUSY', `${out}: another merge (process ${process.pid}) is writing this output; wait for it to finish or choose another out`]);
    } finally {
      await first.abort();
    }
  });

  it('an f16 result that overflows: dtype and the adapter’s weight; a weight past every float: the adapter and its weight', async () => {
    const overflow = await refusal(merge({ base: base(), adapters: [{ source: adapter(), weight: 1e6 }], backend: 'cpu' }));
    expect(overflow.code).toBe('NON_FINITE');
    expect(overflow.message).toMatch(/^llama\/llama\.safetensors: tensor "model\.layers\.0\.self_attn\.q_proj\.weight": merged values up to [0-9.e+]+ overflow F16 \(largest finite 65504\): \d+ values \(first in row \d+, last in row \d+\), after the update from lora module "model\.layers\.0\.self_attn\.q_proj" \(scale 2000000\); write with dtype: 'bf16' or 'f32', or lower the adapter's weight \(adapters: \[\{ source, weight \}\]\)$/);
    expect(overflow.message).not.toContain('--');
    const past = await refusal(merge({ base: base(), adapters: [{ source: adapter(), weight: 1e40 }], backend: 'cpu' }));
    expect(past.message).toMatch(/makes \d+ values \(first in row \d+, last in row \d+\) too large for any float dtype; check the adapter and its weight \(adapters: \[\{ source, weight \}\]\)$/);
    expect(past.message).not.toContain('--');
  });

  it('a plan with problems (a weight whose scale is past float64): each problem says to use a smaller weight', async () => {
    const e = await refusal(merge({ base: base(), adapters: [{ source: adapter(), weight: 1e308 }], backend: 'cpu' }));
    const problems = e.message.split('\n').slice(1);
    expect(problems).toHaveLength(4);
    for (const line of problems) expect(line).toMatch(/its scale 2 times the weight 1e\+308 is past float64; use a smaller weight \(adapters: \[\{ source, weight \}\]\)$/);
    expect(e.message).not.toContain('--');
  });

  it('a GGUF base: the plan’s warning says dtype; a model given as an adapter says to pass it as base', async () => {
    const model = q4kmLlama();
    const lora = ggufLoraAdapter([{ tensor: 'blk.0.attn_output.weight', rank: 4, in: LLAMA.hidden, out: LLAMA.hidden, aType: 'F16', bType: 'F16' }], 8);
    const outcome = await merge({ base: memoryInputFileSet(model.files, 'tiny-llama-Q4_K_M.gguf'), adapters: [memoryInputFileSet({ 'lora.gguf': lora.bytes }, 'lora.gguf')], backend: 'cpu' });
    expect(outcome.plan.warnings).toEqual([
      'tiny-llama-Q4_K_M.gguf: unless dtype chooses another type, the merged tensors (1 Q4_K) are re-quantized to their own types by llama.cpp\'s reference rules; requantizing adds the quantization error once more (f16 or q8_0 keep more of the update)',
    ]);
    const e = await refusal(merge({ base: memoryInputFileSet(model.files, 'm'), adapters: [memoryInputFileSet(model.files, 'a')], backend: 'cpu' }));
    expect([e.code, e.message]).toEqual([
      'UNSUPPORTED_FORMAT',
      'a/tiny-llama-Q4_K_M.gguf: a GGUF model, not a LoRA adapter (a llama.cpp LoRA GGUF has general.type "adapter"): is it the base, given as an adapter? pass a base model as base',
    ]);
  });
});
