/**
 * `convert`'s general.* keys: what llama.cpp's convert_lora_to_gguf.py writes to a LoRA GGUF from the
 * adapter's folder (ModelBase.prepare_metadata with dir_model_card = the LoRA folder; gguf-py's
 * Metadata.load, get_model_id_components, id_to_title, set_gguf_meta_model; GGUFWriter's
 * get_total_parameter_count, which counts a LoRA's pairs as out × A's last numpy dim, negated).
 * Each expectation below is worked out by hand from those functions, written plainly.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { idComponents, idToTitle } from '../src/formats/gguf/gguf-lora-card.js';
import { convertLora } from '../src/node.js';
import { MAX_CONFIG_BYTES } from '../src/limits.js';
import { errorLines, runCli } from './helpers/cli.js';
import { buildSafetensors, seededRandom, tempDirs } from './helpers/fixtures.js';
import { readGguf } from './helpers/gguf-builder.js';
import { LLAMA, splitF16Llama } from './helpers/gguf-models.js';

const temp = tempDirs();
afterAll(temp.removeAll);
const BASE_PART = 'tiny-llama-F16-00001-of-00002.gguf';
const { hidden: h, vocab } = LLAMA;

/** A PEFT LoRA of the tiny llama: q_proj (h × h) and the token embedding (lora_embedding_A (8, vocab), B (h, 8)), r 8. */
function peftFolder(extra: Record<string, string | Uint8Array> = {}): Record<string, string | Uint8Array> {
  const rand = seededRandom(5);
  const f = (n: number) => Float64Array.from({ length: n }, () => 0.01 * (rand() - 0.5));
  const config = { peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: 'meta-llama/Llama-3.2-1B', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'embed_tokens'] };
  return {
    'adapter_config.json': JSON.stringify(config),
    'adapter_model.safetensors': buildSafetensors([
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [8, h], data: f(8 * h) },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [h, 8], data: f(h * 8) },
      { name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: 'F32', shape: [8, vocab], data: f(8 * vocab) },
      { name: 'base_model.model.model.embed_tokens.lora_embedding_B', dtype: 'F32', shape: [h, 8], data: f(h * 8) },
    ]),
    ...extra,
  };
}

/** Converts the adapter folder `folder` (with `extra` files) and returns the GGUF's keys in order, and stderr. */
async function convert(folder: string, extra: Record<string, string | Uint8Array> = {}): Promise<{ keys: [string, unknown][]; stderr: string }> {
  const base = splitF16Llama();
  const files = Object.fromEntries(Object.entries(peftFolder(extra)).map(([k, v]) => [`${folder}/${k}`, v]));
  const dir = temp.make({ ...base.files, ...files });
  const out = join(dir, 'lora.gguf');
  const run = await runCli(['convert', '--adapter', join(dir, folder), '--base', join(dir, BASE_PART), '--out', out]);
  expect(run.code, run.stderr).toBe(0);
  const file = readGguf(readFileSync(out));
  return { keys: [...file.metadata].map(([k, v]) => [k, v.value]), stderr: run.stderr };
}

/** The keys from general.architecture to adapter.lora.alpha. */
const head = (keys: [string, unknown][]) => keys.slice(0, keys.findIndex(([k]) => k === 'adapter.lora.alpha') + 1);

