/**
 * The budget day: it starts at UTC midnight, or at the gateway-wide
 * `dayStartsAt` ("HH:MM", UTC). Pure.
 *
 * @module
 */

const DAY_MS = 86_400_000;
const HH_MM = /^([01]\d|2[0-3]):([0-5]\d)$/;

/**
 * Parses `"HH:MM"` into ms after UTC midnight; throws a RangeError naming
 * the setting (`field`, default `dayStartsAt`) and the value.
 */
export function parseDayStart(text: string, field = "dayStartsAt"): number {
  const m = HH_MM.exec(text);
  if (!m) {
    throw new RangeError(`${field} must be "HH:MM" in UTC, 00:00 to 23:59 (got "${text}")`);
  }
  return (Number(m[1]) * 60 + Number(m[2])) * 60_000;
}

/** The budget day holding `now`: its label and when the next begins. */
export interface BudgetDay {
  /** The UTC date on which this budget day began, `YYYY-MM-DD`. */
  day: string;
  /** Epoch ms at which the next budget day begins (the budget resets). */
  resetsAt: number;
}

/** The budget day holding `now`, for days that begin `offsetMs` after UTC midnight. */
export function budgetDay(now: number, offsetMs: number): BudgetDay {
  const start = Math.floor((now - offsetMs) / DAY_MS) * DAY_MS + offsetMs;
  return { day: new Date(start).toISOString().slice(0, 10), resetsAt: start + DAY_MS };
}
