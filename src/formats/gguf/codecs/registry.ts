/** The GGML types loramerge decodes and writes, by name: one codec file each. */
import type { GgmlType } from '../ggml-types.js';
import type { BlockCodec } from './codec.js';
import { BF16_CODEC, F16_CODEC, F32_CODEC } from './float-codecs.js';
import { Q2_K_CODEC } from './q2_k.js';
import { Q3_K_CODEC } from './q3_k.js';
import { Q4_0_CODEC } from './q4_0.js';
import { Q4_1_CODEC } from './q4_1.js';
import { Q4_K_CODEC } from './q4_k.js';
import { Q5_0_CODEC } from './q5_0.js';
import { Q5_1_CODEC } from './q5_1.js';
import { Q5_K_CODEC } from './q5_k.js';
import { Q6_K_CODEC } from './q6_k.js';
import { Q8_0_CODEC } from './q8_0.js';

const CODECS: readonly BlockCodec[] = [
  F32_CODEC, F16_CODEC, BF16_CODEC,
  Q8_0_CODEC, Q4_0_CODEC, Q4_1_CODEC, Q5_0_CODEC, Q5_1_CODEC,
  Q2_K_CODEC, Q3_K_CODEC, Q4_K_CODEC, Q5_K_CODEC, Q6_K_CODEC,
];

const BY_NAME = new Map(CODECS.map((c) => [c.type.name, c]));

export function blockCodec(type: GgmlType): BlockCodec | undefined {
  return BY_NAME.get(type.name);
}

/** Names of the types with a codec, for messages and `--dtype`. */
export const CODEC_TYPE_NAMES: readonly string[] = CODECS.map((c) => c.type.name);
