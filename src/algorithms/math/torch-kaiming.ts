/**
 * The float32 tensors torch's CPU `uniform_` and PEFT's kaiming-uniform projections draw from a
 * seeded generator (./torch-cpu-random.ts), for VeRA and PVeRA adapters saved without them.
 *
 * `tensor.uniform_(from, to, generator)` on a CPU float32 tensor (ATen native/cpu
 * DistributionTemplates.h uniform_kernel) walks the tensor in row-major order, one `random()` per
 * entry, serially, and turns each draw v into `x·(to − from) + from` in float32 with x = (v's low 24
 * bits)·2⁻²⁴ and from, to cast to float32 first (core/TransformationHelper.h uniform_real). That
 * expression is one rounding or two by the kernel build torch dispatches to: the AVX2 and AVX-512
 * builds are compiled with -mfma and GCC fuses the multiply-add (one rounding), the default build
 * (x86-64 without AVX2, or ATEN_CPU_CAPABILITY=default) and MSVC's /fp:strict builds round the
 * product first. This module computes the fused form, which torch computes on every x86-64 CPU
 * with AVX2 under Linux (measured: test/reference/torch-kaiming-uniform.json); the two forms differ
 * by the product's rounding, a float32 step of x·(to − from) at most, in a fifth to half the entries.
 */
import type { TorchCpuGenerator } from './torch-cpu-random.js';

const TWO_TO_MINUS_24 = 2 ** -24;

/**
 * Fills `out` as `uniform_(from, to, generator)` fills a contiguous float32 tensor on a CPU with
 * AVX2 (one rounding of x·(to − from) + from).
 */
export function torchUniformFloat32(generator: TorchCpuGenerator, out: Float32Array, from: number, to: number): Float32Array {
  const lo = Math.fround(from), hi = Math.fround(to);
  const span = Math.fround(hi - lo);
  for (let i = 0; i < out.length; i++) {
    const x = (generator.random() & 0xffffff) * TWO_TO_MINUS_24;
    // x has 24 bits and span 24: the product is exact in float64, and so is the sum (its bits lie
    // within 53 of each other for |from| ≤ span), so fround is the fused multiply-add's one rounding.
    out[i] = x * span + lo;
    // Current torch returns `from` for a value that rounded to `to` (uniform_kernel's clamp); torch
    // 1.13 has no clamp. Neither matters for PEFT's draws: with from = −to, x·(to − from) + from stays
    // at least one float32 step below `to`.
    if (out[i] === hi) out[i] = lo;
  }
  return out;
}

/**
 * PEFT's kaiming-uniform draw of a (rows, cols) float32 matrix: bound = √3·√2/√fan_in with fan_in =
 * cols (torch's _calculate_correct_fan of a 2-D tensor), in float64 as Python computes it, then
 * uniform_(−bound, bound). VeRA's _kaiming_init (gain math.sqrt(2)) and torch.nn.init.kaiming_uniform_
 * with its default a = 0 (PVeRA; gain √(2/(1 + 0²))) give the same bound.
 */
export function peftKaimingUniform(generator: TorchCpuGenerator, rows: number, cols: number): Float32Array {
  const bound = Math.sqrt(3.0) * (Math.sqrt(2) / Math.sqrt(cols));
  return torchUniformFloat32(generator, new Float32Array(rows * cols), -bound, bound);
}
