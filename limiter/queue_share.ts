/**
 * Fair places in a full queue (security review M8). `queueLimit` bounds how
 * many requests wait; when it is reached, whose request gives way?
 *
 * Each team waiting (and the newcomer's) is owed a share of the places in
 * proportion to its weight. A newcomer whose team holds fewer places than
 * its share takes the place of the newest waiter of the team furthest over
 * its own share; a newcomer whose team already holds its share is refused.
 * So one team's flood can fill the queue, but never keeps another team's
 * request out: that request costs the flood its newest waiter instead.
 *
 * Pure: the queues count their places and apply the answer.
 *
 * @module
 */

/** One team's places in a queue. */
export interface QueuePlaces {
  team: string;
  waiting: number;
  weight: number;
}

/**
 * The team whose newest waiter gives its place to a newcomer of `team` in
 * a queue holding `limit` places, all taken; undefined: the newcomer is
 * refused (its team holds its share already, or no team is over its own).
 */
export function queueVictim(
  places: readonly QueuePlaces[],
  team: string,
  weight: number,
  limit: number,
): string | undefined {
  let total = weight;
  let mine = 0;
  for (const p of places) {
    if (p.waiting <= 0) continue;
    if (p.team === team) mine = p.waiting;
    else total += p.weight;
  }
  if (mine + 1 > (limit * weight) / total) return undefined;
  let victim: QueuePlaces | undefined;
  let worst = 0;
  for (const p of places) {
    if (p.team === team || p.waiting <= 0) continue;
    const over = p.waiting / ((limit * p.weight) / total);
    if (over > 1 && over > worst) {
      worst = over;
      victim = p;
    }
  }
  return victim?.team;
}
