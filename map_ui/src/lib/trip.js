// The rider's view of a trip: a snapshot plus the channel's events, folded
// by one pure reducer so that the page, the ops panel and the tests agree.

export const TERMINAL = new Set(["completed", "cancelled"]);

/**
 * Applies one trip-channel frame to a trip (returns a new object, or the
 * same one when the frame changes nothing).
 * @param {object|null} trip the current trip (the contract's Trip) or null
 * @param {object} frame a trip-channel frame
 */
export function applyFrame(trip, frame) {
  switch (frame.type) {
    case "snapshot":
      return { ...frame.trip };
    case "position":
      if (!trip) return trip;
      return {
        ...trip,
        seq: frame.seq,
        updated_ts: frame.ts,
        progress: frame.progress ?? trip.progress,
        signal_lost: false,
        driver: {
          lon: frame.lon,
          lat: frame.lat,
          heading: frame.heading,
          speed: frame.speed,
          ts: frame.ts,
        },
      };
    case "eta":
      if (!trip) return trip;
      return {
        ...trip,
        seq: frame.seq,
        eta: {
          target: frame.target,
          eta_s: frame.eta_s,
          distance_m: frame.distance_m,
          arrive_ts: frame.arrive_ts,
        },
      };
    case "status": {
      if (!trip) return trip;
      const next = { ...trip, seq: frame.seq, status: frame.status, updated_ts: frame.ts };
      // The ETA's target changes with the leg; an old one would mislead.
      if (frame.status !== "assigned" && frame.status !== "in_progress") next.eta = null;
      else if (trip.eta && trip.eta.target !== targetOf(frame.status)) next.eta = null;
      // After a terminal state the driver is no longer shown to riders.
      if (TERMINAL.has(frame.status)) next.driver = null;
      return next;
    }
    case "route":
      if (!trip) return trip;
      return { ...trip, seq: frame.seq, route: frame.route, progress: 0 };
    case "signal":
      if (!trip) return trip;
      return { ...trip, seq: frame.seq, signal_lost: Boolean(frame.lost) };
    default:
      return trip;
  }
}

/** What the ETA of a status counts down to. */
export function targetOf(status) {
  if (status === "assigned") return "pickup";
  if (status === "in_progress") return "dropoff";
  return null;
}

/** The point the rider is waiting for in this status: pickup or dropoff. */
export function targetPoint(trip) {
  if (!trip) return null;
  const target = targetOf(trip.status) ?? (trip.status === "arrived_pickup" ? "pickup" : "dropoff");
  const point = trip[target];
  return point ? [point.lon, point.lat] : null;
}
