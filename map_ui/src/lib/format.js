// Words and numbers of the rider's card: pure, so the tests pin them down.

import { TERMINAL } from "./trip.js";

/** "under a minute", "1 min", "12 min", "1 h 5 min". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return "under a minute";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m ? `${h} h ${m} min` : `${h} h`;
}

/** "40 m", "850 m", "1.2 km", "12 km". */
export function formatDistance(metres) {
  if (metres == null || !Number.isFinite(metres)) return "";
  if (metres < 1000) return `${Math.max(0, Math.round(metres / 10) * 10)} m`;
  const km = metres / 1000;
  return km < 10 ? `${km.toFixed(1)} km` : `${Math.round(km)} km`;
}

/** Local wall-clock time of an epoch-ms timestamp, "14:32". */
export function formatClock(ts, locale = undefined, timeZone = undefined) {
  if (!ts) return "";
  return new Date(ts).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", timeZone });
}

const WORDS = {
  ride: { who: "Driver", to: { pickup: "pickup", dropoff: "dropoff" } },
  delivery: { who: "Courier", to: { pickup: "pickup", dropoff: "drop-off" } },
};

/**
 * The card's headline and detail line for a trip.
 * @returns {{headline: string, detail: string, tone: string}}
 */
export function describe(trip, nowMs = Date.now()) {
  if (!trip) return { headline: "Loading your trip…", detail: "", tone: "neutral" };
  const words = WORDS[trip.kind] ?? WORDS.ride;
  const eta = trip.eta;
  const when = eta?.arrive_ts ? `around ${formatClock(eta.arrive_ts)}` : "";
  switch (trip.status) {
    case "requested":
      return { headline: `Finding your ${words.who.toLowerCase()}`, detail: "", tone: "neutral" };
    case "assigned":
      if (eta && eta.eta_s != null) {
        return {
          headline: `Arriving at ${words.to.pickup} in ${formatDuration(eta.eta_s)} · ${formatDistance(eta.distance_m)}`,
          detail: when,
          tone: "active",
        };
      }
      return { headline: `${words.who} on the way to the ${words.to.pickup}`, detail: "", tone: "active" };
    case "arrived_pickup":
      return {
        headline: `${words.who} has arrived at the ${words.to.pickup}`,
        detail: trip.driver_id ? `Look for ${trip.driver_id}` : "",
        tone: "attention",
      };
    case "in_progress":
      if (eta && eta.eta_s != null) {
        return {
          headline: `Arriving at ${words.to.dropoff} in ${formatDuration(eta.eta_s)} · ${formatDistance(eta.distance_m)}`,
          detail: when,
          tone: "active",
        };
      }
      return { headline: `On the way to the ${words.to.dropoff}`, detail: "", tone: "active" };
    case "arrived_dropoff":
      return { headline: `Arrived at the ${words.to.dropoff}`, detail: "", tone: "attention" };
    case "completed":
      return { headline: "Trip completed", detail: formatClock(trip.updated_ts), tone: "done" };
    case "cancelled":
      return { headline: "Trip cancelled", detail: formatClock(trip.updated_ts), tone: "done" };
    default:
      void nowMs;
      return { headline: trip.status, detail: "", tone: "neutral" };
  }
}

/** "Signal lost · last update 40 s ago" for a driver that went quiet. */
export function describeSignal(trip, nowMs = Date.now()) {
  if (!trip?.signal_lost || TERMINAL.has(trip.status)) return "";
  const who = (WORDS[trip.kind] ?? WORDS.ride).who;
  const last = trip.driver?.ts;
  if (!last) return `${who}'s signal lost`;
  const ago = Math.max(0, Math.round((nowMs - last) / 1000));
  const agoText = ago < 120 ? `${ago} s` : `${Math.round(ago / 60)} min`;
  return `${who}'s signal lost · last update ${agoText} ago`;
}

const STEPS = [
  ["assigned", { ride: "Driver assigned", delivery: "Courier assigned" }],
  ["arrived_pickup", { ride: "Driver arrived", delivery: "At pickup" }],
  ["in_progress", { ride: "On trip", delivery: "On the way" }],
  ["arrived_dropoff", { ride: "Arrived", delivery: "At drop-off" }],
  ["completed", { ride: "Completed", delivery: "Delivered" }],
];
const ORDER = ["requested", ...STEPS.map(([s]) => s)];

/**
 * The status timeline: each step `done`, `current` or `todo`
 * (`cancelled` for every step not reached when the trip was cancelled).
 * @param {string} status
 * @param {string} kind
 * @param {string|null} lastBeforeCancel the status the trip had when cancelled
 */
export function timeline(status, kind = "ride", lastBeforeCancel = null) {
  const reached = status === "cancelled" ? ORDER.indexOf(lastBeforeCancel ?? "requested") : ORDER.indexOf(status);
  return STEPS.map(([step, labels]) => {
    const index = ORDER.indexOf(step);
    let state = "todo";
    if (index < reached) state = "done";
    else if (index === reached) state = status === "completed" ? "done" : "current";
    else if (status === "cancelled") state = "cancelled";
    if (status === "cancelled" && index <= reached) state = "done";
    return { step, label: labels[kind] ?? labels.ride, state };
  });
}
