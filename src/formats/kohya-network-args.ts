/**
 * kohya sd-scripts' training metadata as far as it changes how a module is applied: LyCORIS's
 * `rs_lora` and `bypass_mode` network arguments, and the `split_qkv` of sd-scripts' own Flux, SD3 and
 * HunyuanImage networks (./algorithms/kohya-split-qkv.ts). train_network.py records the network module in `ss_network_module`
 * and the `--network_args` in `ss_network_args`, a JSON object of strings (`"rs_lora": "True"`).
 * LyCORIS (lycoris.kohya) then scales by α/√r. Most of its modules store α·√r in their `.alpha`,
 * so that α/r read back is already α/√r; GLoRA stores α itself and LoKr with both factors full
 * stores r·√r, so for those two the argument must be read. kohya's own networks have no rs_lora.
 * With `bypass_mode` LyCORIS trains each module in its bypass forward, which for some algorithms
 * applies another update than its merge (./algorithms/lycoris-bypass.ts).
 * Read only when a module needs it, so that a file whose metadata does not matter is not refused.
 */
import { MergeError } from '../errors.js';
import { checkJsonBounds } from './bounded-json.js';

const NETWORK_MODULE = 'ss_network_module';
const NETWORK_ARGS = 'ss_network_args';

export class KohyaNetworkArgs {
  private args: Record<string, unknown> | null | undefined;

  constructor(private readonly fileName: string, private readonly metadata: Readonly<Record<string, string>>) {}

  /** Was the file trained by LyCORIS with rs_lora on? A one-line refusal when that cannot be read. */
  lycorisRsLora(): boolean {
    const args = this.parsedArgs();
    if (!args || !('rs_lora' in args)) return false;
    const value = args.rs_lora;
    // LyCORIS's str_bool reads anything but "false" as on; kohya writes "True" or "False".
    const on = value === true || (typeof value === 'string' && value.toLowerCase() === 'true');
    const off = value === false || (typeof value === 'string' && value.toLowerCase() === 'false');
    if (!on && !off) {
      throw new MergeError('BAD_CONFIG', `${this.fileName}: metadata "${NETWORK_ARGS}" has rs_lora ${JSON.stringify(value)}, neither "True" nor "False"; it decides this file's scale (α/√r or α/r)`);
    }
    const module = this.metadata[NETWORK_MODULE];
    if (module === undefined) {
      if (!on) return false;
      throw new MergeError('BAD_CONFIG', `${this.fileName}: metadata "${NETWORK_ARGS}" has rs_lora "True" but no "${NETWORK_MODULE}" says which trainer read it (LyCORIS scales by α/√r, kohya's own networks ignore it)`);
    }
    return on && module.startsWith('lycoris');
  }

  /**
   * Was the file trained by LyCORIS (lycoris.kohya) with bypass_mode on? LyCORIS reads the flag with
   * its str_bool, on for anything but "false"; kohya's own networks ignore it, so a file naming
   * another network module is not read. A one-line refusal when the trainer cannot be told.
   */
  lycorisBypass(): boolean {
    const module = this.metadata[NETWORK_MODULE];
    if (module !== undefined && !module.startsWith('lycoris')) return false;
    const args = this.parsedArgs();
    if (!args || !('bypass_mode' in args)) return false;
    const value = args.bypass_mode;
    const on = String(value).toLowerCase() !== 'false';
    if (on && module === undefined) {
      throw new MergeError('BAD_CONFIG', `${this.fileName}: metadata "${NETWORK_ARGS}" has bypass_mode ${JSON.stringify(value)} but no "${NETWORK_MODULE}" says which trainer read it (LyCORIS trains some algorithms differently in bypass mode, kohya's own networks ignore it)`);
    }
    return on;
  }

  /** The network module that trained the file (`ss_network_module`, `networks.lora_flux`), if recorded. */
  networkModule(): string | undefined {
    return this.metadata[NETWORK_MODULE];
  }

  /**
   * Was `split_qkv` on? sd-scripts' networks that take it (create_network in networks/lora_flux.py,
   * lora_sd3.py, lora_hunyuan_image.py) read it as on only when it is the string "True"
   * (`True if split_qkv == "True" else False`), and train_network.py records the arguments as given, so
   * anything else ("true", "1") trained the modules unsplit.
   */
  kohyaSplitQkv(): boolean {
    return this.parsedArgs()?.split_qkv === 'True';
  }

  /** LyCORIS's `use_scalar` network argument, read with its str_bool (off when unset). */
  lycorisUseScalar(): boolean {
    const args = this.parsedArgs();
    return !!args && 'use_scalar' in args && String(args.use_scalar).toLowerCase() !== 'false';
  }

  /** LyCORIS's `algo` network argument, lower-cased as it reads it ("lora" when unset). */
  lycorisAlgo(): string {
    const algo = this.parsedArgs()?.algo;
    return typeof algo === 'string' && algo !== '' ? algo.toLowerCase() : 'lora';
  }

  /** The ranks the training was given: network_dim (`ss_network_dim`) and LyCORIS's conv_dim, when whole numbers. */
  recordedRanks(): number[] {
    const args = this.parsedArgs();
    const ranks = [this.metadata.ss_network_dim, args?.conv_dim].map((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN));
    return ranks.filter((r) => Number.isSafeInteger(r) && r > 0);
  }

  private parsedArgs(): Record<string, unknown> | null {
    if (this.args !== undefined) return this.args;
    const text = this.metadata[NETWORK_ARGS];
    if (text === undefined) return (this.args = null);
    checkJsonBounds(text, `${this.fileName}: metadata "${NETWORK_ARGS}"`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new MergeError('BAD_CONFIG', `${this.fileName}: metadata "${NETWORK_ARGS}" is not valid JSON (${(e as Error).message}); it may hold rs_lora, bypass_mode or split_qkv, which decide how this file applies`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new MergeError('BAD_CONFIG', `${this.fileName}: metadata "${NETWORK_ARGS}" is not a JSON object; it may hold rs_lora, bypass_mode or split_qkv, which decide how this file applies`);
    }
    return (this.args = parsed as Record<string, unknown>);
  }
}
