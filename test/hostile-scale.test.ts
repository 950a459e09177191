/**
 * Big but legal inputs whose cost could grow with the square of their size: tens of thousands of
 * modules that each fail against a base of tens of thousands of tensors, and names thousands of
 * parts long that differ only far from their end. Each is checked for the right answer, and where
 * the work can be counted, for work that grows with the input, not its square; the end-to-end
 * checks use sizes at which the quadratic code took minutes.
 */
import { describe, expect, it, vi } from 'vitest';
import { RE2JS } from 're2js';
import { memoryInputFileSet } from '../src/io/memory-source.js';
import { prepareMerge } from '../src/pipeline/prepare-merge.js';
import { parsePeftConfig } from '../src/formats/peft-config.js';
import { parsePeftMethodAdapter } from '../src/formats/peft-methods.js';
import { openSafetensors } from '../src/formats/safetensors-reader.js';
import { KeysUnder } from '../src/plan/quantized-weights.js';
import { Pacer } from '../src/event-turns.js';
import { OWNING_KEYS_PER_TICK, owningModules } from '../src/formats/unknown-tensor.js';
import { peftTargetsFrom } from '../src/formats/peft-targets.js';
import { shownList } from '../src/shown-text.js';
import { buildSafetensors, seededRandom, type FixtureTensor } from './helpers/fixtures.js';

const rand = seededRandom(20261206);

/**
 * `list` as it is, with its elements' reads counted: a lookup that reads a config's list whole for
 * each module shows in the count, whatever the machine's speed.
 */
function countingReads<T>(list: T[]): { list: T[]; reads: () => number } {
  let reads = 0;
  const proxy = new Proxy(list, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver);
    },
  });
  return { list: proxy, reads: () => reads };
}

/** The endings under `module` in key order when all are the module's own tensors (one part, or one after `weight.`), else undefined: the definition, plainly. */
function ownTensorsTruth(keys: readonly string[], module: string): string[] | undefined {
  const endings = keys.filter((k) => k.startsWith(`${module}.`)).map((k) => k.slice(module.length + 1));
  return endings.every((e) => /^(weight\.)?[^.]+$/.test(e)) ? endings : undefined;
}

describe('the tensors a quantized module is stored as', () => {
  it('are those under its name, in the file\'s order, and none for a parent module', () => {
    const keys: string[] = [];
    const parts = ['W_q', 'scale', 'zero', 'shape', 'nbits', 'weight._data', 'weight._scale', 'input_scale', 'weight'];
    for (let i = 0; i < 400; i++) {
      const m = `model.layers.${Math.floor(rand() * 6)}.${['self_attn', 'mlp'][Math.floor(rand() * 2)]}.${['q_proj', 'k_proj', 'gate_proj', 'q_proj.lora'][Math.floor(rand() * 4)]}`;
      keys.push(`${m}.${parts[Math.floor(rand() * parts.length)]}`);
    }
    keys.push('model.norm.weight', 'model.norm.', 'model.embed_tokens.weight', 'model.layers.1.mlp.weight.x.y');
    const unique = [...new Set(keys)];
    const under = new KeysUnder(unique);
    const modules = new Set(['model', 'model.layers.1', 'model.layers.1.mlp', 'model.norm', 'model.nothing', 'model.layers.1.mlp.weight']);
    for (const k of unique) for (let i = k.indexOf('.'); i >= 0; i = k.indexOf('.', i + 1)) modules.add(k.slice(0, i));
    for (const m of modules) expect(under.ownTensors(m), m).toEqual(ownTensorsTruth(unique, m));
  });

  it('are found in work that grows with the modules and keys, not their product', () => {
    // Every expert of a 94-layer, 128-expert MoE, stored as HQQ's W_q, scale and zero: reading every
    // key for each of its 36,096 modules was 3.9 billion comparisons.
    const modules: string[] = [], keys: string[] = [];
    for (let l = 0; l < 94; l++) {
      for (let e = 0; e < 128; e++) {
        for (const p of ['gate_proj', 'up_proj', 'down_proj']) {
          const m = `model.layers.${l}.mlp.experts.${e}.${p}`;
          modules.push(m);
          keys.push(`${m}.W_q`, `${m}.scale`, `${m}.zero`);
        }
      }
    }
    const under = new KeysUnder(keys);
    for (const m of modules) expect(under.ownTensors(m)).toEqual(['W_q', 'scale', 'zero']);
    // A parent module's run ends at its first key that is not its own: one more comparison, not its whole subtree.
    for (let l = 0; l < 94; l++) expect(under.ownTensors(`model.layers.${l}.mlp`)).toBeUndefined();
    expect(under.comparisons).toBeLessThan(30 * (modules.length + keys.length));
  });
});

