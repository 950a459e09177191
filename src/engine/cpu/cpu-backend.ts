/** MergeBackend on the CPU: exact same semantics as the WebGPU one, computed in f64. */
import type { MergeBackend, MergeOp } from '../merge-op.js';
import { mergeOnCpu } from './cpu-merge.js';

export class CpuBackend implements MergeBackend {
  readonly kind = 'cpu' as const;
  readonly description: string;

  constructor(reason = 'requested') {
    this.description = `CPU (${reason})`;
  }

  async merge(op: MergeOp, signal?: AbortSignal): Promise<Uint8Array> {
    return mergeOnCpu(op, signal);
  }

  dispose(): void {}
}
