/**
 * The refusal of ggml's IQ1, IQ2 and IQ3 quantizers: on values too large (or not finite) their f32
 * searches overflow and they stop (GGML_ASSERT), so llama-quantize writes nothing either. A codec
 * raises it for the block it stops on; the merge and `--dtype` conversion, which know the tensor,
 * say how many of its rows hold such blocks and which (`where`).
 */
export type IqFamily = 'IQ1' | 'IQ2' | 'IQ3';

/** "values too large (or not finite) for an IQ3 block[ where]: … choose --dtype f16, bf16 or f32". */
export function iqTooLarge(family: IqFamily, where?: string): string {
  return `values too large (or not finite) for an ${family} block${where ? ` ${where}` : ''}: ggml's ${family} quantizer overflows f32 on them ` +
    'and aborts, so llama-quantize cannot write them either; choose --dtype f16, bf16 or f32';
}

/** The family whose codec refusal (as a codec raises it, without a place) `message` is; undefined for any other line. */
export function iqTooLargeFamily(message: string): IqFamily | undefined {
  return (['IQ1', 'IQ2', 'IQ3'] as const).find((f) => message === iqTooLarge(f));
}
