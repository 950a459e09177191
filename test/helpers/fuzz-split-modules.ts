/**
 * The surface fuzzer's `split-modules` world (fuzz-surfaces.ts draws it): modules trained as n LoRA
 * parts on consecutive rows of one fused Linear, in the two forms their tools save:
 *   - sd-scripts' `split_qkv` (networks.lora_flux, networks.lora_sd3; `"split_qkv": "True"` in
 *     `ss_network_args`): one pair per module, lora_down the parts' downs stacked (n·r, in), lora_up
 *     their ups on a block diagonal (rows, n·r), one α; Flux's double_blocks qkv in 3 parts of
 *     3072 rows and single_blocks linear1 in 4 (q, k, v and the MLP's 12288), SD3's joint_blocks qkv
 *     in 3 thirds of the base's rows; each part merged at α/r;
 *   - LoRA with `split_dims` (musubi-tuner's LoRAModule, blissful-tuner): numbered
 *     `lora_down.N.weight` (r, in) / `lora_up.N.weight` (rows_N, r) pairs, part N filling the next
 *     rows_N rows at α/r (α/√r under blissful-tuner's `use_rslora_flag`).
 * Bases: BFL's FLUX.1 single file (bare, or under ComfyUI's `model.diffusion_model.`), diffusers'
 * FluxTransformer2DModel folder (qkv's thirds on to_q/to_k/to_v and add_*_proj, linear1's on the
 * single block's to_q/to_k/to_v and proj_mlp) and SAI's SD3.5 file; real key names, small input
 * widths (the Flux split_qkv parts keep their real 3072 rows, as the network fixes them), random r
 * (1 to 8), α (absent, 0 or a number), dtypes and part sizes, beside plain LoRA modules of the
 * same file. Hostile variants, refused naming the module: an up that is not block-diagonal, a gap
 * in the numbering or half a pair, parts of mixed ranks, parts whose rows do not add up to the
 * weight's, NaN in a part, the fused and the numbered form in one module, a ninth part, a DoRA
 * magnitude beside split_dims pairs, a tensor beside a split_qkv pair.
 *
 * The truth is the formula written out in float64: part j's rows of ΔW are s·scale·up_j·down_j,
 * landed by rows on the base's tensors. Nothing here imports the library under test.
 */
import fc from 'fast-check';
import { roundForDType, seededRandom, type FixtureDType, type FixtureTensor } from './fixtures.js';
import { convertRest, OUT_DTYPE, pastDtype, type Decoded, type ExpectedMerge, type OutDtype, type SpecFile, type SurfaceWorld, type Truth } from './fuzz-surfaces.js';

type Rand = () => number;
type BaseForm = 'flux-bfl' | 'flux-comfy' | 'flux-diffusers' | 'sd3';
type Form = 'split_qkv' | 'split_dims';
type Hostile =
  | 'not block-diagonal' | 'fused rank not n parts' | 'rows' | 'nan' | 'fused and numbered' | 'tensor beside the pair'
  | 'gap' | 'half a pair' | 'mixed ranks' | 'ninth part' | 'dora beside the parts';
const QKV_HOSTILES: Hostile[] = ['not block-diagonal', 'fused rank not n parts', 'rows', 'nan', 'fused and numbered', 'tensor beside the pair'];
const DIMS_HOSTILES: Hostile[] = ['gap', 'half a pair', 'mixed ranks', 'rows', 'nan', 'fused and numbered', 'ninth part', 'dora beside the parts'];

/** A Linear of the base: its module path in the original (BFL / SAI) names, its rows, inputs, and how its network splits it. */
interface Layer { path: string; rows: number; inF: number; qkvParts?: number[] }
/** Where rows [src, src + count) of a layer's ΔW land: rows [dst, …) of base tensor `key`. */
interface Landing { key: string; src: number; dst: number; count: number }

