/**
 * Diag-OFT (LyCORIS modules/diag_oft.py): W's output rows, in blocks of b, are rotated by
 * R = (I + Q)(I − Q)⁻¹ with Q = B − Bᵀ from oft_blocks (n, b, b); the stored α is the constraint,
 * κ = α·out (Q scaled to ‖Q‖ = κ when larger); with user weight s each block of rows becomes
 * (s·R − s·I + I)ᵀ·W_k; then, with `rescale` (out, 1…), every row is multiplied by it (not by s).
 *
 * ComfyUI applies the same tensors by another rule (comfy/weight_adapter/oft.py
 * `calculate_weight`): κ = α (not α·out), no rescale, and s twice, W + s·(s·R − s·I)ᵀ·W. Its own
 * trainer (comfy_extras/nodes_train.py, algorithm "OFT") trains with κ = α = 1 and saves the
 * module under ComfyUI's key names (`diffusion_model.<path>.oft_blocks` and `.alpha`), which
 * LyCORIS cannot load and ComfyUI alone reads: such a module (ModuleAddress.comfyNaming) merges by
 * ComfyUI's rule, every other by LyCORIS's, which trained it. ComfyUI's bypass path (OFTAdapter.g,
 * since January 2026; its trainer's bypass_mode too) applies the same file otherwise, s once, rescale
 * applied, the bias rotated; nothing in the file says which was meant, and the merge is the default.
 *
 * BOFT's butterfly blocks (4-D oft_blocks, LyCORIS tells them apart the same way) are built by
 * ./boft.ts.
 */
import { diagOftBlocks } from '../../algorithms/math/oft.js';
import { fmtShape, type Algorithm } from './algorithm.js';
import { boft } from './boft.js';
import { f32Bytes, readValues } from './factor-io.js';
import { lycorisOftModule, rescaleFits, rescalePieces } from './lycoris-oft-parts.js';
import { BYPASS_SOURCE, lycorisBypassOn } from './lycoris-bypass.js';

/** ComfyUI's rule as the plan's warning words it (AdapterModule.weightSquared). */
const COMFY_WEIGHT = { tool: 'ComfyUI', rule: 'W + w·(w·R − w·I)ᵀ·W' };

export const oft: Algorithm = {
  name: 'oft',
  title: 'OFT',
  defines: ['oft_blocks', 'rescale'],
  roles: ['oft_blocks', 'rescale'],

  build(tensors, context) {
    const blocks = tensors.get('oft_blocks');
    const rescale = tensors.get('rescale');
    if (!blocks) {
      context.report('UNSUPPORTED_FORMAT', 'has rescale but no oft_blocks');
      return null;
    }
    const comfy = context.address.comfyNaming === true;
    if (comfy && blocks.shape.length === 4) {
      // ComfyUI's BOFT caps ‖Q‖ at α and applies s again to W' − W; its trainer offers no BOFT.
      context.report('UNSUPPORTED_FORMAT', `is BOFT under ComfyUI's key names, which ComfyUI applies by its own BOFT rule (‖Q‖ capped at α, the weight applied to each factor and again to W' − W); that rule is not supported, only LyCORIS's for files in LyCORIS's names (lycoris_…, lora_unet_…)`);
      return null;
    }
    if (blocks.shape.length === 4) return boft.build(tensors, context);
    const [n, b, b2] = blocks.shape;
    const out = n * b;
    if (blocks.shape.length !== 3 || b !== b2 || !rescaleFits(rescale, out)) {
      context.report('SHAPE_MISMATCH', `oft_blocks ${fmtShape(blocks.shape)}${rescale ? ` and rescale ${fmtShape(rescale.shape)}` : ''} do not fit (expected (n, b, b) and (n·b, 1…))`);
      return null;
    }
    if (comfy && rescale) {
      // ComfyUI's merge reads the name and never applies it, its bypass g() multiplies by it; its trainer writes none.
      context.report('UNSUPPORTED_FORMAT', `has "${rescale.name}" under ComfyUI's key names: ComfyUI, which reads such files, ignores rescale when it merges them (Load LoRA) and applies it in its bypass loader, so the change this file was trained to make cannot be told; remove the tensor to merge it as ComfyUI's Load LoRA applies it`);
      return null;
    }
    const module = lycorisOftModule(context, oft.name, blocks, rescale, out, { kind: 'transform', cost: b, rowBlock: b, block: b, splitRows: true });
    return comfy ? { ...module, options: { comfyRule: true }, weightSquared: COMFY_WEIGHT } : module;
  },

  lycorisBypass(module, context) {
    if (!lycorisBypassOn(context)) return module;
    // diag_oft.py and boft.py _bypass_forward: R acts on org_forward(x), the layer's output with its bias.
    const what = module.algorithm === boft.name ? 'BOFT' : 'OFT';
    const rescale = module.tensors.rescale && what === 'OFT' ? ' (and rescale as rescale·Rᵀ·y + (rescale − 1)·y)' : '';
    context.report('UNSUPPORTED_FORMAT', `is ${what}, trained with ${BYPASS_SOURCE}, whose forward rotates the layer's whole output, bias included${rescale}, where a merge rotates the weight alone; that is not supported`);
    return null;
  },

  async load(file, module) {
    const { blocks, rescale } = module.tensors;
    const b = blocks.shape[1];
    const out = module.deltaShape[0];
    // LyCORIS caps ‖Q‖ at α·out, ComfyUI at α.
    const constraint = module.options?.comfyRule ? module.alpha : module.alpha * out;
    // Rotation blocks for s = 1 are Rᵀ; the engine applies I + s·(Rᵀ − I) (s² under ComfyUI's rule: the plan squares it).
    const m = diagOftBlocks(await readValues(file, blocks), b, constraint, 1);
    for (let k = 0; k < m.length / (b * b); k++) for (let i = 0; i < b; i++) m[k * b * b + i * b + i] -= 1;
    return [{ kind: 'rotate', axis: 'out', blockSize: b, delta: f32Bytes(m) }, ...(await rescalePieces(file, rescale))];
  },
};
