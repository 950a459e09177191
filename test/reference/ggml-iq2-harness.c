// Reference harness for test/reference/ggml-iq2-golden.json (run by ggml-iq2-golden.mjs): calls
// ggml's own quantize_iq2_xxs, quantize_iq2_xs or quantize_iq2_s (argument xxs, xs, s) with
// importance weights (what llama-quantize --imatrix runs), or quantize_iq2_s without them (argument
// s0: what llama-quantize runs for token_embd.weight or output.weight without an importance matrix;
// the weights read are unused), one 256-value block at a time (`q TYPE`: stdin, stdout and aborts as
// ggml-harness.h's quantize_stdin says), and prints the tables iq2xs_init_impl builds
// (`tables xxs|xs|s`). Build it as ggml-harness.h says.
#include "ggml-harness.h"
int main(int argc, char ** argv) {
  if (argc < 3) return 2;
  const char * name = argv[2];
  const int s0 = !strcmp(name, "s0");
  enum ggml_type t = !strcmp(name, "xxs") ? GGML_TYPE_IQ2_XXS : !strcmp(name, "xs") ? GGML_TYPE_IQ2_XS : !strcmp(name, "s") || s0 ? GGML_TYPE_IQ2_S : GGML_TYPE_COUNT;
  if (t == GGML_TYPE_COUNT) return 2;
  iq2xs_init_impl(t);
  if (!strcmp(argv[1], "tables")) return dump_iq2xs_tables(t);
  if (t == GGML_TYPE_IQ2_XXS) return quantize_stdin(quantize_iq2_xxs, sizeof(block_iq2_xxs), WITH_WEIGHTS);
  if (t == GGML_TYPE_IQ2_XS) return quantize_stdin(quantize_iq2_xs, sizeof(block_iq2_xs), WITH_WEIGHTS);
  return quantize_stdin(quantize_iq2_s, sizeof(block_iq2_s), s0 ? WEIGHTS_UNUSED : WITH_WEIGHTS);
}
