/**
 * Single-file adapters (kohya sd-scripts, LyCORIS, diffusers' trainers, ai-toolkit, OneTrainer,
 * SimpleTuner, XLabs, ComfyUI): one .safetensors, no config, whose tensor names each
 * split into a module and a role (key-forms.ts). A module's roles pick its algorithm
 * (algorithms/), which builds it; its `.alpha` is read here, for every algorithm alike. Every
 * tensor must be claimed: one that fits no key form, or that its module's algorithm does not read,
 * is reported by name, never ignored. The one exception is named in a warning: textual-inversion
 * embeddings bundled with the LoRA (`bundle_emb.<token>.…`), which add a prompt token rather than
 * change a weight.
 */
import { decodeToF32, isFloatDType, type DType } from '../dtype.js';
import { MergeError, type MergeErrorCode } from '../errors.js';
import { Pacer } from '../event-turns.js';
import { throwIfProblems } from '../plan/problems.js';
import type { AdapterFormat, AdapterModule, OpenAdapterOptions, ParsedAdapter, TensorReplacement } from './adapter.js';
import { diffusersWidenedColumns, readBflControlLora, readDiffusersControlNorms } from './bfl-control-lora.js';
import { algorithmsFor, SHARED_ROLES, type ModuleContext } from './algorithms/index.js';
import { MODULE_PARTS, PART_ROLES } from './algorithms/module-parts.js';
import { splitTensorName, type Role } from './key-forms.js';
import { DiffusersLoraMetadata, LORA_ADAPTER_METADATA } from './diffusers-metadata.js';
import { applyDiffusersFluxAlphas, isDiffusersFluxFile } from './diffusers-flux-alphas.js';
import { loraExtrasProblem, type LoraExtrasFound } from './peft-config.js';
import { underLycorisBypass } from './algorithms/lycoris-bypass.js';
import { convertedSplitQkvWarning } from './algorithms/kohya-split-qkv.js';
import { readBlissfulNetwork } from './blissful-network.js';
import { isLongCatVideoLoraTensor, readLongCatVideoLora } from './longcat-video-lora.js';
import { oneTrainerOftOptions } from './algorithms/onetrainer-oft.js';
import { KohyaNetworkArgs } from './kohya-network-args.js';
import { H3_FUSED_QKV, readDiffusersNamesH3Alpha, readMiniMaxH3File } from './minimax-h3-file.js';
import { isKohyaModuleName, moduleAddress, withPriorPipelineEncoder, type ModuleAddress } from './module-address.js';
import type { SafetensorsFile, TensorEntry } from './safetensors-types.js';
import { owningModules, unknownTensorMessage } from './unknown-tensor.js';
import { product } from '../integers.js';
import { shownList } from '../shown-text.js';

type Problem = { code: MergeErrorCode; message: string };

/** Does any tensor of the file fit a key form? (Used to tell adapters from other files.) */
export function looksLikeSingleFileAdapter(file: SafetensorsFile): boolean {
  return file.tensors.some((t) => {
    const split = splitTensorName(t.name);
    return split !== null && split.role !== 'weight';
  });
}

/**
 * Is every tensor of the file an adapter's (a key form other than a plain `.weight`, or a bundled
 * embedding)? A model always holds plain weights or biases besides, so such a file is an adapter
 * even where it is refused: `inspect` shows that refusal rather than list the file as a model.
 */
export function isSingleFileAdapterThroughout(file: SafetensorsFile): boolean {
  return file.tensors.length > 0 && file.tensors.every((t) => {
    // LongCat-Video's `alpha_scale` and `lora_up.blocks.N.weight` fit no key form; its prefix says what they are.
    if (BUNDLED_EMBEDDING.test(t.name) || isLongCatVideoLoraTensor(t.name)) return true;
    const split = splitTensorName(t.name);
    return split !== null && split.role !== 'weight';
  });
}

/** Which tool's naming the file follows, for messages and the output's provenance. */
function formatOf(modules: readonly string[]): AdapterFormat {
  if (modules.some((m) => isKohyaModuleName(m) || /^(lycoris|lora_transformer|Hunyuan_video_I2V_lora)_/.test(m))) return 'kohya';
  if (modules.some((m) => /(^|\.)(double|single)_blocks\.\d+\.processor\.(qkv|proj)(_lora[12])?$/.test(m))) return 'xlabs';
  // ComfyUI's "Extract and Save Lora": `diffusion_model.`, and `text_encoders.` + the keys of any of
  // its text encoders (its CLIPs and T5s, and its LLMs: `text_encoders.qwen3_4b.transformer.model.…`).
  if (modules.some((m) => m.startsWith('diffusion_model.') || /^text_encoders\.[^.]+\.transformer\./.test(m))) return 'comfyui';
  return 'diffusers';
}

