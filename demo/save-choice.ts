/**
 * Where a merge is saved, asked while the click still counts as a user gesture. Pickers never
 * overwrite without asking: the save-file picker asks before replacing a file, and a picked folder
 * gets a new sub-folder `<base>-merged` (or `-2`, `-3`, … if that exists) for the output.
 */
import type { OutputChoice } from './worker-protocol.js';

interface PickerWindow {
  showSaveFilePicker?(options: object): Promise<FileSystemFileHandle>;
  showDirectoryPicker?(options: object): Promise<FileSystemDirectoryHandle>;
}
const pickers = window as unknown as PickerWindow;

/** Whether this browser can stream straight into a file or folder the user picks. */
export function canPickDestination(): boolean {
  return typeof pickers.showSaveFilePicker === 'function' && typeof pickers.showDirectoryPicker === 'function';
}

/** `llama.safetensors` → `llama`; `llama-Q4_K_M.gguf` → `llama-Q4_K_M`; `my-model` → `my-model`. */
export function stemOf(name: string): string {
  return name.replace(/\.(safetensors|gguf)$/i, '').replace(/[\\/:*?"<>|]+/g, '_') || 'model';
}

/** The extension a one-file merge of this base is written with: a GGUF stays a GGUF. */
export function weightsExtension(name: string): '.gguf' | '.safetensors' {
  return /\.gguf$/i.test(name) ? '.gguf' : '.safetensors';
}

export interface PickedDestination {
  output: OutputChoice;
  /** Where, in words. */
  where: string;
  /** Undoes what picking made (an empty sub-folder, the empty picked file) when the merge fails or is cancelled. */
  cleanUp(): Promise<void>;
}

/** Asks for a file (one-file models) or a folder; undefined when the user closed the picker. */
export async function pickDestination(baseName: string, singleFile: boolean): Promise<PickedDestination | undefined> {
  const stem = stemOf(baseName);
  const extension = weightsExtension(baseName);
  try {
    if (singleFile) {
      const handle = await pickers.showSaveFilePicker!({
        id: 'loramerge-output', suggestedName: `${stem}-merged${extension}`,
        types: [{ description: `${extension.slice(1)} model`, accept: { 'application/octet-stream': [extension] } }],
      });
      return { output: { kind: 'file', handle }, where: ` into ${handle.name}`, cleanUp: () => removeIfEmpty(handle) };
    }
    const parent = await pickers.showDirectoryPicker!({ id: 'loramerge-output', mode: 'readwrite' });
    const name = await unusedName(parent, `${stem}-merged`);
    const handle = await parent.getDirectoryHandle(name, { create: true });
    return {
      output: { kind: 'directory', handle },
      where: ` into ${parent.name}/${name}/`,
      cleanUp: () => parent.removeEntry(name, { recursive: true }).catch(() => undefined),
    };
  } catch (error) {
    if ((error as DOMException).name === 'AbortError') return undefined;
    throw error;
  }
}

/**
 * The save picker makes the picked file before the page writes a byte (empty, or emptied when it
 * replaces one), and a merge writes it only when it completes: one cancelled or failed leaves an
 * empty file under the model's name, which looks like a merged model. Removed where the browser
 * can remove a file it handed out (FileSystemHandle.remove, Chromium); left when it holds bytes.
 */
async function removeIfEmpty(handle: FileSystemFileHandle): Promise<void> {
  try {
    if ((await handle.getFile()).size === 0) await (handle as FileSystemFileHandle & { remove?(): Promise<void> }).remove?.();
  } catch {
    // Permission withdrawn or the file moved meanwhile: nothing more the page can do.
  }
}

async function unusedName(parent: FileSystemDirectoryHandle, wanted: string): Promise<string> {
  for (let n = 1; ; n++) {
    const name = n === 1 ? wanted : `${wanted}-${n}`;
    try {
      await parent.getDirectoryHandle(name);
    } catch {
      try {
        await parent.getFileHandle(name);
      } catch {
        return name;
      }
    }
  }
}
