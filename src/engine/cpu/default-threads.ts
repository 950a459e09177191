/**
 * How many threads the CPU backend uses when it is not told. Each thread costs its own V8 heap and
 * WebAssembly memory (about 14 MiB), so one per core would let the machine, not us, set the
 * memory. The merge streams a slab at a time and is bound by memory bandwidth well before
 * 8 threads: on a 16-core host, 8 threads merged the 0.97 GB benchmark model as fast as 16
 * (1.53–1.57 s against 1.56–1.60 s) in 253 MiB of peak RSS against 363 MiB (docs/performance.md).
 */
export const DEFAULT_MAX_CPU_THREADS = 8;

/** The default thread count for a machine of `cores` cores: one per core, at most {@link DEFAULT_MAX_CPU_THREADS}. */
export function defaultCpuThreads(cores: number | undefined): number {
  const known = Number.isFinite(cores) && (cores as number) >= 1 ? Math.floor(cores as number) : 1;
  return Math.min(known, DEFAULT_MAX_CPU_THREADS);
}
