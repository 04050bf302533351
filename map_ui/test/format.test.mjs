import assert from "node:assert/strict";
import test from "node:test";

import { describe, describeSignal, formatDistance, formatDuration, timeline } from "../src/lib/format.js";

test("durations and distances read like a ride app", () => {
  assert.equal(formatDuration(30), "under a minute");
  assert.equal(formatDuration(170), "3 min");
  assert.equal(formatDuration(3900), "1 h 5 min");
  assert.equal(formatDistance(804), "800 m");
  assert.equal(formatDistance(1234), "1.2 km");
  assert.equal(formatDistance(12_600), "13 km");
});

test("the headline says what the ETA is to", () => {
  const trip = { id: "t", kind: "ride", status: "assigned", eta: { target: "pickup", eta_s: 180, distance_m: 800 } };
  assert.equal(describe(trip).headline, "Arriving at pickup in 3 min · 800 m");
  const onTrip = { ...trip, status: "in_progress", eta: { target: "dropoff", eta_s: 420, distance_m: 2100 } };
  assert.equal(describe(onTrip).headline, "Arriving at dropoff in 7 min · 2.1 km");
  assert.equal(describe({ ...trip, status: "arrived_pickup", eta: null }).headline, "Driver has arrived at the pickup");
  assert.equal(describe({ ...trip, kind: "delivery", status: "assigned", eta: null }).headline, "Courier on the way to the pickup");
});

test("signal lost says how long ago the last fix was", () => {
  const trip = { kind: "ride", status: "in_progress", signal_lost: true, driver: { ts: 1_000 } };
  assert.equal(describeSignal(trip, 41_000), "Driver's signal lost · last update 40 s ago");
  assert.equal(describeSignal({ ...trip, signal_lost: false }, 41_000), "");
  assert.equal(describeSignal({ ...trip, status: "completed" }, 41_000), "");
});

test("the timeline marks done, current and cancelled steps", () => {
  const states = (status, before) => timeline(status, "ride", before).map((s) => s.state);
  assert.deepEqual(states("assigned"), ["current", "todo", "todo", "todo", "todo"]);
  assert.deepEqual(states("in_progress"), ["done", "done", "current", "todo", "todo"]);
  assert.deepEqual(states("completed"), ["done", "done", "done", "done", "done"]);
  assert.deepEqual(states("cancelled", "arrived_pickup"), ["done", "done", "cancelled", "cancelled", "cancelled"]);
});
