/**
 * Models that tie their output head to their input embedding (`tie_word_embeddings`) store one
 * tensor for both and no head. An adapter trained on such a model sees the head and the embedding
 * as one weight: a LoRA on `lm_head` changes the logits only, a LoRA or saved weights on
 * `embed_tokens` change the inputs only. Merging either into the shared tensor changes both, and
 * a merged model that stays tied reloads with an update the training never made (transformers
 * #45127, mergekit #385/#390). So when an adapter changes one of the two and not the other in the
 * same way, the head is written as its own tensor (starting from the shared weight, or from the
 * embedding the adapter saved) and config.json unties them. PEFT applies two kinds of change to
 * both: trainable tokens (the head's token adapter shares the embedding's deltas) and anything an
 * adapter trained with `ensure_weight_tying` does to the embedding (its head LoRA is the
 * embedding's, transposed, and is merged once, through the shared weight); they keep the pair tied.
 * So does a ComfyUI LoRA on the embedding: ComfyUI's LLMs keep one weight for both and patch it.
 */
import { MergeError } from '../errors.js';
import type { AdapterModule, TensorReplacement, TokenRows } from '../formats/adapter.js';
import type { ModuleAddress } from '../formats/module-address.js';
import { isFloatDType, type FloatDType } from '../dtype.js';
import type { BaseModel, SafetensorsBaseModel } from '../formats/base-model.js';
import { baseModelView, isSafetensorsModel, type ViewTensor } from '../formats/base-model-view.js';
import { ModuleLocator } from '../formats/layouts/index.js';
import { tiesWordEmbeddings, type ModelConfig } from '../formats/model-config.js';
import type { WeightedAdapter } from './merge-plan.js';
import { resolveReplacement } from './replacement-target.js';

/** Where models keep the input embedding, and where their head goes when it is written. */
const EMBEDDING_TO_HEAD: readonly (readonly [embedding: string, head: string])[] = [
  ['model.embed_tokens.weight', 'lm_head.weight'],
  ['model.language_model.embed_tokens.weight', 'lm_head.weight'],
  ['language_model.model.embed_tokens.weight', 'language_model.lm_head.weight'],
  ['model.decoder.embed_tokens.weight', 'lm_head.weight'],
  ['transformer.wte.weight', 'lm_head.weight'],
  ['transformer.word_embeddings.weight', 'lm_head.weight'],
];

/**
 * Heads that are not `lm_head.weight`, by config.json `model_type`: T5Gemma's T5GemmaLMHead keeps its
 * Linear as `out_proj` and ties it to the decoder's embedding (`_tie_weights`), not the encoder's.
 */
const HEAD_BY_MODEL_TYPE: Readonly<Record<string, readonly [embedding: string, head: string]>> = {
  t5gemma: ['model.decoder.embed_tokens.weight', 'lm_head.out_proj.weight'],
};

/** The last names PEFT's _check_tied_modules looks for in modules_to_save (EMBEDDING_LAYER_NAMES). */
const TIED_LAYER_NAMES = ['embed_tokens', 'lm_head'];

export interface TiedPair {
  embedding: string;
  head: string;
}

/** The base's tied pair: a known embedding, no head stored, and a config that does not untie them. */
export function tiedPair(base: Pick<BaseModel, 'tensors'>, config: ModelConfig | undefined): TiedPair | undefined {
  if (tiesWordEmbeddings(config) === false) return undefined;
  const type = config?.raw.model_type;
  const own = typeof type === 'string' && Object.hasOwn(HEAD_BY_MODEL_TYPE, type) ? HEAD_BY_MODEL_TYPE[type] : undefined;
  const found = own ? [own].filter(([e]) => base.tensors.has(e)) : EMBEDDING_TO_HEAD.filter(([e]) => base.tensors.has(e));
  if (found.length !== 1) return undefined;
  const [embedding, head] = found[0];
  if (base.tensors.has(head) || base.tensors.has('lm_head.weight')) return undefined;
  return { embedding, head };
}