describe("convert writes convert_lora_to_gguf.py's general.* keys", () => {
  // This LoRA's size as gguf-py counts it: q_proj's lora_b (h, 8) → (h, A's last h) = h·h; token_embd's
  // lora_a is written transposed, ne (8, vocab), numpy (vocab, 8): lora_b (h, 8) → (h, 8) = 8·h. Negated.
  const total = -(h * h + h * 8);
  it(`the LoRA's counted size is ${total} (|total| // 8 = ${Math.floor(-total / 8)}), which decides 4k (finetune) and 9k (size label) below`, () => {
    expect(Math.floor(-total / 8)).toBe(8448);
  });

  it('from the folder name alone (no README.md): general.name title-cased, basename, size label, finetune and version split as a model id', async () => {
    const { keys } = await convert('Llama-3.2-1B-4k-9k-Instruct-v2-lora');
    // Parts: Llama · 3.2 (version, kept in the basename) · 1B (size) · 4k (4000 < 8448: a context length, finetune)
    // · 9k (9000 ≥ 8448: size, 9K) · Instruct (finetune) · v2 (version) · lora (a LoRA's own type, dropped).
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      ['general.name', 'Llama 3.2 1B 4k 9k Instruct v2 Lora'],
      ['general.version', 'v2'],
      ['general.finetune', '4k-Instruct'],
      ['general.basename', 'Llama-3.2'],
      ['general.size_label', '1B-9K'],
      ['adapter.lora.alpha', 16],
    ]);
  });

  it("from PEFT's README.md (base_model, pipeline_tag, tags) and the folder name", async () => {
    const readme = [
      '---', 'base_model: meta-llama/Llama-3.2-1B', 'library_name: peft', 'pipeline_tag: text-generation', 'tags:',
      '- base_model:adapter:meta-llama/Llama-3.2-1B', '- lora', '- transformers', '---', '', '# Model Card for Model ID', '',
    ].join('\n');
    const { keys } = await convert('my-adapter', { 'README.md': readme });
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      // "my-adapter": both words basename, no size, finetune or version, so no basename either.
      ['general.name', 'My Adapter'],
      ['general.base_model.count', 1],
      // meta-llama/Llama-3.2-1B: 3.2 is part of the basename, so no version.
      ['general.base_model.0.name', 'Llama 3.2 1B'],
      ['general.base_model.0.organization', 'Meta Llama'],
      ['general.base_model.0.repo_url', 'https://huggingface.co/meta-llama/Llama-3.2-1B'],
      ['general.tags', ['base_model:adapter:meta-llama/Llama-3.2-1B', 'lora', 'transformers', 'text-generation']],
      ['adapter.lora.alpha', 16],
    ]);
  });

  it("TRL's README.md names the model (model_name), taken as it is; license as written", async () => {
    const readme = [
      '---', 'base_model: Qwen/Qwen2.5-0.5B', 'library_name: transformers', 'model_name: Llama-3.2-1B-SFT', 'license: apache-2.0',
      'tags:', '- generated_from_trainer', '- trl', '- sft', 'licence: license', '---', '', '# Model Card for Llama-3.2-1B-SFT',
    ].join('\n');
    const { keys } = await convert('outputs', { 'README.md': readme });
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      ['general.name', 'Llama-3.2-1B-SFT'],
      ['general.license', 'apache-2.0'],
      ['general.base_model.count', 1],
      ['general.base_model.0.name', 'Qwen2.5 0.5B'],
      ['general.base_model.0.organization', 'Qwen'],
      ['general.base_model.0.repo_url', 'https://huggingface.co/Qwen/Qwen2.5-0.5B'],
      ['general.tags', ['generated_from_trainer', 'trl', 'sft']],
      ['adapter.lora.alpha', 16],
    ]);
  });

  it("a Llama 3 card's front matter (license other + license_name/link, a folded gated prompt, nested gated fields with a quoted key, base_model as a list, language): its keys, with the folder's", async () => {
    const readme = [
      '---', 'license: other', 'license_name: llama3', 'license_link: LICENSE', 'extra_gated_prompt: >-',
      '  ### META LLAMA 3 COMMUNITY LICENSE AGREEMENT', '', '  Meta Llama 3 Version Release Date: April 18, 2024',
      'extra_gated_fields:', '  First Name: text', '  Date of birth: date_picker', '  "I accept the terms": checkbox', '  geo: ip_location',
      'extra_gated_button_content: Submit', 'base_model:', '- meta-llama/Meta-Llama-3-8B', 'language:', '- en',
      'pipeline_tag: text-generation', '---', '', '# Model card',
    ].join('\n');
    const { keys } = await convert('Llama-3-8B-Instruct-lora-v0.2', { 'README.md': readme });
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      // The folder: Llama · 3 (version, in the basename) · 8B (size: 8e9 ≥ 8448) · Instruct (finetune) · lora (dropped) · v0.2 (version).
      ['general.name', 'Llama 3 8B Instruct Lora v0.2'],
      ['general.version', 'v0.2'],
      ['general.finetune', 'Instruct'],
      ['general.basename', 'Llama-3'],
      ['general.size_label', '8B'],
      ['general.license', 'other'],
      ['general.license.name', 'llama3'],
      ['general.license.link', 'LICENSE'],
      ['general.base_model.count', 1],
      ['general.base_model.0.name', 'Meta Llama 3 8B'],
      ['general.base_model.0.organization', 'Meta Llama'],
      ['general.base_model.0.repo_url', 'https://huggingface.co/meta-llama/Meta-Llama-3-8B'],
      ['general.tags', ['text-generation']],
      ['general.languages', ['en']],
      ['adapter.lora.alpha', 16],
    ]);
  });

  it('base_model entries that are mappings are written as they are (name, author, a block-scalar description, repo_url), beside an id and an entry of no known kind (counted, empty)', async () => {
    const readme = [
      '---', 'base_model:', '- name: Llama', '  repo_url: https://example.com', '  author: Meta', '  description: |', '    The base.', '    Two lines.',
      '- meta-llama/Llama-3.1-8B', '- 42', 'description: |', '  A LoRA.', '  Second line.', '"name": "My LoRA"', "'author': Jane", 'version: v1.2',
      'license: [mit, apache-2.0]', 'model-index:', '- name: qlora-out', '  results: []', '---',
    ].join('\n');
    const { keys } = await convert('my-adapter', { 'README.md': readme });
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      ['general.name', 'My LoRA'],
      ['general.author', 'Jane'],
      ['general.version', 'v1.2'],
      ['general.description', 'A LoRA.\nSecond line.\n'],
      ['general.license', 'mit,apache-2.0'],
      ['general.base_model.count', 3],
      // A mapping's keys in set_gguf_meta_model's order: name, author, version, organization, description, url, doi, uuid, repo_url.
      ['general.base_model.0.name', 'Llama'],
      ['general.base_model.0.author', 'Meta'],
      ['general.base_model.0.description', 'The base.\nTwo lines.\n'],
      ['general.base_model.0.repo_url', 'https://example.com'],
      // meta-llama/Llama-3.1-8B: 3.1 stays in the basename, so no version.
      ['general.base_model.1.name', 'Llama 3.1 8B'],
      ['general.base_model.1.organization', 'Meta Llama'],
      ['general.base_model.1.repo_url', 'https://huggingface.co/meta-llama/Llama-3.1-8B'],
      // 42 is an int: "not in a known format", an empty entry.
      ['adapter.lora.alpha', 16],
    ]);
  });

  it('YAML 1.1 values that are no strings but Python-false (version: 0, name: no) write nothing and keep the folder\'s out, as gguf-py does', async () => {
    const { keys } = await convert('Llama-3-8B-v2', { 'README.md': ['---', 'version: 0', 'name: no', '---'].join('\n') });
    // No general.name and no general.version: the card's 0 and False are not None, so the folder's "Llama 3 8B v2" and "v2" never fill them.
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      ['general.basename', 'Llama-3'],
      ['general.size_label', '8B'],
      ['adapter.lora.alpha', 16],
    ]);
  });

  it("generation_config.json's sampling settings: general.sampling.* first (float32 and int32 as gguf-py packs them), then the rest", async () => {
    const generation = JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.9, top_k: 20, min_p: 0, bos_token_id: 1, penalty_last_n: null });
    const { keys } = await convert('my-adapter', { 'generation_config.json': generation });
    expect(head(keys)).toEqual([
      ['general.architecture', 'llama'], ['general.type', 'adapter'], ['adapter.type', 'lora'],
      ['general.sampling.top_k', 20],
      ['general.sampling.top_p', Math.fround(0.9)],
      ['general.sampling.min_p', 0],
      ['general.sampling.temp', Math.fround(0.6)],
      ['general.name', 'My Adapter'],
      ['adapter.lora.alpha', 16],
    ]);
  });
});

