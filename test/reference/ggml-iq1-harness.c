// Reference harness for test/reference/ggml-iq1-golden.json (run by ggml-iq1-golden.mjs): calls
// ggml's own quantize_iq1_s or quantize_iq1_m (argument s, m) with importance weights (what
// llama-quantize --imatrix runs), or quantize_iq1_m without them (argument m0: what llama-quantize
// runs for token_embd.weight or output.weight without an importance matrix), one 256-value block at
// a time, and prints the tables
// iq2xs_init_impl builds for IQ1 (`tables s|m`).
// It holds no ggml code: it #includes ggml-quants.c from a ggml or llama.cpp checkout, e.g.
//   gcc -O2 -DNDEBUG -ffp-contract=off -std=gnu11 -I<ggml>/include -I<ggml>/src -I<ggml>/src/ggml-cpu \
//       ggml-iq1-harness.c -o harness -lm
// (x86-64, no -march: no fused multiply-adds; -DNDEBUG as a release build of llama.cpp; glibc,
// whose qsort of IQ1's 32 or 16 values is a stable merge sort).
// stdin: per block 256 f32 values then their 256 f32 importance weights; stdout: the blocks. A
// block ggml aborts on (GGML_ASSERT / GGML_ABORT) is written as 0xff bytes; what ggml prints goes to stderr. Each block is quantized
// from its own copy followed by 2048 zeros, so that the whole-grid scan of iq1_find_best_neighbour2
// (which reads xval[i] for i up to 2047, past the 8 values it was given) reads zeros, not the next
// block (loramerge refuses a group that needs that scan instead).
#include "ggml-quants.c"
#include <stdarg.h>
#include <setjmp.h>
#include <unistd.h>
static jmp_buf on_abort; static int aborts = 0;
void ggml_abort(const char * file, int line, const char * fmt, ...) { (void)file; (void)line; (void)fmt; ++aborts; longjmp(on_abort, 1); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { (void)t; (void)ne; return 0; }
const char * ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; return 0; }
static enum ggml_type type_of(const char * name) {
  if (!strcmp(name, "s")) return GGML_TYPE_IQ1_S;
  if (!strcmp(name, "m") || !strcmp(name, "m0")) return GGML_TYPE_IQ1_M;
  exit(2);
}
int main(int argc, char ** argv) {
  if (argc < 3) return 2;
  enum ggml_type t = type_of(argv[2]);
  const int unweighted = !strcmp(argv[2], "m0");
  iq2xs_init_impl(t);
  if (!strcmp(argv[1], "tables")) { // grid levels, map and neighbour lists
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
  // The blocks go to the real stdout; ggml's own printf ("Oops, did not find grid point") to stderr.
  FILE * out = fdopen(dup(1), "wb"); dup2(2, 1);
  size_t cap = 1 << 20, n = 0; float * x = malloc(cap * 4);
  for (;;) { size_t r = fread(x + n, 4, cap - n, stdin); n += r; if (r == 0) break; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
  int64_t nb = n / 512;
  size_t bs = t == GGML_TYPE_IQ1_S ? sizeof(block_iq1_s) : sizeof(block_iq1_m);
  uint8_t * y = malloc(nb * bs);
  float * xb = calloc(256 + 2048, 4);
  for (int64_t b = 0; b < nb; ++b) {
    if (setjmp(on_abort)) { memset(y + bs * b, 0xff, bs); continue; } // C aborted on this block
    memcpy(xb, x + 512 * b, 256 * 4);
    const float * qw = x + 512 * b + 256;
    if (t == GGML_TYPE_IQ1_S) quantize_iq1_s(xb, y + bs * b, 1, 256, qw);
    else quantize_iq1_m(xb, y + bs * b, 1, 256, unweighted ? NULL : qw);
  }
  fwrite(y, bs, nb, out); fclose(out);
  fprintf(stderr, "%d aborted\n", aborts);
  return 0;
}