export interface TieOutcome {
  /** The base to plan against: with the head as a tensor of its own when untied. */
  base: BaseModel;
  /** The adapters to plan with (the head's start added where an adapter saved the embedding). */
  adapters: WeightedAdapter[];
  /** `untied`: the head is written and the config unties; `kept`: the pair stays tied; absent: nothing touches it. */
  decision?: 'untied' | 'kept';
  note?: string;
}

/**
 * `byComfy`: a ComfyUI LoRA's change, which ComfyUI applies to the one weight its models keep for
 * both (comfy/text_encoders/llama.py: a tied model has no lm_head, its logits read embed_tokens).
 */
type Change = { adapter: string; what: string; tiedByPeft: boolean; byComfy?: true };

export function resolveTiedEmbeddings(
  base: BaseModel, config: ModelConfig | undefined, adapters: readonly WeightedAdapter[], architectures: readonly string[],
): TieOutcome {
  // GGUF keeps its own rule (llama.cpp reads token_embd when a file has no output head).
  if (!isSafetensorsModel(base)) return resolveTiedGguf(base, adapters, architectures);
  refuseSharedEmbeddingChanges(base, config, adapters, architectures);
  const pair = tiedPair(base, config);
  if (!pair) return { base, adapters: [...adapters] };
  const embeddingInfo = base.tensors.get(pair.embedding)!;
  const tensors = new Map<string, { shape: readonly number[] }>(base.tensors);
  tensors.set(pair.head, { shape: embeddingInfo.shape });
  const locator = new ModuleLocator({ tensors, architectures });
  const onHead: Change[] = [];
  const onEmbedding: Change[] = [];
  /** Head modules that mirror the embedding's (PEFT ensure_weight_tying): merged once, through the embedding. */
  const mirrors = new Map<string, Set<string>>();
  /** The head's modules_to_save copy of an ensure_weight_tying adapter, which is the embedding's. */
  const savedHeads = new Map<string, TensorReplacement>();
  /** Lone head LoRAs under ensure_weight_tying, by adapter: each module's key and the embedding address it lands through. */
  const loneHeads = new Map<string, Map<string, ModuleAddress>>();
  for (const { adapter } of adapters) {
    // ensure_weight_tying: PEFT ties the head's LoRA (and modules_to_save copy) to the embedding's.
    const ensured = adapter.config.ensure_weight_tying === true;
    const saved = adapter.config.modules_to_save;
    const savesTiedLayer = Array.isArray(saved) && saved.some((m) => typeof m === 'string' && TIED_LAYER_NAMES.includes(m.split('.').pop()!));
    const classify = (key: string | undefined, what: string, tiedByPeft: boolean, mirror?: () => void) => {
      if (key === pair.head) {
        if (ensured && mirror) mirror();
        else onHead.push({ adapter: adapter.name, what, tiedByPeft });
      } else if (key === pair.embedding) {
        onEmbedding.push({ adapter: adapter.name, what, tiedByPeft: tiedByPeft || ensured, ...(adapter.format === 'comfyui' ? { byComfy: true as const } : {}) });
      }
    };
    for (const m of adapter.modules) {
      const at = locator.locate(m.address);
      if (!at.found) continue;
      // ComfyUI patches an untied head (comfy-llm-head.ts) only as loaded from the checkpoint's own
      // lm_head.weight; it never reads the embedding for it, so no head written from it is ComfyUI's.
      if (adapter.format === 'comfyui' && at.targets.some((t) => t.baseKey === pair.head)) {
        throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: module "${m.name}" names the output head that ComfyUI's model of the encoder loads from the checkpoint's lm_head.weight, which the base does not store (its head is tied to ${pair.embedding}): merge into the encoder's checkpoint with its head`);
      }
      for (const t of at.targets) {
        classify(t.baseKey, `a LoRA on ${m.name}`, false, () => {
          const set = mirrors.get(adapter.name) ?? new Set<string>();
          mirrors.set(adapter.name, set.add(m.key));
        });
      }
    }
    for (const r of adapter.replacements) {
      const at = locator.resolveTensorPath(r.path);
      // ensure_weight_tying with the embedding or head in modules_to_save: the head's trained copy
      // is the embedding's (one tensor, saved under both names; PEFT maps a plain `lm_head.weight`
      // to it too), so it lands on the shared weight.
      const headCopy = ensured && savesTiedLayer && r.origin !== 'base_layer' ? () => savedHeads.set(adapter.name, r) : undefined;
      if (at.found) classify(at.key, `a saved ${r.path}`, false, headCopy);
    }
    for (const r of adapter.tokenRows ?? []) {
      const at = locator.resolveTensorPath(r.path);
      if (at.found) classify(at.key, 'trainable tokens', true);
    }
    // The head's LoRA is the embedding's mirror only beside it. Alone, PEFT still ties it to the
    // embedding's LoRA it makes (loading fills both), so it lands on the shared weight, once.
    const heads = mirrors.get(adapter.name);
    if (heads && !onEmbedding.some((c) => c.adapter === adapter.name && c.what.startsWith('a LoRA'))) {
      const apart = tiedPairApart(adapter, heads);
      if (apart) throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${LONE_HEAD}, and ${apart}, which the one ${pair.embedding} cannot hold; it is not merged`);
      const path = pair.embedding.replace(/\.weight$/, '');
      const through = new Map<string, ModuleAddress>();
      for (const key of heads) {
        const address = { ...adapter.modules.find((m) => m.key === key)!.address, path };
        const at = locator.locate(address);
        if (!at.found || at.targets.length !== 1 || at.targets[0].baseKey !== pair.embedding) {
          throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${LONE_HEAD}, of which it would be the tied copy, and ${pair.embedding} cannot be reached through it, so it is not merged`);
        }
        through.set(key, address);
      }
      mirrors.delete(adapter.name);
      loneHeads.set(adapter.name, through);
      onEmbedding.push({ adapter: adapter.name, what: 'a LoRA on lm_head', tiedByPeft: true });
    }
  }
  const withoutMirrors = (a: WeightedAdapter): WeightedAdapter => {
    const dropped = mirrors.get(a.adapter.name);
    const through = loneHeads.get(a.adapter.name);
    const modules = dropped ? a.adapter.modules.filter((m) => !dropped.has(m.key))
      : through ? a.adapter.modules.map((m) => (through.has(m.key) ? throughEmbedding(m, through.get(m.key)!) : m))
      : a.adapter.modules;
    const head = savedHeads.get(a.adapter.name);
    // Where both copies are saved PEFT loads the head's last, into the one parameter: it is the value.
    const replacements = head
      ? [...a.adapter.replacements.filter((r) => r !== head && !resolvesTo(locator, r.path, pair.embedding)), { ...head, path: pair.embedding }]
      : a.adapter.replacements;
    return dropped || through || head ? { ...a, adapter: { ...a.adapter, modules, replacements } } : a;
  };
  if (onHead.length === 0 && onEmbedding.length === 0 && mirrors.size === 0 && savedHeads.size === 0) return { base, adapters: [...adapters] };
  if (onHead.length === 0 && onEmbedding.every((c) => c.tiedByPeft || c.byComfy)) {
    const why = onEmbedding.every((c) => c.byComfy)
      ? 'ComfyUI applies its LoRA to the one weight its model keeps for both'
      : onEmbedding.every((c) => c.what === 'trainable tokens')
      ? 'trainable tokens set rows of the shared weight, as PEFT applies them to both'
      : mirrors.size > 0
        ? "the adapter was trained with ensure_weight_tying, so its changes apply to both, once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)"
        : 'the adapter was trained with ensure_weight_tying, so its changes apply to both';
    return { base, adapters: adapters.map(withoutMirrors), decision: 'kept', note: `the output head stays tied to ${pair.embedding}: ${why}${loneHeadNote(loneHeads.keys(), pair.embedding)}` };
  }
  const ensured = [...onEmbedding].find((c) => c.tiedByPeft && c.what !== 'trainable tokens')
    ?? (mirrors.size > 0 ? { adapter: [...mirrors.keys()][0] } : savedHeads.size > 0 ? { adapter: [...savedHeads.keys()][0] } : undefined);
  if (ensured) {
    throw new MergeError('PLAN_INVALID', `${ensured.adapter} was trained with ensure_weight_tying (its head follows ${pair.embedding}), but another change unties the two; merge the adapters one after the other`);
  }
  const comfy = onEmbedding.find((c) => c.byComfy);
  if (comfy) {
    throw new MergeError('PLAN_INVALID', `${comfy.adapter} is a ComfyUI LoRA on ${pair.embedding}, which ComfyUI applies to the tied output head as well, but another change unties the two; merge the adapters one after the other`);
  }
  const changed = [...onHead, ...onEmbedding][0];
  return {
    base: withHead(base, pair),
    adapters: adapters.map((a) => withHeadStart(a, pair, locator)),
    decision: 'untied',
    note: `${pair.head} is written as its own tensor and tie_word_embeddings set to false: ${changed.adapter} brings ${changed.what}, ` +
      `which changes ${onHead.includes(changed) ? 'the output head' : 'the input embedding'} only`,
  };
}

