// Preloaded into a CLI run (`node --import`): writes the process's peak RSS in bytes at exit.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.LORAMERGE_RSS_FILE) writeFileSync(process.env.LORAMERGE_RSS_FILE, String(process.resourceUsage().maxRSS * 1024));
});
