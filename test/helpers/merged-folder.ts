/** A prepared merge run into memory and read back as a folder (tensors, shards, configs). */
export { mergeIntoFolder } from './hf-folder.js';