/**
 * A GGUF with `token_embd.weight` and no `output.weight` is a tied model: convert_hf_to_gguf writes
 * no head for it and llama.cpp multiplies by token_embd as the head. A PEFT LoRA or saved copy on
 * `embed_tokens` trained the input embedding alone (PEFT wraps the Embedding, not the head that
 * shares its weight), so adding it there would change the head too, which no file here can keep
 * apart: refused, as the head's update is (hf-to-gguf.ts tiedHead). Under `ensure_weight_tying`
 * PEFT applies the update to both, so it is merged once and the head's tied copy is dropped; PEFT's
 * trainable tokens are shared by both too. Other formats follow their own tools: llama.cpp's
 * export-lora adds a `token_embd` pair to the one tensor, and mlx-lm's LoRAEmbedding applies its
 * update in `as_linear`, the tied head, as well.
 */
function resolveTiedGguf(base: BaseModel, adapters: readonly WeightedAdapter[], architectures: readonly string[]): TieOutcome {
  const embedding = 'token_embd.weight', head = 'output.weight';
  const unchanged: TieOutcome = { base, adapters: [...adapters] };
  if (!base.metadata || !base.tensors.has(embedding) || base.tensors.has(head)) return unchanged;
  // The head as if stored, so that a module naming it (lm_head) is told apart from a miss.
  const tensors = new Map<string, { shape: readonly number[] }>(base.tensors);
  tensors.set(head, { shape: base.tensors.get(embedding)!.shape });
  const locator = new ModuleLocator({ tensors, architectures, components: base.components, metadata: (key) => base.metadata!(key) });
  const mirrors = new Map<string, Set<string>>();
  /** Lone head LoRAs under ensure_weight_tying, by adapter: each module's key and the embedding address it lands through. */
  const loneHeads = new Map<string, Map<string, ModuleAddress>>();
  let ensuredOnEmbedding = false;
  for (const { adapter } of adapters) {
    if (adapter.format !== 'peft') continue;
    const ensured = adapter.config.ensure_weight_tying === true;
    const refuse = (what: string) => {
      throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${what} lands on ${embedding}, which this GGUF also uses as its output head (it has no ${head}: the model ties them), while training changed the input embedding alone; merged here it would change the head too, so it is not merged (merge into the safetensors model, where the head is written as its own tensor, or train with ensure_weight_tying)`);
    };
    const headModules: string[] = [];
    let onEmbedding = false;
    for (const m of adapter.modules) {
      const at = locator.locate(m.address);
      if (!at.found) continue;
      for (const t of at.targets) {
        if (t.baseKey === head && ensured) headModules.push(m.key);
        else if (t.baseKey === embedding && !ensured) refuse(`a LoRA on ${m.name}`);
        else if (t.baseKey === embedding) onEmbedding = true;
      }
    }
    if (headModules.length > 0 && onEmbedding) mirrors.set(adapter.name, new Set(headModules));
    else if (headModules.length > 0) {
      // Saved without the embedding's LoRA it is tied to: PEFT still makes that LoRA and ties the
      // head's to it (the head's factors are views of the embedding's, transposed), so loading the
      // head's factors fills both, and the one update applies to the shared weight: merged once there.
      const apart = tiedPairApart(adapter, new Set(headModules));
      if (apart) throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${LONE_HEAD}, and ${apart}, which the one ${embedding} of this GGUF (it has no ${head}) cannot hold; it is not merged`);
      const through = new Map<string, ModuleAddress>();
      for (const key of headModules) {
        const m = adapter.modules.find((x) => x.key === key)!;
        const address = embeddingAddress(m.address, locator, embedding);
        if (!address) throw new MergeError('UNSUPPORTED_FORMAT', `${adapter.name}: ${LONE_HEAD}, of which it would be the tied copy, and no embedding module of this GGUF's architecture lands on ${embedding} (it has no ${head} of its own), so it is not merged`);
        through.set(key, address);
      }
      loneHeads.set(adapter.name, through);
    }
    ensuredOnEmbedding ||= onEmbedding;
    for (const r of adapter.replacements) {
      const at = resolveReplacement(locator, r.path, (key) => tensors.get(key)?.shape[0]);
      if (at.found && at.key === embedding && !ensured) refuse(`a saved ${r.path}`);
    }
  }
  if (mirrors.size === 0 && loneHeads.size === 0 && !ensuredOnEmbedding) return unchanged;
  return {
    base,
    adapters: adapters.map((a) => {
      const dropped = mirrors.get(a.adapter.name);
      if (dropped) return { ...a, adapter: { ...a.adapter, modules: a.adapter.modules.filter((m) => !dropped.has(m.key)) } };
      const through = loneHeads.get(a.adapter.name);
      if (through) return { ...a, adapter: { ...a.adapter, modules: a.adapter.modules.map((m) => (through.has(m.key) ? throughEmbedding(m, through.get(m.key)!) : m)) } };
      return a;
    }),
    decision: 'kept',
    note: `the output head stays tied to ${embedding}: the adapter was trained with ensure_weight_tying, so its changes apply to both${mirrors.size > 0 ? ", once (PEFT's merge_and_unload adds the head's tied LoRA to the shared weight a second time)" : ''}${loneHeadNote(loneHeads.keys(), embedding)}`,
  };
}

