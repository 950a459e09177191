/**
 * FLUX.1 LoRAs in diffusers' names with `.alpha` tensors (`transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight`
 * beside `transformer.single_transformer_blocks.0.attn.to_q.alpha`), as diffusers loads them: no other
 * diffusers loader reads those `.alpha` tensors, and FluxLoraLoaderMixin reads them its own way.
 *
 * - FluxLoraLoaderMixin.lora_state_dict (loaders/lora_pipeline.py) takes every key holding "alpha" out of
 *   the state dict as a network alpha, a float tensor only: an integer (or bool) one raises ValueError
 *   ("The alpha key (…) seems to be incorrect"), the first in the file's key order.
 * - load_lora_into_transformer / load_lora_into_text_encoder hand those alphas and the file's
 *   `lora_adapter_metadata` to load_lora_adapter / _load_lora_into_text_encoder, which raise on the pair
 *   ("Both `network_alphas` and `metadata` cannot be specified.").
 * - Per component it loads (`transformer.`, `text_encoder.`), get_peft_kwargs (utils/peft_utils.py) builds the
 *   LoraConfig: the alphas are tensors, hashed by identity, so Counter.most_common gives the first one
 *   (safetensors lists keys sorted by name) as `lora_alpha`, and every alpha of another value goes to
 *   `alpha_pattern` (`transformer.`: the module path; the text encoder: the name without its last part).
 *   A module without `.alpha` takes `lora_alpha`, the first alpha's value, not its rank; PEFT looks
 *   `alpha_pattern` up with get_pattern_key (the first key, in that order, that the module path ends
 *   with after a dot, the key a regex), so a module can take the alpha of another whose path ends its own
 *   (`proj_out`'s for `single_transformer_blocks.0.proj_out`). A component without alphas keeps α = r.
 * - PEFT's LoraLayer.update_layer then sets scaling = lora_alpha / r with lora_alpha that tensor, so the
 *   scale is α/r rounded to the alpha's dtype (bf16, f16: through f32, as torch divides them). An alpha of
 *   0 is taken as it stands (scale 0), unlike kohya's α = 0 for "unset".
 *
 * Which pipeline loads a file is not in the file: this rule is taken for a file whose `transformer.`
 * modules are all FLUX.1's (and Chroma's) in diffusers' names, 3072 wide, within FLUX.1's 19 double and
 * 38 single blocks. kohya-named files keep kohya's rule (diffusers converts them and applies α itself).
 * Without a base (inspect) such a file is taken as FLUX.1's. HunyuanVideo's, FLUX.2 [klein]'s and
 * Qwen-Image's transformers hold the same names at that width (an attention-only file on the first
 * blocks fits them all): on those bases (flux1NamesSharedBy) the plan gives each module back the
 * single-file rule's α and scale kept here (`diffusersFluxAlpha`), the rule every other model's
 * diffusers-named `.alpha` follows, as ComfyUI applies it. diffusers' loaders for them do not read
 * the alphas: HunyuanVideoLoraLoaderMixin's and Flux2LoraLoaderMixin's load_lora_weights refuse any
 * key without "lora" in it, QwenImageLoraLoaderMixin's converter drops them. The refusals below
 * (an integer or float8 alpha, alphas beside lora_adapter_metadata) are diffusers' FLUX.1 loader's:
 * they are returned, not raised, and the plan makes them only where the base is not one of those
 * (ParsedAdapter.flux1Refusal); read without a base (inspect, the adapter jobs) the file is FLUX.1's
 * and they are raised at once. Where one is found the modules keep the single-file rule's α.
 */
import { decodeToF32, encodeFromF32, type DType } from '../dtype.js';
import type { MergeErrorCode } from '../errors.js';
import type { AdapterModule } from './adapter.js';
import { LORA_ADAPTER_METADATA } from './diffusers-metadata.js';
import type { Role } from './key-forms.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { isFlux2 } from './layouts/flux2-bfl.js';
import { isHunyuanDit } from './layouts/hunyuan-video.js';
import type { BaseView } from './layouts/layout.js';

type Problem = { code: MergeErrorCode; message: string };

