/** State of a token bucket at `updatedAt`. */
export interface BucketState {
  tokens: number;
  /** Epoch ms of the last refill. */
  updatedAt: number;
}

/** How a bucket fills: `rps` tokens a second up to `burst`. */
export interface BucketRate {
  rps: number;
  burst: number;
}

/** A full bucket at `now`: a fresh service may send a whole burst at once. */
export function fullBucket(now: number, rate: BucketRate): BucketState {
  return { tokens: rate.burst, updatedAt: now };
}

/**
 * Refills `state` up to `now`; never mutates its argument. A clock behind
 * `updatedAt` (skew between instances) adds nothing rather than removing.
 */
export function refill(state: BucketState, now: number, rate: BucketRate): BucketState {
  if (now <= state.updatedAt) return state;
  const tokens = Math.min(rate.burst, state.tokens + ((now - state.updatedAt) / 1000) * rate.rps);
  return { tokens, updatedAt: now };
}

/** Takes up to `want` whole tokens from a refilled state. */
export function takeTokens(
  state: BucketState,
  want: number,
): { state: BucketState; granted: number } {
  const granted = Math.max(0, Math.min(want, Math.floor(state.tokens + 1e-9)));
  return { state: { ...state, tokens: state.tokens - granted }, granted };
}

/** Milliseconds until the refilled `state` holds one whole token. */
export function msUntilToken(state: BucketState, rate: BucketRate): number {
  const missing = 1 - state.tokens;
  return missing <= 0 ? 0 : Math.ceil((missing / rate.rps) * 1000);
}

/** Puts unused tokens back, never above `burst`. */
export function returnTokens(state: BucketState, n: number, rate: BucketRate): BucketState {
  return { ...state, tokens: Math.min(rate.burst, state.tokens + n) };
}

/** The provider says only `available` are left: at most that many (the same state when it holds no more). */
export function capTokens(state: BucketState, available: number): BucketState {
  const cap = Math.max(0, available);
  return state.tokens <= cap ? state : { ...state, tokens: cap };
}