/**
 * A head module merged through the embedding it is tied to: its address the embedding's, and no
 * layer check there (it was trained on the head, a Linear, which the embedding's weight is not).
 */
function throughEmbedding(m: AdapterModule, address: ModuleAddress): AdapterModule {
  return { ...m, address, wraps: undefined };
}

const LONE_HEAD = 'its lm_head LoRA under ensure_weight_tying has no embed_tokens LoRA beside it';

/**
 * Why the tied head and embedding may apply a lone head LoRA's factors differently: a rank or
 * alpha pattern naming either (each layer takes its own scale), or DoRA (each its own magnitude
 * and norms); undefined when they apply the same update.
 */
function tiedPairApart(adapter: WeightedAdapter['adapter'], heads: ReadonlySet<string>): string | undefined {
  if (patternsName(adapter.config)) return 'its rank_pattern or alpha_pattern names lm_head or embed_tokens, so the two tied layers may scale the shared factors differently';
  if (adapter.modules.some((m) => heads.has(m.key) && m.dora)) return 'it uses DoRA, whose magnitude and norms the head and the embedding each take from their own layer';
  return undefined;
}

/** What the plan says of lone head LoRAs merged through the embedding ('' when none). */
function loneHeadNote(adapters: Iterable<string>, embedding: string): string {
  const names = [...adapters];
  return names.length === 0 ? '' : `; ${names.join(', ')} saved the lm_head LoRA without the embed_tokens LoRA it is tied to, which PEFT fills from it on loading, so it is merged into ${embedding}`;
}

