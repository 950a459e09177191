// What the ggml reference harnesses (ggml-iq1-harness.c, ggml-iq2-harness.c, ggml-iq3-harness.c)
// share. It holds no ggml code: it #includes ggml-quants.c from a ggml or llama.cpp checkout, and
// defines the few ggml symbols that file calls from elsewhere (ggml_abort returns to the block loop,
// so that a block ggml aborts on is written as 0xff bytes and the next one runs). Build a harness:
//   gcc -O2 -DNDEBUG -ffp-contract=off -std=gnu11 -I<ggml>/include -I<ggml>/src -I<ggml>/src/ggml-cpu \
//       ggml-iq2-harness.c -o harness -lm
// (x86-64, no -march: no fused multiply-adds; -DNDEBUG as a release build of llama.cpp; glibc,
// whose qsort of IQ1's 32 or 16 values is a stable merge sort).
#include "ggml-quants.c"
#include <stdarg.h>
#include <setjmp.h>
#include <unistd.h>

static jmp_buf on_abort;
static int aborts = 0;
void ggml_abort(const char * file, int line, const char * fmt, ...) { (void)file; (void)line; (void)fmt; ++aborts; longjmp(on_abort, 1); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { (void)t; (void)ne; return 0; }
const char * ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; return 0; }

/** ggml's quantize_* of one row (nrow 1, n_per_row 256 here). */
typedef size_t (*quantize_fn)(const float * src, void * dst, int64_t nrow, int64_t n_per_row, const float * quant_weights);

/**
 * Reads all of stdin: per block 256 f32 values, then (inputs WITH_WEIGHTS or WEIGHTS_UNUSED) their
 * 256 f32 importance weights; writes each block `quantize` makes of them (with the weights, or with
 * quant_weights NULL for VALUES_ONLY and WEIGHTS_UNUSED), `size` bytes, to stdout (0xff bytes where ggml aborts),
 * and what ggml prints to stderr. Each block is quantized from its own copy followed by 2048 zeros,
 * so that the whole-grid scan of iq1_find_best_neighbour2 (which reads xval[i] for i up to 2047,
 * past the 8 values it was given) reads zeros, not the next block (loramerge refuses a group that
 * needs that scan instead); the other quantizers read only their 256 values.
 */
enum inputs { VALUES_ONLY, WITH_WEIGHTS, WEIGHTS_UNUSED };
static inline int quantize_stdin(quantize_fn quantize, size_t size, enum inputs inputs) {
  FILE * out = fdopen(dup(1), "wb");
  dup2(2, 1);
  size_t cap = 1 << 20, n = 0;
  float * x = malloc(cap * 4);
  for (;;) { size_t r = fread(x + n, 4, cap - n, stdin); n += r; if (r == 0) break; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
  const size_t stride = inputs == VALUES_ONLY ? 256 : 512;
  const int64_t nb = n / stride;
  uint8_t * y = malloc(nb * size);
  float * xb = calloc(256 + 2048, 4);
  for (int64_t b = 0; b < nb; ++b) {
    if (setjmp(on_abort)) { memset(y + size * b, 0xff, size); continue; } // C aborted on this block
    memcpy(xb, x + stride * b, 256 * 4);
    quantize(xb, y + size * b, 1, 256, inputs == WITH_WEIGHTS ? x + stride * b + 256 : NULL);
  }
  fwrite(y, size, nb, out);
  fclose(out);
  fprintf(stderr, "aborted blocks: %d\n", aborts);
  return 0;
}

/** The `tables` dump of iq2xs_init_impl's tables for IQ2_* or IQ1_* (call it first): grid entries, the map, the neighbour lists. */
static inline int dump_iq2xs_tables(enum ggml_type t) {
  const iq2_entry_t * e = &iq2_data[iq2_data_index(t)];
  int gs = iq2_grid_size(t);
  for (int k = 0; k < gs; ++k) printf("g %d %016llx\n", k, (unsigned long long)e->grid[k]);
  for (int u = 0; u < 43692; ++u) {
    int m = e->map[u];
    if (m >= 0) { printf("m %d %d\n", u, m); continue; }
    const uint16_t * nb = e->neighbours - m - 1;
    printf("n %d", u); for (int j = 0; j <= nb[0]; ++j) printf(" %d", nb[j]); printf("\n");
  }
  return 0;
}
