/**
 * PyTorch's CPU random generator, reproduced for the tensors PEFT draws from it when a model is
 * built and does not save (FourierFT's spectrum positions). `torch.Generator().manual_seed(seed)`
 * seeds an MT19937 (ATen/core/MT19937RNGEngine.h) with the seed's low 32 bits; `random()` is one
 * tempered 32-bit output. `torch.randperm(n, generator=g)` on CPU (ATen/native/TensorFactories.cpp
 * randperm_cpu) shuffles 0…n−1 by Fisher–Yates, swapping entry i with entry i + random() % (n − i),
 * for n below 2³²/20; from there it runs another shuffle on random64(), whose first entries depend
 * on every draw, so this module does not produce those.
 */

const N = 624;
const M = 397;

/** The largest randperm length whose permutation this module reproduces (randperm_cpu's `n < UINT32_MAX / 20`). */
export const RANDPERM_SMALL_LIMIT = Math.floor(0xffffffff / 20);

/** torch.Generator('cpu') after manual_seed(seed): MT19937 seeded with the seed's low 32 bits. */
export class TorchCpuGenerator {
  private readonly state = new Uint32Array(N);
  private next = N;

  /** `seed` is the integer given to manual_seed (negative seeds wrap to 64 bits first; only the low 32 bits count). */
  constructor(seed: number | bigint) {
    const s = BigInt.asUintN(32, BigInt(seed));
    this.state[0] = Number(s);
    for (let j = 1; j < N; j++) {
      const prev = this.state[j - 1] ^ (this.state[j - 1] >>> 30);
      this.state[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
  }

  /** generator->random(): the next 32-bit output. */
  random(): number {
    if (this.next >= N) this.twist();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const s = this.state;
    for (let k = 0; k < N; k++) {
      const y = (s[k] & 0x80000000) | (s[(k + 1) % N] & 0x7fffffff);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.next = 0;
  }
}

/**
 * The first `count` entries of torch.randperm(n, generator) on CPU, without building the whole
 * permutation: Fisher–Yates fixes entry i at step i, so `count` steps suffice, and the entries they
 * moved are kept in a map.
 */
export function randpermPrefix(n: number, count: number, generator: TorchCpuGenerator): Uint32Array {
  if (!Number.isInteger(n) || n < 1 || n >= RANDPERM_SMALL_LIMIT) throw new RangeError(`randperm length ${n} is outside 1…${RANDPERM_SMALL_LIMIT - 1}`);
  if (!Number.isInteger(count) || count < 0 || count > n) throw new RangeError(`randperm prefix ${count} is outside 0…${n}`);
  const moved = new Map<number, number>();
  const at = (i: number) => moved.get(i) ?? i;
  const prefix = new Uint32Array(count);
  // randperm_cpu stops at n − 2 and leaves the last entry where it is; a step at n − 1 would draw
  // once more (random() % 1 = 0) and move nothing, so the prefix is the same.
  for (let i = 0; i < count; i++) {
    const z = i + (generator.random() % (n - i));
    const here = at(i);
    prefix[i] = at(z);
    moved.set(z, here);
    moved.delete(i);
  }
  return prefix;
}
