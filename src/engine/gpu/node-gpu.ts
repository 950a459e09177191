/**
 * WebGPU for Node through Dawn's `webgpu` package (Node only). On Linux machines without a Vulkan
 * GPU driver, Dawn finds no adapter; Chromium ships Google's SwiftShader (a CPU Vulkan driver), so
 * the loader is pointed at it — before Dawn starts, and never where a real driver is installed.
 */
import { existsSync, readdirSync } from 'node:fs';

export interface NodeGpu {
  gpu: GPU;
  /** Set when the SwiftShader Vulkan driver was chosen for lack of a real one. */
  swiftShaderIcd?: string;
  /** Drops the Dawn instance (the process cannot exit while it is referenced). */
  dispose(): void;
}

const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib64/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];
const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/local/etc/vulkan/icd.d'];
/** Mesa's CPU driver, which Dawn rejects: it does not count as a real driver. */
const SOFTWARE_ICD = /^lvp_|lavapipe|swiftshader/i;

function hasHardwareVulkan(): boolean {
  const icds = ICD_DIRS.flatMap((d) => {
    try { return readdirSync(d).filter((f) => f.endsWith('.json') && !SOFTWARE_ICD.test(f)); } catch { return []; }
  });
  if (icds.length === 0) return false;
  // Driver packages are often installed without the hardware (containers, CI): look for a device.
  const nodes = (dir: string, re: RegExp): boolean => {
    try { return readdirSync(dir).some((f) => re.test(f)); } catch { return false; }
  };
  return nodes('/dev/dri', /^renderD/) || nodes('/dev', /^nvidia\d|^dxg$/);
}

/**
 * On Linux, whether WebGPU could only run on a software Vulkan driver (none installed for real
 * hardware, and the user chose none): then `auto` knows the answer without starting Dawn.
 */
export function onlySoftwareVulkan(env: NodeJS.ProcessEnv = process.env): boolean {
  return process.platform === 'linux' && !env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES && !hasHardwareVulkan();
}

/** Points the Vulkan loader at SwiftShader when no real driver exists; returns the ICD chosen. */
export function chooseVulkanDriver(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform !== 'linux') return undefined;
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return undefined;
  if (hasHardwareVulkan()) return undefined;
  const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
  if (icd) env.VK_ICD_FILENAMES = icd;
  return icd;
}

let shared: { gpu: GPU; users: number; icd: string | undefined } | undefined;

/**
 * The optional `webgpu` package. Left out (`npm install --omit=optional`), Node's own error names
 * the importing file's path and not the fix: it is said as what to do instead.
 */
async function importDawn(): Promise<typeof import('webgpu')> {
  try {
    return await import('webgpu');
  } catch (e) {
    const missing = (e as { code?: unknown }).code === 'ERR_MODULE_NOT_FOUND' && /['"]webgpu['"]/.test(String((e as Error).message));
    if (!missing) throw e;
    throw new Error("the optional package \"webgpu\" (Dawn) is not installed; install it (npm install webgpu) or use the CPU backend", { cause: e });
  }
}

/** Dawn's GPU object for Node (one per process, shared); call dispose() on every result when done. */
export async function getNodeGpu(): Promise<NodeGpu> {
  if (!shared) {
    const icd = chooseVulkanDriver();
    const dawn = await importDawn();
    // WebGPU's constant namespaces (GPUBufferUsage, …) as globals, as in a browser.
    for (const [k, v] of Object.entries(dawn.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    shared = { gpu: dawn.create([]) as GPU, users: 0, icd };
  }
  const s = shared;
  s.users++;
  let live = true;
  return {
    gpu: s.gpu,
    ...(s.icd ? { swiftShaderIcd: s.icd } : {}),
    dispose: () => {
      if (!live) return;
      live = false;
      if (--s.users === 0 && shared === s) shared = undefined;
    },
  };
}
