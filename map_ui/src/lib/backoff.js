// Reconnect delays: full-jitter exponential backoff, a pure function of the
// attempt number (like the driver simulator's and redis-py's policies).

/**
 * Delay before reconnect attempt `attempt` (1 = first retry), in ms.
 * @param {number} attempt
 * @param {{baseMs?: number, capMs?: number}} [options]
 * @param {() => number} [random] uniform in [0, 1)
 */
export function backoffDelayMs(attempt, { baseMs = 500, capMs = 15_000 } = {}, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  // Never less than a quarter of the ceiling: a zero delay after a server
  // restart would make every rider of the fleet reconnect in the same tick.
  return Math.round(ceiling / 4 + random() * (ceiling * 3) / 4);
}