/** Every expert projection of a Qwen3-MoE-shaped model: its module path and its (out, in). */
function expertProjections(layers: number, experts: number, hidden: number, inter: number): { m: string; out: number; inp: number }[] {
  const all: { m: string; out: number; inp: number }[] = [];
  for (let l = 0; l < layers; l++) {
    for (let e = 0; e < experts; e++) {
      for (const [p, out, inp] of [['gate_proj', inter, hidden], ['up_proj', inter, hidden], ['down_proj', hidden, inter]] as const) {
        all.push({ m: `model.layers.${l}.mlp.experts.${e}.${p}`, out, inp });
      }
    }
  }
  return all;
}

describe('a base quantized with HQQ, every module of a 12,288-module adapter refused', () => {
  it('names the method and the stored tensors for each module, in seconds', async () => {
    const layers = 32, experts = 128, hidden = 16, inter = 8, r = 2;
    const base: FixtureTensor[] = [], lora: FixtureTensor[] = [];
    const bytes = (n: number) => new Uint8Array(n);
    for (const { m, out, inp } of expertProjections(layers, experts, hidden, inter)) {
      // HQQLinear's state dict as transformers saves it (4-bit codes two to a byte, a scale and zero per group of 64).
      base.push({ name: `${m}.W_q`, dtype: 'U8', shape: [1, 64], data: bytes(64) });
      base.push({ name: `${m}.scale`, dtype: 'F16', shape: [2, 1], data: bytes(4) });
      base.push({ name: `${m}.zero`, dtype: 'F16', shape: [2, 1], data: bytes(4) });
      lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [r, inp], data: bytes(2 * r * inp) });
      lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [out, r], data: bytes(2 * out * r) });
    }
    const config = {
      architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: hidden, moe_intermediate_size: inter, num_experts: experts, num_hidden_layers: layers,
      quantization_config: { quant_method: 'hqq', skip_modules: ['lm_head'], quant_config: { weight_quant_params: { nbits: 4, group_size: 64, axis: 1 } } },
    };
    const adapterConfig = { peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['gate_proj', 'up_proj', 'down_proj'], task_type: 'CAUSAL_LM' };
    const prepared = await prepareMerge(
      memoryInputFileSet({ 'model.safetensors': buildSafetensors(base, { format: 'pt' }), 'config.json': JSON.stringify(config) }, 'model'),
      [{ files: memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors(lora), 'adapter_config.json': JSON.stringify(adapterConfig) }, 'adapter'), weight: 1 }],
    );
    await prepared.close();
    const problems = prepared.plan.problems;
    expect(problems).toHaveLength(layers * experts * 3);
    const m = 'model.layers.31.mlp.experts.127.down_proj';
    expect(problems.at(-1)).toEqual({
      adapter: 'adapter', module: m, code: 'UNSUPPORTED_FORMAT',
      message: `adapter: module "${m}": config.json says the base is quantized with hqq (quantization_config.quant_method), which stores this module as ${m}.{W_q, scale, zero} and no float weight; merging into such weights is not supported: use the unquantized model`,
    });
    expect(problems.every((p) => p.code === 'UNSUPPORTED_FORMAT')).toBe(true);
    // Reading every base key for each module took about two minutes here; now a few seconds.
  }, 60_000);
});

describe('names thousands of parts long that differ only far from their end', () => {
  it('a prefixed adapter of 2,000 such modules lands each on its own tensor, in seconds', async () => {
    // 4 KB names (MAX_NAME_BYTES is 4096): `<i>.a.a.….a.weight`, ~2,000 parts, in the base; the
    // adapter adds `x.` in front, so every module is found by its ending. Matching on the last
    // three parts and reading every key sharing them, and hashing every suffix of each name, took
    // 80 s at this size.
    const n = 2000, d = 4, r = 2;
    const chain = Array(1990).fill('a').join('.');
    const base: FixtureTensor[] = [], lora: FixtureTensor[] = [];
    for (let i = 0; i < n; i++) {
      base.push({ name: `${i}.${chain}.weight`, dtype: 'F16', shape: [d, d], data: new Uint8Array(2 * d * d) });
      lora.push({ name: `base_model.model.x.${i}.${chain}.lora_A.weight`, dtype: 'F16', shape: [r, d], data: new Uint8Array(2 * r * d) });
      lora.push({ name: `base_model.model.x.${i}.${chain}.lora_B.weight`, dtype: 'F16', shape: [d, r], data: new Uint8Array(2 * d * r) });
    }
    const prepared = await prepareMerge(
      memoryInputFileSet({ 'model.safetensors': buildSafetensors(base, { format: 'pt' }) }, 'model.safetensors'),
      [{ files: memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors(lora), 'adapter_config.json': JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: '.*' }) }, 'adapter'), weight: 1 }],
    );
    await prepared.close();
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates).toHaveLength(n);
    for (const u of prepared.plan.updates) expect(u.terms.map((t) => `x.${u.baseKey}`)).toEqual([`${u.terms[0].moduleName}.weight`]);
  }, 60_000);
});

/** The module among `modules` that `key` lies under (`<module>.<more>`), the longest when several do: the definition, plainly. */
function ownerTruth(key: string, modules: readonly string[]): string | undefined {
  const under = modules.filter((m) => key.length > m.length + 1 && key.startsWith(`${m}.`));
  return under.sort((a, b) => b.length - a.length)[0];
}

