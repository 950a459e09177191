export * from './dtype.js';
export * from './errors.js';
export * from './engine/merge-op.js';
export * from './io/types.js';
export * from './sample/index.js';