describe('convert refuses where convert_lora_to_gguf.py stops on the folder', () => {
  const cases: [string, Record<string, string>, string][] = [
    ['a YAML 1.1 float as version', { 'README.md': '---\nversion: 1.0\n---\n' },
      'README.md front matter "version" is the number 1.0, not a string, and convert_lora_to_gguf.py stops on it (gguf-py writes general.version only from a string); fix or remove the file'],
    ['a mapping entry with a number', { 'README.md': '---\ndatasets:\n- name: Mine\n  version: 2\n---\n' },
      'README.md front matter "datasets" entry 0\'s "version" is the number 2, not a string, and convert_lora_to_gguf.py stops on it (gguf-py writes general.dataset.0.version only from a string); fix or remove the file'],
    ['a tag safe_load refuses', { 'README.md': '---\nfoo: !custom bar\n---\n' },
      "README.md front matter has the tag !custom, which PyYAML's safe_load refuses, and convert_lora_to_gguf.py stops on it; fix or remove the file"],
    ['top_k written as a float', { 'generation_config.json': '{"top_k": 40.0}' },
      'generation_config.json "top_k" is 40 written as a float, not an integer, and convert_lora_to_gguf.py stops on it (gguf-py writes general.sampling.top_k as a int32); fix or remove the file'],
  ];
  for (const [what, extra, message] of cases) {
    it(`${what}: one line, nothing written`, async () => {
      const base = splitF16Llama();
      const files = Object.fromEntries(Object.entries(peftFolder(extra)).map(([k, v]) => [`my-adapter/${k}`, v]));
      const dir = temp.make({ ...base.files, ...files });
      const out = join(dir, 'lora.gguf');
      const run = await runCli(['convert', '--adapter', join(dir, 'my-adapter'), '--base', join(dir, BASE_PART), '--out', out]);
      expect(run.code).not.toBe(0);
      const lines = errorLines(run.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`my-adapter: ${message}`);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(out)).toBe(false);
    });
  }
});