/**
 * Parses a single-file adapter (kohya, LyCORIS, diffusers, ComfyUI …). `pacer` is ticked once a
 * tensor and once a module (see parsePeftAdapter); `options` as openAdapter's.
 */
export async function parseSingleFileAdapter(name: string, file: SafetensorsFile, pacer: Pacer = new Pacer(), options: OpenAdapterOptions = {}): Promise<ParsedAdapter> {
  const fileName = file.source.name;
  const problems: Problem[] = [];
  const groups = new Map<string, Map<Role, TensorEntry>>();
  // LongCat-Video's LoRANetwork: its own names and scale, read into the modules the algorithms know.
  const longCat = await readLongCatVideoLora(fileName, file, problems);
  for (const [module, roles] of longCat?.groups ?? []) groups.set(module, roles);
  const metadata = DiffusersLoraMetadata.parse(fileName, file.metadata);
  const networkArgs = new KohyaNetworkArgs(fileName, file.metadata);
  // MiniMax-H3's original names: its loader's file-level alpha (minimax-h3-file.ts).
  const minimaxH3 = readMiniMaxH3File(fileName, file, problems);
  // In names other models share, that alpha is H3's only on an H3 base: the plan decides; without a base it cannot be known.
  const sharedH3 = minimaxH3?.shared && (minimaxH3.alpha !== undefined || minimaxH3.alphaRefusal) ? minimaxH3 : undefined;
  if (sharedH3 && file.metadata.alpha !== undefined && !options.baseDecides) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: metadata "alpha" is ${JSON.stringify(file.metadata.alpha)} and every module's name is one MiniMax-H3 shares with other models (PixArt's and HunyuanDiT's blocks.N.mlp.fc1, mlp.fc2): diffusers' MiniMaxH3LoraLoaderMixin scales every module by that alpha over its rank, their loaders (ComfyUI) read no metadata alpha, and which model the file is for only its base can tell; not supported without a base — merge it into its base, or remove the entry (alpha = rank) or give each module its .alpha tensor` });
  }
  // diffusers' own names: its H3 loader reads the same metadata alpha (its other loaders none); the plan decides by the base.
  const diffusersH3 = minimaxH3 ? undefined : readDiffusersNamesH3Alpha(fileName, file);
  if (diffusersH3 && !options.baseDecides) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: metadata "alpha" is ${JSON.stringify(file.metadata.alpha)} in a file of diffusers' names: diffusers' MiniMaxH3LoraLoaderMixin scales every module by that alpha over its rank, its other loaders read no metadata alpha, and which model the file is for only its base can tell; not supported without a base — merge it into its base, or remove the entry (alpha = rank)` });
  }
  // blissful-tuner's networks: file-level buffers, and what they ask of the modules.
  const blissful = await readBlissfulNetwork(file);
  const bundled = new Set<string>();
  const control = readBflControlLora(file);
  const norms = control ? null : readDiffusersControlNorms(file);
  for (const ignored of norms?.ignored ?? []) {
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: tensor "${ignored}" is a norm weight under "transformer." twice (as diffusers' train_control_lora_flux.py saves --train_norm_layers), which FluxControlPipeline.load_lora_weights does not load (it warns and drops it); remove the tensor to merge as diffusers does, or drop one "transformer." to load it` });
  }

  for (const entry of longCat ? [] : file.tensors) {
    await pacer.tick();
    // A1111 loads these as textual inversions beside the LoRA, ComfyUI skips them; neither changes a
    // weight with them, so the LoRA merges without them and the warning names the tokens.
    const embedding = BUNDLED_EMBEDDING.exec(entry.name);
    if (embedding) {
      bundled.add(embedding[1]);
      continue;
    }
    if (norms?.ignored.includes(entry.name)) continue;
    if (blissful?.claimed.has(entry.name)) continue;
    // A control LoRA's norm scales replace the tensors of their own names (ComfyUI's set_weight).
    // So do the q/k norms in diffusers' names (FluxControlPipeline's _load_norm_into_transformer): the module
    // is the RMSNorm, whose weight they replace.
    const split = control?.replaced.has(entry.name) ? { module: entry.name, role: 'set_weight' as Role }
      : norms?.replaced.has(entry.name) ? { module: entry.name.slice(0, -'.weight'.length), role: 'set_weight' as Role } : splitTensorName(entry.name);
    // Its modules are the diffusion model's, as every loader reads them (ComfyUI prefixes `diffusion_model.`).
    if (split && control) split.module = control.moduleName(split.module);
    if (!split) {
      const owner = kohyaOwner(entry.name);
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: owner ? unknownTensorMessage(fileName, owner, entry.name, SINGLE_FILE_ENDINGS) : `${fileName}: tensor "${entry.name}" is not an adapter tensor this tool recognises` });
      continue;
    }
    let roles = groups.get(split.module);
    if (!roles) groups.set(split.module, (roles = new Map()));
    const earlier = roles.get(split.role);
    if (earlier) {
      problems.push({ code: 'UNSUPPORTED_FORMAT', message: `${fileName}: module "${split.module}" has two ${split.role} tensors ("${earlier.name}" and "${entry.name}")` });
      continue;
    }
    roles.set(split.role, entry);
  }

  const owners = await unknownTensorOwners(groups, pacer);
  for (const [key, roles] of groups) {
    const owner = owners.get(key);
    if (owner === undefined) continue;
    problems.push({ code: 'UNSUPPORTED_FORMAT', message: unknownTensorMessage(fileName, owner, roles.get('weight')!.name, SINGLE_FILE_ENDINGS) });
    groups.delete(key);
  }

  const modules: AdapterModule[] = [];
  const replacements: TensorReplacement[] = [];
  const format = formatOf([...groups.keys()]);
  // What the modules are told beside their tensors: blissful-tuner's network flags; OneTrainer's header
  // (which OneTrainer saved the file, its training config), to its OFT modules alone.
  const oneTrainer = oneTrainerOftOptions(file.metadata, options.oneTrainerCoft);
  const moduleOptions = blissful?.options;
  for (const [key, roles] of groups) {
    await pacer.tick();
    const options = roles.has('oft_R') || roles.has('scaled_oft') ? { ...moduleOptions, ...oneTrainer } : moduleOptions;
    let module = await buildModule(name, fileName, key, roles, file, metadata, networkArgs, problems, options, longCat?.alphas.get(key) ?? (sharedH3 ? undefined : minimaxH3?.alpha));
    const h3Alpha = sharedH3?.alpha ?? (diffusersH3?.applies(key) ? diffusersH3.alpha : undefined);
    if (module && h3Alpha !== undefined) {
      // The same module as diffusers' H3 loader reads it (its problems are the single-file reading's, already reported).
      const h3 = await buildModule(name, fileName, key, roles, file, metadata, networkArgs, [], options, h3Alpha);
      if (h3) module = { ...module, minimaxH3Alpha: { alpha: h3.alpha, scale: h3.scale, ...(h3.scaleOrigin ? { scaleOrigin: h3.scaleOrigin } : {}) } };
    }
    if (module?.algorithm === 'set') {
      const tensor = module.tensors.set_weight;
      replacements.push({ adapter: name, key: tensor.name, tensor, path: module.address.path, address: module.address, origin: 'set_weight' });
      continue;
    }
    if (module && minimaxH3?.qkvPerHead !== undefined && H3_FUSED_QKV.test(module.address.path)) {
      module = { ...module, address: { ...module.address, qkvPerHead: minimaxH3.qkvPerHead } };
    }
    if (module && control?.widened?.module === key) module = { ...module, widenBaseTo: control.widened.columns };
    else if (module && format === 'diffusers') {
      const columns = diffusersWidenedColumns(module);
      if (columns !== undefined) module = { ...module, widenBaseTo: columns };
    }
    if (module) modules.push(module);
  }
  // diffusers reads `.alpha` in its own names only for FLUX.1 (FluxLoraLoaderMixin), by its own rule.
  // Its refusals are FLUX.1's loader's: with a base, the plan makes them where the base is FLUX.1's.
  const flux1Refusal = format === 'diffusers' && isDiffusersFluxFile(modules)
    ? await applyDiffusersFluxAlphas(fileName, file, modules, groups, (entry) => readScalar(file, entry)) : undefined;
  if (flux1Refusal && !options.baseDecides) problems.push(flux1Refusal);
  const untargeted = metadata ? leaveOutUntargeted(fileName, modules, metadata) : [];
  if (metadata) checkMetadataRanks(fileName, modules, metadata, problems);
  checkClipTextEncoderConfigs(fileName, modules, metadata, problems);
  throwIfProblems(name, problems);
  checkLoraExtras(fileName, modules, groups, metadata);
  if (modules.length === 0 && replacements.length === 0) {
    // Every module was one diffusers leaves unused: say why, not that the file holds no LoRA.
    if (untargeted.length > 0) throw new MergeError('UNSUPPORTED_FORMAT', `${untargeted[0]}; no module of the file is left to merge`);
    throw new MergeError('UNSUPPORTED_FORMAT', `${fileName}: no LoRA tensors found`);
  }

  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(file.metadata)) if (k.startsWith('ss_') || k === LORA_ADAPTER_METADATA) config[k] = v;
  const warnings = bundled.size === 0 ? [] : [
    `${fileName}: bundled textual-inversion embedding${bundled.size === 1 ? '' : 's'} ${[...bundled].map((t) => `"${t}"`).join(', ')} (bundle_emb.*) left out: ` +
    'an embedding adds a prompt token and changes no weight, so the merged model does not know the token; load it as a textual inversion (A1111 does so from this file, ComfyUI skips it)',
  ];
  warnings.push(...untargeted);
  const converted = convertedSplitQkvWarning(fileName, networkArgs, modules.map((m) => m.key));
  if (converted) warnings.push(converted);
  return { name, format, file, modules: [...withPriorPipelineEncoder(modules, file.metadata)], replacements, warnings, config, ...(flux1Refusal ? { flux1Refusal } : {}), ...(norms && norms.replaced.size > 0 ? { flux1Norms: [...norms.replaced] } : {}), ...(sharedH3?.alphaRefusal ?? diffusersH3?.alphaRefusal ? { minimaxH3Refusal: sharedH3?.alphaRefusal ?? diffusersH3!.alphaRefusal! } : {}) };
}