describe('the module a tensor lies under', () => {
  it('is the longest module its name starts with, on a dot', async () => {
    const parts = ['model', 'layers', '0', '1', 'self_attn', 'q_proj', 'q', 'lora_A', 'weight', 'bias', '', 'a'];
    const name = () => Array.from({ length: 1 + Math.floor(rand() * 5) }, () => parts[Math.floor(rand() * parts.length)]).join('.');
    for (let round = 0; round < 20; round++) {
      const modules = [...new Set(Array.from({ length: 30 }, name))];
      const keys = [...new Set([...Array.from({ length: 200 }, name), ...modules.map((m) => `${m}.`), ...modules.map((m) => `${m}.weight`), ...modules])];
      const owners = await owningModules(keys, new Set(modules));
      for (const key of keys) expect(owners.get(key), `${key} among ${modules.join(' ')}`).toBe(ownerTruth(key, modules));
    }
  });

  it('is found for the 44,544 biases of a bias="all" PEFT LoRA on every DeepSeek-V3 routed expert with a stop at each batch of keys: an abort ends it there', async () => {
    // PEFT's module paths for gate/up/down of the 256 routed experts of layers 3 to 60, and the
    // `<module>.bias` bias="all" saves for each (89,088 tensors with the factors). Placing them was
    // one sort of keys and modules together, 100 ms in which an abort was not seen.
    const modules = new Set<string>();
    for (let l = 3; l < 61; l++) for (let e = 0; e < 256; e++) for (const p of ['gate_proj', 'up_proj', 'down_proj']) modules.add(`base_model.model.model.layers.${l}.mlp.experts.${e}.${p}`);
    const keys = [...modules].map((m) => `${m}.bias`);
    // Work counted: the module lookups (one a key here, each bias's module being the first prefix looked up).
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const abortAt = Math.floor(keys.length / 3);
    let lookups = 0;
    let after = 0;
    const watched = {
      has: (module: string) => {
        if (controller.signal.aborted) after++;
        else if (++lookups === abortAt) controller.abort(reason);
        return modules.has(module);
      },
    };
    const all = await owningModules(keys, modules);
    expect(all.size).toBe(keys.length);
    expect(all.get(keys[0])).toBe('base_model.model.model.layers.3.mlp.experts.0.gate_proj');
    // A pacer of 0 ms yields (and looks at its signal) at every tick, whatever the machine's speed.
    const outcome = await owningModules(keys, watched, new Pacer(controller.signal, 0)).catch((e: unknown) => e);
    // Without the ticks every key after the abort was looked up (29,696 of them); with them, the rest of one batch.
    expect(after, `${after} of the ${keys.length - abortAt} keys left looked up after the abort`).toBeLessThan(OWNING_KEYS_PER_TICK);
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ABORTED', cause: reason });
  });

  it('of each saved bias of a bias="all" PEFT LoRA on 15,360 expert projections is its module, in seconds', async () => {
    // PEFT saves `<module>.bias` for every module under bias="all"; each one's owner was found by
    // reading every module name: 15,360² comparisons, two minutes from the command line.
    const layers = 40, experts = 128, hidden = 16, inter = 8, r = 2;
    const base: FixtureTensor[] = [], lora: FixtureTensor[] = [];
    const bytes = (n: number) => new Uint8Array(n);
    for (const { m, out, inp } of expertProjections(layers, experts, hidden, inter)) {
      base.push({ name: `${m}.weight`, dtype: 'BF16', shape: [out, inp], data: bytes(2 * out * inp) });
      base.push({ name: `${m}.bias`, dtype: 'BF16', shape: [out], data: bytes(2 * out) });
      lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [r, inp], data: bytes(2 * r * inp) });
      lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [out, r], data: bytes(2 * out * r) });
      lora.push({ name: `base_model.model.${m}.bias`, dtype: 'BF16', shape: [out], data: bytes(2 * out) });
    }
    const config = { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: hidden, moe_intermediate_size: inter, num_experts: experts, num_hidden_layers: layers };
    const adapterConfig = { peft_type: 'LORA', r, lora_alpha: 4, bias: 'all', target_modules: ['gate_proj', 'up_proj', 'down_proj'], task_type: 'CAUSAL_LM' };
    const prepared = await prepareMerge(
      memoryInputFileSet({ 'model.safetensors': buildSafetensors(base, { format: 'pt' }), 'config.json': JSON.stringify(config) }, 'model'),
      [{ files: memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors(lora), 'adapter_config.json': JSON.stringify(adapterConfig) }, 'adapter'), weight: 1 }],
    );
    await prepared.close();
    const n = layers * experts * 3;
    expect(prepared.plan.problems).toEqual([]);
    expect(prepared.plan.updates).toHaveLength(n);
    // Each bias replaces the base's own, as PEFT loads it.
    expect(prepared.plan.replacements).toHaveLength(n);
    expect(prepared.plan.replacements.every((rep) => rep.baseKey.endsWith('.bias'))).toBe(true);
  }, 60_000);
});

