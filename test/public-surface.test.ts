/**
 * What `loramerge` and `loramerge/node` export at run time: what embedders need, nothing the CLI,
 * the page or the tests alone use. A name added to an entry must be added here on purpose (with its
 * TSDoc and, where people need it, the README); the engine's helpers stay importable by path
 * inside the repository.
 */
import { describe, expect, it } from 'vitest';
import * as browser from '../src/index.js';
import * as node from '../src/node.js';

const LIMITS = [
  'MAX_CONFIG_BYTES', 'MAX_CONFIG_NESTING', 'MAX_CONFIG_VALUES', 'MAX_GGUF_ARRAY_ELEMENTS', 'MAX_GGUF_STRING_BYTES', 'MAX_HEADER_NESTING', 'MAX_INPUT_DEPTH', 'MAX_INPUT_FILES',
  'MAX_METADATA_ENTRIES', 'MAX_MIXED_ROWS_BYTES', 'MAX_NAME_BYTES', 'MAX_PATTERNS', 'MAX_PATTERN_LENGTH', 'MAX_PATTERN_MATCHES',
  'MAX_RANK', 'MAX_ROTATION_BLOCK', 'MAX_ROW_KERNEL_BYTES', 'MAX_TENSORS', 'MAX_TENSOR_DIMS', 'MAX_THREADS', 'URL_IDLE_TIMEOUT_MS',
];

const BROWSER = [
  // one call, and the adapter jobs
  'merge', 'combineLoras', 'resizeLora', 'extractLora', 'COMBINE_METHODS',
  // step by step
  'prepareMerge', 'mergeModel', 'mergeTensor', 'openModel', 'estimateUpdateMagnitudes', 'ADAPTER_FORMAT_NAMES',
  // llama-imatrix's importance matrices (mergeModel's importance)
  'readImportanceMatrix',
  // backends
  'createBackend', 'createBrowserCpuWorkerPool', 'browserCpuPoolUnavailable',
  // inputs and outputs
  'blobInputFileSet', 'inputFileSetFromFiles', 'memoryInputFileSet', 'urlByteSource', 'urlInputFileSet',
  'createBlobOutputTarget', 'createFileSystemAccessOutputTarget', 'createOpfsOutputTarget', 'opfsSyncWritesAvailable', 'opfsWriterWorker',
  // errors, dtypes, the sample, numbers for people
  'MergeError', 'isMergeError', 'OUT_DTYPE_NAMES', 'generateSample', 'formatBytes',
  ...LIMITS,
];

const NODE_ONLY = ['convertLora', 'createNodeBackend', 'createCpuWorkerPool', 'createNodeOutputTarget', 'openNodeByteSource', 'openNodeInputFileSet'];

describe('the public surface', () => {
  it('loramerge exports exactly what embedders need', () => {
    expect(Object.keys(browser).sort()).toEqual([...BROWSER].sort());
  });

  it('loramerge/node exports the same names plus its own', () => {
    expect(Object.keys(node).sort()).toEqual([...BROWSER, ...NODE_ONLY].sort());
  });

  it('the engine\'s helpers are not on either entry', () => {
    const internal = [
      'adapterFactsOf', 'decideByRule', 'localStorageDecisionStore', 'inThreadOpfsWriter', 'parseOutDType', 'formatScale',
      'openGguf', 'createGgufWriter', 'GGUFValueType', 'ggmlTypeById', 'ggmlTypeByName', 'blockCodec', 'CpuBackend',
    ];
    for (const name of internal) {
      expect(name in browser, name).toBe(false);
      expect(name in node, name).toBe(false);
    }
  });
});