/**
 * The groups that are a lone `….weight` under another module (`<module>.x.weight` beside
 * `<module>.lora_down.weight`), or under a kohya module (whose names hold no dot), with that
 * module: unknown tensors of it, not modules of their own. A lone weight under another lone weight
 * belongs to the module that one belongs to (the nearest that is a module), whatever the file's order.
 */
async function unknownTensorOwners(groups: ReadonlyMap<string, ReadonlyMap<Role, TensorEntry>>, pacer: Pacer): Promise<Map<string, string>> {
  const lone = [...groups].filter(([, roles]) => roles.size === 1 && roles.has('weight')).map(([key]) => key);
  const nearest = await owningModules(lone, groups, pacer);
  const isLone = new Set(lone);
  const owned = (key: string) => isLone.has(key) && (nearest.has(key) || kohyaOwner(key) !== undefined);
  const owners = new Map<string, string>();
  // Shorter names first: a lone weight's owner is known before those under it ask for it.
  for (const key of lone.sort((a, b) => a.length - b.length)) {
    const up = nearest.get(key);
    const owner = up === undefined ? kohyaOwner(key) : owned(up) ? owners.get(up) : up;
    if (owner !== undefined) owners.set(key, owner);
  }
  return owners;
}

/** The kohya module (`lora_unet_…`, no dots) a dotted name starts with, if it does. */
function kohyaOwner(name: string): string | undefined {
  const dot = name.indexOf('.');
  const head = dot < 0 ? name : name.slice(0, dot);
  return dot > 0 && isKohyaModuleName(head) ? head : undefined;
}

