/**
 * A GPU buffer kept across ops and replaced by a bigger one only when an op needs more, so that a
 * model's thousands of tensors do not each allocate their own buffers.
 */
export class ReusableBuffer {
  private buffer: GPUBuffer | undefined;

  constructor(
    private readonly device: GPUDevice,
    private readonly label: string,
    private readonly usage: GPUBufferUsageFlags,
    private readonly maxSize: number,
  ) {}

  /** A buffer of at least `bytes` bytes (never 0; rounded up to 256 and grown by half again). */
  get(bytes: number): GPUBuffer {
    const need = Math.max(256, Math.ceil(bytes / 256) * 256);
    if (this.buffer && this.buffer.size >= need) return this.buffer;
    this.buffer?.destroy();
    const grown = Math.max(need, Math.min(this.maxSize, Math.ceil((this.buffer?.size ?? 0) * 1.5 / 256) * 256));
    this.buffer = this.device.createBuffer({ label: this.label, size: grown, usage: this.usage });
    return this.buffer;
  }

  destroy(): void {
    this.buffer?.destroy();
    this.buffer = undefined;
  }
}