/** Flux's layers the world draws from, hidden h (the split parts), inputs inF. */
function fluxLayers(h: number, inF: number): Layer[] {
  return [
    { path: 'double_blocks.0.img_attn.qkv', rows: 3 * h, inF, qkvParts: [h, h, h] },
    { path: 'double_blocks.0.txt_attn.qkv', rows: 3 * h, inF, qkvParts: [h, h, h] },
    { path: 'single_blocks.0.linear1', rows: 7 * h, inF, qkvParts: [h, h, h, 4 * h] },
    { path: 'double_blocks.0.img_attn.proj', rows: h, inF },
    { path: 'single_blocks.0.linear2', rows: h, inF },
  ];
}

/** SD3.5 medium's (MMDiT-X) joint block layers, hidden h: lora_sd3 splits each "qkv" into thirds of its rows. */
function sd3Layers(h: number): Layer[] {
  return [
    { path: 'joint_blocks.0.x_block.attn.qkv', rows: 3 * h, inF: h, qkvParts: [h, h, h] },
    { path: 'joint_blocks.0.x_block.attn2.qkv', rows: 3 * h, inF: h, qkvParts: [h, h, h] },
    { path: 'joint_blocks.0.context_block.attn.qkv', rows: 3 * h, inF: h, qkvParts: [h, h, h] },
    { path: 'joint_blocks.0.x_block.attn.proj', rows: h, inF: h },
  ];
}

/** diffusers' FluxTransformer2DModel names of a BFL layer's rows (its single-file converter). */
function diffusersLandings(path: string, h: number): Landing[] {
  const d = 'transformer_blocks.0', s = 'single_transformer_blocks.0';
  const parts = (names: string[], sizes: number[]) => {
    let at = 0;
    return names.map((n, j) => ({ key: `${n}.weight`, src: (at += sizes[j]) - sizes[j], dst: 0, count: sizes[j] }));
  };
  switch (path) {
    case 'double_blocks.0.img_attn.qkv': return parts(['to_q', 'to_k', 'to_v'].map((p) => `${d}.attn.${p}`), [h, h, h]);
    case 'double_blocks.0.txt_attn.qkv': return parts(['add_q_proj', 'add_k_proj', 'add_v_proj'].map((p) => `${d}.attn.${p}`), [h, h, h]);
    case 'single_blocks.0.linear1': return parts([...['to_q', 'to_k', 'to_v'].map((p) => `${s}.attn.${p}`), `${s}.proj_mlp`], [h, h, h, 4 * h]);
    case 'double_blocks.0.img_attn.proj': return [{ key: `${d}.attn.to_out.0.weight`, src: 0, dst: 0, count: h }];
    case 'single_blocks.0.linear2': return [{ key: `${s}.proj_out.weight`, src: 0, dst: 0, count: h }];
  }
  throw new Error(`no diffusers name for ${path}`);
}

/** A module as the world writes it: its parts (rows of each; one part: a plain LoRA) and rank. */
interface Module {
  layer: Layer;
  name: string;
  /** Rows of each part, in order; a plain module has one part and `split` false. */
  parts: number[];
  split: boolean;
  r: number;
  alpha: number | null;
  lands: Landing[];
  hostile?: Hostile;
}

/** Values as a Float64Array: a case's files are cloned for every run, and Flux's split_qkv ups hold up to 700k of them. */
const values = (rand: Rand, n: number, dtype: FixtureDType, scale: number) => Float64Array.from({ length: n }, () => roundForDType((rand() * 2 - 1) * scale, dtype));
const st = (name: string, dtype: FixtureDType, shape: number[], data: ArrayLike<number>): FixtureTensor => ({ name, dtype, shape, data });

/** n positive sizes adding up to total (n ≤ total), uneven. */
function partition(rand: Rand, total: number, n: number): number[] {
  const cuts = new Set<number>();
  while (cuts.size < n - 1) cuts.add(1 + Math.floor(rand() * (total - 1)));
  const at = [0, ...[...cuts].sort((a, b) => a - b), total];
  return at.slice(1).map((x, i) => x - at[i]);
}