describe('convert refuses a README.md, config.json or generation_config.json that is not UTF-8, as convert_lora_to_gguf.py stops on it', () => {
  // gguf-py's Metadata.load opens README.md, config.json and generation_config.json with
  // encoding="utf-8"; f.read() raises UnicodeDecodeError, which load_generation_config's
  // except (json.JSONDecodeError, IOError) does not catch either (it is a ValueError).
  const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
  const cases: { name: string; bytes: Uint8Array; shown: string }[] = [
    { name: 'README.md', bytes: latin1('---\nlicense: mit\nauthor: Jos\u00e9\n---\n'), shown: 'byte 0xe9 at offset 28' },
    { name: 'config.json', bytes: latin1('{"_name_or_path": "caf\u00e9"}'), shown: 'byte 0xe9 at offset 22' },
    { name: 'generation_config.json', bytes: Uint8Array.of(0xff, 0xfe, ...latin1('{"top_k": 40}')), shown: 'byte 0xff at offset 0' },
    // A sequence cut off at the end (Python: "unexpected end of data").
    { name: 'generation_config.json', bytes: Uint8Array.of(...latin1('{"top_k": 40} '), 0xe2, 0x82), shown: 'a sequence cut off at the end' },
  ];
  it.each(cases)('$name ($shown): one line naming the file, nothing written', async ({ name, bytes, shown }) => {
    const base = splitF16Llama();
    const files = Object.fromEntries(Object.entries(peftFolder({ [name]: bytes })).map(([k, v]) => [`my-adapter/${k}`, v]));
    const dir = temp.make({ ...base.files, ...files });
    const out = join(dir, 'lora.gguf');
    const run = await runCli(['convert', '--adapter', join(dir, 'my-adapter'), '--base', join(dir, BASE_PART), '--out', out]);
    expect(run.code).not.toBe(0);
    const lines = errorLines(run.stderr);
    expect(lines, run.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`my-adapter: ${name} is not UTF-8 (${shown}), and convert_lora_to_gguf.py stops on it (gguf-py opens it with encoding="utf-8" for the general.* keys: UnicodeDecodeError); save it as UTF-8, or remove the file`);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });

  it('a README.md past the config limit: one line naming it and the limit, nothing written (the script reads it whole; leaving it out would write other general.* keys)', async () => {
    const base = splitF16Llama();
    const readme = new Uint8Array(MAX_CONFIG_BYTES + 1).fill(0x20);
    const files = Object.fromEntries(Object.entries(peftFolder({ 'README.md': readme })).map(([k, v]) => [`my-adapter/${k}`, v]));
    const dir = temp.make({ ...base.files, ...files });
    const out = join(dir, 'lora.gguf');
    const run = await runCli(['convert', '--adapter', join(dir, 'my-adapter'), '--base', join(dir, BASE_PART), '--out', out]);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringContaining(`my-adapter: README.md is ${MAX_CONFIG_BYTES + 1} bytes, past the ${MAX_CONFIG_BYTES}-byte limit (MAX_CONFIG_BYTES) for a file convert reads whole for the general.* keys, as convert_lora_to_gguf.py does; shrink it or remove the file`)]);
    expect(existsSync(out)).toBe(false);
  });

  it('a byte-order mark is UTF-8 and kept, as Python\'s "utf-8" codec keeps it: README.md\'s front matter is then not read (its first line is not "---"), generation_config.json is none (json.load refuses it, load_generation_config returns {}); config.json\'s is refused as json.load refuses it', async () => {
    const bom = (text: string) => Uint8Array.of(0xef, 0xbb, 0xbf, ...new TextEncoder().encode(text));
    const withBom = await convert('my-adapter', { 'README.md': bom('---\nlicense: mit\n---\n'), 'generation_config.json': bom('{"top_k": 40}') });
    const plain = await convert('my-adapter');
    expect(withBom.keys.filter(([k]) => k.startsWith('general.'))).toEqual(plain.keys.filter(([k]) => k.startsWith('general.')));
    expect(withBom.keys.some(([k]) => k === 'general.license' || k.startsWith('general.sampling.'))).toBe(false);
    const base = splitF16Llama();
    const files = Object.fromEntries(Object.entries(peftFolder({ 'config.json': bom('{"_name_or_path": "x/y"}') })).map(([k, v]) => [`my-adapter/${k}`, v]));
    const dir = temp.make({ ...base.files, ...files });
    const run = await runCli(['convert', '--adapter', join(dir, 'my-adapter'), '--base', join(dir, BASE_PART), '--out', join(dir, 'lora.gguf')]);
    expect(run.code).not.toBe(0);
    expect(errorLines(run.stderr)).toEqual([expect.stringContaining('my-adapter: config.json is not JSON, and convert_lora_to_gguf.py stops on it')]);
  });

  it('convertLora of picked Files (the page\'s input) refuses the same way', async () => {
    const base = splitF16Llama();
    const dir = temp.make(base.files);
    const adapter = Object.entries(peftFolder({ 'README.md': latin1('---\nauthor: Jos\u00e9\n---\n') })).map(([path, content]) => {
      const file = new File([content as BlobPart], path);
      Object.defineProperty(file, 'webkitRelativePath', { value: `my-adapter/${path}` });
      return file;
    });
    const out = join(dir, 'lora.gguf');
    await expect(convertLora({ adapter, base: join(dir, BASE_PART), out })).rejects.toThrow(/README\.md is not UTF-8 \(byte 0xe9 at offset 15\), and convert_lora_to_gguf\.py stops on it/);
    expect(existsSync(out)).toBe(false);
  });
});

