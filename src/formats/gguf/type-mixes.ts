/**
 * llama-quantize's file types that mix tensor types (llama-quant.cpp, llama_tensor_get_type_impl):
 * each mix says which GGML type a tensor it quantizes gets. Which tensors are quantized at all, and
 * the fallback for rows that are not whole blocks, stay the same as for one type
 * (quantize-rule.ts). One entry per mix; `--dtype` takes its name. Without an importance matrix,
 * as llama-quantize runs when given none: the mixes it refuses without one (Q2_K_S, IQ3_XXS,
 * IQ3_XS) are refused by name (REFUSED_MIXES). A mix whose llama-quantize name is also a GGML
 * type (Q2_K, Q6_K, IQ3_S, Q4_0, IQ4_XS, …) is offered as `<name>_mix`, since the type's own name
 * means that type throughout (as `--pure` writes it).
 *
 * Some rules count: attn_v's "more bits" layers and a dense model's ffn_down layers follow the
 * order llama-quantize meets the tensors in (its loader sorts them by block number, then by name),
 * so the context below is built from the whole model's tensor list.
 */
import { ggmlTypeByName } from './ggml-types.js';
import { llamaQuantizes } from './quantize-rule.js';

/** What a mix needs to know of the model beyond the tensor itself. */
export interface MixContext {
  /** general.architecture. */
  readonly architecture: string | undefined;
  /** Whether the model has its own `output.weight` (otherwise the token embedding is the head). */
  readonly hasOutput: boolean;
  /** `<arch>.expert_count`; 0 for a dense model. */
  readonly expertCount: number;
  /** llama.cpp sizes the model LLM_TYPE_70B, whose attn_v gets more bits. */
  readonly is70B: boolean;
  /** hparams.n_gqa() of layer 0: heads per key-value head, integer division (0 without key-value heads). */
  readonly gqa: number;
  /** Each attn_v-like tensor's place in llama-quantize's order (i_attention_wv), and how many there are. */
  readonly attentionV: { readonly index: ReadonlyMap<string, number>; readonly count: number };
  /** Each ffn_down tensor's layer as llama-quantize reckons it (layer_info), and the layer count. */
  readonly ffnDown: { readonly layer: ReadonlyMap<string, number>; readonly count: number };
}

/** One of llama-quantize's file types that mix tensor types, as `--dtype` offers it. */
export interface TypeMix {
  /** The `--dtype` name, upper case: llama-quantize's name for the file type (`Q4_K_M`), with `_MIX` where that is also a GGML type's name (`IQ3_S_MIX`). */
  readonly name: string;
  /** As llama-quantize names the file type: `Q4_K_M`, `IQ3_S`. */
  readonly fileTypeName: string;
  /** Its llama_ftype, written to general.file_type when every tensor it quantizes has its type. */
  readonly fileType: number;
  /** The type llama-quantize asks for this tensor (before the fallback for rows of `ne0` values). */
  typeOf(name: string, shape: readonly number[], model: MixContext): string;
  /** Which tensors get which type, in words (for `--dtype` and the page's menu). */
  readonly summary: string;
}

/** tensor_get_category, in its order of tests. */
type Category = 'output' | 'token_embd' | 'attn_v' | 'attn_k' | 'attn_q' | 'attn_output' | 'ffn_up' | 'ffn_gate' | 'ffn_down' | 'other';

function categoryOf(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'token_embd';
  // attn_qkv and attn_kv_b share attn_v's rules (category_is_attn_v).
  if (name.includes('attn_qkv.weight') || name.includes('attn_kv_b.weight') || name.includes('attn_v.weight')) return 'attn_v';
  if (name.includes('attn_k.weight')) return 'attn_k';
  if (name.includes('attn_q.weight')) return 'attn_q';
  if (name.includes('attn_output.weight')) return 'attn_output';
  if (name.includes('ffn_up')) return 'ffn_up';
  if (name.includes('ffn_gate')) return 'ffn_gate';
  if (name.includes('ffn_down')) return 'ffn_down';
  return 'other';
}

/** sscanf(name, "blk.%d.") as the loader's comparer reads it: the block number, or -1. */
function blockOf(name: string): number {
  const m = /^blk\.([+-]?\d+)/.exec(name);
  return m ? Number(m[1]) : -1;
}

/**
 * The tensors in the loader's weight_name_comparer order: block number (-1 for tensors outside
 * blocks), then name (its bytes; UTF-16 order is the same for the ASCII names GGUF tensors have).
 * Each name's block is read once: read in the comparer, it was two regular expressions for each of
 * the sort's comparisons (460 000 for 18 000 tensors out of order), most of the sort's time.
 */
