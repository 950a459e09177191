// Reference harness for test/reference/ggml-iq3-golden.json (run by ggml-iq3-golden.mjs): calls
// ggml's own quantize_iq3_xxs / quantize_iq3_s (argument xxs, s) with quant_weights = NULL, what
// llama-quantize runs without --imatrix, one 256-value block at a time (stdin, stdout and aborts as
// ggml-harness.h's quantize_stdin says), and prints the tables iq3xs_init_impl builds
// (`tables 256|512`). Build it as ggml-harness.h says.
#include "ggml-harness.h"
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
  return s ? quantize_stdin(quantize_iq3_s, sizeof(block_iq3_s), VALUES_ONLY) : quantize_stdin(quantize_iq3_xxs, sizeof(block_iq3_xxs), VALUES_ONLY);
}