/** The adapter's files as a page's input gives them: loose (no webkitRelativePath), or picked as the folder `folder`. */
function picked(extra: Record<string, string>, folder?: string): File[] {
  return Object.entries(peftFolder(extra)).map(([path, content]) => {
    const file = new File([content as BlobPart], path);
    if (folder !== undefined) Object.defineProperty(file, 'webkitRelativePath', { value: `${folder}/${path}` });
    return file;
  });
}

/** convertLora (the library, not the CLI) of `adapter` Files; the GGUF's general.* keys past architecture and type, and the warnings. */
async function convertFiles(adapter: File[]): Promise<{ general: [string, unknown][]; warnings: string[] }> {
  const base = splitF16Llama();
  const dir = temp.make(base.files);
  const out = join(dir, 'lora.gguf');
  const outcome = await convertLora({ adapter, base: join(dir, BASE_PART), out });
  const keys = head([...readGguf(readFileSync(out)).metadata].map(([k, v]) => [k, v.value] as [string, unknown]));
  return { general: keys.filter(([k]) => k.startsWith('general.') && k !== 'general.architecture' && k !== 'general.type'), warnings: outcome.warnings };
}

describe('convertLora of Files: a folder pick is named by its folder, loose files by nothing', () => {
  it('picked as the folder Llama-3.2-1B-Instruct-lora (webkitRelativePath): the folder-derived keys, as from that folder on disk', async () => {
    const { general } = await convertFiles(picked({}, 'Llama-3.2-1B-Instruct-lora'));
    expect(general).toEqual([
      ['general.name', 'Llama 3.2 1B Instruct Lora'], ['general.finetune', 'Instruct'], ['general.basename', 'Llama-3.2'], ['general.size_label', '1B'],
    ]);
  });

  it('loose files (no folder): no general.* key from the label "selected files"; none at all without README.md or config.json', async () => {
    const { general } = await convertFiles(picked({}));
    expect(general).toEqual([]);
  });

  it('loose files with README.md: its keys, and no name made up from the label; with config.json too: the name from its _name_or_path', async () => {
    const readme = ['---', 'base_model: meta-llama/Llama-3.2-1B', 'license: apache-2.0', '---', ''].join('\n');
    const fromReadme = [
      ['general.license', 'apache-2.0'],
      ['general.base_model.count', 1],
      ['general.base_model.0.name', 'Llama 3.2 1B'], ['general.base_model.0.organization', 'Meta Llama'],
      ['general.base_model.0.repo_url', 'https://huggingface.co/meta-llama/Llama-3.2-1B'],
    ];
    const alone = await convertFiles(picked({ 'README.md': readme }));
    expect(alone.general).toEqual(fromReadme);
    expect(alone.warnings.filter((w) => /general/.test(w))).toEqual([]);
    const config = JSON.stringify({ _name_or_path: 'Qwen2.5-0.5B-Instruct' });
    const both = await convertFiles(picked({ 'README.md': readme, 'config.json': config }));
    expect(both.general).toEqual([
      // config.json's _name_or_path, a model id: name, finetune, basename and size label, in the script's order.
      ['general.name', 'Qwen2.5 0.5B Instruct'], ['general.finetune', 'Instruct'], ['general.basename', 'Qwen2.5'], ['general.size_label', '0.5B'],
      ...fromReadme,
    ]);
  });
});

describe("gguf-py's get_model_id_components and id_to_title", () => {
  it('an MoE id with total and active parameters (Qwen3-30B-A3B-Instruct-2507), a LoRA of 1M counted parameters', () => {
    expect(idComponents('Qwen/Qwen3-30B-A3B-Instruct-2507', -1_000_000)).toEqual({
      full: 'Qwen3-30B-A3B-Instruct-2507', org: 'Qwen', basename: 'Qwen3', finetune: 'Instruct', version: '2507', size_label: '30B-A3B',
    });
    expect(idToTitle('Qwen3-30B-A3B-Instruct-2507')).toBe('Qwen3 30B A3B Instruct 2507');
  });

  it('Mistral-7B-32k-lora: 32k is a context length (32000 < 125000), lora dropped; title-casing keeps versions and numbers, capitalises after digits as str.title()', () => {
    expect(idComponents('Mistral-7B-32k-lora', -1_000_000)).toEqual({ full: 'Mistral-7B-32k-lora', org: undefined, basename: 'Mistral', finetune: '32k', version: undefined, size_label: '7B' });
    expect(idToTitle('my-llama3b-v1.2-lora x')).toBe('My Llama3B v1.2 Lora X');
  });
});
