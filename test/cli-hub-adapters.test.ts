/**
 * PEFT adapters straight from the Hugging Face Hub by URL: a repository (`/ORG/NAME`), a
 * `tree/REV/SUBFOLDER` page and the `resolve/` link of an `adapter_model.safetensors` are each read
 * as the folder of `adapter_config.json` + `adapter_model.safetensors` at `resolve/REV/…`, and merge
 * into a base on disk exactly against float64 truth; combine, resize and inspect take a repository
 * URL too; a gated repository is read with HF_TOKEN. Where the config is absent, a resolve link is
 * read alone as before (a kohya file merges; PEFT weights are refused saying the repository has no
 * config there), and a repository URL is refused in one line. A folder URL on another host, a
 * dataset's, and a repository URL as --base stay refused as usage errors.
 *
 * The Hub's hosts (HF_TOKEN_HOSTS) are made the local server here (`localhost:PORT`), laid out as
 * the Hub's download links are, and the global fetch sends `https://localhost:PORT/…` to it over
 * plain HTTP, as test/url-hf-token.test.ts does; the CLI runs in this process so both apply.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { listDir, oneErrorLine, runCliInProcess } from './helpers/cli.js';
import { decodeSafetensors, tempDirs } from './helpers/fixtures.js';
import { sdxlKohyaPair } from './helpers/sdxl-kohya-pair.js';
import { BASE, expectExactCliMerge, moduleDelta, PEFT_CONFIG, PEFT_WEIGHTS, RANK, SHAPES, useFakeHub } from './helpers/fake-hub.js';

const hubHosts = vi.hoisted(() => [] as string[]);
vi.mock('../src/io/hf-token-hosts.js', () => ({ HF_TOKEN_HOSTS: hubHosts }));

const temp = tempDirs();

const TOKEN = 'hf_HubAdapterTokenX4p9Lm2';
const Q = 'model.layers.0.self_attn.q_proj', V = 'model.layers.0.self_attn.v_proj';

const { base: SDXL_BASE, kohya: KOHYA, mergedTruth: kohyaTruth } = sdxlKohyaPair(8, 20261207);

/**
 * The "Hub": files by their download path, each segment as the Hub reads it (percent-decoded); a
 * revision with a slash (`refs/pr/3`) is one segment. `gated/…` answers 401 without the token.
 */