/** What single-file adapters read under a module, for the refusal of any other ending there. */
const SINGLE_FILE_ENDINGS = 'LoRA: lora_down.weight, lora_up.weight, alpha; LoRA with split_dims: lora_down.N.weight, lora_up.N.weight (N 0 to 7); LoHa: hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b; LoKr: lokr_w1, lokr_w2 and their _a/_b; full: diff, diff_b';

/** kohya/A1111's textual-inversion embeddings stored in a LoRA file: `bundle_emb.<token>.<key>[.<subkey>]`. */
const BUNDLED_EMBEDDING = /^bundle_emb\.([^.]+)\./;

/**
 * α as the file states it, in the order kohya and diffusers read it: the module's `.alpha` tensor
 * (float or integer), else diffusers' lora_adapter_metadata for the module's component, else none
 * (scale 1). Null after reporting an unreadable `.alpha`. A FLUX.1 file in diffusers' names then
 * takes diffusers' own rule for its `.alpha` tensors (diffusers-flux-alphas.ts).
 */
async function moduleAlpha(
  key: string, address: ModuleAddress, roles: ReadonlyMap<Role, TensorEntry>, file: SafetensorsFile,
  metadata: DiffusersLoraMetadata | null, report: (code: MergeErrorCode, message: string) => void,
): Promise<{ alpha: number | undefined; rsLora: boolean; alphaDType?: DType } | null> {
  const alphaTensor = roles.get('alpha');
  if (alphaTensor) {
    const value = await readScalar(file, alphaTensor);
    if (typeof value === 'string') {
      report('UNSUPPORTED_FORMAT', `has an alpha that is not one finite number: ${alphaTensor.name} is ${value}`);
      return null;
    }
    return { alpha: value, rsLora: false, alphaDType: alphaTensor.dtype };
  }
  if (metadata && !address.flat) {
    const found = metadata.alphaFor(componentOf(key, address), address.path);
    if (found) return found;
  }
  return { alpha: undefined, rsLora: false };
}

