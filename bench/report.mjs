/**
 * The benchmark's tables: file-to-file merges with speed ratios against the baselines of the same
 * run, peak memory against the model size, output agreement, and kernel throughput.
 * Returns the number of failed checks (backends that disagree by more than 1 ulp).
 */

const fmt = (x, digits = 2) => (x === undefined || x === null ? '–' : x.toFixed(digits));

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** "1.9× faster" / "2.3× slower" than a baseline's time. */
function ratio(seconds, baseline) {
  if (!baseline) return '–';
  const r = baseline.seconds / seconds;
  return r >= 1 ? `${r.toFixed(2)}× faster` : `${(1 / r).toFixed(2)}× slower`;
}

/** 256 MB, the peak RSS a merge may reach whatever the model's size. */
const RSS_LIMIT_MIB = 256e6 / 2 ** 20;

export function printTables({ model, runs, sample, kernels, big, gpu, totalSeconds }) {
  const by = Object.fromEntries(runs.map((r) => [r.name, r]));
  const gb = model.baseBytes / 1e9;
  const quarterMiB = model.baseBytes / 4 / 2 ** 20;
  let failures = 0;
  const out = [];
  out.push(`Merge of a ${gb.toFixed(2)} GB f16 Llama-shaped model (${model.layers} layers, hidden ${model.hidden}, ` +
    `MLP ${model.intermediate}, vocab ${model.vocab}) with an r=${model.rank} ${model.adapterDtype} LoRA on q,k,v,o,gate,up,down, file to file:`);
  out.push('');
  out.push(table(
    ['run', 'seconds', 'GB/s', 'peak RSS MiB', 'vs numpy', 'vs js', 'vs cp', 'agrees with', 'max ulp', 'differing'],
    runs.map((r) => [
      r.name, fmt(r.seconds), fmt(gb / r.seconds), r.rssMiB ? fmt(r.rssMiB, 0) : '–',
      r.name === 'numpy' ? '1' : ratio(r.seconds, by.numpy), r.name === 'js' ? '1' : ratio(r.seconds, by.js),
      r.name === 'cp' ? '1' : ratio(r.seconds, by.cp),
      r.agreement ? r.agreement.with : r.kind === 'floor' ? '–' : r.kind === 'page' ? 'auto (below)' : '(reference)',
      r.agreement ? String(r.agreement.maxUlp) : '–',
      r.agreement ? `${r.agreement.differing} of ${r.agreement.elements}` : '–',
    ]),
  ));
  for (const r of runs) if (r.note) out.push(`${r.name} backend: ${r.note}`);
  out.push('');
  if (by.page) {
    const cli = by.auto;
    out.push(`page vs CLI (same files, both --backend auto): page ${fmt(by.page.seconds)} s, CLI ${cli ? fmt(cli.seconds) : '–'} s` +
      (cli ? ` = ${fmt(by.page.seconds / cli.seconds)}× the CLI's time (target: at most 1.5×)` : '') +
      `; browser memory above idle ${fmt(by.page.rssMiB, 0)} MiB (target: under 512)` +
      (by.page.cpu ? `; CPU during the merge: page ${fmt(by.page.cpu.browser + by.page.cpu.renderer + by.page.cpu.other)} s (browser process ${fmt(by.page.cpu.browser)} s, renderer ${fmt(by.page.cpu.renderer)} s)` : '') +
      (cli?.usage ? `, CLI ${fmt(cli.usage.userSeconds + cli.usage.systemSeconds)} s` : '') +
      (by.page.identicalToAuto === undefined ? '' : by.page.identicalToAuto ? '; tensor data identical to the CLI\'s' : '; tensor data DIFFERS from the CLI\'s'));
    if (by.page.identicalToAuto === false && /^cpu/.test(by.page.note ?? '') === /^CPU/.test(cli?.note ?? '')) failures++;
    out.push('');
  }
  for (const r of runs.filter((x) => x.kind === 'backend')) {
    if (r.agreement && r.agreement.maxUlp > 1) {
      failures++;
      out.push(`FAIL: ${r.name} differs from ${r.agreement.with} by up to ${r.agreement.maxUlp} ulp (allowed: 1)`);
    }
    if (r.rssMiB) {
      out.push(`${r.name}: peak RSS ${fmt(r.rssMiB, 0)} MiB = ${fmt(r.rssMiB / (model.baseBytes / 2 ** 20) * 100, 0)} % of the model ` +
        `(target: under a quarter, ${fmt(quarterMiB, 0)} MiB) ${r.rssMiB < quarterMiB ? 'ok' : 'OVER'}`);
    }
  }
  const copy = by['stream-copy'];
  if (copy) {
    for (const r of runs.filter((x) => x.name === 'cpu' || x.name === 'auto')) {
      out.push(`${r.name}: ${fmt(r.seconds / copy.seconds)}× the time of a plain Node stream copy of the base (${fmt(copy.seconds)} s; target: at most 2.5×)`);
    }
  }
  for (const r of runs.filter((x) => x.usage && (x.kind === 'backend' || x.name === 'stream-copy'))) {
    out.push(`${r.name}: CPU time user ${fmt(r.usage.userSeconds)} s + system ${fmt(r.usage.systemSeconds)} s, ${r.usage.minorFaults} minor page faults`);
  }
  if (sample) {
    out.push(`loramerge sample (write, merge, check): cpu ${fmt(sample.cpu)} s, auto ${fmt(sample.auto)} s; ` +
      `Node starting alone ${fmt(sample.node)} s (overhead above it: cpu ${fmt(sample.cpu - sample.node)} s, auto ${fmt(sample.auto - sample.node)} s)`);
  }
  const backends = runs.filter((r) => r.kind === 'backend');
  if (by.numpy && backends.length) {
    const best = backends.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    out.push(`best backend: ${best.name}, ${ratio(best.seconds, by.numpy)} than numpy` +
      (by.webgpu ? `; webgpu ${ratio(by.webgpu.seconds, by.numpy)} than numpy` : ''));
  }
  if (kernels.length) {
    out.push('');
    out.push('One op in memory, best of N (webgpu op = host prep + upload + kernel + readback; kernel = GPU timestamps):');
    out.push('');
    out.push(table(
      ['op', 'webgpu kernel ms', 'GB/s', 'GFLOP/s', 'webgpu op ms', 'cpu op ms', 'GB/s', 'GFLOP/s', 'webgpu kernel vs cpu'],
      kernels.map((k) => {
        // No GPU pass at all: the WebGPU backend merged it on the host (f32 outputs, within 1 ulp).
        const onHost = k.webgpuKernelMs === 0;
        const kern = onHost ? k.webgpuOpMs : k.webgpuKernelMs ?? k.webgpuOpMs;
        return [
          k.case, onHost ? 'on the host' : fmt(k.webgpuKernelMs, 1), fmt(k.bytes / kern / 1e6), fmt(k.flops / kern / 1e6),
          fmt(k.webgpuOpMs, 1), fmt(k.cpuOpMs, 1), fmt(k.bytes / k.cpuOpMs / 1e6), fmt(k.flops / k.cpuOpMs / 1e6),
          ratio(kern, { seconds: k.cpuOpMs }),
        ];
      }),
    ));
  }
  if (big) {
    const copy = big.runs.find((r) => r.name === 'stream-copy');
    out.push('');
    out.push(`Large case: a ${fmt(big.model.baseBytes / 1e9)} GB f16 Llama-shaped model (${big.model.layers} layers, hidden ${big.model.hidden}, ` +
      `MLP ${big.model.intermediate}, vocab ${big.model.vocab}) with an r=${big.model.rank} LoRA on all seven projections` +
      (big.model.generateSeconds ? ` (written in ${fmt(big.model.generateSeconds, 0)} s, kept in bench/.cache)` : ' (from bench/.cache)') + ':');
    out.push('');
    out.push(table(['run', 'seconds', 'GB/s', 'peak RSS MiB', 'vs stream copy', 'RSS target (256 MB)'],
      big.runs.map((r) => [
        r.name, fmt(r.seconds), fmt(big.model.baseBytes / 1e9 / r.seconds), fmt(r.rssMiB, 0),
        r.name === 'stream-copy' ? '1' : copy ? `${fmt(r.seconds / copy.seconds)}×` : '–',
        r.name === 'stream-copy' ? '–' : r.rssMiB <= RSS_LIMIT_MIB ? 'ok' : 'OVER',
      ])));
    for (const r of big.runs) {
      if (r.note) out.push(`${r.name} backend: ${r.note}`);
      if (r.name !== 'stream-copy' && r.rssMiB > RSS_LIMIT_MIB) {
        failures++;
        out.push(`FAIL: ${r.name} peaked at ${fmt(r.rssMiB, 0)} MiB on the large model (limit: 256 MB = ${fmt(RSS_LIMIT_MIB, 0)} MiB)`);
      }
    }
  }
  if (gpu?.length) {
    out.push('');
    out.push(`WebGPU merge kernel on ${gpu[0].adapter}, timed by ${gpu[0].timing} (bytes: W read + W' written + A, B read once):`);
    out.push('');
    out.push(table(['case', 'kernel ms', 'GB/s', 'card peak GB/s', 'fraction of peak', 'whole op ms'],
      gpu.map((c) => [
        c.case, fmt(c.kernelMs, 2), fmt(c.gbps), c.peakGBps ? `${c.peakGBps} (${c.peakSource})` : 'unknown peak',
        c.fraction === null ? 'unknown peak' : `${fmt(c.fraction * 100, c.fraction < 0.01 ? 3 : 1)} %`, fmt(c.opMs, 1),
      ])));
    if (gpu[0].timing !== 'timestamp queries') out.push('(no timestamp-query on this adapter: submit to done includes uploads and readback, so GB/s is a lower bound)');
    if (gpu.some((c) => c.peakGBps === null)) out.push('(the card\'s peak bandwidth is not queryable in WebGPU: pass --gpu-bandwidth GBPS)');
  }
  out.push('');
  out.push(`bench total: ${fmt(totalSeconds, 0)} s`);
  process.stdout.write(out.join('\n') + '\n');
  return failures;
}
