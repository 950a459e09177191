/** Messages between an OPFS writer client and its worker (opfs-writer.ts). */
export type OpfsWriterRequest =
  | { op: 'open'; id: number; file: number; handle: FileSystemFileHandle }
  | { op: 'write'; id: number; file: number; bytes: Uint8Array; at: number }
  | { op: 'close'; id: number; file: number };

/** The answer to request `id`: done, or the error's name and message. */
export interface OpfsWriterReply {
  id: number;
  error?: { name: string; message: string };
}
