/**
 * An adapter's α and scales in words, as the page's adapter cards and the CLI's plan both state
 * them: α and α/r (α/√r under rsLoRA, α/(r + h) for GraLoRA…) only for modules whose α is the
 * file's or config's own and is divided into their scale; a factor a method defines by what it is
 * (C3A's `scale = 1/in = 0.0625`); nothing for methods without a scale of their own, whose α and
 * scale are placeholders (RoAd, HiRA, OFT, VeRA, a full diff…).
 */
import type { AdapterModule } from './adapter.js';

/** `0.5`, or `0.25–1` over distinct values (4 significant digits); `—` for none. */
export function valueRange(values: readonly number[]): string {
  const distinct = [...new Set(values.map((v) => Number(v.toPrecision(4))))].sort((a, b) => a - b);
  if (distinct.length === 0) return '—';
  return distinct.length === 1 ? String(distinct[0]) : `${distinct[0]}–${distinct[distinct.length - 1]}`;
}

/** `α = 16`, `α/r = 0.5`, `scale = 1/in = 0.0625`: the facts of these modules' scales, in this order. */
export function scaleFacts(modules: readonly AdapterModule[]): string[] {
  const stated: number[] = [], unstated: number[] = [];
  const byRule = new Map<string, number[]>();
  for (const m of modules) {
    const origin = m.scaleOrigin;
    if (!origin || m.update.kind === 'none') continue;
    const label = origin.kind === 'alpha' ? origin.rule : `scale = ${origin.what}`;
    if (origin.kind === 'alpha') (origin.stated ? stated : unstated).push(m.alpha);
    // Pushed, not copied: a MoE adapter has tens of thousands of modules under one rule.
    const scales = byRule.get(label);
    if (scales) scales.push(m.scale);
    else byRule.set(label, [m.scale]);
  }
  const facts: string[] = [];
  if (stated.length) facts.push(`α = ${valueRange(stated)}`);
  // α = r (kohya, diffusers) where the file states none: scale 1, said so rather than shown as the file's.
  if (unstated.length) {
    facts.push(stated.length
      ? `${unstated.length} module${unstated.length === 1 ? '' : 's'} without α (α = ${valueRange(unstated)})`
      : `α = ${valueRange(unstated)} (none in the file)`);
  }
  for (const [label, scales] of byRule) facts.push(`${label} = ${valueRange(scales)}`);
  return facts;
}
