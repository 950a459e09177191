/**
 * Which CLIP each CLIP text encoder folder of a diffusers pipeline holds. model_index.json says
 * only `CLIPTextModel` or `CLIPTextModelWithProjection` for CLIP-L, CLIP-G and CLIP-H alike, and the
 * folders' order does not say either (HunyuanVideo's `text_encoder_2` is CLIP-L; Stable Cascade's
 * only `text_encoder` is CLIP-G), so each folder's config.json decides: `hidden_size` 768 is CLIP-L,
 * 1280 CLIP-G (OpenCLIP bigG), 1024 CLIP-H (OpenCLIP ViT-H); where it says none of these,
 * `projection_dim` and `num_hidden_layers` do. Only a folder without a deciding config goes by its
 * position (the first CLIP-L, a later one CLIP-G, as SDXL and SD3 number them). Two folders that
 * come out the same CLIP cannot both be it: neither is given a kind, and why is kept for the
 * modules that name one.
 */
import type { EncoderKind } from './base-components.js';

/** The model_index.json classes whose folder holds a transformers CLIP text model. */
export const CLIP_TEXT_CLASS = /^CLIPTextModel(WithProjection)?$/;

const KIND_NAMES: Readonly<Record<ClipKind, string>> = { clip_l: 'CLIP-L', clip_g: 'CLIP-G', openclip: 'CLIP-H' };
type ClipKind = Extract<EncoderKind, 'clip_l' | 'clip_g' | 'openclip'>;

/** The config.json values of each CLIP's text model (openai/clip-vit-large-patch14, laion bigG and ViT-H). */
const SIGNS: Readonly<Record<'hidden_size' | 'projection_dim' | 'num_hidden_layers', Readonly<Record<number, ClipKind>>>> = {
  hidden_size: { 768: 'clip_l', 1280: 'clip_g', 1024: 'openclip' },
  projection_dim: { 768: 'clip_l', 1280: 'clip_g', 1024: 'openclip' },
  num_hidden_layers: { 12: 'clip_l', 32: 'clip_g', 24: 'openclip' },
};

/** A CLIP text encoder folder of a pipeline, as the caller found it. */
export interface ClipFolder {
  folder: string;
  /** 1 for `text_encoder`, 2 for `text_encoder_2`, … */
  ordinal: number;
  /** Its parsed config.json, when the folder has one. */
  config?: unknown;
}

/** What a folder was found to hold: a kind, or why it cannot be told. */
export type ClipIdentity = { encoder: ClipKind; doubt?: undefined } | { encoder?: undefined; doubt: string };

/** The kind of each CLIP folder (by folder name), or why it cannot be told. */
export function identifyClipFolders(folders: readonly ClipFolder[]): Map<string, ClipIdentity> {
  const found = new Map<string, { identity: ClipIdentity; by: string }>();
  for (const f of folders) found.set(f.folder, identify(f));
  // Two folders of one kind: a config and a position (or two configs) that cannot both be right.
  for (const [folder, { identity, by }] of found) {
    if (!identity.encoder) continue;
    const twins = [...found].filter(([other, o]) => other !== folder && o.identity.encoder === identity.encoder);
    if (twins.length === 0) continue;
    const all = [[folder, by], ...twins.map(([other, o]) => [other, o.by])];
    const doubt = `${all.map(([f]) => f).join(' and ')} both read as ${KIND_NAMES[identity.encoder]} (${all.map(([f, b]) => `${f} by ${b}`).join('; ')}), so which holds which CLIP cannot be told; give each CLIP folder the config.json its model was saved with`;
    for (const [f] of all) found.get(f)!.identity = { doubt };
  }
  return new Map([...found].map(([f, { identity }]) => [f, identity]));
}

