// Reference harness for test/reference/ggml-iq2-golden.json (run by ggml-iq2-golden.mjs): calls
// ggml's own quantize_iq2_xxs, quantize_iq2_xs or quantize_iq2_s (argument xxs, xs, s) with
// importance weights (what llama-quantize --imatrix runs), one 256-value block at a time, and prints
// the tables iq2xs_init_impl builds (`tables xxs|xs|s`).
// It holds no ggml code: it #includes ggml-quants.c from a ggml or llama.cpp checkout, e.g.
//   gcc -O2 -DNDEBUG -ffp-contract=off -std=gnu11 -I<ggml>/include -I<ggml>/src -I<ggml>/src/ggml-cpu \
//       ggml-iq2-harness.c -o harness -lm
// (x86-64, no -march: no fused multiply-adds; -DNDEBUG as a release build of llama.cpp).
// stdin: per block 256 f32 values then their 256 f32 importance weights; stdout: the blocks. A
// block ggml aborts on (GGML_ASSERT / GGML_ABORT) is written as 0xff bytes.
#include "ggml-quants.c"
#include <stdarg.h>
#include <setjmp.h>
static jmp_buf on_abort; static int aborts = 0;
void ggml_abort(const char * file, int line, const char * fmt, ...) { (void)file; (void)line; (void)fmt; ++aborts; longjmp(on_abort, 1); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { (void)t; (void)ne; return 0; }
const char * ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; return 0; }
static enum ggml_type type_of(const char * name) {
  if (!strcmp(name, "xxs")) return GGML_TYPE_IQ2_XXS;
  if (!strcmp(name, "xs")) return GGML_TYPE_IQ2_XS;
  if (!strcmp(name, "s")) return GGML_TYPE_IQ2_S;
  exit(2);
}
int main(int argc, char ** argv) {
  if (argc < 3) return 2;
  enum ggml_type t = type_of(argv[2]);
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
  size_t cap = 1 << 20, n = 0; float * x = malloc(cap * 4);
  for (;;) { size_t r = fread(x + n, 4, cap - n, stdin); n += r; if (r == 0) break; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
  int64_t nb = n / 512;
  size_t bs = t == GGML_TYPE_IQ2_XXS ? sizeof(block_iq2_xxs) : t == GGML_TYPE_IQ2_XS ? sizeof(block_iq2_xs) : sizeof(block_iq2_s);
  uint8_t * y = malloc(nb * bs);
  for (int64_t b = 0; b < nb; ++b) {
    if (setjmp(on_abort)) { memset(y + bs * b, 0xff, bs); continue; } // C aborted on this block
    const float * xb = x + 512 * b, * qw = xb + 256;
    if (t == GGML_TYPE_IQ2_XXS) quantize_iq2_xxs(xb, y + bs * b, 1, 256, qw);
    else if (t == GGML_TYPE_IQ2_XS) quantize_iq2_xs(xb, y + bs * b, 1, 256, qw);
    else quantize_iq2_s(xb, y + bs * b, 1, 256, qw);
  }
  fwrite(y, bs, nb, stdout);
  fprintf(stderr, "aborted blocks: %d\n", aborts);
  return 0;
}
