/**
 * The tests run without the developer's Hugging Face settings: a token (variable or file) or an
 * HF_ENDPOINT mirror in the environment would change which requests carry a token and which URLs
 * are the Hub's. Tests of those settings set their own (vi.stubEnv, stubTokenlessHome). Processes
 * the tests start inherit this environment.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

for (const name of ['HF_ENDPOINT', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_DISABLE_IMPLICIT_TOKEN']) delete process.env[name];
// A Hugging Face home that does not exist: no token file `hf auth login` wrote is found.
process.env.HF_HOME = join(tmpdir(), 'loramerge-tests-have-no-hf-home');
