/**
 * `loramerge` on Node: parse the command line, run it, and turn every failure into one
 * `error: …` line on stderr and a non-zero exit. Set LORAMERGE_DEBUG=1 to see stack traces.
 */
import { readFileSync } from 'node:fs';
import { isMergeError } from '../errors.js';
import { parseCommandLine, USAGE } from './args.js';
import { runInspect } from './inspect-command.js';
import { runMerge } from './merge-command.js';
import { runSample } from './sample-command.js';
import { runCombine, runExtract, runResize } from './adapter-command.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const command = parseCommandLine(argv);
  switch (command.command) {
    case 'help':
      process.stdout.write(USAGE + '\n');
      return 0;
    case 'version':
      process.stdout.write(version() + '\n');
      return 0;
    case 'inspect':
      return runInspect(command);
    case 'merge':
      return runMerge(command);
    case 'sample':
      return runSample(command);
    case 'combine':
      return runCombine(command);
    case 'resize':
      return runResize(command);
    case 'extract':
      return runExtract(command);
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (process.env.LORAMERGE_DEBUG) console.error(e);
    const message = isMergeError(e) ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`;
    process.stderr.write(`error: ${oneLine(message)}\n`);
    // Dawn keeps the process alive while its GPU object lives: exit explicitly.
    process.exit(!isMergeError(e) ? 1 : e.code === 'BAD_ARGUMENT' ? 2 : e.code === 'ABORTED' ? 130 : 1);
  },
);
