// Bounded concurrency for file-system and network work (stat, hash, link, transfer over thousands
// of items): libuv's thread pool overlaps the syscalls; an unbounded Promise.all would exhaust file
// descriptors. The one mapLimit of sed-pipe.

/**
 * Maps `items` through `fn` with at most `limit` calls in flight; results keep the input order.
 * After the first error no new call starts; the calls in flight settle, then that error is thrown.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: { err: unknown } | null = null;
  async function lane(): Promise<void> {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= { err };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failed) throw (failed as { err: unknown }).err;
  return out;
}