/** The tensors of a split_qkv module as LoRANetwork.state_dict saves it (hostile: changed as named). */
function splitQkvTensors(rand: Rand, m: Module, dtype: FixtureDType): FixtureTensor[] {
  const n = m.parts.length, cols = n * m.r, inF = m.layer.inF;
  const rows = m.parts.reduce((a, b) => a + b, 0);
  const down = values(rand, cols * inF, dtype, 0.5);
  const up = new Float64Array(rows * cols);
  let row = 0;
  m.parts.forEach((d, j) => {
    for (let o = 0; o < d; o++) for (let k = 0; k < m.r; k++) up[(row + o) * cols + j * m.r + k] = roundForDType((rand() * 2 - 1) * 0.5, dtype);
    row += d;
  });
  let downShape = [cols, inF], upShape = [rows, cols];
  let downData = down, upData = up;
  const extra: FixtureTensor[] = [];
  switch (m.hostile) {
    case 'not block-diagonal': {
      // A nonzero cell of row o in a column of another part.
      const o = Math.floor(rand() * rows);
      let part = 0;
      for (let acc = m.parts[0]; o >= acc; acc += m.parts[++part]);
      const other = (part + 1 + Math.floor(rand() * (n - 1))) % n;
      upData[o * cols + other * m.r + Math.floor(rand() * m.r)] = 0.25;
      break;
    }
    case 'fused rank not n parts':
      // One more down row and up column: n·r + 1 is no n parts of one rank.
      downShape = [cols + 1, inF];
      downData = Float64Array.from([...down, ...values(rand, inF, dtype, 0.5)]);
      upShape = [rows, cols + 1];
      upData = Float64Array.from({ length: rows * (cols + 1) }, (_, i) => (i % (cols + 1) === cols ? 0 : up[Math.floor(i / (cols + 1)) * cols + (i % (cols + 1))]));
      break;
    case 'rows':
      // One row short of the parts the network splits into.
      upShape = [rows - 1, cols];
      upData = up.slice(0, (rows - 1) * cols);
      break;
    case 'nan': {
      // NaN inside a part: the down, or the up within its block.
      if (rand() < 0.5) downData[Math.floor(rand() * downData.length)] = NaN;
      else {
        const o = Math.floor(rand() * m.parts[0]);
        upData[o * cols + Math.floor(rand() * m.r)] = NaN;
      }
      break;
    }
    case 'fused and numbered':
      extra.push(st(`${m.name}.lora_down.0.weight`, dtype, [m.r, inF], values(rand, m.r * inF, dtype, 0.5)), st(`${m.name}.lora_up.0.weight`, dtype, [m.parts[0], m.r], values(rand, m.parts[0] * m.r, dtype, 0.5)));
      break;
    case 'tensor beside the pair':
      extra.push(st(`${m.name}.dora_scale`, dtype, [1, inF], values(rand, inF, dtype, 1)));
      break;
  }
  return [
    st(`${m.name}.lora_down.weight`, dtype, downShape, downData), st(`${m.name}.lora_up.weight`, dtype, upShape, upData),
    ...(m.alpha === null ? [] : [st(`${m.name}.alpha`, dtype, [], [m.alpha])]), ...extra,
  ];
}