describe('a target_modules or exclude_modules list', () => {
  it('takes a path equal to a name or ending with a dot and one, as PEFT does', () => {
    const parts = ['model', 'layers', '0', '1', 'self_attn', 'q_proj', 'mlp', 'up_proj', '', 'a'];
    const name = () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => parts[Math.floor(rand() * parts.length)]).join('.');
    for (let round = 0; round < 20; round++) {
      const target = [...new Set(Array.from({ length: 6 }, name))];
      const exclude = [...new Set(Array.from({ length: 3 }, name))];
      const targets = peftTargetsFrom({ target_modules: target, exclude_modules: exclude }, 'adapter_config.json', 'LORA');
      // check_target_module_exists and _check_exclude_modules, plainly.
      const ends = (path: string, names: string[]) => names.some((n) => path === n || path.endsWith(`.${n}`));
      for (let i = 0; i < 300; i++) {
        const path = name();
        const want = ends(path, exclude) ? 'excluded' : ends(path, target) ? undefined : 'not targeted';
        const got = targets.untargeted(path);
        expect(got === undefined ? undefined : got.startsWith('excluded') ? 'excluded' : 'not targeted', `${path} against ${JSON.stringify(target)} less ${JSON.stringify(exclude)}`).toBe(want);
      }
    }
  });

  it('takes a path listed whole whatever layers_to_transform says, and checks one matched by its end against it', () => {
    const targets = peftTargetsFrom({ target_modules: ['model.layers.5.mlp.up_proj', 'q_proj'], layers_to_transform: [0] }, 'adapter_config.json', 'LORA');
    expect(targets.untargeted('model.layers.5.mlp.up_proj')).toBeUndefined();
    expect(targets.untargeted('model.layers.0.self_attn.q_proj')).toBeUndefined();
    expect(targets.untargeted('model.layers.5.self_attn.q_proj')).toBe('outside layers_to_transform [0] (layer 5)');
  });

  it('of 600,000 names is looked up, not read whole, for each of 20,000 modules', () => {
    // 600,000 names fit in the 32 MB a config may hold; reading the list for every module was 12 billion comparisons.
    const target = countingReads([...Array.from({ length: 600_000 }, (_, i) => `block_${i}.proj`), 'gate_proj', 'up_proj', 'down_proj']);
    const targets = peftTargetsFrom({ target_modules: target.list, layers_to_transform: Array.from({ length: 90 }, (_, i) => i) }, 'adapter_config.json', 'LORA');
    const readsBefore = target.reads();
    for (let l = 0; l < 100; l++) {
      for (let e = 0; e < 200; e++) {
        const want = l < 90 ? undefined : `outside layers_to_transform [${Array.from({ length: 90 }, (_, i) => i).join(',')}] (layer ${l})`;
        expect(targets.untargeted(`model.layers.${l}.mlp.experts.${e}.down_proj`)).toBe(want);
      }
    }
    expect(targets.untargeted('model.layers.0.self_attn.o_proj')).toMatch(/^not targeted by target_modules \["block_0\.proj",/);
    // Counted in reads of the list, not in time: all 20,001 lookups together read less than the list once.
    expect(target.reads() - readsBefore).toBeLessThan(600_003);
  });
});

