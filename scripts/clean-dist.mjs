// Empties dist/ before a library build, so files of modules since removed are not shipped.
import { rmSync } from 'node:fs';

rmSync(new URL('../dist/', import.meta.url), { recursive: true, force: true });
