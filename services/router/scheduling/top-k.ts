/** The `k` smallest of the first `count` items by `order`, sorted; one pass, no full sort of a large fleet. */
export function topK<T>(items: readonly T[], count: number, k: number, order: (a: T, b: T) => number): T[] {
  const best: T[] = [];
  for (let index = 0; index < count; index += 1) {
    const item = items[index]!;
    if (best.length === k && order(item, best[k - 1]!) >= 0) continue;
    let at = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(item);
    while (at > 0 && order(item, best[at - 1]!) < 0) {
      best[at] = best[at - 1]!;
      at -= 1;
    }
    best[at] = item;
  }
  return best;
}
