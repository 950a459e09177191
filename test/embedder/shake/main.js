// A page that takes two small helpers from the library and nothing else: a bundler is to leave the
// merge engine, its codecs and tables out of what it ships.
import { formatBytes, isMergeError } from 'loramerge';

document.body.textContent = `${formatBytes(123456789)} ${isMergeError(new Error('x'))}`;