/** Where architectures keep the input embedding, below the head's own prefix (`lm_head` → `model.embed_tokens`). */
const EMBEDDING_PATHS = [
  'model.embed_tokens', 'model.language_model.embed_tokens', 'language_model.model.embed_tokens', 'model.decoder.embed_tokens',
  'transformer.wte', 'transformer.word_embeddings', 'model.word_embeddings', 'model.tok_embeddings', 'model.embeddings', 'backbone.embeddings',
];

/**
 * The address of the embedding a head module is tied to: the head's own prefix and the first
 * embedding path this GGUF's layout places on `embedding` alone; undefined if none does.
 */
function embeddingAddress(head: ModuleAddress, locator: ModuleLocator, embedding: string): ModuleAddress | undefined {
  if (!head.path.endsWith('lm_head')) return undefined;
  const prefix = head.path.slice(0, head.path.length - 'lm_head'.length);
  for (const path of EMBEDDING_PATHS) {
    const address = { ...head, path: `${prefix}${path}` };
    const at = locator.locate(address);
    if (at.found && at.targets.length === 1 && at.targets[0].baseKey === embedding) return address;
  }
  return undefined;
}

/** Whether a PEFT config's rank_pattern or alpha_pattern has a key naming lm_head or embed_tokens (which would scale the tied pair apart). */
function patternsName(config: Readonly<Record<string, unknown>>): boolean {
  return ['rank_pattern', 'alpha_pattern'].some((field) => {
    const pattern = config[field];
    return typeof pattern === 'object' && pattern !== null && Object.keys(pattern).some((k) => TIED_LAYER_NAMES.some((n) => k.includes(n)));
  });
}