const HUB_FILES = new Map<string, Uint8Array | string>([
  ['org/tiny-lora/resolve/main/adapter_config.json', PEFT_CONFIG],
  ['org/tiny-lora/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/multi/resolve/v1.0/style one/adapter_config.json', PEFT_CONFIG],
  ['org/multi/resolve/v1.0/style one/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/multi/resolve/refs/pr/3/adapter_config.json', PEFT_CONFIG],
  ['org/multi/resolve/refs/pr/3/adapter_model.safetensors', PEFT_WEIGHTS],
  ['gated/tiny-lora/resolve/main/adapter_config.json', PEFT_CONFIG],
  ['gated/tiny-lora/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/weights-only/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
  ['org/kohya/resolve/main/adapter_model.safetensors', KOHYA],
  ['org/kohya/resolve/main/style.safetensors', KOHYA],
  ['org/empty/resolve/main/README.md', '# no adapter here'],
  // A config that is a login page, as a proxy or a gated mirror may answer.
  ['org/html-config/resolve/main/adapter_config.json', '<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n'],
  ['org/html-config/resolve/main/adapter_model.safetensors', PEFT_WEIGHTS],
]);

const fake = useFakeHub(HUB_FILES, TOKEN, hubHosts, temp);

const hubUrl = (path: string) => `https://localhost:${fake.hub.port}/${path}`;

const cli = runCliInProcess;

const oneError = oneErrorLine;

const expectExactMerge = (adapter: string, weight = 1) => expectExactCliMerge(temp, adapter, weight);

describe('a PEFT adapter on the Hub, by URL', () => {
  it('a repository URL is read as resolve/main/{adapter_config.json, adapter_model.safetensors}: the merge is exact', async () => {
    await expectExactMerge(hubUrl('org/tiny-lora'), 0.75);
    expect(new Set(fake.hub.seen.map((s) => s.path))).toEqual(new Set(['org/tiny-lora/resolve/main/adapter_config.json', 'org/tiny-lora/resolve/main/adapter_model.safetensors']));
  });

  it('a tree/REV/SUBFOLDER URL (percent-encoded, with a trailing slash) reads that revision\'s subfolder', async () => {
    await expectExactMerge(hubUrl('org/multi/tree/v1.0/style%20one/'));
    expect(new Set(fake.hub.seen.map((s) => s.path))).toEqual(new Set(['org/multi/resolve/v1.0/style one/adapter_config.json', 'org/multi/resolve/v1.0/style one/adapter_model.safetensors']));
  });

  it('the resolve link of adapter_model.safetensors (at a revision refs%2Fpr%2F3) finds its adapter_config.json beside it', async () => {
    await expectExactMerge(hubUrl('org/multi/resolve/refs%2Fpr%2F3/adapter_model.safetensors?download=true'), -1.5);
    // The revision stays one segment, encoded as typed.
    expect(new Set(fake.hub.seen.map((s) => s.raw))).toEqual(new Set(['/org/multi/resolve/refs%2Fpr%2F3/adapter_config.json', '/org/multi/resolve/refs%2Fpr%2F3/adapter_model.safetensors']));
  });

  it('a gated repository: HF_TOKEN goes with the config\'s request and the weights\'; without it, HTTP 401 in one line', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const refused = await cli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', hubUrl('gated/tiny-lora'), '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expect(refused.code).toBe(1);
    expect(oneError(refused)).toMatch(new RegExp(`^error: ${hubUrl('gated/tiny-lora/resolve/main/adapter_config.json')}: HTTP 401 Unauthorized for the file; the file needs a login \\(a gated model\\): set HF_TOKEN`));
    expect(listDir(dir)).toEqual(['base.safetensors']);
    vi.stubEnv('HF_TOKEN', TOKEN);
    fake.hub.seen.length = 0;
    await expectExactMerge(hubUrl('gated/tiny-lora'));
    expect(new Set(fake.hub.seen.map((s) => s.path))).toEqual(new Set(['gated/tiny-lora/resolve/main/adapter_config.json', 'gated/tiny-lora/resolve/main/adapter_model.safetensors']));
    expect(fake.hub.seen.every((s) => s.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('a repository URL typed with http:// or www. is read at https:// on the Hub\'s own host, so a gated one gets the token', async () => {
    vi.stubEnv('HF_TOKEN', TOKEN);
    for (const typed of [`http://localhost:${fake.hub.port}/gated/tiny-lora`, `https://www.localhost:${fake.hub.port}/gated/tiny-lora/tree/main`]) {
      fake.hub.seen.length = 0;
      await expectExactMerge(typed);
      expect(fake.hub.seen.length).toBeGreaterThan(1);
      expect(fake.hub.seen.every((s) => s.authorization === `Bearer ${TOKEN}`), typed).toBe(true);
    }
  });

  it('combine --method cat of a repository URL writes a PEFT folder holding w·(α/r)·B·A', async () => {
    const dir = temp.make();
    const out = join(dir, 'cat');
    const run = await cli(['combine', '--adapter', hubUrl('org/tiny-lora'), '--weight', '0.5', '--method', 'cat', '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    expect(listDir(out)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: RANK, base_model_name_or_path: 'org/tiny-llama' });
    expectDeltas(out, config.lora_alpha / config.r, 0.5, 1e-6);
  });

  it('resize of a repository URL to its own rank keeps (α/r)·B·A', async () => {
    const dir = temp.make();
    const out = join(dir, 'resized');
    const run = await cli(['resize', '--adapter', hubUrl('org/tiny-lora'), '--rank', String(RANK), '--out', out, '--backend', 'cpu']);
    expect(run.code, run.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expectDeltas(out, config.lora_alpha / config.r, 1, 1e-5);
  });

  it('inspect of a repository URL describes the PEFT adapter', async () => {
    const run = await cli(['inspect', hubUrl('org/tiny-lora')]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`${hubUrl('org/tiny-lora')}: PEFT LoRA adapter (2 modules)`);
    for (const m of [Q, V]) expect(run.stdout).toMatch(new RegExp(`base_model\\.model\\.${m.replace(/\./g, '\\.')}\\s+r=2 α=8 scale=4`));
  });
});

/** A written PEFT folder's ΔW = scale·B·A per module, against w·(α/r)·B·A of the input within `tolerance` (relative to the largest entry). */
function expectDeltas(folder: string, scale: number, weight: number, tolerance: number): void {
  const tensors = decodeSafetensors(new Uint8Array(readFileSync(join(folder, 'adapter_model.safetensors')))).tensors;
  for (const m of Object.keys(SHAPES)) {
    const [rows, cols] = SHAPES[m];
    const a = tensors.get(`base_model.model.${m}.lora_A.weight`)!, b = tensors.get(`base_model.model.${m}.lora_B.weight`)!;
    const rank = a.shape[0];
    const want = moduleDelta(m).map((x) => weight * x);
    const largest = Math.max(...want.map(Math.abs));
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        let s = 0;
        for (let k = 0; k < rank; k++) s += b.values[o * rank + k] * a.values[k * cols + i];
        expect(Math.abs(scale * s - want[o * cols + i]), `${m}[${o},${i}]`).toBeLessThanOrEqual(tolerance * largest);
      }
    }
  }
}

describe('a config that is no JSON', () => {
  it('is named by its own download link, not by the URL given with /adapter_config.json after it; exit 1, nothing at --out', async () => {
    for (const typed of [hubUrl('org/html-config'), hubUrl('org/html-config/tree/main'), hubUrl('org/html-config/resolve/main/adapter_model.safetensors?download=true')]) {
      const dir = temp.make({ 'base.safetensors': BASE });
      const run = await cli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', typed, '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
      expect(run.code, typed).toBe(1);
      expect(oneError(run), typed).toMatch(new RegExp(`^error: ${hubUrl('org/html-config/resolve/main/adapter_config.json').replace(/[.?]/g, '\\$&')}: an HTML page, not JSON \\(an error or login page saved in place of the file\\?\\): download the file again$`));
      expect(listDir(dir)).toEqual(['base.safetensors']);
    }
  });
});

describe('where no adapter_config.json is there', () => {
  it('a repository with neither file: one line naming the URL and what was looked for; exit 1, nothing at --out', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const url = hubUrl('org/empty');
    const run = await cli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', url, '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${url}: no PEFT adapter there: looked for adapter_config.json and adapter_model.safetensors at ${hubUrl('org/empty/resolve/main/')} (adapter_config.json: HTTP 404); a single-file LoRA is given by its file's download link, such as ${hubUrl('org/empty/resolve/main/')}FILE.safetensors`);
    expect(listDir(dir)).toEqual(['base.safetensors']);
  });

  it('a resolve link of a kohya file named adapter_model.safetensors, and one of another name, merge as single files', async () => {
    for (const url of [hubUrl('org/kohya/resolve/main/adapter_model.safetensors'), hubUrl('org/kohya/resolve/main/style.safetensors')]) {
      const dir = temp.make({ 'sdxl.safetensors': SDXL_BASE });
      const out = join(dir, 'merged.safetensors');
      const run = await cli(['merge', '--base', join(dir, 'sdxl.safetensors'), '--adapter', url, '--weight', '0.5', '--out', out, '--backend', 'cpu']);
      expect(run.code, run.stderr).toBe(0);
      const merged = decodeSafetensors(new Uint8Array(readFileSync(out))).tensors;
      for (const [name, want] of kohyaTruth(0.5)) expect(Array.from(merged.get(name)!.values), `${url} ${name}`).toEqual(Array.from(want));
    }
  });

  it('a resolve link of PEFT weights whose repository has no config there: refused saying so; exit 1, nothing at --out', async () => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const url = hubUrl('org/weights-only/resolve/main/adapter_model.safetensors');
    const run = await cli(['merge', '--base', join(dir, 'base.safetensors'), '--adapter', url, '--out', join(dir, 'm.safetensors'), '--backend', 'cpu']);
    expect(run.code).toBe(1);
    expect(oneError(run)).toBe(`error: ${url}: is a PEFT adapter's weights, which need its adapter_config.json (r and lora_alpha) beside them, and the repository has none there (${hubUrl('org/weights-only/resolve/main/adapter_config.json')}: HTTP 404); download the weights and their adapter_config.json into a folder and give the folder's path`);
    expect(listDir(dir)).toEqual(['base.safetensors']);
  });
});

describe('still refused, before any request (exit 2)', () => {
  it.each([
    ['a folder URL on another host', () => ['merge', '--base', 'BASE', '--adapter', `https://127.0.0.1:${fake.hub.port}/org/tiny-lora/`],
      () => `error: https://127.0.0.1:${fake.hub.port}/org/tiny-lora/: names a folder; --adapter takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its path`],
    ['a dataset\'s tree/ page', () => ['inspect', hubUrl('datasets/org/tiny-lora/tree/main')],
      () => `error: ${hubUrl('datasets/org/tiny-lora/tree/main')}: names a folder; inspect takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its path`],
    ['a repository as --base', () => ['merge', '--base', hubUrl('org/tiny-lora'), '--adapter', hubUrl('org/tiny-lora')],
      () => `error: ${hubUrl('org/tiny-lora')}: names a Hugging Face repository or folder; --base takes the URL of one file (such as …/resolve/main/model.safetensors), or download the folder and give its path (only an adapter is read from a repository's URL)`],
  ])('%s', async (_, args, message) => {
    const dir = temp.make({ 'base.safetensors': BASE });
    const run = await cli([...args().map((a) => (a === 'BASE' ? join(dir, 'base.safetensors') : a)), ...(args()[0] === 'merge' ? ['--out', join(dir, 'm.safetensors')] : [])]);
    expect(run.code).toBe(2);
    expect(oneError(run)).toBe(message());
    expect(fake.hub.seen).toEqual([]);
    expect(listDir(dir)).toEqual(['base.safetensors']);
  });
});
