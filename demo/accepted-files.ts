/** What the file pickers offer (the drop zones take anything and let the plan say what is wrong). */
export const BASE_ACCEPT = ['.safetensors', '.gguf', '.json'];
export const ADAPTER_ACCEPT = ['.safetensors', '.gguf', '.json'];
