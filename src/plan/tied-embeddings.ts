/**
 * Models that tie their output head to their input embedding (`tie_word_embeddings`) store one
 * tensor for both and no head. An adapter trained on such a model sees the head and the embedding
 * as one weight: a LoRA on `lm_head` changes the logits only, a LoRA or saved weights on
 * `embed_tokens` change the inputs only. Merging either into the shared tensor changes both, and
 * a merged model that stays tied reloads with an update the training never made (transformers
 * #45127, mergekit #385/#390). So when an adapter changes one of the two and not the other in the
 * same way, the head is written as its own tensor (starting from the shared weight, or from the
 * embedding the adapter saved) and config.json unties them. Trainable tokens are the one change
 * PEFT applies to both (the head's token adapter shares the embedding's deltas): they keep the
 * pair tied.
 */
import type { TensorReplacement, TokenRows } from '../formats/adapter.js';
import type { BaseModel } from '../formats/base-model.js';
import { baseModelView, type ViewTensor } from '../formats/base-model-view.js';
import { ModuleLocator } from '../formats/layouts/index.js';
import { languageModelField, type ModelConfig } from '../formats/model-config.js';
import type { WeightedAdapter } from './merge-plan.js';

/** Where models keep the input embedding, and where their head goes when it is written. */
const EMBEDDING_TO_HEAD: readonly (readonly [embedding: string, head: string])[] = [
  ['model.embed_tokens.weight', 'lm_head.weight'],
  ['model.language_model.embed_tokens.weight', 'lm_head.weight'],
  ['language_model.model.embed_tokens.weight', 'language_model.lm_head.weight'],
  ['model.decoder.embed_tokens.weight', 'lm_head.weight'],
  ['transformer.wte.weight', 'lm_head.weight'],
  ['transformer.word_embeddings.weight', 'lm_head.weight'],
];

export interface TiedPair {
  embedding: string;
  head: string;
}

/** The base's tied pair: a known embedding, no head stored, and a config that does not untie them. */
export function tiedPair(base: Pick<BaseModel, 'tensors'>, config: ModelConfig | undefined): TiedPair | undefined {
  if (languageModelField(config, 'tie_word_embeddings') === false) return undefined;
  const found = EMBEDDING_TO_HEAD.filter(([e]) => base.tensors.has(e));
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

type Change = { adapter: string; what: string };

export function resolveTiedEmbeddings(
  base: BaseModel, config: ModelConfig | undefined, adapters: readonly WeightedAdapter[], architectures: readonly string[],
): TieOutcome {
  const pair = tiedPair(base, config);
  if (!pair) return { base, adapters: [...adapters] };
  const embeddingInfo = base.tensors.get(pair.embedding)!;
  const tensors = new Map<string, { shape: readonly number[] }>(base.tensors);
  tensors.set(pair.head, { shape: embeddingInfo.shape });
  const locator = new ModuleLocator({ tensors, architectures });
  const onHead: Change[] = [];
  const onEmbedding: Change[] = [];
  const classify = (key: string | undefined, change: Change) => {
    if (key === pair.head) onHead.push(change);
    else if (key === pair.embedding) onEmbedding.push(change);
  };
  for (const { adapter } of adapters) {
    for (const m of adapter.modules) {
      const at = locator.locate(m.address);
      if (at.found) for (const t of at.targets) classify(t.baseKey, { adapter: adapter.name, what: `a LoRA on ${m.name}` });
    }
    for (const r of adapter.replacements) {
      const at = locator.resolveTensorPath(r.path);
      if (at.found) classify(at.key, { adapter: adapter.name, what: `a saved ${r.path}` });
    }
    for (const r of adapter.tokenRows ?? []) {
      const at = locator.resolveTensorPath(r.path);
      if (at.found) classify(at.key, { adapter: adapter.name, what: 'trainable tokens' });
    }
  }
  if (onHead.length === 0 && onEmbedding.length === 0) return { base, adapters: [...adapters] };
  if (onHead.length === 0 && onEmbedding.every((c) => c.what === 'trainable tokens')) {
    return {
      base, adapters: [...adapters], decision: 'kept',
      note: `the output head stays tied to ${pair.embedding}: trainable tokens set rows of the shared weight, as PEFT applies them to both`,
    };
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

/** The base with the head as a tensor of its own, holding the shared weight, after the embedding. */
function withHead(base: BaseModel, pair: TiedPair): BaseModel {
  const embedding = base.tensors.get(pair.embedding)!;
  return baseModelView(base, base.shards.map((shard) => {
    const names: (string | ViewTensor)[] = shard.file.tensors.map((t) => t.name);
    if (shard.path === embedding.shard) {
      names.push({
        name: pair.head, dtype: embedding.dtype, shape: embedding.shape.slice(), byteLength: embedding.entry.byteLength,
        readPart: (start, length) => base.readPart(pair.embedding, start, length),
      });
    }
    return { path: shard.path, tensors: names };
  }));
}

/**
 * During training the head read the same weight as the embedding: the embedding the adapter saved
 * when it saved one (a resized vocabulary), and the same trainable-token rows.
 */
function withHeadStart(weighted: WeightedAdapter, pair: TiedPair, locator: ModuleLocator): WeightedAdapter {
  const { adapter } = weighted;
  const resolves = (path: string, key: string) => {
    const at = locator.resolveTensorPath(path);
    return at.found && at.key === key;
  };
  const replacements: TensorReplacement[] = [...adapter.replacements];
  const savedEmbedding = adapter.replacements.find((r) => r.origin !== 'modules_to_save' && resolves(r.path, pair.embedding));
  if (savedEmbedding && !adapter.replacements.some((r) => resolves(r.path, pair.head))) {
    replacements.push({ ...savedEmbedding, path: pair.head });
  }
  const tokenRows: TokenRows[] = [...adapter.tokenRows ?? []];
  for (const rows of adapter.tokenRows ?? []) {
    if (resolves(rows.path, pair.embedding)) tokenRows.push({ ...rows, path: pair.head });
  }
  return { ...weighted, adapter: { ...adapter, replacements, tokenRows } };
}
