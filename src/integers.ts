/** Small integer helpers shared by the plan, the pipeline and the containers (shapes, row runs, block sizes). */

/** Greatest common divisor of two non-negative integers. */
export function gcd(a: number, b: number): number {
  let x = a, y = b;
  while (y) [x, y] = [y, x % y];
  return x;
}

/** Least common multiple of two positive integers. */
export function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

/** The number of elements of a shape (1 for a scalar's []). */
export function product(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}