/** FLUX.1's hidden width: a side of every one of its modules outside Chroma's approximator. */
const FLUX1_HIDDEN = 3072;
const DOUBLE_BLOCKS = 19;
const SINGLE_BLOCKS = 38;

const DOUBLE = /^transformer_blocks\.(\d+)\.(?:attn\.(?:to_[qkv]|add_[qkv]_proj|to_out\.0|to_add_out)|ff(?:_context)?\.net\.(?:0\.proj|2)|norm1(?:_context)?\.linear)$/;
const SINGLE = /^single_transformer_blocks\.(\d+)\.(?:attn\.to_[qkv]|proj_mlp|proj_out|norm\.linear)$/;
const OUTER = /^(?:x_embedder|context_embedder|proj_out|norm_out\.linear|time_text_embed\.(?:timestep|text|guidance)_embedder\.linear_[12])$/;
/** Chroma's approximator (ChromaApproximator), whose inner width is its own. */
const APPROXIMATOR = /^distilled_guidance_layer\.(?:in_proj|out_proj|layers\.\d+\.linear_[12])$/;

/** Is `path` (under `transformer.`) a module of FluxTransformer2DModel or ChromaTransformer2DModel, of FLUX.1's width? */
function isFlux1Module(path: string, deltaShape: readonly number[]): boolean {
  if (APPROXIMATOR.test(path)) return true;
  const double = DOUBLE.exec(path), single = SINGLE.exec(path);
  if (double ? Number(double[1]) >= DOUBLE_BLOCKS : single ? Number(single[1]) >= SINGLE_BLOCKS : !OUTER.test(path)) return false;
  return deltaShape.length === 2 && deltaShape.includes(FLUX1_HIDDEN);
}

/** Qwen-Image's per-block image modulation (`img_mod.1`, in diffusers' and ComfyUI's names alike); FLUX.1 has none. */
const QWEN_IMAGE_MODULATION = /(^|\.)transformer_blocks\.\d+\.img_mod\.1\.weight$/;

/**
 * The model whose transformer holds FLUX.1's diffusers names at FLUX.1's width, where `base` is one
 * (HunyuanVideo or HunyuanImage, FLUX.2, Qwen-Image), so that FLUX.1's `.alpha` rule does not hold
 * there; undefined for any other base.
 */
export function flux1NamesSharedBy(base: BaseView): string | undefined {
  if (isHunyuanDit(base)) return 'HunyuanVideo';
  if (isFlux2(base)) return 'FLUX.2';
  if (base.keys.some((k) => QWEN_IMAGE_MODULATION.test(k))) return 'Qwen-Image';
  return undefined;
}

/** `transformer.x.attn.to_q` → `transformer`; the component is the key before the module path. */
function componentOf(module: AdapterModule): string {
  return module.key.length > module.address.path.length ? module.key.slice(0, module.key.length - module.address.path.length - 1) : '';
}

/**
 * Whether diffusers' FluxLoraLoaderMixin is the loader this file's `.alpha` tensors are read by: a
 * diffusers-named file (no kohya, XLabs or ComfyUI names) whose `transformer.` LoRA modules are all FLUX.1's.
 */
export function isDiffusersFluxFile(modules: readonly AdapterModule[]): boolean {
  const transformer = modules.filter((m) => !m.address.flat && componentOf(m) === 'transformer');
  return transformer.length > 0 && transformer.every((m) => m.algorithm === 'lora' && isFlux1Module(m.address.path, m.deltaShape));
}

/** α/r as PEFT computes it from a 0-d tensor of `dtype` and an int: in that dtype (bf16 and f16 through f32). */
function scaleInDType(alpha: number, rank: number, dtype: DType): number {
  if (dtype === 'F64') return alpha / rank;
  const quotient = Math.fround(alpha / rank);
  if (dtype === 'F32') return quotient;
  if (dtype === 'BF16' || dtype === 'F16') return decodeToF32(encodeFromF32(Float32Array.of(quotient), dtype), dtype)[0];
  return Number.NaN;
}

