/**
 * Limits on what a file may claim. Memory is bounded by these, never by what a header, a config or
 * a tensor says about itself; each is far above what real models and adapters use, and each error
 * names the file and the limit. The README lists them.
 */

/**
 * Tensors in one safetensors file, and in one base model over all its shards. Real files hold a few
 * thousand; the largest mixture-of-experts models about 75 000 in bf16, and about 140 000 in fp8
 * (Kimi-K2: a `weight_scale_inv` beside every expert weight). 160 000 tiny tensors merge in
 * 300–420 MiB of peak RSS, one file or 61 shards, the garbage collector's timing moving the peak
 * (README, Limits).
 */
export const MAX_TENSORS = 160_000;

/** How deeply JSON in a safetensors header may nest (real headers: 3 levels). */
export const MAX_HEADER_NESTING = 64;

/** Dimensions of one tensor (PyTorch allows 25 on GPUs; real weights have at most 5). */
export const MAX_TENSOR_DIMS = 32;

/** Bytes of one tensor name or header string field (real names are under 300). */
export const MAX_NAME_BYTES = 4096;

/** Entries of a header's `__metadata__` (kohya writes about 50). */
export const MAX_METADATA_ENTRIES = 65_536;

/**
 * Bytes of one string in a GGUF header: a metadata key or value (each string of an array too), or
 * a tensor name. Real values are far smaller: chat templates of a few to tens of KB; the largest a
 * GGUF may carry is a whole tokenizer.json (gguf's `tokenizer.huggingface.json`), 7 to 33 MB.
 * A longer string is refused naming its key before its bytes are read.
 */
export const MAX_GGUF_STRING_BYTES = 40 * 1024 * 1024;

/**
 * Elements of all metadata arrays of one GGUF header together. The largest real headers are a
 * tokenizer's: tokens, scores and token types of 262 144 each (Gemma 3) or merges of about
 * 280 000 beside 128 256 tokens (Llama 3), about 1.1 million elements in all. Each element is a
 * value held while the file is open; an array of 5 million empty strings (40 MB) is refused as
 * soon as its count is read.
 */
export const MAX_GGUF_ARRAY_ELEMENTS = 4_000_000;

/**
 * The largest rank of one module (LoHa: r₁·r₂). The factors of one tensor are held in f32 while it is
 * merged, several copies across the backend's threads: at r = 1024 on a 4096 × 4096 layer the merge
 * peaks near 300 MB, at r = 4096 near 700 MB. Real LoRAs use r ≤ 256.
 */
export const MAX_RANK = 1024;

/** Keys in one rank_pattern or alpha_pattern. */
export const MAX_PATTERNS = 10_000;
/** Characters in one rank_pattern or alpha_pattern key. */
export const MAX_PATTERN_LENGTH = 1000;
/**
 * The work of matching one adapter's modules against its rank_pattern and alpha_pattern, in units
 * of about one name comparison: module-name keys are looked up by hash, a unit for each part of
 * the module's name and 1 + its dots for each probe; a regex match counts 100. About 8 seconds at
 * the limit on a busy two-core machine, less on an idle one; real configs need far less (1,000
 * module-name keys over DeepSeek-V3's 44,544 expert modules: under a million units). Its
 * modules_to_save entries that are regexes (more than one plain name part) count apart. Keys and
 * entries that are regexes are counted before any is compiled, each regex compiled counting
 * 10 000 and 25 more a character of it (so at most 5000 of them, fewer when long).
 */
export const MAX_PATTERN_MATCHES = 50_000_000;

/** JSON configs and shard indexes (adapter_config.json: a few KB; the largest real indexes: ~10 MB). */
export const MAX_CONFIG_BYTES = 32 * 1024 * 1024;

/** How deeply a JSON config or index may nest (real ones: 3 or 4 levels). */
export const MAX_CONFIG_NESTING = 64;

/** Values in one JSON config or index (an index has one per tensor). */
export const MAX_CONFIG_VALUES = 4 * MAX_TENSORS;

/**
 * Working memory of a tensor whose update mixes runs of rows that must be merged together (LyCORIS
 * BOFT rotates every output row into every other, so the whole tensor is one slab): the rows of one
 * run × columns × 8 bytes (held in f64). 1 GiB covers every SD and SDXL weight (the largest,
 * 10240 × 1280, needs 100 MiB) and Flux's (the largest, 21504 × 3072, 504 MiB).
 */
export const MAX_MIXED_ROWS_BYTES = 1024 * 1024 * 1024;

/**
 * Memory of one job of the CPU backend's WebAssembly kernel on a tensor's widest block, four rows
 * (its tile height): the right factor (rank × columns × 4 bytes), its column norms, the four rows of
 * W, output and listed elements, and scratch of 64 bytes a column where a short block is padded to
 * four rows. Rows are never cut, so a tensor of very wide rows cannot be merged in less: a single
 * row of 2^26 f32 needs about 10 GB. Real weights are far below it: rows of 73 728 (Nemotron's
 * widest) at a summed rank of 2048 need about 620 MB.
 *
 * The plan refuses a tensor whose one-row job (f32 sums, one-byte W and output) is already above
 * it, from the headers and the summed rank of its low-rank terms, before any tensor data is read;
 * the kernel checks every job against it again.
 *
 * It bounds one kernel's memory, and each thread that merges has its own: with N threads a merge
 * of rows near the limit can hold N times it (N + 1: beside the kernel it runs blocks on, the
 * calling thread keeps one for tensors of under 65 536 elements), and a WebAssembly memory never
 * shrinks, so each kernel keeps the size of its largest job until the merge ends.
 */
export const MAX_ROW_KERNEL_BYTES = 1024 * 1024 * 1024;

/**
 * The size b of one rotation block (OFT, PEFT OFT, BOFT): each stored block is turned into a rotation
 * by a b × b inversion or series (b³ work, 16·b² bytes), and each weight element costs b multiply-adds
 * per block map. Real files: blocks of 2 to a few hundred (PEFT 0.13's ⌈out/r⌉ reaches 3584 on a
 * 28672-wide layer with r = 8).
 */
export const MAX_ROTATION_BLOCK = 4096;

/**
 * Files of one input folder, and how deeply its folders nest: a model's folder holds a few dozen
 * files two levels deep; more is a folder above it (a home folder, a whole cache) or a link loop.
 * Held on the command line and in the page (a picked or dropped folder).
 */
export const MAX_INPUT_FILES = 10_000;
/** How deeply the folders of one input folder nest (see MAX_INPUT_FILES). */
export const MAX_INPUT_DEPTH = 8;

/**
 * Milliseconds a URL input may send nothing (no answer, no byte of a body) before its request is
 * given up: a stalled server would otherwise hold a merge for ever. Real servers send within seconds.
 */
export const URL_IDLE_TIMEOUT_MS = 60_000;

/**
 * Threads of the CPU backend, the calling one included (the command line's `--threads`, the
 * library's `threads`). Each worker costs about 14 MiB and 55 ms to start, all at once: 1024 take
 * about 14 GiB. The default is one per core, at most 8.
 */
export const MAX_THREADS = 1024;
