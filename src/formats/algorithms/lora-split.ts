/**
 * LoRA with `split_dims` (kohya's LoRAModule as musubi-tuner, src/musubi_tuner/networks/lora.py,
 * and its forks blissful-tuner and others carry it; sd-scripts networks/lora_flux.py introduced it
 * for Flux's fused qkv and linear1): a Linear layer whose outputs are split into parts of
 * split_dims[i] rows, each with its own pair, `lora_down.<i>.weight` (r, in) and
 * `lora_up.<i>.weight` (split_dims[i], r), one `alpha` for the module. Its forward
 * (LoRAModule.forward) concatenates the parts' up_i·down_i·x along the outputs and scales them all by
 * multiplier·α/r (α/√r under blissful-tuner's `use_rslora_flag`), so part i's ΔW fills rows
 * Σ_{j<i} split_dims[j] … of W, in index order, and the split sizes are the ups' rows.
 *
 * The tools' own merges do not apply these files: LoRAInfModule passes no split_dims on, so its
 * merge_to reads `lora_down.weight` and fails; their split branch adds the unpadded up_i·down_i,
 * which does not fit W; the generation scripts' merge (utils/lora_utils.py) leaves such modules
 * unread with a warning; sd-scripts saves Flux's split modules fused into one pair. The update merged
 * is the one the module trained with: its forward's. No DoRA (LoRAModule disables it for a split
 * module), so a `dora_layer.weight` beside the pairs is refused.
 *
 * The engine gets one product of rank n·r: the downs stacked, the ups on a block diagonal.
 */
import type { AdapterModule } from '../adapter.js';
import { SPLIT_INDICES, type Role } from '../key-forms.js';
import type { TensorEntry } from '../safetensors-types.js';
import { alphaScale, fmtShape, moduleBasics, type Algorithm } from './algorithm.js';
import { f32Bytes, readMatrix } from './factor-io.js';
import { blissfulRsLoraScale } from './lora.js';

const DOWNS: readonly Role[] = SPLIT_INDICES.map((i) => `split_down_${i}` as const);
const UPS: readonly Role[] = SPLIT_INDICES.map((i) => `split_up_${i}` as const);

export const loraSplit: Algorithm = {
  name: 'lora_split',
  title: 'LoRA with split_dims',
  defines: [...DOWNS, ...UPS],
  roles: [...DOWNS, ...UPS, 'dora_layer'],

  build(tensors, context) {
    const pairs: { down: TensorEntry; up: TensorEntry }[] = [];
    let missing: string | undefined;
    for (const i of SPLIT_INDICES) {
      const down = tensors.get(DOWNS[i]), up = tensors.get(UPS[i]);
      if (!down && !up) continue;
      if (!down || !up || pairs.length !== i) {
        missing ??= !down ? `lora_down.${i}.weight` : !up ? `lora_up.${i}.weight` : `lora_down.${pairs.length}.weight and lora_up.${pairs.length}.weight`;
        continue;
      }
      pairs.push({ down, up });
    }
    if (missing) {
      context.report('UNSUPPORTED_FORMAT', `is a LoRA with split_dims (numbered lora_down.N/lora_up.N pairs) without ${missing}: its parts must be pairs numbered from 0 with none left out, each filling the next rows of the weight`);
      return null;
    }
    const dora = tensors.get('dora_layer');
    if (dora) {
      context.report('UNSUPPORTED_FORMAT', `has "${dora.name}" beside split_dims pairs: blissful-tuner's LoRAModule gives a module with split_dims no DoRA, so no tool applies this magnitude; remove it to merge the pairs`);
      return null;
    }
    const rank = pairs[0].down.shape[0];
    const inF = pairs[0].down.shape[1];
    const fits = pairs.every(({ down, up }) => down.shape.length === 2 && up.shape.length === 2 && down.shape[0] === rank && down.shape[1] === inF && up.shape[1] === rank);
    if (!fits) {
      const shapes = pairs.map(({ down, up }, i) => `lora_down.${i} ${fmtShape(down.shape)}, lora_up.${i} ${fmtShape(up.shape)}`).join('; ');
      context.report('SHAPE_MISMATCH', `split_dims pairs ${shapes} are not one Linear's: every lora_down must be (r, in) with the same r and in, every lora_up (rows, r)`);
      return null;
    }
    const out = pairs.reduce((sum, { up }) => sum + up.shape[0], 0);
    const module: AdapterModule = {
      ...moduleBasics(context),
      algorithm: loraSplit.name,
      kind: 'linear',
      deltaShape: [out, inF],
      rank,
      ...alphaScale(context.alpha, rank, context.rsLora),
      ...(context.options?.blissful_rslora === true ? blissfulRsLoraScale(context.alpha, rank) : {}),
      tensors: Object.fromEntries(pairs.flatMap(({ down, up }, i) => [[`down${i}`, down], [`up${i}`, up]])),
      update: { kind: 'low-rank', rank: rank * pairs.length },
      fanInFanOut: false,
    };
    return module;
  },

  async load(file, module) {
    const n = Object.keys(module.tensors).length / 2;
    const r = module.rank;
    const [out, inF] = module.deltaShape;
    const total = n * r;
    // A (n·r, in): the downs stacked. B (out, n·r): up_i in rows [offset_i, offset_i + rows_i) and
    // columns [i·r, (i + 1)·r), zero elsewhere, so B·A's rows of part i are up_i·down_i exactly.
    const a = new Float32Array(total * inF);
    const b = new Float32Array(out * total);
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const [down, up] = await Promise.all([readMatrix(file, module.tensors[`down${i}`]), readMatrix(file, module.tensors[`up${i}`])]);
      a.set(down.data, i * r * inF);
      for (let row = 0; row < up.rows; row++) b.set(up.data.subarray(row * r, (row + 1) * r), (offset + row) * total + i * r);
      offset += up.rows;
    }
    return [{ kind: 'low-rank', a: f32Bytes(a), b: f32Bytes(b), rank: total }];
  },
};
