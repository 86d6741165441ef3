/**
 * Inserts `item` into `list`, kept in order, just after the last element for which
 * `before` is false: scanning from the end, so appending to a list of equals costs O(1).
 * Priority queues use it to keep first come first served within a class.
 */
export function insertAfterLast<T>(list: T[], item: T, before: (element: T) => boolean): void {
  let index = list.length;
  while (index > 0 && before(list[index - 1]!)) index -= 1;
  list.splice(index, 0, item);
}
