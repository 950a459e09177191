/**
 * LongCat-Video's own LoRA files (meituan-longcat/LongCat-Video `lora/cfg_step_lora.safetensors`,
 * `refinement_lora.safetensors`, and what its LoRANetwork saves). Its LoRAModule is registered
 * under `lora___lorahyphen___` + the module path with `___lorahyphen___` for each dot (add_module
 * takes no dots), and its state dict holds, per Linear:
 * - `lora_down.weight` (n·r, in) and either `lora_up.weight` (out, r) (n = 1) or, on a fused
 *   projection (`attn.qkv`, `cross_attn.kv_linear`), `lora_up.blocks.<i>.weight` (out/n, r): its
 *   LoRAUPParallel cuts the down's output into n chunks of r and feeds chunk i to block i, the
 *   blocks' outputs concatenated, so part i's ΔW is up_i·down[i·r:(i+1)·r] on rows i·out/n …;
 * - `alpha_scale`, the buffer α/r itself, which the forward multiplies in with the multiplier
 *   (enable_loras: `lora_up(lora_down(x)) · multiplier · alpha_scale`).
 *
 * Read here into the modules of the other readers: `down`/`up` for one part, and for n parts
 * kohya's split_dims pairs (algorithms/lora-split.ts), each down a row slice of the one stored
 * `lora_down.weight`; α = alpha_scale·r, so the α/r the algorithms apply is the stored scale.
 * A tensor of another form, a module without `alpha_scale` (the loader would then use the rank
 * and α it is called with, which the file does not say), or factors of shapes LoRAUPParallel
 * cannot run is a problem naming it.
 */
import { DTYPE_BYTES, decodeToF32, isFloatDType } from '../dtype.js';
import type { MergeErrorCode } from '../errors.js';
import { SPLIT_INDICES, type Role } from './key-forms.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';

const PREFIX = 'lora___lorahyphen___';
const HYPHEN = '___lorahyphen___';
/** torch's ModuleList names its blocks str(i): `blocks.01` is no block LoRANetwork loads (nor block 1). */
const BLOCK_UP = /^lora_up\.blocks\.(0|[1-9]\d*)\.weight$/;

/** Whether `name` is a tensor of LongCat-Video's LoRANetwork (its module prefix). */
export function isLongCatVideoLoraTensor(name: string): boolean {
  return name.startsWith(PREFIX);
}

/** A LongCat-Video LoRA file read into the modules the other readers make. */
export interface LongCatVideoLora {
  /** Each module (its dotted path) and its tensors by role. */
  groups: Map<string, Map<Role, TensorEntry>>;
  /** α for each module: alpha_scale · r (r: one part's rank). */
  alphas: Map<string, number>;
}

interface Parts { down?: TensorEntry; up?: TensorEntry; blocks: Map<number, TensorEntry>; alphaScale?: TensorEntry }

/**
 * The modules of a LongCat-Video LoRA file, or undefined when `file` holds no `lora___lorahyphen___`
 * tensor. Problems are pushed onto `problems`, each naming the tensor or module.
 */
