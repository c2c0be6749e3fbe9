// Runs a producer a bounded number of items ahead of its consumer (a stage's next batches are read and
// prepared while the current one runs through the model). Owns only the order and the bound; what an
// item is, and where it is kept, is the producer's.

/**
 * Items 0..count-1 of `produce`, taken in order with take(). Taking item i first starts the items up to
 * i + ahead, so while the consumer works on item i, items i+1..i+ahead are being produced, and never
 * more: at most ahead + 1 items exist at once (the one held, the ones ahead). A producer that writes
 * into one of ahead + 1 buffers, item i into buffer i % (ahead + 1), therefore never writes into the
 * buffer of the item the consumer holds: item i + ahead + 1 starts only when the consumer takes item
 * i + 1, i.e. has given item i back.
 *
 * A producer's rejection surfaces when its item is taken (not earlier: no unhandled rejections);
 * call settle() when stopping early, so that nothing runs on behind the caller's back.
 */
export class Prefetch<T> {
  private readonly pending: Promise<T>[] = [];
  private next = 0;

  constructor(
    private readonly count: number,
    private readonly ahead: number,
    private readonly produce: (i: number) => Promise<T>,
  ) {
    if (!Number.isInteger(ahead) || ahead < 0) throw new Error(`Prefetch: ahead must be a whole number >= 0, got ${ahead}`);
  }

  /** How many items have been started so far (for tests and progress). */
  get started(): number {
    return this.next;
  }

  /** The next item, in order. */
  take(): Promise<T> {
    while (this.next < this.count && this.pending.length < this.ahead + 1) {
      const i = this.next++;
      let p: Promise<T>;
      try {
        p = this.produce(i);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.catch(() => undefined);
      this.pending.push(p);
    }
    const p = this.pending.shift();
    if (!p) return Promise.reject(new Error(`Prefetch: all ${this.count} items were taken`));
    return p;
  }

  /** Waits until every item started and not taken has settled (their results and errors are dropped). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
  }
}
