// The ops dashboard's fleet: drivers from the fleet feed, each gliding from
// its last shown position to its newest one, counted by trip status.

import { lerpAngle } from "./geo.js";

export const STATUS_COLORS = {
  idle: "#6b7280",
  assigned: "#2563eb",
  arrived_pickup: "#d97706",
  in_progress: "#16a34a",
  arrived_dropoff: "#7c3aed",
  offline: "#c4c8cf",
};

export const STATUS_LABELS = {
  idle: "Idle",
  assigned: "To pickup",
  arrived_pickup: "At pickup",
  in_progress: "On trip",
  arrived_dropoff: "At dropoff",
  offline: "No signal",
};

const ACTIVE = new Set(["assigned", "arrived_pickup", "in_progress", "arrived_dropoff"]);

export class Fleet {
  /** @param {{offlineAfterMs?: number, glideMs?: number}} [options] */
  constructor({ offlineAfterMs = 30_000, glideMs = 1000 } = {}) {
    this.offlineAfterMs = offlineAfterMs;
    this.glideMs = glideMs;
    /** id -> {id, lon, lat, heading, trip_id, status, ts, from, startMs} */
    this.drivers = new Map();
  }

  /**
   * Applies a fleet-feed `drivers` frame received at `nowMs` (page clock).
   * A snapshot replaces the whole set (the box may have changed).
   */
  apply(frame, nowMs) {
    if (frame.snapshot) {
      const keep = new Set(frame.drivers.map((d) => d.id));
      for (const id of this.drivers.keys()) if (!keep.has(id)) this.drivers.delete(id);
    }
    // Drivers that drove out of the box: gone from this view.
    for (const id of frame.left ?? []) this.drivers.delete(id);
    for (const d of frame.drivers) {
      const known = this.drivers.get(d.id);
      const from = known ? this.pose(known, nowMs) : null;
      this.drivers.set(d.id, {
        ...d,
        heading: d.heading ?? known?.heading ?? 0,
        ts: d.ts ?? frame.ts,
        from: frame.snapshot ? null : from,
        startMs: nowMs,
      });
    }
  }

  /** Where a driver is drawn at `nowMs`. */
  pose(d, nowMs) {
    const t = d.from ? Math.min(1, (nowMs - d.startMs) / this.glideMs) : 1;
    if (t >= 1 || !d.from) return { lon: d.lon, lat: d.lat, heading: d.heading };
    return {
      lon: d.from.lon + (d.lon - d.from.lon) * t,
      lat: d.from.lat + (d.lat - d.from.lat) * t,
      heading: lerpAngle(d.from.heading, d.heading, t),
    };
  }

  /** The dashboard's status of a driver: its trip's, idle, or offline. */
  statusOf(d, wallMs) {
    if (d.ts && wallMs - d.ts > this.offlineAfterMs) return "offline";
    return d.trip_id && ACTIVE.has(d.status) ? d.status : "idle";
  }

  /** Drivers by dashboard status. */
  counts(wallMs) {
    const counts = Object.fromEntries(Object.keys(STATUS_COLORS).map((k) => [k, 0]));
    for (const d of this.drivers.values()) counts[this.statusOf(d, wallMs)] += 1;
    return counts;
  }

  /** Whether any driver is still gliding. */
  moving(nowMs) {
    for (const d of this.drivers.values()) if (d.from && nowMs - d.startMs < this.glideMs) return true;
    return false;
  }

  /** GeoJSON of the drivers as drawn at `nowMs`. */
  geojson(nowMs, wallMs) {
    const features = [];
    for (const d of this.drivers.values()) {
      const p = this.pose(d, nowMs);
      features.push({
        type: "Feature",
        id: undefined,
        properties: { id: d.id, status: this.statusOf(d, wallMs), heading: p.heading, trip_id: d.trip_id ?? "" },
        geometry: { type: "Point", coordinates: [p.lon, p.lat] },
      });
    }
    return { type: "FeatureCollection", features };
  }
}

/** Rates from two samples of the gateway's counters. */
export function rates(previous, current, dtS) {
  if (!previous || dtS <= 0) return null;
  const sum = (o) => Object.values(o ?? {}).reduce((a, b) => a + b, 0);
  return {
    pointsPerS: Math.max(0, (sum(current.gateway.points) - sum(previous.gateway.points)) / dtS),
    errorsPerMin: Math.max(0, ((sum(current.gateway.errors) - sum(previous.gateway.errors)) * 60) / dtS),
  };
}