/**
 * T5Gemma 2's one embedding (T5Gemma2ForConditionalGeneration, config.json model_type `t5gemma2`):
 * transformers ties the decoder's `model.decoder.embed_tokens` (T5Gemma2Model's `_tied_weights_keys`)
 * and the head `lm_head.out_proj` (T5Gemma2ForConditionalGeneration's) to the encoder's
 * `model.encoder.embed_tokens`, unless config.json unties them. The tensor first.
 */
function t5Gemma2Tie(base: SafetensorsBaseModel, config: ModelConfig | undefined): string[] | undefined {
  if (config?.raw.model_type !== 't5gemma2' || tiesWordEmbeddings(config) === false || !base.tensors.has('model.encoder.embed_tokens.weight')) return undefined;
  return ['model.encoder.embed_tokens.weight', 'model.decoder.embed_tokens.weight', 'lm_head.out_proj.weight'];
}

/**
 * Encoder-decoder models that keep one `shared` embedding (T5, BART: `_tied_weights_keys` ties
 * `encoder.embed_tokens`, `decoder.embed_tokens` and, when tied, `lm_head` to it) are refused
 * where an adapter changes one of those: PEFT wraps each name as a module of its own, training
 * saw each update on its own module only, and merge_and_unload adds every one of them to the one
 * shared tensor, so neither result can be written as one tied tensor; T5Gemma 2's likewise
 * (t5Gemma2Tie). A ComfyUI LoRA on an
 * encoder-only base (a T5 text encoder) is merged: ComfyUI's T5 holds `shared` alone and feeds it
 * to its encoder, so the one tied tensor is what its LoRA changed.
 */
