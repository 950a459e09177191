/**
 * Whether a PEFT adapter's `base_model_name_or_path` names another model family than the base it is
 * merged into. PEFT itself does not compare the two when it loads an adapter (`PeftModel.from_pretrained`
 * only reads the name to find a base when none is given), and shapes that differ are refused by the
 * plan anyway; what remains is a LoRA trained on one family merged into another of the same sizes,
 * which writes a model without a word. One warning line says so; nothing is refused, since local
 * paths, organisation renames and fine-tunes ("-Instruct" on its base) are common and harmless.
 *
 * Names are compared by family words only ("llama", "qwen", "gemma", …): an adapter name holding
 * none of them (a local folder, a fine-tune's own name) says nothing; an organisation's name is no
 * model's ("mistralai/Mixtral-…"). The base's family is read from config.json's `model_type`, its
 * `text_config.model_type`, `architectures` and `_name_or_path`; a family word matches when any of
 * them contains it.
 */
import type { ModelConfig } from './model-config.js';
import { modelArchitectures, textConfig } from './model-config.js';

/**
 * Family words, each as it is found in a model's name, and what it matches in the base's identifiers
 * (lowercased model_type, architectures, name). Words that name several architectures across their
 * releases (DeepSeek: Llama for deepseek-coder, its own for V2/V3) are not listed: they tell nothing.
 */
const FAMILIES: readonly { word: string; inName: RegExp; inBase: readonly string[] }[] = [
  { word: 'Llama', inName: /llama/, inBase: ['llama'] },
  { word: 'Qwen', inName: /qwen/, inBase: ['qwen'] },
  // Mixtral first: its name holds no "mistral", and Mistral's checkpoints are not Mixtral's.
  { word: 'Mixtral', inName: /mixtral/, inBase: ['mixtral'] },
  { word: 'Mistral', inName: /mistral/, inBase: ['mistral'] },
  { word: 'Gemma', inName: /gemma/, inBase: ['gemma'] },
  // "phi" inside a word ("dolphin") is no family; Phi's names give a version after it (phi-2, Phi-3.5, phi4).
  { word: 'Phi', inName: /(^|[^a-z])phi[-_]?\d/, inBase: ['phi'] },
  // Falcon3 is a Llama model; Falcon-H1 and Falcon-Mamba have model_types of their own.
  { word: 'Falcon', inName: /falcon/, inBase: ['falcon', 'llama'] },
  { word: 'OLMo', inName: /olmo/, inBase: ['olmo'] },
  { word: 'Granite', inName: /granite/, inBase: ['granite'] },
  // SmolLM and SmolLM2 are Llama models; SmolLM3 has a model_type of its own.
  { word: 'SmolLM', inName: /smollm/, inBase: ['smollm', 'llama'] },
  { word: 'GPT-2', inName: /(^|[^a-z])gpt-?2/, inBase: ['gpt2'] },
];

function familiesIn(text: string): typeof FAMILIES[number][] {
  const lower = modelName(text).toLowerCase();
  return FAMILIES.filter((f) => f.inName.test(lower));
}

/**
 * The model's own name in a Hub id or a path, without the organisation ("mistralai/Mixtral-8x7B"
 * is no Mistral model) nor the folders around it: the last segment that is not a Hub cache's
 * `snapshots/<commit>` or a trainer's `checkpoint-N`, and in a Hub cache folder
 * (`models--org--name`) the part after the organisation.
 */
function modelName(text: string): string {
  const segments = text.split(/[\\/]/).filter((s) => s !== '' && s !== 'snapshots' && !/^[0-9a-f]{7,64}$/i.test(s) && !/^checkpoint-\d+$/.test(s));
  const last = segments[segments.length - 1] ?? '';
  return last.startsWith('models--') ? last.slice(last.lastIndexOf('--') + 2) : last;
}

/**
 * One warning line when the adapter's `base_model_name_or_path` names a model family (by a family
 * word in it) and the base's config.json says none of the families it names; undefined otherwise
 * (no name, no family word in it, no config, or a family that matches).
 */
export function baseIdentityWarning(adapterName: string, adapterConfig: Readonly<Record<string, unknown>>, config: ModelConfig | undefined): string | undefined {
  const said = adapterConfig.base_model_name_or_path;
  if (typeof said !== 'string' || said.trim() === '' || config === undefined) return undefined;
  const named = familiesIn(said);
  if (named.length === 0) return undefined;
  const raw = config.raw;
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : undefined;
  const textType = textConfig(config)?.model_type;
  const nameOrPath = typeof raw._name_or_path === 'string' ? raw._name_or_path : undefined;
  const architectures = modelArchitectures(config);
  const identifiers = [modelType, typeof textType === 'string' ? textType : undefined, ...architectures, nameOrPath && modelName(nameOrPath)]
    .filter((s): s is string => s !== undefined && s !== '')
    .map((s) => s.toLowerCase());
  // A config with nothing to compare says nothing.
  if (identifiers.length === 0) return undefined;
  if (named.some((f) => f.inBase.some((b) => identifiers.some((id) => id.includes(b))))) return undefined;
  const baseSays = [
    modelType ? `model_type "${modelType}"` : '',
    architectures.length ? `architectures ${architectures.join(', ')}` : '',
    nameOrPath ? `_name_or_path "${oneLine(nameOrPath)}"` : '',
  ].filter(Boolean).join(', ');
  const families = named.map((f) => f.word).join('/');
  return `${adapterName}: adapter_config.json says it was trained on "${oneLine(said)}" (a ${families} model), but the base's config.json says ${baseSays}: the merge goes on where the shapes fit; check that this is the base the adapter was trained on`;
}

/** A config value on one line, cut short: it ends up inside a warning line. */
function oneLine(value: string): string {
  const line = value.replace(/\s+/g, ' ').trim();
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}
