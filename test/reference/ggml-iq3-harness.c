// Reference harness for test/reference/ggml-iq3-golden.json (run by ggml-iq3-golden.mjs): calls
// ggml's own quantize_iq3_xxs / quantize_iq3_s with quant_weights = NULL, what llama-quantize runs
// without --imatrix, one 256-value block at a time, and prints the tables iq3xs_init_impl builds.
// It holds no ggml code: it #includes ggml-quants.c from a ggml or llama.cpp checkout, e.g.
//   gcc -O2 -DNDEBUG -ffp-contract=off -std=gnu11 -I<ggml>/include -I<ggml>/src -I<ggml>/src/ggml-cpu \
//       ggml-iq3-harness.c -o harness -lm
// (x86-64, no -march: no fused multiply-adds; -DNDEBUG as a release build of llama.cpp). A block
// ggml aborts on (GGML_ASSERT / GGML_ABORT) is written as 0xff bytes.
#include "ggml-quants.c"
#include <stdarg.h>
#include <setjmp.h>
static jmp_buf on_abort; static int aborts = 0;
void ggml_abort(const char * file, int line, const char * fmt, ...) { (void)file; (void)line; (void)fmt; ++aborts; longjmp(on_abort, 1); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { (void)t; (void)ne; return 0; }
const char * ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; return 0; }
int main(int argc, char ** argv) {
  if (argc < 2) return 2;
  if (!strcmp(argv[1], "tables")) { // map and neighbour lists of a grid
    int gs = atoi(argv[2]);
    iq3xs_init_impl(gs);
    const iq3_entry_t * e = &iq3_data[iq3_data_index(gs)];
    for (int k = 0; k < gs; ++k) printf("g %d %08x\n", k, e->grid[k]);
    for (int u = 0; u < 4096; ++u) {
      int m = e->map[u];
      if (m >= 0) { printf("m %d %d\n", u, m); continue; }
      const uint16_t * nb = e->neighbours - m - 1;
      printf("n %d", u); for (int j = 0; j <= nb[0]; ++j) printf(" %d", nb[j]); printf("\n");
    }
    return 0;
  }
  int s = !strcmp(argv[1], "s");
  iq3xs_init_impl(s ? 512 : 256);
  size_t cap = 1 << 20, n = 0; float * x = malloc(cap * 4);
  for (;;) { size_t r = fread(x + n, 4, cap - n, stdin); n += r; if (r == 0) break; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
  int64_t nb = n / 256;
  size_t bs = s ? sizeof(block_iq3_s) : sizeof(block_iq3_xxs);
  uint8_t * y = malloc(nb * bs);
  for (int64_t b = 0; b < nb; ++b) {
    if (setjmp(on_abort)) { memset(y + bs * b, 0xff, bs); continue; } // C aborted on this block
    if (s) quantize_iq3_s(x + 256 * b, y + bs * b, 1, 256, NULL);
    else quantize_iq3_xxs(x + 256 * b, y + bs * b, 1, 256, NULL);
  }
  fwrite(y, bs, nb, stdout);
  fprintf(stderr, "aborted blocks: %d\n", aborts);
  return 0;
}