export async function readLongCatVideoLora(
  fileName: string, file: SafetensorsFile, problems: { code: MergeErrorCode; message: string }[],
): Promise<LongCatVideoLora | undefined> {
  if (!file.tensors.some((t) => isLongCatVideoLoraTensor(t.name))) return undefined;
  const modules = new Map<string, Parts>();
  const form = `LongCat-Video's LoRANetwork form (${PREFIX}<path with ${HYPHEN} for dots>.lora_down.weight, .lora_up.weight or .lora_up.blocks.N.weight, .alpha_scale)`;
  for (const t of file.tensors) {
    const dot = t.name.indexOf('.');
    if (!t.name.startsWith(PREFIX) || dot < 0) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${t.name}" is not in ${form}, which the rest of the file is in` });
      continue;
    }
    const module = t.name.slice(PREFIX.length, dot).split(HYPHEN).join('.');
    const tail = t.name.slice(dot + 1);
    let parts = modules.get(module);
    if (!parts) modules.set(module, (parts = { blocks: new Map() }));
    const block = BLOCK_UP.exec(tail);
    if (tail === 'lora_down.weight') parts.down = t;
    else if (tail === 'lora_up.weight') parts.up = t;
    else if (tail === 'alpha_scale') parts.alphaScale = t;
    else if (block) parts.blocks.set(Number(block[1]), t);
    else problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${t.name}" is not in ${form}` });
  }
  const groups = new Map<string, Map<Role, TensorEntry>>();
  const alphas = new Map<string, number>();
  for (const [module, parts] of modules) {
    const report = (message: string) => problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${module}" (LongCat-Video LoRA) ${message}` });
    const n = parts.blocks.size;
    if (!parts.down || (n === 0) === !parts.up) {
      report(!parts.down ? 'has no lora_down.weight' : parts.up ? 'has both lora_up.weight and lora_up.blocks' : 'has no lora_up.weight');
      continue;
    }
    if (!parts.alphaScale) {
      report('has no alpha_scale: LongCat-Video\'s loader would scale it by the α and rank it is called with, which the file does not say');
      continue;
    }
    const down = parts.down;
    const ups = n === 0 ? [parts.up!] : [...Array(n).keys()].map((i) => parts.blocks.get(i));
    if (n > SPLIT_INDICES.length || ups.some((u) => !u)) {
      report(`has lora_up.blocks ${[...parts.blocks.keys()].sort((a, b) => a - b).join(', ')}: blocks must be numbered from 0 with none left out (at most ${SPLIT_INDICES.length})`);
      continue;
    }
    const parts1 = Math.max(n, 1);
    const [rows, inF] = down.shape;
    const r = rows / parts1;
    const fits = down.shape.length === 2 && isFloatDType(down.dtype) && Number.isInteger(r) && r > 0
      && ups.every((u) => u!.shape.length === 2 && u!.shape[1] === r && u!.shape[0] === ups[0]!.shape[0]);
    if (!fits) {
      report(`has factors of shapes LoRAUPParallel does not run: lora_down ${down.dtype} [${down.shape.join(', ')}], up ${ups.map((u) => `[${u!.shape.join(', ')}]`).join(', ')} (lora_down (n·r, in), each of the n ups (out/n, r))`);
      continue;
    }
    const scale = await scalarOf(file, parts.alphaScale);
    if (typeof scale === 'string') {
      report(`has an alpha_scale that is not one finite number: ${parts.alphaScale.name} is ${scale}`);
      continue;
    }
    const roles = new Map<Role, TensorEntry>();
    if (n === 0) {
      roles.set('down', down);
      roles.set('up', parts.up!);
    } else {
      // Row i·r … of the stored down, as its own (r, in) tensor: the rows are contiguous bytes.
      const sliceBytes = r * inF * DTYPE_BYTES[down.dtype];
      ups.forEach((up, i) => {
        roles.set(`split_down_${i}` as Role, { name: `${down.name} rows ${i * r}–${(i + 1) * r - 1}`, dtype: down.dtype, shape: [r, inF], offset: down.offset + i * sliceBytes, byteLength: sliceBytes });
        roles.set(`split_up_${i}` as Role, up!);
      });
    }
    groups.set(module, roles);
    alphas.set(module, scale * r);
  }
  return { groups, alphas };
}

/**
 * The number a 0-d float tensor holds, or what it holds instead: LoRAModule registers alpha_scale
 * as a 0-d buffer, and torch's load_state_dict refuses a tensor of another shape for it ((1,) too).
 */
async function scalarOf(file: SafetensorsFile, entry: TensorEntry): Promise<number | string> {
  if (entry.shape.length !== 0 || !isFloatDType(entry.dtype)) return `${entry.dtype} (${entry.shape.join(', ')}), not a 0-d float tensor`;
  const value = decodeToF32(await file.read(entry), entry.dtype)[0];
  return Number.isFinite(value) ? value : String(value);
}
