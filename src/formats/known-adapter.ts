/**
 * Refusals of inputs already recognised as adapters, told apart from "not an adapter": `inspect`
 * reads an input as a model only when the adapter readers did not recognise it.
 */

/** Errors thrown by an adapter reader once the input was known to be an adapter of its format. */
const FROM_KNOWN_ADAPTER = new WeakSet<object>();

/**
 * Marks `e` as a refusal of an input already recognised as an adapter (a PEFT or mlx-lm folder
 * with its weights, a GGUF of general.type "adapter"), and returns it: such an input is no base
 * model either, so `inspect` shows this error rather than reading the input as a model.
 */
export function fromKnownAdapter(e: unknown): unknown {
  if (typeof e === 'object' && e !== null) FROM_KNOWN_ADAPTER.add(e);
  return e;
}

/** Whether `e` was thrown for an input recognised as an adapter (see fromKnownAdapter). */
export function isFromKnownAdapter(e: unknown): boolean {
  return typeof e === 'object' && e !== null && FROM_KNOWN_ADAPTER.has(e);
}