/** The tensors of a split_dims module (LoRANetwork.state_dict's numbered ModuleList children), hostile: changed as named. */
function splitDimsTensors(rand: Rand, m: Module, dtype: FixtureDType): FixtureTensor[] {
  const inF = m.layer.inF, n = m.parts.length;
  const pairs = m.parts.map((d) => ({ r: m.r, d, down: values(rand, m.r * inF, dtype, 0.5), up: values(rand, d * m.r, dtype, 0.5) }));
  let numbers = pairs.map((_, i) => i);
  const dropped = new Set<string>();
  const extra: FixtureTensor[] = [];
  const at = Math.floor(rand() * n);
  switch (m.hostile) {
    case 'gap': numbers = numbers.map((i) => (i >= Math.max(at, n > 1 ? 1 : 0) ? i + 1 : i)); break;
    case 'half a pair': dropped.add(rand() < 0.5 ? `lora_up.${at}` : `lora_down.${at}`); break;
    case 'mixed ranks': {
      const r = m.r === 1 ? 2 : m.r - 1;
      pairs[at] = { ...pairs[at], r, down: values(rand, r * inF, dtype, 0.5), up: values(rand, pairs[at].d * r, dtype, 0.5) };
      break;
    }
    case 'rows': {
      const d = pairs[at].d > 1 && rand() < 0.5 ? pairs[at].d - 1 : pairs[at].d + 1;
      pairs[at] = { ...pairs[at], d, up: values(rand, d * m.r, dtype, 0.5) };
      break;
    }
    case 'nan': {
      const p = pairs[at];
      if (rand() < 0.5) p.down[Math.floor(rand() * p.down.length)] = NaN;
      else p.up[Math.floor(rand() * p.up.length)] = NaN;
      break;
    }
    case 'fused and numbered': {
      const rows = m.parts.reduce((a, b) => a + b, 0);
      extra.push(st(`${m.name}.lora_down.weight`, dtype, [m.r, inF], values(rand, m.r * inF, dtype, 0.5)), st(`${m.name}.lora_up.weight`, dtype, [rows, m.r], values(rand, rows * m.r, dtype, 0.5)));
      break;
    }
    case 'dora beside the parts': {
      const rows = m.parts.reduce((a, b) => a + b, 0);
      extra.push(st(`${m.name}.dora_layer.weight`, dtype, [rows], values(rand, rows, dtype, 1)));
      break;
    }
  }
  return [
    ...pairs.flatMap((p, i) => [
      st(`${m.name}.lora_down.${numbers[i]}.weight`, dtype, [p.r, inF], p.down), st(`${m.name}.lora_up.${numbers[i]}.weight`, dtype, [p.d, p.r], p.up),
    ].filter((t) => !dropped.has(t.name.slice(m.name.length + 1, -'.weight'.length)))),
    ...(m.alpha === null ? [] : [st(`${m.name}.alpha`, dtype, [], [m.alpha])]), ...extra,
  ];
}

/** A plain module's pair (the file's unsplit modules). */
function plainTensors(rand: Rand, m: Module, dtype: FixtureDType): FixtureTensor[] {
  const inF = m.layer.inF, rows = m.layer.rows;
  return [
    st(`${m.name}.lora_down.weight`, dtype, [m.r, inF], values(rand, m.r * inF, dtype, 0.5)), st(`${m.name}.lora_up.weight`, dtype, [rows, m.r], values(rand, rows * m.r, dtype, 0.5)),
    ...(m.alpha === null ? [] : [st(`${m.name}.alpha`, dtype, [], [m.alpha])]),
  ];
}

const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((a, x) => Math.max(a, Math.abs(x)), 0);

/** One part of a module's ΔW, from decoded tensors: its first row and rows, rank, and where its factors lie in the stored tensors. */
interface PartValues { row: number; rows: number; r: number; down: ArrayLike<number>; downRow: number; up: ArrayLike<number>; upRow: number; upCol: number; upCols: number }