describe('a target_modules list against module paths of 4 KB', () => {
  // 2,000 modules whose paths are 4 KB of short parts, as a hostile adapter may name them (MAX_NAME_BYTES).
  const paths = Array.from({ length: 2000 }, (_, m) => {
    let p = `model.layers.${m}.mlp`;
    for (let k = 0; p.length < 4080; k++) p += `.${['w', 'up', 'b_1', 'x'][(m + k * 7) % 4]}${k % 10}`;
    return p;
  });
  /** PEFT's check_target_module_exists for a list, plainly. */
  const targeted = (path: string, names: readonly string[]) => names.some((n) => path === n || path.endsWith(`.${n}`));

  it('takes exactly the paths that equal a name or end with a dot and one, however deep the name reaches', () => {
    const names: string[] = [''];
    for (let i = 0; i < 300; i++) {
      const path = paths[Math.floor(rand() * paths.length)];
      const dots = [...path.matchAll(/\./g)].map((m) => m.index!);
      const end = path.slice(dots[Math.floor(rand() * dots.length)] + 1);
      // A real end of some path; the same end with its first character changed; one cut inside a part.
      names.push(end, `Q${end.slice(1)}`, end.slice(1 + Math.floor(rand() * 2)));
    }
    const targets = peftTargetsFrom({ target_modules: names }, 'adapter_config.json', 'LORA');
    const probes = [...paths.slice(0, 300), 'model.layers.0.mlp.', 'up0', `${paths[5]}.`, paths[7].slice(1)];
    for (const path of probes) {
      expect(targets.untargeted(path) === undefined, path.slice(-60)).toBe(targeted(path, names));
    }
    // A list whose longest name is the end matched, and the path's whole length but one.
    for (const path of paths.slice(0, 20)) {
      const end = path.slice(path.indexOf('.') + 1);
      expect(peftTargetsFrom({ target_modules: [end, 'q_proj'] }, 'adapter_config.json', 'LORA').untargeted(path)).toBeUndefined();
      expect(peftTargetsFrom({ target_modules: [path.slice(1), 'q_proj'] }, 'adapter_config.json', 'LORA').untargeted(path)).toMatch(/^not targeted/);
    }
  });

  it('looks up each path in steps of its length, not of its length times the names\' lengths', () => {
    // Names of every length up to the paths': each end of a path whose number of parts some name
    // had was cut out and looked up, 2,000 × 1,000 ends of 2 KB (2,000 modules in 34 s).
    const names = Array.from({ length: 4096 }, (_, i) => `${'v.'.repeat(i % 2048)}${i < 2048 ? 'z' : 'zz'}`);
    const targets = peftTargetsFrom({ target_modules: names }, 'adapter_config.json', 'LORA');
    // Counted in the ends cut out of the paths (String.prototype.slice), not in time: the quadratic
    // lookup cut out each end of each path (about 2,000 a path); this one cuts out only an end whose
    // hash is a name's.
    const slice = vi.spyOn(String.prototype, 'slice');
    let said: (string | undefined)[], cuts: number;
    try {
      said = paths.map((path) => targets.untargeted(path));
      cuts = slice.mock.calls.length;
    } finally {
      slice.mockRestore();
    }
    for (const why of said) expect(why).toMatch(/^not targeted by target_modules \["z","v\.z",/);
    expect(cuts, 'ends cut out of 2,000 paths').toBeLessThan(paths.length * 4);
    expect(targets.untargeted(`${paths[0]}.${names[4000]}`)).toBeUndefined();
  });
});

describe('a modules_to_save list', () => {
  it('puts no adapter on a module under an entry, matched as the regex (^|.*\\.)<entry>($|\\..*)', () => {
    const parts = ['model', 'layers', '0', 'lm_head', 'score', 'embed_tokens', 'q_proj', 'a'];
    const name = () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => parts[Math.floor(rand() * parts.length)]).join('.');
    for (let round = 0; round < 20; round++) {
      const saved = [...new Set([...Array.from({ length: 3 }, name), ['lm_head', 'score', 'q_pro.', 'emb.*'][round % 4]])];
      const targets = peftTargetsFrom({ modules_to_save: saved }, 'adapter_config.json', 'LORA');
      for (let i = 0; i < 200; i++) {
        const path = name();
        const want = saved.some((m) => new RegExp(`^(?:^|.*\\.)(?:${m})(?:$|\\..*)$`).test(path));
        expect(targets.untargeted(path)?.startsWith('in modules_to_save') ?? false, `${path} under ${JSON.stringify(saved)}`).toBe(want);
      }
    }
  });

  it('of 100,000 names of one part each is a set, not 100,000 regexes matched against every module', () => {
    const saved = [...Array.from({ length: 100_000 }, (_, i) => `head_${i}`), 'lm_head'];
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      const targets = peftTargetsFrom({ target_modules: ['down_proj'], modules_to_save: saved }, 'adapter_config.json', 'LORA');
      for (let l = 0; l < 100; l++) for (let e = 0; e < 200; e++) expect(targets.untargeted(`model.layers.${l}.mlp.experts.${e}.down_proj`)).toBeUndefined();
      expect(targets.untargeted('lm_head.lora_A')).toMatch(/^in modules_to_save \["head_0",/);
      // Counted, not timed: not one name was compiled as a regex.
      expect(compile.mock.calls.filter(([source]) => source.includes('head_'))).toEqual([]);
    } finally {
      compile.mockRestore();
    }
  });

  it('of more regexes than could be compiled in a few seconds is refused before any is compiled', () => {
    // Full dotted paths are regexes ("." matches any character), each compiled: 50,000 took 31 s and 1.4 GB, 600,000 ran out of memory.
    const saved = Array.from({ length: 50_000 }, (_, i) => `model.layers.${i % 80}.mlp.experts.${i}.gate`);
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      expect(() => peftTargetsFrom({ target_modules: ['down_proj'], modules_to_save: saved }, 'adapter_config.json', 'LORA')).toThrow(
        /^adapter_config\.json: modules_to_save holds 50000 entries of more than one plain name part, each a regex to compile, more work than the limit MAX_PATTERN_MATCHES \(50000000 name comparisons, a regex compiled counting 10000 and 25 more a character\) allows; list fewer modules, or name them by their last part$/);
      // Counted, not timed: not one of them was compiled.
      expect(compile.mock.calls.filter(([source]) => source.includes('model.layers.'))).toEqual([]);
    } finally {
      compile.mockRestore();
    }
    // As many as the limit allows are compiled and matched as PEFT matches them.
    const few = peftTargetsFrom({ target_modules: ['down_proj'], modules_to_save: saved.slice(0, 100) }, 'adapter_config.json', 'LORA');
    expect(few.untargeted('model.layers.3.mlp.experts.3.gate.up')).toMatch(/^in modules_to_save \["model\.layers\.0\.mlp\.experts\.0\.gate",/);
    expect(few.untargeted('model.layers.3.mlp.experts.3.down_proj')).toBeUndefined();
  }, 60_000);

  it('of regexes too many to match against every module is refused in one line naming the limit', () => {
    const saved = Array.from({ length: 4000 }, (_, i) => `model\\.heads\\.${i}`);
    const targets = peftTargetsFrom({ target_modules: ['down_proj'], modules_to_save: saved }, 'adapter_config.json', 'LORA');
    expect(() => {
      for (let l = 0; l < 100; l++) for (let e = 0; e < 200; e++) targets.untargeted(`model.layers.${l}.mlp.experts.${e}.down_proj`);
    }).toThrow(/^adapter_config\.json: modules_to_save needs too much matching against this adapter's modules \(more than the limit MAX_PATTERN_MATCHES, 50000000 name comparisons, a regex counting 100\); list fewer modules, or name them by their last part$/);
  });
});

/** A two-layer Llama's q_proj and v_proj (hidden 16) and a PEFT LoRA on them, q at rank 4 and v at rank 2, with this adapter_config.json. */
function llamaWithPatterns(adapterConfig: Record<string, unknown>) {
  const hidden = 16, base: FixtureTensor[] = [], lora: FixtureTensor[] = [];
  for (let l = 0; l < 2; l++) {
    for (const [p, r] of [['q_proj', 4], ['v_proj', 2]] as const) {
      const m = `model.layers.${l}.self_attn.${p}`;
      base.push({ name: `${m}.weight`, dtype: 'BF16', shape: [hidden, hidden], data: new Uint8Array(2 * hidden * hidden) });
      lora.push({ name: `base_model.model.${m}.lora_A.weight`, dtype: 'BF16', shape: [r, hidden], data: new Uint8Array(2 * r * hidden) });
      lora.push({ name: `base_model.model.${m}.lora_B.weight`, dtype: 'BF16', shape: [hidden, r], data: new Uint8Array(2 * hidden * r) });
    }
  }
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 32 };
  return prepareMerge(
    memoryInputFileSet({ 'model.safetensors': buildSafetensors(base, { format: 'pt' }), 'config.json': JSON.stringify(config) }, 'model'),
    [{ files: memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors(lora), 'adapter_config.json': JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], ...adapterConfig }) }, 'adapter'), weight: 1 }],
  );
}

