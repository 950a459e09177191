/**
 * A WebGPU whose device binds no row of any matrix (a largest storage binding of 16 bytes), so
 * that the GPU sends every product and every merge to the CPU, as it sends one whose row, Y or
 * output is wider than a real device's binding. Nothing else of the device is touched: neither
 * the algebra nor the merge backend makes a buffer it cannot bind. The adapter is an NVIDIA one
 * (a discrete card: `auto` takes it by rule).
 */
export function narrowGpu(): { gpu: GPU; destroyed: () => boolean } {
  let destroyed = false;
  const limits = {
    maxStorageBufferBindingSize: 16, maxBufferSize: 16, maxComputeWorkgroupsPerDimension: 65535,
    maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256,
  };
  const device = {
    limits, features: new Set<string>(), lost: new Promise<never>(() => {}),
    destroy() { destroyed = true; },
    createBuffer() { throw new Error('no buffer should be made: no row fits a binding'); },
  };
  const adapter = {
    info: { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'narrow bindings' },
    limits, features: new Set<string>(),
    requestDevice: async () => device,
  };
  return { gpu: { requestAdapter: async () => adapter } as unknown as GPU, destroyed: () => destroyed };
}

/**
 * WebGPU's buffer usage flags (the spec's values), which the merge backend reads when it is made:
 * Node has no `GPUBufferUsage` until Dawn is loaded. For `vi.stubGlobal('GPUBufferUsage', …)`.
 */
export const GPU_BUFFER_USAGE = {
  MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, INDEX: 0x10, VERTEX: 0x20, UNIFORM: 0x40, STORAGE: 0x80, INDIRECT: 0x100, QUERY_RESOLVE: 0x200,
} as const;
