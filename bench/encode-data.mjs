/**
 * The values the encoder benches quantize: normal values of a trained weight's size (σ 0.02) and
 * importance weights skewed as an imatrix's are, from one seed, so that every bench and every
 * build encodes the same inputs.
 */
export function encodeData(seed, rows, cols) {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(rand())), t = 2 * Math.PI * rand();
    values[i] = 0.02 * r * Math.cos(t);
    values[i + 1] = 0.02 * r * Math.sin(t);
  }
  const qw = new Float32Array(cols);
  for (let i = 0; i < cols; i++) qw[i] = rand() ** 4 * 10;
  return { values, qw };
}
