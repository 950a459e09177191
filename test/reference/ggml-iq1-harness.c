// Reference harness for test/reference/ggml-iq1-golden.json (run by ggml-iq1-golden.mjs): calls
// ggml's own quantize_iq1_s or quantize_iq1_m (argument s, m) with importance weights (what
// llama-quantize --imatrix runs), or quantize_iq1_m without them (argument m0: what llama-quantize
// runs for token_embd.weight or output.weight without an importance matrix; the weights read are
// unused), one 256-value block at a time (`q s|m|m0`: stdin, stdout and aborts as ggml-harness.h's
// quantize_stdin says), and prints the tables iq2xs_init_impl builds for IQ1 (`tables s|m`). Build
// it as ggml-harness.h says.
#include "ggml-harness.h"
int main(int argc, char ** argv) {
  if (argc < 3) return 2;
  const char * name = argv[2];
  int s = !strcmp(name, "s"), m = !strcmp(name, "m"), m0 = !strcmp(name, "m0");
  if (!s && !m && !m0) return 2;
  enum ggml_type t = s ? GGML_TYPE_IQ1_S : GGML_TYPE_IQ1_M;
  iq2xs_init_impl(t);
  if (!strcmp(argv[1], "tables")) return dump_iq2xs_tables(t);
  if (s) return quantize_stdin(quantize_iq1_s, sizeof(block_iq1_s), WITH_WEIGHTS);
  return quantize_stdin(quantize_iq1_m, sizeof(block_iq1_m), m0 ? WEIGHTS_UNUSED : WITH_WEIGHTS);
}