/** A regex key of `length` characters or a little less that names no module of a two-layer model: an alternation of layers 1000 + i, 11000 + i, …. */
function longRegexKey(i: number, length: number): string {
  const alts: string[] = [];
  for (let j = 0, total = 4; ; j++) {
    const alt = `model\\.layers\\.${1000 + i + 10_000 * j}\\.(?:self_attn|mlp)\\.(?:q|k|v|o|gate|up|down)_proj`;
    if (total + alt.length + 1 > length) break;
    alts.push(alt);
    total += alt.length + 1;
  }
  return `(?:${alts.join('|')})`;
}

describe('rank_pattern and alpha_pattern', () => {
  it('of more regex keys than could be compiled in a few seconds are refused before any is compiled', async () => {
    // 10,000 keys of about 500 characters in each table (MAX_PATTERNS, MAX_PATTERN_LENGTH allow them):
    // compiling all 20,000 took 40 s and 1.7 GB at 928 characters.
    const keys = Array.from({ length: 10_000 }, (_, i) => longRegexKey(i, 500));
    const compile = vi.spyOn(RE2JS, 'compile');
    await expect(llamaWithPatterns({ rank_pattern: Object.fromEntries(keys.map((k) => [k, 8])), alpha_pattern: Object.fromEntries(keys.map((k) => [k, 16])) })).rejects.toThrow(
      /^adapter\/adapter_config\.json: rank_pattern and alpha_pattern have 20000 keys that are regexes \(10000 in rank_pattern, 10000 in alpha_pattern\), not module names, and compiling them is more work than the limit MAX_PATTERN_MATCHES \(50000000 name comparisons, a regex compiled counting 10000 and 25 more a character\) allows \(rank_pattern and alpha_pattern counted together\); key them by full module names \(model\.layers\.0\.self_attn\.q_proj\), or use fewer regexes$/);
    // Counted, not timed: not one key was compiled (the keys write model\.layers\.).
    const compiled = compile.mock.calls.filter(([source]) => source.includes('model\\.layers\\.'));
    compile.mockRestore();
    expect(compiled).toEqual([]);
    // The two tables share the count: each alone within it, together not.
    const half = keys.slice(0, 1200);
    await expect(llamaWithPatterns({ rank_pattern: Object.fromEntries(half.map((k) => [k, 8])), alpha_pattern: Object.fromEntries(half.map((k) => [k, 16])) })).rejects.toThrow(
      /^adapter\/adapter_config\.json: rank_pattern and alpha_pattern have 2400 keys that are regexes \(1200 in rank_pattern, 1200 in alpha_pattern\), not module names, and compiling them is more work than the limit MAX_PATTERN_MATCHES/);
  }, 60_000);

  it('are both counted before either is compiled: when alpha_pattern tips the count, no key of rank_pattern is compiled first', async () => {
    // rank_pattern of 10 regexes is within the limit; alpha_pattern's 2300 keys of about 500 characters
    // (2300 × (10,000 + 25 × ~500) ≈ 51.7 million) pass it alone. Counted table by table, rank_pattern's
    // 10 were compiled before alpha_pattern was refused; PEFT's LoRA and a PEFT method (LoHa) alike.
    const rankKeys = Array.from({ length: 10 }, (_, i) => longRegexKey(i, 500));
    const alphaKeys = Array.from({ length: 2300 }, (_, i) => longRegexKey(100 + i, 500));
    const tables = { rank_pattern: Object.fromEntries(rankKeys.map((k) => [k, 8])), alpha_pattern: Object.fromEntries(alphaKeys.map((k) => [k, 16])) };
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      expect(() => parsePeftConfig(JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj'], ...tables }), 'adapter_config.json')).toThrow(
        /^adapter_config\.json: rank_pattern and alpha_pattern have 2310 keys that are regexes \(10 in rank_pattern, 2300 in alpha_pattern\), not module names, and compiling them is more work than the limit MAX_PATTERN_MATCHES/);
      const hada = memoryInputFileSet({ 'adapter_model.safetensors': buildSafetensors([{ name: 'base_model.model.model.layers.0.self_attn.q_proj.hada_w1_a', dtype: 'F32', shape: [16, 8], data: new Uint8Array(4 * 16 * 8) }]) }, 'loha');
      const file = await openSafetensors(await hada.open('adapter_model.safetensors'));
      await expect(parsePeftMethodAdapter('loha', JSON.stringify({ peft_type: 'LOHA', r: 8, alpha: 16, target_modules: ['q_proj'], ...tables }), 'adapter_config.json', file)).rejects.toThrow(
        /^adapter_config\.json: rank_pattern and alpha_pattern have 2310 keys that are regexes \(10 in rank_pattern, 2300 in alpha_pattern\)/);
      // The keys write model\.layers\. (RE2JS.compile is given `(?:.*\.)?(?:<key>)`).
      expect(compile.mock.calls.filter(([source]) => source.includes('model\\.layers\\.'))).toEqual([]);
    } finally {
      compile.mockRestore();
    }
    // Within the limit together, both tables are compiled (10 + 1000 keys), and refused nothing.
    const within = parsePeftConfig(JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj'], rank_pattern: tables.rank_pattern, alpha_pattern: Object.fromEntries(alphaKeys.slice(0, 1000).map((k) => [k, 16])) }), 'adapter_config.json');
    expect([within.rankPattern.length, within.alphaPattern.length]).toEqual([10, 1000]);
  }, 60_000);

  it('keyed by module names compile nothing, and regexes within the limit match as PEFT matches them', async () => {
    // PEFT saves rank_pattern and alpha_pattern keyed by full module paths: 10,000 of them are
    // matched as names (the tail of the path after a "."), with no regex compiled.
    const alphaNames = Object.fromEntries([
      ...Array.from({ length: 9_999 }, (_, i) => [`model.layers.${1000 + i}.self_attn.q_proj`, 2] as const),
      ['model.layers.0.self_attn.q_proj', 8] as const,
    ]);
    // 100 long regexes naming no module, and one (PEFT: re.match(r"(.*\.)?(self_attn\.v_pr[o]j)$", name)) naming both v_proj.
    const rankRegexes = Object.fromEntries([...Array.from({ length: 100 }, (_, i) => [longRegexKey(i, 900), 8] as const), ['self_attn\\.v_pr[o]j', 2] as const]);
    const compile = vi.spyOn(RE2JS, 'compile');
    try {
      const prepared = await llamaWithPatterns({ rank_pattern: rankRegexes, alpha_pattern: alphaNames });
      await prepared.close();
      expect(compile.mock.calls.filter(([source]) => source.includes('model.layers.'))).toEqual([]); // the regex keys write model\.layers\.
      expect(compile.mock.calls.filter(([source]) => source.includes('v_pr[o]j'))).toHaveLength(1);
      // α/r as PEFT's update_layer sets it: α from alpha_pattern's first matching key, else lora_alpha; r likewise.
      const want: Record<string, number> = {
        'model.layers.0.self_attn.q_proj.weight': 8 / 4, 'model.layers.1.self_attn.q_proj.weight': 16 / 4,
        'model.layers.0.self_attn.v_proj.weight': 16 / 2, 'model.layers.1.self_attn.v_proj.weight': 16 / 2,
      };
      expect(prepared.plan.problems).toEqual([]);
      expect(Object.fromEntries(prepared.plan.updates.map((u) => [u.baseKey, u.terms.map((t) => t.scale)]))).toEqual(
        Object.fromEntries(Object.entries(want).map(([k, v]) => [k, [v]])));
    } finally {
      compile.mockRestore();
    }
  }, 60_000);
});

/**
 * A message's quoted list, `[e0,e1,…,… and k more]` or whole: its shown entries parsed back, and
 * how many it says it left out.
 */
function quotedList(text: string): { shown: unknown[]; more: number } {
  const m = /^\[(.*?)(?:,… and (\d+) more)?\]$/.exec(text);
  if (!m) throw new Error(`not a quoted list: ${text.slice(0, 200)}`);
  return { shown: JSON.parse(`[${m[1]}]`) as unknown[], more: Number(m[2] ?? 0) };
}

describe('config lists quoted in messages', () => {
  // A 32 MB adapter_config.json holds 600,000 names; the messages quoted each list whole (a
  // JSON.stringify of megabytes for every config, and per module for layers_to_transform), and
  // the error's own cap cut them afterwards.
  const names = Array.from({ length: 600_000 }, (_, i) => `model.layers.${i % 80}.mlp.experts.${i}.down_proj`);
  const layers = Array.from({ length: 600_000 }, (_, i) => i + 1);

  it('show their first entries, in order, and count the rest: target_modules', () => {
    const targets = peftTargetsFrom({ target_modules: names }, 'adapter_config.json', 'LORA');
    const why = targets.untargeted('model.layers.0.self_attn.o_proj')!;
    expect(why.startsWith('not targeted by target_modules [')).toBe(true);
    const { shown, more } = quotedList(why.slice('not targeted by target_modules '.length));
    expect(shown.length).toBeGreaterThan(0);
    expect(shown).toEqual(names.slice(0, shown.length));
    expect(shown.length + more).toBe(names.length);
    expect(why.length).toBeLessThan(1000);
  });

  it('show their first entries and count the rest: exclude_modules, modules_to_save and layers_to_transform', () => {
    const excluded = peftTargetsFrom({ target_modules: ['o_proj'], exclude_modules: names }, 'adapter_config.json', 'LORA').untargeted(names[5])!;
    // One plain part each (a set; a dotted name is a regex, compiled one by one).
    const heads = [...Array.from({ length: 600_000 }, (_, i) => `head_${i}`), 'lm_head'];
    const saved = peftTargetsFrom({ target_modules: ['o_proj'], modules_to_save: heads }, 'adapter_config.json', 'LORA').untargeted('lm_head')!;
    const outside = peftTargetsFrom({ target_modules: ['o_proj'], layers_to_transform: layers }, 'adapter_config.json', 'LORA').untargeted('model.layers.0.self_attn.o_proj')!;
    const cases: [string, string, unknown[]][] = [
      [excluded, 'excluded by exclude_modules ', names],
      [saved.replace(/, which PEFT trains whole and puts no adapter on$/, ''), 'in modules_to_save ', heads],
      [outside.replace(/ \(layer 0\)$/, ''), 'outside layers_to_transform ', layers],
    ];
    for (const [why, head, list] of cases) {
      expect(why.startsWith(head), why.slice(0, 100)).toBe(true);
      const { shown, more } = quotedList(why.slice(head.length));
      expect(shown).toEqual(list.slice(0, shown.length));
      expect(shown.length + more).toBe(list.length);
      expect(why.length).toBeLessThan(1000);
    }
  });

  it('are quoted whole when short, as JSON', () => {
    const targets = peftTargetsFrom({ target_modules: ['q_proj', 'v_proj'], layers_to_transform: [0, 1] }, 'adapter_config.json', 'LORA');
    expect(targets.untargeted('model.layers.0.mlp.up_proj')).toBe('not targeted by target_modules ["q_proj","v_proj"]');
    expect(targets.untargeted('model.layers.2.self_attn.q_proj')).toBe('outside layers_to_transform [0,1] (layer 2)');
  });
});

describe('a list a warning quotes (tensors holding NaN, modules widened at weight 0, terms on an overflowing tensor)', () => {
  it('shows its first entries as the caller writes them and counts the rest, from any iterable, shown or counted without building the rest', () => {
    const tensors = new Map(Array.from({ length: 100_000 }, (_, i) => [`model.layers.${i}.mlp.down_proj.weight`, i + 1] as const));
    let read = 0;
    const counted = function* () {
      for (const e of tensors) {
        read++;
        yield e;
      }
    };
    const show = ([name, n]: readonly [string, number]) => `${name} (${n} values)`;
    for (const [text, total] of [[shownList(tensors, show, ', ', tensors.size), tensors.size], [shownList(counted(), show), undefined]] as const) {
      const m = /^(.*), … and (\d+) more$/.exec(text)!;
      const shown = m[1].split(', ');
      expect(shown).toEqual([...tensors].slice(0, shown.length).map(show));
      expect(shown.length + Number(m[2])).toBe(100_000);
      expect(text.length).toBeLessThan(1000);
      if (total === undefined) expect(read).toBe(100_000);
    }
    expect(shownList(['a', 'b'], (x) => `"${x}"`)).toBe('"a", "b"');
  });
});
