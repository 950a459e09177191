/**
 * What a written adapter means, read plainly in float64: per module ΔW = α/r·B·A, from a PEFT
 * folder (r, lora_alpha, rank_pattern and alpha_pattern keyed by full module path, as the writer
 * writes them) or a kohya file (`.alpha` over lora_down's rows). For checking combine, resize and
 * extract outputs against truth computed in the test.
 */
import { decodeSafetensors } from './fixtures.js';
import { product, type Dense } from './svd-reference.js';

const asDense = (t: { shape: number[]; values: Float64Array }): Dense => ({ rows: t.shape[0], cols: t.values.length / t.shape[0], data: t.values });

function scaled(d: Dense, s: number): Dense {
  return { rows: d.rows, cols: d.cols, data: d.data.map((x) => x * s) };
}

/** Module path → α/r·B·A of a PEFT folder's two files. */
export function peftUpdates(configText: string, weights: Uint8Array): Map<string, Dense> {
  const config = JSON.parse(configText) as { r: number; lora_alpha: number; rank_pattern?: Record<string, number>; alpha_pattern?: Record<string, number> };
  const tensors = decodeSafetensors(weights).tensors;
  const out = new Map<string, Dense>();
  for (const [key, a] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(key);
    if (!m) continue;
    const b = tensors.get(`base_model.model.${m[1]}.lora_B.weight`)!;
    const r = config.rank_pattern?.[m[1]] ?? config.r;
    const alpha = config.alpha_pattern?.[m[1]] ?? config.lora_alpha;
    if (a.shape[0] !== r) throw new Error(`${m[1]}: lora_A has ${a.shape[0]} rows but the config says r = ${r}`);
    out.set(m[1], scaled(product(asDense(b), asDense(a)), alpha / r));
  }
  return out;
}

/** kohya key → α/r·up·down of a kohya file. */
export function kohyaUpdates(file: Uint8Array): Map<string, Dense> {
  const tensors = decodeSafetensors(file).tensors;
  const out = new Map<string, Dense>();
  for (const [key, down] of tensors) {
    const m = /^(.+)\.lora_down\.weight$/.exec(key);
    if (!m) continue;
    const up = tensors.get(`${m[1]}.lora_up.weight`)!;
    const alpha = tensors.get(`${m[1]}.alpha`)!.values[0];
    out.set(m[1], scaled(product(asDense(up), asDense(down)), alpha / down.shape[0]));
  }
  return out;
}

/** ‖x − y‖_F / ‖y‖_F. */
export function relativeError(x: Dense, y: Dense): number {
  let d = 0, n = 0;
  for (let i = 0; i < y.data.length; i++) {
    d += (x.data[i] - y.data[i]) ** 2;
    n += y.data[i] ** 2;
  }
  return Math.sqrt(d / n);
}
