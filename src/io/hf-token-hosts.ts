/**
 * Where a Hugging Face token may be sent: `https://` URLs whose host (with its port, when not the
 * default 443) is exactly one of these. Hugging Face's download links (`…/resolve/<rev>/<file>`)
 * are on huggingface.co (hf.co is its short name); they redirect to signed links on other hosts
 * (cdn-lfs*.hf.co, cas-bridge.xethub.hf.co …) that carry their own signature, so subdomains are
 * left out: the token is not sent there.
 */
export const HF_TOKEN_HOSTS: readonly string[] = ['huggingface.co', 'hf.co'];
