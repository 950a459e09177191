/**
 * Download links for the merged files. Each file gets one link; the primary one (the model file,
 * or the first shard of a sharded model) carries data-testid="download-link" and comes first.
 */
import { formatBytes } from './format.js';
import type { MergedFile } from './worker-protocol.js';

export class Downloads {
  private urls: string[] = [];

  constructor(private readonly list: HTMLUListElement) {}

  show(files: MergedFile[]): void {
    this.clear();
    const ordered = primaryFirst(files);
    for (const [i, file] of ordered.entries()) {
      if (!file.blob) continue;
      const url = URL.createObjectURL(file.blob);
      this.urls.push(url);
      const link = document.createElement('a');
      link.href = url;
      link.download = file.path.split('/').pop() ?? file.path;
      link.textContent = `Download ${file.path}`;
      link.dataset.testid = i === 0 ? 'download-link' : 'download-link-extra';
      const item = document.createElement('li');
      item.append(link, ` (${formatBytes(file.size)})`);
      this.list.append(item);
    }
  }

  clear(): void {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.list.replaceChildren();
  }
}

/** Safetensors files first, in path order (shard 1 of N leads), then indexes and configs. */
function primaryFirst(files: MergedFile[]): MergedFile[] {
  const rank = (f: MergedFile): number => (/\.(safetensors|gguf)$/.test(f.path) ? 0 : 1);
  return files.slice().sort((a, b) => rank(a) - rank(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
