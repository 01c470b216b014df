/**
 * An unordered set backed by an array, with O(1) add and delete: the calls in flight and their
 * deadlines.
 *
 * A plain `Set` would do, but measured under load (`npm run bench`, 64 calls in flight), adding
 * and deleting a short-lived object per call in a long-lived `Set` made V8 promote ~600 bytes per
 * call to the old generation, which cost frequent full collections and ~2 us of CPU per call.
 * An array whose entries are moved on delete does not. Each member remembers its own index.
 */

/** A member of an ArraySet: `index` is its position there, -1 when it is in none. */
export interface Indexed {
  index: number;
}

export class ArraySet<T extends Indexed> implements Iterable<T> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  add(item: T): void {
    item.index = this.items.length;
    this.items.push(item);
  }

  /** Removes `item` if it is here; the last member takes its place. */
  delete(item: T): void {
    const index = item.index;
    if (index < 0 || this.items[index] !== item) return;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[index] = last;
      last.index = index;
    }
    item.index = -1;
  }

  /** Iterates over a copy: members may be deleted meanwhile. */
  [Symbol.iterator](): Iterator<T> {
    return [...this.items][Symbol.iterator]();
  }
}
