// Number and cell formatting that reproduces the reference's Python/numpy/pandas output bit for bit:
// round(x, 9) (correctly rounded, half-even on the exact binary value), float repr, numpy's pairwise
// mean, pandas CSV quoting. Pure functions; no I/O.

const TEN = 10n;

/** The exact value of a finite double as sign * mant * 2^exp (mant a BigInt). */
function decompose(x: number): { neg: boolean; mant: bigint; exp: number } {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const neg = hi >>> 31 === 1;
  const bexp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp: number;
  if (bexp === 0) exp = -1074;
  else {
    mant |= 1n << 52n;
    exp = bexp - 1075;
  }
  return { neg, mant, exp };
}

/** Python's round(x, ndigits) for floats: the double nearest to the half-even rounding of x's exact value. */
export function pyRound(x: number, ndigits: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const { neg, mant, exp } = decompose(x);
  const scale = TEN ** BigInt(ndigits);
  let n: bigint;
  if (exp >= 0) n = (mant << BigInt(exp)) * scale;
  else {
    const num = mant * scale;
    const den = 1n << BigInt(-exp);
    const q = num / den;
    const r2 = (num % den) * 2n;
    n = r2 > den || (r2 === den && (q & 1n) === 1n) ? q + 1n : q;
  }
  const v = Number(`${n}e-${ndigits}`);
  return neg ? -v : v;
}

/**
 * round(np.float64, ndigits): numpy multiplies by 10^ndigits, rounds half-even on that double, and
 * divides, which can differ from Python's exact round() in the last digit. The reference rounds a
 * merged C-k value (a numpy mean) this way and every other cell with Python's round.
 */
export function npRound(x: number, ndigits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** ndigits;
  const y = x * f;
  const fl = Math.floor(y);
  const d = y - fl;
  const r = d > 0.5 ? fl + 1 : d < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  return r / f;
}

/** Python's repr(float): shortest round-trip digits, exponent form below 1e-4 or from 1e16. */
export function pyRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, e] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp10 = Number(e);
  const decpt = exp10 + 1;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
    if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`;
    return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const ee = Math.abs(exp10).toString().padStart(2, "0");
  return `${sign}${m}e${exp10 < 0 ? "-" : "+"}${ee}`;
}

function pairwiseSum(a: ArrayLike<number>, start: number, n: number): number {
  if (n < 8) {
    let s = 0;
    for (let i = 0; i < n; i++) s += a[start + i];
    return s;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j];
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let s = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
    for (; i < n; i++) s += a[start + i];
    return s;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** numpy's float64 mean (pairwise summation, then one division). */
export function npMean(a: ArrayLike<number>): number {
  return pairwiseSum(a, 0, a.length) / a.length;
}

/** One CSV field as pandas.to_csv writes it (minimal quoting). */
export function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(fields: string[]): string {
  return fields.map(csvField).join(",");
}