function identify(f: ClipFolder): { identity: ClipIdentity; by: string } {
  const byPosition: ClipKind = f.ordinal === 1 ? 'clip_l' : 'clip_g';
  const config = typeof f.config === 'object' && f.config !== null && !Array.isArray(f.config) ? f.config as Record<string, unknown> : undefined;
  const sign = (field: keyof typeof SIGNS): ClipKind | undefined => {
    const v = config?.[field];
    return typeof v === 'number' && Object.hasOwn(SIGNS[field], v) ? SIGNS[field][v] : undefined;
  };
  const hidden = sign('hidden_size');
  if (hidden) return { identity: { encoder: hidden }, by: `its config.json's hidden_size ${String(config!.hidden_size)}` };
  // hidden_size absent or of no known CLIP (a tiny test model): the other two break the tie.
  const votes = (['projection_dim', 'num_hidden_layers'] as const).flatMap((field) => {
    const kind = sign(field);
    return kind ? [{ field, kind }] : [];
  });
  const kinds = [...new Set(votes.map((v) => v.kind))];
  if (kinds.length === 1) return { identity: { encoder: kinds[0] }, by: `its config.json's ${votes[0].field} ${String(config![votes[0].field])}` };
  const position = `its position (${config ? 'its config.json naming no CLIP' : 'no config.json'})`;
  if (kinds.length === 0) return { identity: { encoder: byPosition }, by: position };
  // The two disagree: the position settles it if it is one of them.
  if (kinds.includes(byPosition)) return { identity: { encoder: byPosition }, by: position };
  const said = votes.map((v) => `${v.field} ${String(config![v.field])} says ${KIND_NAMES[v.kind]}`).join(', ');
  return {
    identity: { doubt: `${f.folder}/config.json: ${said}, and its position says ${KIND_NAMES[byPosition]}, so which CLIP it holds cannot be told; give it the config.json its model was saved with` },
    by: position,
  };
}


/**
 * Whether a T5 folder's config.json says byT5 (google/byt5-small: `d_model` 1472, a byte
 * vocabulary of 384, which HunyuanImage 2.1's and HunyuanVideo 1.5's glyph encoder extends), or its
 * `_name_or_path` names one. Its class (`T5EncoderModel`) is T5-XXL's too, so only its config tells
 * ComfyUI's `byt5_small` from its `t5xxl` outside the pipelines that are known to hold a byT5.
 */
export function byT5Config(config: unknown): boolean {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return false;
  const { d_model: dModel, vocab_size: vocab, _name_or_path: name } = config as Record<string, unknown>;
  return dModel === 1472 || vocab === 384 || (typeof name === 'string' && /byt5/i.test(name));
}

/** ComfyUI's two T5 encoders a file saved alone may hold, by their `d_model`: byT5-small's and T5-XXL's. */
const COMFY_T5_WIDTHS: Readonly<Record<string, { dModel: number; title: string }>> = {
  byt5_small: { dModel: 1472, title: 'byT5' }, t5xxl: { dModel: 4096, title: 'T5-XXL' },
};

/** The keys of a transformers T5 encoder's blocks (`encoder.block.0.layer.0.SelfAttention.q.weight`). */
const T5_BLOCK_KEY = /^encoder\.block\.\d+\.layer\.\d+\./;
const T5_Q_KEY = /^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.q\.weight$/;

/**
 * A T5 encoder's `d_model` as its stored shapes say it, and which tensor said it: the length of
 * `encoder.final_layer_norm.weight`, else the width of `shared.weight` (or `encoder.embed_tokens.weight`,
 * [vocab, d_model]), else that of the first block's `SelfAttention.q.weight` ([heads·d_kv, d_model]).
 * A file may lack any one of them (an fp8 or pruned export without the final norm, a shard series
 * whose last shard holds it); every block has a q. Undefined for keys that are no transformers T5
 * encoder's, or where two of these disagree (no T5 of one width).
 */
