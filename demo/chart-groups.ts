/**
 * Which block of the model a base tensor belongs to, for the chart's x axis: transformer layers,
 * a diffusion UNet's down/mid/up blocks (diffusers and single-file names), a diffusion
 * transformer's double/single blocks, and text encoders apart from the rest. Rules are data: a new
 * architecture is one more line.
 */
export interface BlockGroup {
  /** Section of the model, in the order sections are shown (first seen first). */
  section: string;
  /** Index inside the section, or -1 for a section without one. */
  index: number;
  label: string;
}

interface Rule {
  pattern: RegExp;
  section: (m: RegExpExecArray) => string;
}

/** First match wins: text encoders before the generic layer rule (they have `layers.N` too). */
const RULES: Rule[] = [
  { pattern: /(?:conditioner\.embedders\.(\d+)|text_encoder_?(\d)?|cond_stage_model|text_model)\b.*?(?:layers|resblocks)\.(\d+)\./, section: (m) => `text encoder${m[1] !== undefined ? ` ${Number(m[1]) + 1}` : m[2] ? ` ${m[2]}` : ''}` },
  { pattern: /(?:^|\.)(down_blocks|up_blocks|input_blocks|output_blocks)\.(\d+)\./, section: (m) => ({ down_blocks: 'down', input_blocks: 'input', up_blocks: 'up', output_blocks: 'output' })[m[1]]! },
  { pattern: /(?:^|\.)(mid_block|middle_block)\./, section: () => 'mid' },
  { pattern: /(?:^|\.)(double_blocks|joint_blocks|transformer_blocks)\.(\d+)\./, section: () => 'block' },
  { pattern: /(?:^|\.)(single_blocks|single_transformer_blocks)\.(\d+)\./, section: () => 'single block' },
  { pattern: /(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\./, section: () => 'layer' },
];

export function blockOf(baseKey: string): BlockGroup {
  for (const rule of RULES) {
    const m = rule.pattern.exec(baseKey);
    if (!m) continue;
    const section = rule.section(m);
    const digits = [...m].slice(1).reverse().find((g) => g !== undefined && /^\d+$/.test(g));
    const index = digits === undefined || section === 'mid' ? -1 : Number(digits);
    const label = index < 0 ? section : section.startsWith('text encoder') ? `${section} · layer ${index}` : `${section} ${index}`;
    return { section, index, label };
  }
  return { section: 'other', index: -1, label: 'other' };
}

/** Orders groups: sections as first seen (the base's own order), 'other' last, indices ascending. */
export function orderGroups(groups: BlockGroup[]): BlockGroup[] {
  const sections: string[] = [];
  for (const g of groups) if (!sections.includes(g.section)) sections.push(g.section);
  const rank = (s: string) => (s === 'other' ? Infinity : sections.indexOf(s));
  return groups.slice().sort((a, b) => rank(a.section) - rank(b.section) || a.index - b.index);
}