/**
 * Takes out of `modules` those diffusers puts no LoRA layer on because the metadata's LoraConfig
 * for their text encoder does not target them (DiffusersLoraMetadata.untargeted): transformers'
 * load_adapter leaves their tensors unused and only warns of unexpected keys, so they are left
 * out with a warning per component and reason, naming them.
 */
function leaveOutUntargeted(fileName: string, modules: AdapterModule[], metadata: DiffusersLoraMetadata): string[] {
  const groups = new Map<string, { component: string; why: string; keys: string[] }>();
  const kept = modules.filter((module) => {
    if (module.address.flat) return true;
    const component = componentOf(module.key, module.address);
    const why = metadata.untargeted(component, module.address.path);
    if (why === undefined) return true;
    const group = `${component}\n${why}`;
    if (!groups.has(group)) groups.set(group, { component, why, keys: [] });
    groups.get(group)!.keys.push(module.key);
    return false;
  });
  modules.splice(0, modules.length, ...kept);
  return [...groups.values()].map(({ component, why, keys }) => {
    const one = keys.length === 1;
    return `${fileName}: ${keys.length} module${one ? '' : 's'} left out, not merged: ${one ? 'it is' : 'they are'} ${why} in the "${component}" LoraConfig of its metadata "${LORA_ADAPTER_METADATA}"; ` +
      `diffusers loads ${component} through transformers' load_adapter, which puts LoRA layers only on the modules that LoraConfig targets and leaves ${one ? 'this one\'s tensors' : 'their tensors'} unused (${shownList(keys, (k) => k, ', ', keys.length)})`;
  });
}

/**
 * Reports each LoRA module whose rank is not the one its component's LoraConfig in the metadata
 * gives it (r, rank_pattern): PEFT builds the layer at the config's rank and diffusers' load of the
 * file's factors fails (size mismatch), so no merge can be as diffusers applies the file.
 */
function checkMetadataRanks(fileName: string, modules: readonly AdapterModule[], metadata: DiffusersLoraMetadata, problems: Problem[]): void {
  for (const module of modules) {
    if (module.algorithm !== 'lora' || module.address.flat) continue;
    const stated = metadata.rankFor(componentOf(module.key, module.address), module.address.path);
    if (stated === undefined || stated.rank === module.rank) continue;
    problems.push({
      code: 'BAD_CONFIG',
      message: `${fileName}: module "${module.key}" has rank ${module.rank} but its metadata "${LORA_ADAPTER_METADATA}" says ${stated.rank} (${stated.from}); diffusers builds the LoRA layer at that rank and fails to load this module's tensors (size mismatch), so the file cannot be merged as diffusers loads it — fix the metadata or remove the module`,
    });
  }
}

/** diffusers' text encoders (`text_encoder`, `text_encoder_2` …), which it loads with _load_lora_into_text_encoder. */
const TEXT_ENCODER = /^text_encoder(?:_\d+)?$/;
/** A module path of transformers' CLIPTextModel / CLIPTextModelWithProjection. */
const CLIP_PATH = /^(?:text_model\.|text_projection$)/;
/**
 * The CLIP modules _load_lora_into_text_encoder reads ranks from (names ending in these), in the
 * order CLIPEncoderLayer registers them (k, v, q, out_proj, then the MLP's fc1, fc2): the order of
 * named_modules(), in which Counter.most_common breaks a tie.
 */
const RANKED_CLIP_MODULES = ['k_proj', 'v_proj', 'q_proj', 'out_proj', 'fc1', 'fc2'];
const RANKED_NAMES = 'q_proj, k_proj, v_proj, out_proj, fc1 and fc2';

/**
 * LoRA modules on a CLIP text encoder in diffusers' names (`text_encoder.text_model.…`), checked
 * against the LoraConfig diffusers builds for that encoder (loaders/lora_base.py
 * _load_lora_into_text_encoder, utils/peft_utils.py _create_lora_config, get_peft_kwargs):
 * - with lora_adapter_metadata, the encoder's own `<component>.` fields as they stand: without
 *   target_modules PEFT looks the model type up in its table of defaults, which has no CLIP
 *   ("Please specify `target_modules`"), so diffusers cannot load the file;
 * - without metadata, a config inferred from the tensors: every module of the file targeted, r the
 *   most common rank among the modules named q_proj … fc2 (rank_pattern for the others of them),
 *   lora_alpha = r with the ranks mirrored into alpha_pattern (scale 1 each). With none of those
 *   modules get_peft_kwargs fails (IndexError); any other module (text_projection) is built at r,
 *   and factors of another rank fail to load (size mismatch).
 * A T5 under the same names (Chroma's, DeepFloyd IF's) has no `text_model.` path and is not checked here.
 */
