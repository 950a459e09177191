/**
 * The streaming floor: what a plain Node program does to copy a file (a read stream piped into a
 * write stream, default chunk sizes). The CPU merge is measured against it in the same run.
 *
 * usage: node bench/stream-copy.mjs SRC DST
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

const [src, dst] = process.argv.slice(2);
await pipeline(createReadStream(src), createWriteStream(dst));