/** The drawn world: a base, a file of one form with split and plain modules, maybe one hostile module. */
export const splitModulesWorld: fc.Arbitrary<SurfaceWorld> = fc
  .record({
    form: fc.constantFrom<Form>('split_qkv', 'split_dims'),
    // Flux with split_qkv (3072-row parts) the least often: its cases take the longest.
    base: fc.constantFrom<BaseForm>('flux-bfl', 'flux-comfy', 'flux-diffusers', 'sd3', 'sd3'),
    seed: fc.integer(),
    wDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'), loraDtype: fc.constantFrom<FixtureDType>('F32', 'F16', 'BF16'),
    hidden: fc.integer({ min: 3, max: 7 }), inF: fc.integer({ min: 1, max: 3 }),
    count: fc.integer({ min: 1, max: 4 }), metadata: fc.boolean(),
    /** blissful-tuner's flags for a split_dims file: none, or rsLoRA off/on (dtype BOOL or the save dtype). */
    flags: fc.constantFrom<null | 'off' | 'on'>(null, null, 'off', 'on'), flagsBool: fc.boolean(),
    slabBytes: fc.constantFrom<number | undefined>(undefined, 4096, 1 << 14),
    hostile: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.nat() }),
  })
  .map(({ base, form, seed, wDtype, loraDtype, hidden, inF: narrow, count, metadata, flags, flagsBool, slabBytes, hostile }) => {
    const rand = seededRandom(seed);
    const pick = (n: number) => Math.floor(rand() * n);
    const flux = base !== 'sd3';
    // lora_flux's split fixes q, k and v at 3072 rows (get_qkv_mlp_split_dims); split_dims takes any.
    const h = flux && form === 'split_qkv' ? 3072 : hidden;
    const layers = flux ? fluxLayers(h, form === 'split_qkv' ? narrow : h) : sd3Layers(h);
    const splittable = layers.filter((l) => l.qkvParts);
    // One split module always; the others drawn (plain modules beside them). Flux's split_qkv parts
    // keep their 3072 rows, so its fused ups are large (21504 × 4r for linear1): one split module
    // there, of a rank drawn mostly small.
    const big = h === 3072;
    const chosen = new Set<Layer>([splittable[pick(splittable.length)]]);
    const others = big ? layers.filter((l) => !l.qkvParts) : layers;
    while (chosen.size < Math.min(count, big ? others.length + 1 : layers.length)) chosen.add(others[pick(others.length)]);
    const prefix = base === 'flux-comfy' || base === 'sd3' ? 'model.diffusion_model.' : '';
    const folder = base === 'flux-diffusers';
    const landsOf = (l: Layer): Landing[] => (folder ? diffusersLandings(l.path, h) : [{ key: `${prefix}${l.path}.weight`, src: 0, dst: 0, count: l.rows }]);
    const alphaDraw = () => [null, 0, 1, 2, 3, 4, 8, 0.5, 16, 5][pick(10)];
    const modules: Module[] = [...chosen].map((layer) => {
      const split = !!layer.qkvParts;
      const r = split && big ? [1, 1, 2, 2, 3, 4, 5, 8][pick(8)] : 1 + pick(8);
      const parts = !split ? [layer.rows] : form === 'split_qkv' ? layer.qkvParts! : partition(rand, layer.rows, 1 + pick(Math.min(8, layer.rows)));
      return { layer, name: `lora_unet_${layer.path.replace(/\./g, '_')}`, parts, split, r, alpha: alphaDraw(), lands: landsOf(layer) };
    });
    let hostileModule: Module | undefined;
    if (hostile !== null) {
      const list = form === 'split_qkv' ? QKV_HOSTILES : DIMS_HOSTILES;
      hostileModule = modules.find((m) => m.split)!;
      hostileModule.hostile = list[hostile % list.length];
      // A ninth part: nine parts of the module's rows (at least 9: 3·h, h ≥ 3).
      if (hostileModule.hostile === 'ninth part') hostileModule.parts = partition(rand, hostileModule.layer.rows, 9);
      // A gap or a part of another rank needs two parts; a pair from 0 to 7 shifted past 7 is a ninth part, still refused by name.
      if ((hostileModule.hostile === 'gap' || hostileModule.hostile === 'mixed ranks') && hostileModule.parts.length === 1) hostileModule.parts = partition(rand, hostileModule.layer.rows, 2);
    }
    const loraTensors: FixtureTensor[] = modules.flatMap((m) => (!m.split ? plainTensors(rand, m, loraDtype) : form === 'split_qkv' ? splitQkvTensors(rand, m, loraDtype) : splitDimsTensors(rand, m, loraDtype)));
    const flagTensors: FixtureTensor[] = form === 'split_dims' && flags
      ? ['use_rslora_flag', 'use_dora_flag'].map((f) => st(f, flagsBool ? 'BOOL' : loraDtype, [], [f === 'use_rslora_flag' && flags === 'on' ? 1 : 0]))
      : [];
    const args = form === 'split_qkv'
      ? '{"split_qkv": "True", "dropout": null}'
      : JSON.stringify({ module_kwargs: `{'split_dims': [${modules.find((m) => m.split)!.parts.join(', ')}]}`, ...(flags === 'on' ? { use_rslora: 'True' } : {}) });
    const loraMeta = form === 'split_qkv' || metadata
      ? {
        ss_network_module: form === 'split_dims' ? 'networks.lora' : flux ? 'networks.lora_flux' : 'networks.lora_sd3',
        ss_network_dim: String(modules[0].r), ss_network_alpha: String(modules[0].alpha ?? modules[0].r), ss_network_args: args,
      }
      : undefined;
    // The base: the chosen layers' weights and biases (qkv_bias), and the small ones whether chosen or not
    // (copied as they are); Flux's 9216- and 21504-row layers only where a module is on them.
    const baseTensors: FixtureTensor[] = [];
    for (const l of layers.filter((x) => chosen.has(x) || x.rows <= h)) {
      for (const land of landsOf(l)) {
        if (baseTensors.some((t) => t.name === land.key)) continue;
        const rows = landsOf(l).filter((x) => x.key === land.key).reduce((a, x) => a + x.count, 0);
        baseTensors.push(st(land.key, wDtype, [rows, l.inF], values(rand, rows * l.inF, wDtype, 0.1)), st(land.key.replace(/weight$/, 'bias'), 'BF16', [rows], values(rand, rows, 'BF16', 0.1)));
      }
    }
    const files: Record<string, SpecFile> = {};
    const baseName = folder ? 'transformer' : base === 'sd3' ? 'sd3.5_medium.safetensors' : base === 'flux-comfy' ? 'flux1-dev-checkpoint.safetensors' : 'flux1-dev.safetensors';
    if (folder) {
      files['transformer/diffusion_pytorch_model.safetensors'] = { kind: 'safetensors', tensors: baseTensors, metadata: { format: 'pt' } };
      files['transformer/config.json'] = { kind: 'json', value: { _class_name: 'FluxTransformer2DModel', _diffusers_version: '0.32.0', num_layers: 1, num_single_layers: 1 } };
    } else files[baseName] = { kind: 'safetensors', tensors: baseTensors, ...(base === 'flux-bfl' ? {} : { metadata: { format: 'pt' } }) };
    const loraFile = form === 'split_qkv' ? `${flux ? 'flux' : 'sd35'}_split_qkv_lora.safetensors` : `${flux ? 'flux' : 'sd35'}_split_dims_lora.safetensors`;
    files[loraFile] = { kind: 'safetensors', tensors: [...flagTensors, ...loraTensors], ...(loraMeta ? { metadata: loraMeta } : {}) };
    const component = folder ? 'transformer' : '';
    return {
      name: `${form} LoRA on ${base}${hostileModule ? ` (hostile: ${hostileModule.hostile} in ${hostileModule.name})` : ''}`,
      files, base: baseName, adapter: loraFile, out: folder ? 'merged' : 'merged.safetensors',
      refusalsChecked: true, outDtypes: ['bf16', 'f16', 'f32'], ...(slabBytes ? { slabBytes } : {}),
      truth: (d: Decoded, weight: number, outDtype?: OutDtype): Truth => {
        const lora = (name: string) => d.tensors.get(`/${name}`);
        // blissful-tuner's flags: each 0 or 1 (its loader refuses others); rsLoRA on scales α/√r.
        let rsLora = false;
        for (const f of flagTensors) {
          const v = lora(f.name)!.values[0];
          if (v !== 0 && v !== 1) return { kind: 'invalid', why: `${f.name} = ${v}, not a flag` };
          if (f.name === 'use_rslora_flag') rsLora = v === 1;
        }
        const sums = new Map<string, Float64Array>();
        const terms = new Map<string, number>();
        for (const m of modules) {
          if (m.hostile) continue;
          const alphaT = lora(`${m.name}.alpha`);
          const a = alphaT ? alphaT.values[0] : undefined;
          const parts: PartValues[] = [];
          const r = m.r;
          if (m.split && form === 'split_dims') {
            let row = 0;
            m.parts.forEach((rows, j) => {
              parts.push({ row, rows, r: m.r, down: lora(`${m.name}.lora_down.${j}.weight`)!.values, downRow: 0, up: lora(`${m.name}.lora_up.${j}.weight`)!.values, upRow: 0, upCol: 0, upCols: m.r });
              row += rows;
            });
          } else {
            // The one pair; a split_qkv module's up must be block-diagonal: part j's rows zero outside its r columns.
            const down = lora(`${m.name}.lora_down.weight`)!.values, up = lora(`${m.name}.lora_up.weight`)!.values;
            const cols = m.split ? m.parts.length * m.r : m.r;
            let row = 0;
            for (let j = 0; j < m.parts.length; j++) {
              for (let o = row; o < row + m.parts[j]; o++) for (let c = 0; c < cols; c++) {
                if (Math.floor(c / m.r) !== j && up[o * cols + c] !== 0) return { kind: 'invalid', why: `${m.name}: lora_up row ${o} has ${up[o * cols + c]} outside its part's columns`, names: m.name };
              }
              parts.push({ row, rows: m.parts[j], r: m.r, down, downRow: j * m.r, up, upRow: row, upCol: j * m.r, upCols: cols });
              row += m.parts[j];
            }
          }
          // kohya's α/r (α absent or 0: scale 1); blissful-tuner's rsLoRA α/√r (α absent: √r, 0: 1).
          const scale = rsLora && form === 'split_dims'
            ? (a === undefined ? Math.sqrt(r) : a === 0 ? 1 : a / Math.sqrt(r))
            : (a === undefined || a === 0 ? 1 : a / r);
          const inF = m.layer.inF;
          const delta = new Float64Array(m.layer.rows * inF);
          let big = 0;
          for (const p of parts) {
            for (let o = 0; o < p.rows; o++) for (let c = 0; c < inF; c++) {
              let acc = 0;
              for (let k = 0; k < p.r; k++) acc += p.up[(p.upRow + o) * p.upCols + p.upCol + k] * p.down[(p.downRow + k) * inF + c];
              delta[(p.row + o) * inF + c] = acc;
            }
            big = Math.max(big, p.r * maxAbs(p.up) * maxAbs(p.down));
          }
          for (const l of m.lands) {
            const key = `${component}/${l.key}`;
            const w = d.tensors.get(key)!;
            const sum = sums.get(key) ?? new Float64Array(w.values.length);
            for (let o = 0; o < l.count; o++) for (let c = 0; c < inF; c++) sum[(l.dst + o) * inF + c] += weight * scale * delta[(l.src + o) * inF + c];
            sums.set(key, sum);
            terms.set(key, (terms.get(key) ?? 0) + Math.abs(weight * scale) * big);
          }
        }
        const merged = new Map<string, ExpectedMerge>();
        for (const [key, sum] of sums) {
          const w = d.tensors.get(key)!;
          merged.set(key, { values: w.values.map((v, i) => v + sum[i]), magnitude: maxAbs(w.values) + terms.get(key)!, ...(outDtype ? { dtype: OUT_DTYPE[outDtype] } : {}) });
        }
        if (hostileModule) {
          // Refused naming the module, unless another module's merge fails first (a value past the output dtype).
          const dtypeOf = (key: string) => (outDtype ? OUT_DTYPE[outDtype] : d.tensors.get(key)!.dtype as FixtureDType);
          const loadTime = hostileModule.hostile === 'not block-diagonal' || hostileModule.hostile === 'nan';
          const fails = loadTime && [...merged].some(([key, e]) => e.values.some((x) => !Number.isFinite(roundForDType(x, dtypeOf(key)))));
          return { kind: 'invalid', why: `${hostileModule.name}: ${hostileModule.hostile}`, ...(fails ? {} : { names: hostileModule.name }) };
        }
        if (!outDtype) return { kind: 'expected', merged };
        const refused = pastDtype(merged, outDtype) ?? convertRest(d, baseTensors.map((t) => t.name), (n) => `${component}/${n}`, () => false, merged, outDtype);
        if (refused) return refused;
        if ([...merged.values()].some((e) => e.exact && e.values.some((x) => !Number.isFinite(x)))) return { kind: 'unknown', why: 'a base tensor holding NaN or Inf converted' };
        return { kind: 'expected', merged };
      },
    } satisfies SurfaceWorld;
  });
