/**
 * Weighted max-min fair shares of a saturated rate: pure functions.
 *
 * Each team's demand is what it asks per second (requests arriving, plus
 * its backlog spread over a second). When all demands fit in the rate,
 * nobody is held back. Otherwise the rate is filled like water: a team that
 * wants less than its weighted share gets what it wants, and what it leaves
 * is split between the others in proportion to their weights.
 *
 * @module
 */

/** One team's demand on a service, summed over every instance. */
export interface TeamDemand {
  weight: number;
  /** Requests per second it would send if nothing held it back. */
  demand: number;
}

/**
 * Each team's share of `rate` (requests per second), or undefined when the
 * demands fit in it (no team need be held back).
 */
export function allocate(
  rate: number,
  demands: ReadonlyMap<string, TeamDemand>,
): Map<string, number> | undefined {
  let total = 0;
  for (const d of demands.values()) total += d.demand;
  if (total <= rate || demands.size < 2) return undefined;
  const order = [...demands].sort(([, a], [, b]) => a.demand / a.weight - b.demand / b.weight);
  let left = rate;
  let weights = 0;
  for (const [, d] of order) weights += d.weight;
  const shares = new Map<string, number>();
  for (const [team, d] of order) {
    const share = (left * d.weight) / weights;
    const given = Math.min(d.demand, share);
    shares.set(team, given);
    left -= given;
    weights -= d.weight;
  }
  return shares;
}

/**
 * This instance's part of a team's share: in proportion to the team's
 * demand here against its demand everywhere.
 */
export function localPart(share: number, demandHere: number, demandEverywhere: number): number {
  if (demandEverywhere <= 0) return 0;
  return (share * demandHere) / demandEverywhere;
}
