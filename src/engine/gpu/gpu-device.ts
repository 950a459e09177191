/**
 * Gets a GPUDevice for merging: requests the buffer limits the adapter offers (or less, if the
 * caller caps them) and describes the adapter for users.
 */
import { MergeError } from '../../errors.js';

/** Upper bounds the engine will use even when the device allows more (tests use small ones). */
export interface GpuLimitCaps {
  maxStorageBufferBindingSize?: number;
  maxBufferSize?: number;
  maxComputeWorkgroupsPerDimension?: number;
}

export interface MergeDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** Effective limits: what the device granted, capped by the caller. */
  maxBindingBytes: number;
  maxWorkgroupsPerDimension: number;
  /** e.g. "google swiftshader (SwiftShader Device (Subzero)), software fallback adapter". */
  description: string;
  isSoftware: boolean;
  /** The device has `shader-f16` (requested wherever the adapter offers it). */
  shaderF16: boolean;
  /** The adapter's largest subgroup size, where it reports one. */
  subgroupSize?: number;
}

export function adapterIsSoftware(adapter: GPUAdapter): boolean {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return info.isFallbackAdapter === true || legacy === true || /swiftshader|llvmpipe|lavapipe|warp/i.test(
    `${info.architecture} ${info.device} ${info.description}`);
}

export function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info;
  const parts = [info.vendor, info.architecture].filter((s) => s).join(' ');
  const detail = info.description || info.device;
  const name = [parts, detail ? `(${detail})` : ''].filter((s) => s).join(' ') || 'unknown adapter';
  return adapterIsSoftware(adapter) ? `${name}, software fallback adapter` : name;
}

export async function requestAdapter(gpu: GPU): Promise<GPUAdapter> {
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new MergeError('GPU_UNAVAILABLE', `WebGPU adapter request failed: ${(e as Error).message}`, { cause: e });
  }
  if (!adapter) throw new MergeError('GPU_UNAVAILABLE', 'WebGPU is present but no GPU adapter is available');
  return adapter;
}

export async function requestMergeDevice(adapter: GPUAdapter, caps: GpuLimitCaps = {}): Promise<MergeDevice> {
  const cap = (name: keyof GpuLimitCaps): number => Math.min(adapter.limits[name], caps[name] ?? Infinity);
  let device: GPUDevice;
  // f16 W is read through WGSL's f16 type where the adapter allows it (merge-w-f16.wgsl).
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('shader-f16') ? ['shader-f16'] : [];
  try {
    device = await adapter.requestDevice({
      label: 'loramerge device',
      requiredFeatures,
      requiredLimits: {
        maxStorageBufferBindingSize: cap('maxStorageBufferBindingSize'),
        maxBufferSize: cap('maxBufferSize'),
      },
    });
  } catch (e) {
    throw new MergeError('GPU_UNAVAILABLE', `could not open the GPU device: ${(e as Error).message}`, { cause: e });
  }
  // A request below the spec's default yields the default: enforce the caller's cap ourselves.
  const maxBindingBytes = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize,
    caps.maxStorageBufferBindingSize ?? Infinity, caps.maxBufferSize ?? Infinity);
  const maxWorkgroupsPerDimension = Math.min(device.limits.maxComputeWorkgroupsPerDimension,
    caps.maxComputeWorkgroupsPerDimension ?? Infinity);
  const info = adapter.info as GPUAdapterInfo & { subgroupMaxSize?: number };
  return {
    adapter, device, maxBindingBytes, maxWorkgroupsPerDimension,
    description: describeAdapter(adapter),
    isSoftware: adapterIsSoftware(adapter),
    shaderF16: device.features.has('shader-f16'),
    subgroupSize: typeof info.subgroupMaxSize === 'number' && info.subgroupMaxSize > 0 ? info.subgroupMaxSize : undefined,
  };
}