function checkClipTextEncoderConfigs(fileName: string, modules: readonly AdapterModule[], metadata: DiffusersLoraMetadata | null, problems: Problem[]): void {
  const components = new Map<string, AdapterModule[]>();
  for (const module of modules) {
    if (module.algorithm !== 'lora' || module.address.flat || !CLIP_PATH.test(module.address.path)) continue;
    const component = componentOf(module.key, module.address);
    if (!TEXT_ENCODER.test(component)) continue;
    if (!components.has(component)) components.set(component, []);
    components.get(component)!.push(module);
  }
  const remedy = (component: string) => `add the "${component}" LoraConfig (${component}.target_modules, ${component}.r, ${component}.lora_alpha) to the metadata "${LORA_ADAPTER_METADATA}", or remove the file's ${component} modules`;
  for (const [component, found] of components) {
    if (metadata) {
      if (metadata.statesTargets(component)) continue;
      const stated = metadata.statesComponent(component) ? `states its "${component}" LoraConfig without target_modules` : `states no "${component}" LoraConfig`;
      problems.push({
        code: 'UNSUPPORTED_FORMAT',
        message: `${fileName}: module "${found[0].key}" is a LoRA on the CLIP text encoder ${component}, but the file's metadata "${LORA_ADAPTER_METADATA}" ${stated}: diffusers loads ${component} under the LoraConfig those fields make, PEFT finds no target_modules and no default for a CLIP text encoder and refuses it ("Please specify \`target_modules\`"), so diffusers cannot load this file; not supported — ${remedy(component)}`,
      });
      continue;
    }
    const order = (m: AdapterModule): [number, number] => {
      const layer = /\.layers\.(\d+)\./.exec(m.address.path);
      return [layer ? Number(layer[1]) : -1, RANKED_CLIP_MODULES.indexOf(m.address.path.slice(m.address.path.lastIndexOf('.') + 1))];
    };
    const ranked = found.filter((m) => order(m)[1] >= 0).sort((a, b) => order(a)[0] - order(b)[0] || order(a)[1] - order(b)[1]);
    if (ranked.length === 0) {
      problems.push({
        code: 'UNSUPPORTED_FORMAT',
        message: `${fileName}: module "${found[0].key}" is a LoRA on the CLIP text encoder ${component}, and the file has no metadata "${LORA_ADAPTER_METADATA}": diffusers then reads ${component}'s rank from its modules named ${RANKED_NAMES} alone, of which the file has none, and fails (IndexError in get_peft_kwargs), so diffusers cannot load this file; not supported — ${remedy(component)}`,
      });
      continue;
    }
    // Counter.most_common: the highest count, the first seen among equal counts.
    const counts = new Map<number, number>();
    for (const m of ranked) counts.set(m.rank, (counts.get(m.rank) ?? 0) + 1);
    let r = ranked[0].rank;
    for (const [rank, count] of counts) if (count > counts.get(r)!) r = rank;
    for (const module of found) {
      if (order(module)[1] >= 0 || module.rank === r) continue;
      problems.push({
        code: 'UNSUPPORTED_FORMAT',
        message: `${fileName}: module "${module.key}" has rank ${module.rank}, but the file has no metadata "${LORA_ADAPTER_METADATA}" and diffusers builds each ${component} module not named ${RANKED_NAMES.replace(' and ', ' or ')} at the rank most of those have, ${r}, so it fails to load this module's tensors (size mismatch) and cannot load this file; not supported — ${remedy(component)}`,
      });
    }
  }
}

/** `transformer.x.attn.to_q` → component `transformer` (path `x.attn.to_q`); '' for a bare path. */
function componentOf(key: string, address: ModuleAddress): string {
  return key.length > address.path.length ? key.slice(0, key.length - address.path.length - 1) : '';
}

/**
 * diffusers builds each component's LoraConfig (transformer, unet, text_encoder…, over that
 * component's tensors alone) from lora_adapter_metadata as it stands, or, without metadata, from
 * the tensor names (utils/peft_utils.py get_peft_kwargs): use_dora when any of the component's
 * tensors is a lora_magnitude_vector, lora_bias when any is a lora_B bias. PEFT then builds the
 * layers from that config (peft-config.ts loraExtrasProblem says what that refuses); an inferred
 * config with both flags is one PEFT's LoraConfig refuses.
 */