export function t5DModel(keys: readonly string[], shape: (key: string) => readonly number[] | undefined): { dModel: number; by: string } | undefined {
  if (!keys.some((k) => T5_BLOCK_KEY.test(k))) return undefined;
  const q = keys.filter((k) => T5_Q_KEY.test(k)).sort((a, b) => Number(T5_Q_KEY.exec(a)![1]) - Number(T5_Q_KEY.exec(b)![1]))[0];
  const found: { dModel: number; by: string }[] = [];
  const norm = shape('encoder.final_layer_norm.weight');
  if (norm?.length === 1) found.push({ dModel: norm[0], by: 'the length of encoder.final_layer_norm.weight' });
  for (const key of ['shared.weight', 'encoder.embed_tokens.weight', ...(q ? [q] : [])]) {
    const s = shape(key);
    if (s?.length === 2) found.push({ dModel: s[1], by: `the width of ${key} (shape [${s.join(', ')}])` });
  }
  if (found.length === 0 || found.some((f) => f.dModel !== found[0].dModel)) return undefined;
  return found[0];
}

/**
 * Which of ComfyUI's two T5 encoders a T5 file or folder without a deciding config.json holds, by
 * its `d_model` (t5DModel): `byt5_small` at 1472, `t5xxl` at 4096, with why; undefined at any other
 * width or for keys of no T5. `said` tells the width and what said it, `why` the whole reason.
 */
export function comfyT5ByShape(keys: readonly string[], shape: (key: string) => readonly number[] | undefined): { name: string; other: string; said: string; why: string } | undefined {
  const d = t5DModel(keys, shape);
  const name = d && Object.keys(COMFY_T5_WIDTHS).find((k) => COMFY_T5_WIDTHS[k].dModel === d.dModel);
  if (!d || name === undefined) return undefined;
  const held = COMFY_T5_WIDTHS[name];
  const other = Object.keys(COMFY_T5_WIDTHS).find((k) => k !== name)!;
  const said = `d_model, ${d.by}, is ${d.dModel}, ${held.title}'s (${COMFY_T5_WIDTHS[other].title}'s is ${COMFY_T5_WIDTHS[other].dModel})`;
  return { name, other, said, why: `the base is a ${held.title} encoder, not ${COMFY_T5_WIDTHS[other].title}: its ${said}` };
}

/**
 * Why a T5 encoder saved alone without a config.json (ComfyUI's `t5xxl_fp16.safetensors`, a byT5
 * glyph encoder file: transformers' keys `encoder.block.N…`) is not ComfyUI's `name` (`byt5_small`
 * or `t5xxl`), as its shapes tell (comfyT5ByShape): its `d_model` is the other one's. ComfyUI loads
 * such a file as that other encoder, whose model holds no keys of this one, so it leaves them
 * unloaded. Undefined for any other file, name or width.
 */
export function otherLoneT5(name: string, keys: readonly string[], shape: (key: string) => readonly number[] | undefined): string | undefined {
  if (!Object.hasOwn(COMFY_T5_WIDTHS, name)) return undefined;
  const held = comfyT5ByShape(keys, shape);
  if (held === undefined || held.name === name) return undefined;
  return `${held.why}; ComfyUI loads such a file as its ${held.name}, which holds no ${name} keys`;
}

/**
 * Why a T5 folder's config.json rules byT5 out (`config.json says …`): it gives a `d_model` and a `vocab_size`, neither
 * byT5's, and its `_name_or_path` names none (T5-XXL's 4096 and 32128, as FLUX.1's and SD3's
 * folders say); undefined where it says byT5 or does not say enough to tell.
 */
export function notByT5Config(config: unknown): string | undefined {
  if (typeof config !== 'object' || config === null || Array.isArray(config) || byT5Config(config)) return undefined;
  const { d_model: dModel, vocab_size: vocab } = config as Record<string, unknown>;
  if (typeof dModel !== 'number' || typeof vocab !== 'number') return undefined;
  return `config.json says d_model ${dModel} and vocab_size ${vocab}, not byT5's (d_model 1472, a vocabulary of 384 bytes)`;
}