function inLoaderOrder<T extends { name: string }>(tensors: readonly T[]): T[] {
  const keyed = tensors.map((t) => ({ t, block: blockOf(t.name) }));
  keyed.sort((a, b) => a.block - b.block || (a.t.name < b.t.name ? -1 : a.t.name > b.t.name ? 1 : 0));
  return keyed.map((k) => k.t);
}

/**
 * Architectures llama.cpp sizes LLM_TYPE_70B, by block count (each model's load_arch_hparams):
 * llama only where layer 0's key-value head count differs from its head count (0 included),
 * otherwise 65B; an 8-expert llama is never 70B, but its attn_v is Q8_0 whatever the size. Others
 * never get the 70B attn_v rule, qwen2vl included: since llama.cpp gave each architecture its own
 * loader class, qwen2vl's reads its rope sections and sets no size (older builds fell through to
 * qwen2's sizes).
 */
const SEVENTY_B: Readonly<Record<string, (blocks: number, heads: number, kvHeads: number) => boolean>> = {
  llama: (n, h, kv) => n === 80 && h !== kv,
  qwen2: (n) => n === 80,
  deci: (n) => n === 80,
  olmo: (n) => n === 80,
  jais2: (n) => n === 68,
};

/** A u32 metadata value, or the first of an array of them (per-layer head counts). */
function count(value: unknown): number {
  const first = Array.isArray(value) ? value[0] : value;
  const n = typeof first === 'bigint' ? Number(first) : first;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/** The context of a model with this metadata and these tensors (all shards'). */
export function mixContext(metadata: (key: string) => unknown, tensors: readonly { name: string; shape: readonly number[] }[]): MixContext {
  const arch = metadata('general.architecture');
  const architecture = typeof arch === 'string' ? arch : undefined;
  const key = (k: string) => metadata(`${architecture}.${k}`);
  const expertCount = count(key('expert_count'));
  const heads = count(key('attention.head_count'));
  // The loader takes head_count_kv as head_count when the key is missing; a 0 stays 0 (n_gqa 0,
  // and a llama of 80 blocks with 0 key-value heads is LLM_TYPE_70B: n_head() != n_head_kv()).
  const kvKey = key('attention.head_count_kv');
  const kv0 = kvKey === undefined ? heads : count(kvKey);
  const blocks = count(key('block_count'));
  const sorted = inLoaderOrder(tensors);
  const attentionV = new Map<string, number>();
  const ffnDown = new Map<string, number>();
  let vCount = 0;
  let downSeen = 0;
  for (const t of sorted) {
    const category = categoryOf(t.name);
    if (category === 'attn_v') vCount++;
    if (!llamaQuantizes(t.name, t.shape)) continue;
    if (category === 'attn_v') attentionV.set(t.name, attentionV.size);
    if (category === 'ffn_down') ffnDown.set(t.name, expertCount > 1 ? blockOf(t.name) : downSeen++);
  }
  return {
    architecture,
    hasOutput: tensors.some((t) => t.name === 'output.weight'),
    expertCount,
    is70B: !!architecture && (SEVENTY_B[architecture]?.(blocks, heads, kv0) ?? false),
    gqa: kv0 === 0 ? 0 : Math.floor(heads / kv0),
    attentionV: { index: attentionV, count: vCount },
    ffnDown: { layer: ffnDown, count: blocks },
  };
}

/** llama-quant.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
export function useMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/**
 * The output head (or the token embedding a model without one ties to it), whose rule comes first:
 * Q8_0 for Falcon or rows that are not whole blocks of the mix's default type, else Q6_K.
 */
function headType(shape: readonly number[], model: MixContext, defaultBlock: number): string {
  const ne0 = shape[shape.length - 1] ?? 1;
  return model.architecture === 'falcon' || ne0 % defaultBlock !== 0 ? 'Q8_0' : 'Q6_K';
}

const isHead = (name: string, model: MixContext) => categoryOf(name) === 'output' || (!model.hasOutput && categoryOf(name) === 'token_embd');

/**
 * MXFP4_MOE (gpt-oss's own format): stacked expert tensors (ne[2] > 1) MXFP4, every other
 * quantized matrix Q8_0, the head Q8_0 too. For bailingmoe3, whose attention projections are 3-D
 * too, only the expert FFN tensors take MXFP4.
 */
const MXFP4_MOE: TypeMix = {
  name: 'MXFP4_MOE',
  fileTypeName: 'MXFP4_MOE',
  fileType: 38,
  typeOf(name, shape, model) {
    if (isHead(name, model)) return 'Q8_0';
    const stacked = shape.length >= 3 && shape[shape.length - 3] > 1;
    const category = categoryOf(name);
    const expertFfn = category === 'ffn_up' || category === 'ffn_gate' || category === 'ffn_down';
    return stacked && (model.architecture !== 'bailingmoe3' || expertFfn) ? 'MXFP4' : 'Q8_0';
  },
  summary: 'gpt-oss’s own: stacked expert tensors MXFP4, the other matrices and the output head Q8_0',
};

type KMixName = 'Q3_K_S' | 'Q3_K_M' | 'Q3_K_L' | 'Q4_K_S' | 'Q4_K_M' | 'Q5_K_S' | 'Q5_K_M';

/** The K-quant mixes: llama_tensor_get_type_impl's branches for these file types, in its order. */
function kMix(name: KMixName, fileType: number, summary: string): TypeMix {
  const base = name.slice(0, 4); // Q3_K, Q4_K, Q5_K: the default type
  return {
    name,
    fileTypeName: name,
    fileType,
    summary,
    typeOf(tensor, shape, model) {
      if (isHead(tensor, model)) return headType(shape, model, 256);
      const falcon = model.architecture === 'falcon';
      const eightExperts = model.expertCount === 8;
      switch (categoryOf(tensor)) {
        case 'attn_v': {
          const i = model.attentionV.index.get(tensor) ?? 0;
          let type = base;
          if (name === 'Q3_K_M') type = i < 2 ? 'Q5_K' : 'Q4_K';
          else if (name === 'Q3_K_L') type = 'Q5_K';
          else if ((name === 'Q4_K_M' || name === 'Q5_K_M') && useMoreBits(i, model.attentionV.count)) type = 'Q6_K';
          else if (name === 'Q4_K_S' && i < 4) type = 'Q5_K';
          if (model.is70B && (type === 'Q3_K' || type === 'Q4_K')) type = 'Q5_K';
          return eightExperts ? 'Q8_0' : type;
        }
        case 'attn_k':
          return eightExperts ? 'Q8_0' : base;
        case 'ffn_down': {
          const i = model.ffnDown.layer.get(tensor) ?? 0;
          const n = model.ffnDown.count;
          if (name === 'Q3_K_M') return i < Math.floor(n / 16) ? 'Q5_K' : !falcon || useMoreBits(i, n) ? 'Q4_K' : 'Q3_K';
          if (name === 'Q3_K_L') return falcon ? 'Q4_K' : 'Q5_K';
          if (name === 'Q4_K_M') {
            if (falcon) return i < Math.floor(n / 16) ? 'Q6_K' : useMoreBits(i, n) ? 'Q5_K' : 'Q4_K';
            return useMoreBits(i, n) ? 'Q6_K' : base;
          }
          if (name === 'Q5_K_M' && useMoreBits(i, n)) return 'Q6_K';
          if (name === 'Q4_K_S' && !falcon && i < Math.floor(n / 8)) return 'Q5_K';
          return base;
        }
        case 'attn_output':
          if (!falcon) {
            if (eightExperts) return ['Q3_K_S', 'Q3_K_M', 'Q4_K_S', 'Q4_K_M'].includes(name) ? 'Q5_K' : base;
            return name === 'Q3_K_M' ? 'Q4_K' : name === 'Q3_K_L' ? 'Q5_K' : base;
          }
          return name === 'Q3_K_L' ? 'Q4_K' : base;
        default:
          return base;
      }
    },
  };
}

type LowMixName = 'Q2_K' | 'Q6_K' | 'IQ3_S' | 'IQ3_M';

/**
 * llama-quantize's Q2_K, Q6_K, IQ3_S and IQ3_M file types: llama_tensor_get_type_impl's branches
 * for them, in its order (none of them reaches the token-embedding, IQ2 or ffn_gate/ffn_up rules).
 * Their default type is Q2_K, Q6_K or IQ3_S (IQ3_M's too).
 */
function lowMix(fileTypeName: LowMixName, name: string, fileType: number, summary: string): TypeMix {
  const base: string = fileTypeName === 'IQ3_M' ? 'IQ3_S' : fileTypeName;
  return {
    name,
    fileTypeName,
    fileType,
    summary,
    typeOf(tensor, shape, model) {
      if (isHead(tensor, model)) return headType(shape, model, 256);
      const eightExperts = model.expertCount === 8;
      switch (categoryOf(tensor)) {
        case 'attn_v': {
          let type = base;
          if (fileTypeName === 'Q2_K') type = model.gqa >= 4 ? 'Q4_K' : 'Q3_K';
          else if (fileTypeName === 'IQ3_S' && model.gqa >= 4) type = 'Q4_K';
          else if (fileTypeName === 'IQ3_M') type = 'Q4_K';
          if (model.is70B && (type === 'Q3_K' || type === 'Q4_K')) type = 'Q5_K';
          return eightExperts ? 'Q8_0' : type;
        }
        case 'attn_k':
          return eightExperts ? 'Q8_0' : base;
        case 'ffn_down': {
          if (fileTypeName === 'Q2_K') return 'Q3_K';
          const i = model.ffnDown.layer.get(tensor) ?? 0;
          const n = model.ffnDown.count;
          if (fileTypeName === 'IQ3_M' && (i < Math.floor(n / 8) || (eightExperts && useMoreBits(i, n)))) return 'Q4_K';
          return base;
        }
        case 'attn_output':
          if (model.architecture === 'falcon' || fileTypeName === 'Q6_K') return base;
          if (eightExperts) return 'Q5_K';
          return fileTypeName === 'Q2_K' ? 'Q3_K' : fileTypeName === 'IQ3_M' ? 'Q4_K' : base;
        default:
          return base;
      }
    },
  };
}

type PlainMixName = 'Q1_0' | 'Q2_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'TQ1_0' | 'TQ2_0' | 'IQ4_NL' | 'IQ4_XS';

/**
 * llama-quantize's file types named after one type (Q4_0, IQ4_XS, TQ1_0, …), which without
 * `--pure` are still mixes: llama_tensor_get_type_impl's branches that reach them. Every one gives
 * the output head (the token embedding a model without one ties to it) Q6_K, or Q8_0 for Falcon or
 * rows that are not whole blocks of the main type, and an 8-expert model's attn_v and attn_k Q8_0.
 * IQ4_NL and IQ4_XS add attn_v Q5_K under grouped-query attention of 4 or more, the first eighth of
 * ffn_down Q5_K (that rule is for files without an importance matrix) and an 8-expert model's
 * attn_output Q5_K; TQ1_0, TQ2_0 and Q2_0 give an untied token embedding Q4_K. Q8_0's branches
 * all keep Q8_0, so it has no entry: `--dtype q8_0` is llama-quantize's Q8_0 file type.
 */
function plainMix(fileTypeName: PlainMixName, fileType: number, summary: string): TypeMix {
  const base: string = fileTypeName;
  const block = ggmlTypeByName(base)!.blockSize;
  const iq4 = base === 'IQ4_NL' || base === 'IQ4_XS';
  return {
    name: `${fileTypeName}_MIX`,
    fileTypeName,
    fileType,
    summary,
    typeOf(tensor, shape, model) {
      if (isHead(tensor, model)) return headType(shape, model, block);
      const eightExperts = model.expertCount === 8;
      switch (categoryOf(tensor)) {
        case 'token_embd':
          return base === 'TQ1_0' || base === 'TQ2_0' || base === 'Q2_0' ? 'Q4_K' : base;
        case 'attn_v':
          // The 70B rule raises only Q3_K and Q4_K, which none of these gives attn_v.
          return eightExperts ? 'Q8_0' : iq4 && model.gqa >= 4 ? 'Q5_K' : base;
        case 'attn_k':
          return eightExperts ? 'Q8_0' : base;
        case 'ffn_down': {
          const i = model.ffnDown.layer.get(tensor) ?? 0;
          return iq4 && i < Math.floor(model.ffnDown.count / 8) ? 'Q5_K' : base;
        }
        case 'attn_output':
          return iq4 && eightExperts && model.architecture !== 'falcon' ? 'Q5_K' : base;
        default:
          return base;
      }
    },
  };
}

/** The registry of mixes `--dtype` offers, in the order the CLI and the page list them. */
export const TYPE_MIXES: readonly TypeMix[] = [
  plainMix('Q1_0', 40, 'Q1_0, with the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('Q2_0', 41, 'Q2_0, with the untied token embedding Q4_K, the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('Q4_0', 2, 'Q4_0, with the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('Q4_1', 3, 'Q4_1, with the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('Q5_0', 8, 'Q5_0, with the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('Q5_1', 9, 'Q5_1, with the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('TQ1_0', 36, 'TQ1_0, with the untied token embedding Q4_K, the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  plainMix('TQ2_0', 37, 'TQ2_0, with the untied token embedding Q4_K, the output head Q6_K and, in an 8-expert model, attn_v and attn_k Q8_0'),
  lowMix('Q2_K', 'Q2_K_MIX', 10, 'Q2_K, with attn_v Q4_K (Q3_K without grouped-query attention of 4 or more), ffn_down and attn_output Q3_K; the output head Q6_K'),
  kMix('Q3_K_S', 11, 'Q3_K throughout, the output head Q6_K'),
  kMix('Q3_K_M', 12, 'Q3_K, with attn_v Q4_K (the first two Q5_K), ffn_down Q4_K (the first sixteenth Q5_K), attn_output Q4_K; the output head Q6_K'),
  kMix('Q3_K_L', 13, 'Q3_K, with attn_v, ffn_down and attn_output Q5_K; the output head Q6_K'),
  kMix('Q4_K_S', 14, 'Q4_K, with the first four attn_v and the first eighth of ffn_down Q5_K; the output head Q6_K'),
  kMix('Q4_K_M', 15, 'Q4_K, with half of attn_v and ffn_down (the first and last eighth, every third between) Q6_K; the output head Q6_K'),
  kMix('Q5_K_S', 16, 'Q5_K throughout, the output head Q6_K'),
  kMix('Q5_K_M', 17, 'Q5_K, with half of attn_v and ffn_down Q6_K; the output head Q6_K'),
  lowMix('Q6_K', 'Q6_K_MIX', 18, 'Q6_K throughout (attn_v and attn_k Q8_0 in an 8-expert model), the output head Q6_K'),
  lowMix('IQ3_S', 'IQ3_S_MIX', 26, 'IQ3_S, with attn_v Q4_K under grouped-query attention of 4 or more; the output head Q6_K'),
  lowMix('IQ3_M', 'IQ3_M', 27, 'IQ3_S, with attn_v, attn_output and the first eighth of ffn_down Q4_K; the output head Q6_K'),
  plainMix('IQ4_NL', 25, 'IQ4_NL, with attn_v Q5_K under grouped-query attention of 4 or more and the first eighth of ffn_down Q5_K; the output head Q6_K'),
  plainMix('IQ4_XS', 30, 'IQ4_XS, with attn_v Q5_K under grouped-query attention of 4 or more and the first eighth of ffn_down Q5_K; the output head Q6_K'),
  MXFP4_MOE,
];

/**
 * llama-quantize's file types it writes only with an importance matrix, which `--dtype` does not
 * write (`--imatrix` weights the re-quantization of a base's own types, it chooses no mix): named
 * to be refused with the reason (current llama-quant.cpp,
 * tensor_requires_imatrix: IQ3_XXS, IQ2_* and IQ1_* tensors other than the embedding and the head,
 * and Q2_K tensors of a Q2_K_S file).
 */
export const REFUSED_MIXES: Readonly<Record<string, string>> = {
  Q2_K_S: 'llama-quantize writes its Q2_K_S file type only with an importance matrix (its Q2_K tensors need one); loramerge does not write this file type, with --imatrix or without',
  IQ3_XS: 'llama-quantize\'s IQ3_XS file type gives attn_q, attn_k (without 8 experts) and the middle layers\' ffn_gate and ffn_up IQ3_XXS, which current llama-quantize writes only with an importance matrix; loramerge does not write this file type, with --imatrix or without',
  IQ3_XXS_MIX: 'llama-quantize\'s IQ3_XXS file type gives most tensors IQ3_XXS and attn_q/attn_k IQ2_S, which current llama-quantize writes only with an importance matrix; loramerge does not write this file type, with --imatrix or without',
};

/**
 * `_mix` names of llama-quantize's file types whose rules keep their one type for every tensor:
 * refused with the type's own name, which writes the same file.
 */
export const PURE_FILE_TYPES: Readonly<Record<string, string>> = {
  Q8_0_MIX: 'llama-quantize\'s Q8_0 file type gives every tensor it quantizes Q8_0 (its output head too), so there is no Q8_0 mix; --dtype q8_0 writes that file',
};

/** The mix of this name (any case), or undefined. */
export function typeMix(name: string): TypeMix | undefined {
  const upper = name.toUpperCase();
  return TYPE_MIXES.find((m) => m.name === upper);
}