/** The order of safetensors' `keys()` (Rust's sort of the names' UTF-8 bytes): by code point, not UTF-16 unit. */
function byCodePoint(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const F8_ALPHA: ReadonlySet<string> = new Set(['F8_E4M3', 'F8_E5M2']);

/** The `format` metadata SimpleTuner's scripts/extract_peft_lora.py writes. */
const SIMPLETUNER_EXTRACT = 'simpletuner-peft-lora-extract';

/**
 * Whether FluxLoraLoaderMixin is the reader whose rule these `.alpha` tensors follow, for a file in
 * FLUX.1's diffusers names that holds some. Not for:
 * - a file with any `.lora_down.weight` key (OneTrainer's internal `transformer.….lora_down.weight`
 *   with `.alpha`): diffusers takes it as kohya's (lora_state_dict's is_kohya), keeps the `transformer.`
 *   keys renamed to lora_A/lora_B and reads no alpha; OneTrainer, which writes it, and ComfyUI read
 *   each module's own `.alpha` over its rank (OneTrainer's load_lora_util: α = r where absent);
 * - SimpleTuner's extract_peft_lora.py output (metadata `format` simpletuner-peft-lora-extract; one
 *   α, in the output dtype, on every module, the factors made so that (α/r)·B·A is the extracted
 *   delta): SimpleTuner's own loader (peft_lora_config_kwargs_from_state_dict) takes each alpha as a
 *   Python float, α/r unrounded;
 * - `.alpha` on every LoRA module beside a non-empty lora_adapter_metadata (SimpleTuner's
 *   `--lora_format comfyui` for FLUX.1, which keeps the `transformer.` prefix and writes each module's
 *   α from the LoraConfig as an F32 `.alpha`, with that LoraConfig as lora_adapter_metadata):
 *   diffusers refuses the pair, and the tools that load it, SimpleTuner and ComfyUI, take each
 *   module's own alpha over its rank.
 * In each the single-file rule, each module's own `.alpha` over its rank, is the file's meaning.
 */
function readByFluxLoader(file: SafetensorsFile, modules: readonly AdapterModule[], groups: ReadonlyMap<string, ReadonlyMap<Role, TensorEntry>>): boolean {
  if (file.tensors.some((t) => t.name.includes('.lora_down.weight'))) return false;
  if (file.metadata.format === SIMPLETUNER_EXTRACT) return false;
  const metadata = file.metadata[LORA_ADAPTER_METADATA];
  const lora = modules.filter((m) => m.algorithm === 'lora' && !m.address.flat);
  if (metadata && hasFields(metadata) && lora.every((m) => groups.get(m.key)?.has('alpha'))) return false;
  return true;
}

/** Whether lora_adapter_metadata's JSON states any field (it was checked to be an object where read). */
function hasFields(metadata: string): boolean {
  return Object.keys(JSON.parse(metadata) as object).length > 0;
}

/**
 * Sets the α and scale of the file's LoRA modules as FluxLoraLoaderMixin gives them (see above), or
 * returns, in one line naming the tensor, why diffusers cannot load the file as FLUX.1's (the modules
 * then left as the single-file rule read them). `groups`: each module's tensors by role, `readAlpha`
 * the value of an `.alpha` tensor (already checked to be one finite number).
 */
export async function applyDiffusersFluxAlphas(
  fileName: string, file: SafetensorsFile, modules: AdapterModule[], groups: ReadonlyMap<string, ReadonlyMap<Role, TensorEntry>>,
  readAlpha: (entry: TensorEntry) => Promise<number | string>,
): Promise<Problem | undefined> {
  const alphas = [...groups.values()].flatMap((roles) => (roles.has('alpha') ? [roles.get('alpha')!] : [])).sort((a, b) => byCodePoint(a.name, b.name));
  if (alphas.length === 0) return undefined;
  if (!readByFluxLoader(file, modules, groups)) return undefined;
  const refuse = (message: string): Problem => ({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: ${message}` });
  // One value of a number type each (any other was reported where its module was built).
  const integer = (a: TensorEntry) => /^[IU](8|16|32|64)$/.test(a.dtype) && a.shape.every((d) => d === 1);
  const notFloat = alphas.find(integer);
  if (notFloat) {
    return refuse(`tensor "${notFloat.name}" is an alpha of dtype ${notFloat.dtype}, not a float: diffusers' FluxLoraLoaderMixin.lora_state_dict takes only float alphas from a FLUX.1 LoRA in its names and refuses the file ("The alpha key (${notFloat.name}) seems to be incorrect"), so diffusers cannot load it; not supported — store the file's alphas as floats (F32)`);
  }
  const f8 = alphas.find((a) => F8_ALPHA.has(a.dtype));
  if (f8) {
    return refuse(`tensor "${f8.name}" is an alpha of dtype ${f8.dtype}: diffusers' FluxLoraLoaderMixin keeps each alpha as the tensor it is and PEFT divides it by the rank in that dtype (lora_alpha / r), a division torch does not implement for float8 tensors, so diffusers cannot load this file; not supported — store the file's alphas as F32`);
  }
  const metadata = file.metadata[LORA_ADAPTER_METADATA];
  if (metadata && hasFields(metadata)) {
    const without = modules.find((m) => m.algorithm === 'lora' && !m.address.flat && !groups.get(m.key)?.has('alpha'))!;
    return refuse(`tensor "${alphas[0].name}" is an alpha beside the metadata "${LORA_ADAPTER_METADATA}", and module "${without.key}" has no .alpha: diffusers' FluxLoraLoaderMixin passes both to load_lora_adapter, which refuses the pair ("Both \`network_alphas\` and \`metadata\` cannot be specified."), and the tools that load such a file (SimpleTuner's --lora_format comfyui writes one .alpha on every module) disagree on a module without one (ComfyUI: α = r; SimpleTuner: the most common alpha); not supported — give every LoRA module its .alpha, or remove the .alpha tensors (the metadata's lora_alpha then applies)`);
  }

  const byKey = new Map(modules.map((m) => [m.key, m]));
  const components = new Map<string, { name: string; pattern: string; value: number; dtype: DType }[]>();
  for (const entry of alphas) {
    const dot = entry.name.indexOf('.');
    const component = dot < 0 ? '' : entry.name.slice(0, dot);
    const value = await readAlpha(entry);
    if (typeof value === 'string') return undefined; // reported where the module was built
    const path = entry.name.slice(component.length + 1);
    // get_peft_kwargs' alpha_pattern keys: is_unet for load_lora_adapter (`transformer.`), not for a text encoder.
    const pattern = component === 'transformer' ? path.split('.lora_A.')[0].replaceAll('.alpha', '') : path.split('.down.')[0].split('.').slice(0, -1).join('.');
    if (!components.has(component)) components.set(component, []);
    components.get(component)!.push({ name: entry.name, pattern, value, dtype: entry.dtype as DType });
  }
  for (const [component, list] of components) {
    // FluxLoraLoaderMixin loads these two (_lora_loadable_modules); it leaves any other component unloaded.
    if (component !== 'transformer' && component !== 'text_encoder') continue;
    const first = list[0];
    const patterns = list.filter((a) => a.value !== first.value);
    for (const module of modules) {
      if (module.algorithm !== 'lora' || module.address.flat || componentOf(module) !== component || !byKey.has(module.key)) continue;
      const path = module.address.path;
      const hit = patterns.find((p) => patternMatches(p.pattern, path));
      const own = groups.get(module.key)?.get('alpha');
      const from = hit ?? first;
      const scale = scaleInDType(from.value, module.rank, from.dtype);
      // α as the scale PEFT computes stands for it (16.03125 for a bf16 16 over r 12), so that the
      // adapter operations that write α back (convert, resize) keep the scale merged here.
      const ownRule = { alpha: module.alpha, scale: module.scale, scaleOrigin: module.scaleOrigin };
      module.alpha = scale * module.rank;
      module.scale = scale;
      module.scaleOrigin = { kind: 'alpha', rule: 'α/r', stated: own !== undefined };
      module.diffusersFluxAlpha = ownRule;
    }
  }
  return undefined;
}

/** PEFT's get_pattern_key test: `re.match(rf"(.*\.)?({key})$", path)`, the key a regex. */
function patternMatches(key: string, path: string): boolean {
  try {
    return new RegExp(`^(?:.*\\.)?(?:${key})$`, 'u').test(path);
  } catch {
    return false;
  }
}
