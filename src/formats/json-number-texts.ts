/**
 * The numbers of a JSON text as written, by where they stand, so that a rewritten config keeps
 * them: JSON.parse reads `8.0` and `8` alike and 9223372036854775807 to the nearest double, and
 * JSON.stringify then writes `8` and 9223372036854775808. Python reads `8` back as an int, not the
 * float the file held (transformers warns on a Llama 3.1 rope_scaling factor that is no float).
 */

/** Where a value stands: its keys and indices from the top, as a map key. */
export const jsonPath = (path: readonly (string | number)[]): string => JSON.stringify(path);

/**
 * Each number's text (and Python's NaN, Infinity, -Infinity) by jsonPath; empty for text that is
 * not JSON as read here. The text has passed parseBoundedJson, so its nesting is bounded.
 */
export function jsonNumberTexts(text: string): Map<string, string> {
  const found = new Map<string, string>();
  let i = 0;
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const string = (): string => {
    const start = i;
    for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const scalar = /-?Infinity|NaN|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
  const value = (path: (string | number)[]): void => {
    space();
    if (text[i] === '{' || text[i] === '[') {
      const object = text[i] === '{';
      i++;
      for (let index = 0; ; index++) {
        space();
        if (text[i] === (object ? '}' : ']')) break;
        let key: string | number = index;
        if (object) {
          key = string();
          space();
          i++; // ':'
        }
        value([...path, key]);
        space();
        if (text[i] !== ',') break;
        i++;
      }
      i++;
    } else if (text[i] === '"') {
      string();
    } else {
      scalar.lastIndex = i;
      const m = scalar.exec(text);
      if (!m) throw new SyntaxError(`no JSON value at ${i}`);
      if (m[0] !== 'true' && m[0] !== 'false' && m[0] !== 'null') found.set(jsonPath(path), m[0]);
      i += m[0].length;
    }
  };
  try {
    value([]);
  } catch {
    return new Map();
  }
  return found;
}

/** The number `text` stands for, as JSON.parse (or Python's literals) reads it. */
export function numberOfText(text: string): number {
  return text === 'NaN' ? Number.NaN : text === 'Infinity' ? Infinity : text === '-Infinity' ? -Infinity : Number(text);
}
