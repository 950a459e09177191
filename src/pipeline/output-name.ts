/**
 * The name of a path output against the model it will hold, for the command line's --out and
 * `loramerge/node`'s `out` alike: the merged model keeps the base's container and shape, so a name
 * that promises another would send it to a loader that cannot read it.
 */
import { MergeError } from '../errors.js';

/** How the options are named in a refusal: the command line's flags, or the library's option names. */
export interface OutputOptionNames {
  /** `--out` or `out`. */
  out: string;
  /** `--base` or `base`. */
  base: string;
}

/** The command line's names. */
export const CLI_OUTPUT_NAMES: OutputOptionNames = { out: '--out', base: '--base' };

/** `loramerge/node`'s names. */
export const LIBRARY_OUTPUT_NAMES: OutputOptionNames = { out: 'out', base: 'base' };

/**
 * A file `out` named for the other format (`merged.gguf` from a safetensors base): the merged model
 * is written in the base's format. And a weight file's name for the folder a folder base gives
 * (`folder`: a folder or a split GGUF). `format` is the base's container name (`safetensors`, `gguf`).
 */
export function checkOutputFormatName(out: string, format: string, folder: boolean, names: OutputOptionNames = CLI_OUTPUT_NAMES): void {
  const named = /\.(gguf|safetensors)$/i.exec(out)?.[1].toLowerCase();
  if (named === undefined) return;
  const given = names === CLI_OUTPUT_NAMES ? `--out ${out}` : `${names.out} ${JSON.stringify(out)}`;
  if (folder) {
    // A folder base gives a folder: `--out merged.safetensors` from a diffusers `unet/` wrote a
    // folder of that name, not the one file the name promises.
    throw new MergeError('BAD_ARGUMENT', `${given}: the base is a folder${format === 'gguf' ? ' or a split GGUF' : ''}, so the merged model is a folder of the same files; name ${names.out} as a folder, without .${named} (or, where the base's weights are one file, give that file as ${names.base} for one merged file)`);
  }
  if (named === format) return;
  const shown = (f: string) => (f === 'gguf' ? 'GGUF' : f);
  throw new MergeError('BAD_ARGUMENT', `${given}: the base is a ${shown(format)} model and the merged model is written in the base's format, not ${shown(named)} (loramerge does not convert between safetensors and GGUF); name the output .${format}`);
}