function checkLoraExtras(
  fileName: string, modules: readonly AdapterModule[], groups: ReadonlyMap<string, ReadonlyMap<Role, TensorEntry>>, metadata: DiffusersLoraMetadata | null,
): void {
  const components = new Map<string, LoraExtrasFound>();
  for (const module of modules) {
    if (module.algorithm !== 'lora' || module.address.flat) continue;
    const component = componentOf(module.key, module.address);
    if (metadata && !metadata.configFor(component)) continue;
    if (!components.has(component)) components.set(component, { magnitudes: [], biases: [], plain: [] });
    const found = components.get(component)!;
    const roles = groups.get(module.key);
    const magnitude = roles?.get('magnitude'), bias = roles?.get('up_bias');
    if (magnitude) found.magnitudes.push(magnitude.name);
    else found.plain.push(module.key);
    if (bias) found.biases.push(bias.name);
  }
  for (const [component, found] of components) {
    const of = component ? ` for "${component}"` : '';
    let problem: string | undefined;
    if (metadata) {
      const where = `${fileName}: metadata "${LORA_ADAPTER_METADATA}"`;
      problem = loraExtrasProblem(metadata.configFor(component)!, found, (field, value) => `${where} has ${field} ${value}${of}`, 'the file', 'diffusers');
    } else {
      const inferred = { useDora: found.magnitudes.length > 0, loraBias: found.biases.length > 0 };
      const where = `${fileName}: without "${LORA_ADAPTER_METADATA}" diffusers`;
      if (inferred.useDora && inferred.loraBias) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${where} sets both use_dora and lora_bias${of} from the tensor names (lora_magnitude_vector "${found.magnitudes[0]}", lora_B bias "${found.biases[0]}"), a LoraConfig PEFT refuses ("lora_bias=True is not supported for DoRA"); no file can have been trained that way`);
      }
      problem = loraExtrasProblem(inferred, found, (field, value) => `${where} sets ${field} ${value}${of} from the tensor names (it holds lora_magnitude_vector "${found.magnitudes[0]}")`, 'the file', 'diffusers');
    }
    if (problem) throw new MergeError('UNSUPPORTED_FORMAT', problem);
  }
}

async function buildModule(
  adapter: string, fileName: string, key: string, roles: ReadonlyMap<Role, TensorEntry>, file: SafetensorsFile,
  metadata: DiffusersLoraMetadata | null, networkArgs: KohyaNetworkArgs, problems: Problem[],
  options?: ModuleContext['options'], statedAlpha?: number,
): Promise<AdapterModule | null> {
  // Messages that read as a predicate ("is LoKr, …", "has … but no …") follow the name directly.
  const report = (code: MergeErrorCode, message: string) =>
    problems.push({ code, message: `${fileName}: module "${key}"${/^(is|has|needs|mixes) /.test(message) ? ' ' : ': '}${message}` });
  // Parts (a bias diff, …) are patches of their own beside the weight's algorithm.
  const parts = MODULE_PARTS.filter((p) => roles.has(p.role));
  const weightRoles = [...roles.keys()].filter((role) => !PART_ROLES.includes(role));
  const candidates = algorithmsFor(weightRoles);
  if (candidates.length > 1 || (candidates.length === 0 && (parts.length === 0 || weightRoles.some((r) => !SHARED_ROLES.includes(r))))) {
    const names = [...roles.values()].map((t) => `"${t.name}"`).join(', ');
    // ComfyUI keeps the last patch it reads for a weight and LyCORIS the first: no one rule to follow.
    report('UNSUPPORTED_FORMAT', candidates.length === 0
      ? `has no tensors of a known adapter algorithm (only ${names})`
      : `mixes tensors of ${candidates.map((a) => a.title).join(' and ')} (${names}), two updates of one weight that the tools reading such files do not apply alike (ComfyUI keeps only the last it reads, LyCORIS the first); keep one of them`);
    return null;
  }
  const algorithm = candidates[0] as (typeof candidates)[number] | undefined;
  const unclaimed = algorithm ? weightRoles.filter((role) => !algorithm.roles.includes(role) && !SHARED_ROLES.includes(role)) : [];
  if (algorithm && unclaimed.length > 0) {
    report('UNSUPPORTED_FORMAT', `is ${algorithm.title}, which does not read ${unclaimed.map((role) => `"${roles.get(role)!.name}"`).join(', ')}`);
    return null;
  }
  const address = moduleAddress(key);
  if (metadata && !address.flat && metadata.statesComponent(componentOf(key, address))) address.componentConfig = true;
  // A reader that knows the file's own scale (LongCat-Video's alpha_scale) states α for the module.
  const alpha = statedAlpha !== undefined ? { alpha: statedAlpha, rsLora: false } : await moduleAlpha(key, address, roles, file, metadata, report);
  if (!alpha) return null;
  const context: ModuleContext = { adapter, key, address, ...alpha, networkArgs, report, ...(options ? { options } : {}) };
  if (!algorithm) {
    // Parts alone: the first stands for the module, the rest attach to it.
    let module = parts[0].alone(roles.get(parts[0].role)!, context);
    for (const part of parts.slice(1)) module = module && part.attach(module, roles.get(part.role)!, context);
    return module;
  }
  const scalars = new Map<Role, number>();
  for (const role of algorithm.scalars ?? []) {
    const tensor = roles.get(role);
    if (!tensor) continue;
    const value = await readScalar(file, tensor, true);
    if (typeof value === 'string') {
      report('UNSUPPORTED_FORMAT', `has ${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role} that is not one finite number: ${tensor.name} is ${value}`);
      return null;
    }
    scalars.set(role, value);
  }
  const tensors = new Map([...roles].filter(([role]) => !SHARED_ROLES.includes(role) && !PART_ROLES.includes(role) && !scalars.has(role)));
  let module = algorithm.build(tensors, { ...context, scalars });
  // LyCORIS's bypass mode trains some algorithms on another update than their merge.
  if (module) module = underLycorisBypass(algorithm, module, { ...context, scalars });
  for (const part of parts) {
    const tensor = roles.get(part.role)!;
    const values = module && part.readsIntegers ? await readIntegers(file, tensor) : undefined;
    module = module && part.attach(module, tensor, context, values);
  }
  return module;
}

const INTEGER_BYTES: Readonly<Record<string, { bytes: number; read: (v: DataView) => number }>> = {
  I64: { bytes: 8, read: (v) => Number(v.getBigInt64(0, true)) },
  U64: { bytes: 8, read: (v) => Number(v.getBigUint64(0, true)) },
  I32: { bytes: 4, read: (v) => v.getInt32(0, true) },
  U32: { bytes: 4, read: (v) => v.getUint32(0, true) },
  I16: { bytes: 2, read: (v) => v.getInt16(0, true) },
  U16: { bytes: 2, read: (v) => v.getUint16(0, true) },
  I8: { bytes: 1, read: (v) => v.getInt8(0) },
  U8: { bytes: 1, read: (v) => v.getUint8(0) },
};

/**
 * An integer tensor's values (ComfyUI's reshape_weight, read with `.tolist()`), or what it is
 * instead: a float tensor's values are not sizes torch.zeros takes.
 */
async function readIntegers(file: SafetensorsFile, entry: TensorEntry): Promise<number[] | string> {
  const kind = INTEGER_BYTES[entry.dtype];
  if (!kind) return `${entry.dtype} (${entry.shape.join(', ')}), not an integer type`;
  if (product(entry.shape) > 64) return `${entry.dtype} (${entry.shape.join(', ')}), too long for a shape`;
  const bytes = await file.read(entry);
  const values: number[] = [];
  for (let at = 0; at + kind.bytes <= bytes.byteLength; at += kind.bytes) values.push(kind.read(new DataView(bytes.buffer, bytes.byteOffset + at, kind.bytes)));
  return values;
}

/**
 * A one-element tensor's value, or what it is instead of one finite number (its dtype and shape, or
 * the value: `F32 () holding Infinity`). Floats and integers are both accepted: diffusers'
 * convert_state_dict_to_kohya writes α as torch.tensor(rank), an I64. With `bools`, a bool too (0 or 1,
 * as torch's item() reads it): the flags algorithms read (OneTrainer's scaled_oft), never an α.
 */
export async function readScalar(file: SafetensorsFile, entry: TensorEntry, bools = false): Promise<number | string> {
  const kind = `${entry.dtype} (${entry.shape.join(', ')})`;
  if (product(entry.shape) !== 1) return `${kind} with ${product(entry.shape)} values`;
  const bytes = await file.read(entry);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let value: number;
  if (entry.dtype === 'F64') value = view.getFloat64(0, true);
  else if (isFloatDType(entry.dtype)) value = decodeToF32(bytes, entry.dtype)[0];
  else if (INTEGER_BYTES[entry.dtype]) value = INTEGER_BYTES[entry.dtype].read(view);
  // torch reads a bool tensor's item as 0 or 1 (OneTrainer's scaled_oft marker, saved without a dtype).
  else if (bools && entry.dtype === 'BOOL') value = view.getUint8(0) === 0 ? 0 : 1;
  else return `${kind}, not a number type`;
  return Number.isFinite(value) ? value : `${kind} holding ${value}`;
}