function refuseSharedEmbeddingChanges(
  base: SafetensorsBaseModel, config: ModelConfig | undefined, adapters: readonly WeightedAdapter[], architectures: readonly string[],
): void {
  const t5gemma2 = t5Gemma2Tie(base, config);
  const prefix = t5gemma2 ? 'model.' : ['', 'model.'].find((p) => base.tensors.has(`${p}shared.weight`));
  if (prefix === undefined) return;
  const shared = base.tensors.get(t5gemma2 ? t5gemma2[0] : `${prefix}shared.weight`)!;
  const tied = t5gemma2 ?? [`${prefix}shared.weight`, `${prefix}encoder.embed_tokens.weight`, `${prefix}decoder.embed_tokens.weight`];
  if (!t5gemma2 && tiesWordEmbeddings(config) !== false && !base.tensors.has('lm_head.weight')) tied.push('lm_head.weight');
  const tensors = new Map<string, { shape: readonly number[] }>(base.tensors);
  for (const key of tied) if (!tensors.has(key)) tensors.set(key, { shape: shared.shape });
  const locator = new ModuleLocator({ tensors, architectures });
  const refuse = (adapter: string, what: string, key: string) => {
    throw new MergeError('UNSUPPORTED_FORMAT', `${adapter}: ${what} lands on ${key}, which the model ties to ${tied.filter((k) => k !== key).join(', ')} (one shared tensor), while training applied it to that module alone; a tied tensor cannot hold that, so it is not merged`);
  };
  // ComfyUI's T5 encoders keep one `shared` embedding, which the encoder reads: its LoRA on it (its
  // "Extract and Save Lora" writes one) changed the very tensor an encoder-only base ties.
  const encoderOnly = ![...base.tensors.keys()].some((k) => k.startsWith(`${prefix}decoder.`));
  for (const { adapter } of adapters) {
    if (adapter.format === 'comfyui' && encoderOnly) continue;
    for (const m of adapter.modules) {
      const at = locator.locate(m.address);
      if (at.found) for (const t of at.targets) if (tied.includes(t.baseKey)) refuse(adapter.name, `module "${m.name}"`, t.baseKey);
    }
    for (const r of [...adapter.replacements, ...adapter.tokenRows ?? []]) {
      const at = locator.resolveTensorPath(r.path);
      if (at.found && tied.includes(at.key)) refuse(adapter.name, `saved tensor "${r.key}"`, at.key);
    }
  }
}

/** The base with the head as a tensor of its own, holding the shared weight, after the embedding. */
function withHead(base: SafetensorsBaseModel, pair: TiedPair): BaseModel {
  const embedding = base.tensors.get(pair.embedding)!;
  if (!isFloatDType(embedding.dtype)) throw new MergeError('UNSUPPORTED_FORMAT', `${base.name}: the tied embedding ${pair.embedding} is ${embedding.dtype}; only a float one can be written as the head too`);
  return baseModelView(base, base.shards.map((shard) => {
    const keys: (string | ViewTensor)[] = shard.tensors.map((t) => shard.keyPrefix + t.name);
    if (shard.path === embedding.shard) {
      keys.push({
        name: pair.head, dtype: embedding.dtype as FloatDType, shape: embedding.shape.slice(), byteLength: embedding.byteLength,
        readPart: (start, length) => base.readPart(pair.embedding, start, length),
      });
    }
    return { path: shard.path, tensors: keys };
  }));
}

/** Whether an adapter's tensor path lands on the base tensor `key`. */
function resolvesTo(locator: ModuleLocator, path: string, key: string): boolean {
  const at = locator.resolveTensorPath(path);
  return at.found && at.key === key;
}

/**
 * During training the head read the same weight as the embedding: the embedding the adapter saved
 * when it saved one (a resized vocabulary), and the same trainable-token rows.
 */
function withHeadStart(weighted: WeightedAdapter, pair: TiedPair, locator: ModuleLocator): WeightedAdapter {
  const { adapter } = weighted;
  const resolves = (path: string, key: string) => resolvesTo(locator, path, key);
  const replacements: TensorReplacement[] = [...adapter.replacements];
  const savedEmbedding = adapter.replacements.find((r) => r.origin !== 'modules_to_save' && resolves(r.path, pair.embedding));
  if (savedEmbedding && !adapter.replacements.some((r) => resolves(r.path, pair.head))) {
    replacements.push({ ...savedEmbedding, path: pair.head });
  }
  // Trainable tokens of a tied model share their deltas with the head, unless the adapter trained
  // the head's tokens on their own (different indices: PEFT then does not tie them).
  const tokenRows: TokenRows[] = [...adapter.tokenRows ?? []];
  if (!tokenRows.some((rows) => resolves(rows.path, pair.head))) {
    for (const rows of adapter.tokenRows ?? []) {
      if (resolves(rows.path, pair.embedding)) tokenRows.push({ ...rows, path: pair.head });
    }
  }
  return { ...weighted, adapter: { ...adapter, replacements, tokenRows } };
}
