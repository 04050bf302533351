import assert from "node:assert/strict";
import test from "node:test";

import { Fleet, rates } from "../src/lib/fleet.js";

const at = (id, lon, extra = {}) => ({ id, lon, lat: 60.17, heading: 90, ts: 1_000, ...extra });

test("updates glide over a second; snapshots replace; `left` removes", () => {
  const fleet = new Fleet({ glideMs: 1000 });
  fleet.apply({ type: "drivers", snapshot: true, ts: 1_000, drivers: [at("a", 24.94), at("b", 24.95)] }, 0);
  fleet.apply({ type: "drivers", ts: 2_000, drivers: [at("a", 24.942)] }, 100);
  const mid = fleet.pose(fleet.drivers.get("a"), 600);
  assert.ok(Math.abs(mid.lon - 24.941) < 1e-9, String(mid.lon));
  assert.ok(fleet.moving(600) && !fleet.moving(1200));
  fleet.apply({ type: "drivers", ts: 3_000, drivers: [], left: ["b"] }, 1200);
  assert.deepEqual([...fleet.drivers.keys()], ["a"]);
  fleet.apply({ type: "drivers", snapshot: true, ts: 4_000, drivers: [at("c", 24.93)] }, 1300);
  assert.deepEqual([...fleet.drivers.keys()], ["c"]);
});

test("drivers are counted by trip status, idle without one, offline when silent", () => {
  const fleet = new Fleet({ offlineAfterMs: 30_000 });
  fleet.apply(
    {
      type: "drivers",
      snapshot: true,
      ts: 0,
      drivers: [
        at("a", 24.94, { trip_id: "t", status: "in_progress", ts: 50_000 }),
        at("b", 24.95, { ts: 50_000 }),
        at("c", 24.96, { ts: 1_000 }),
      ],
    },
    0,
  );
  const counts = fleet.counts(60_000);
  assert.equal(counts.in_progress, 1);
  assert.equal(counts.idle, 1);
  assert.equal(counts.offline, 1);
});

test("rates come from two samples of the gateway's counters", () => {
  const one = { gateway: { points: { stored: 100, rejected: 2 }, errors: { bad_frame: 1 } } };
  const two = { gateway: { points: { stored: 150, rejected: 2 }, errors: { bad_frame: 3 } } };
  assert.deepEqual(rates(one, two, 2), { pointsPerS: 25, errorsPerMin: 60 });
  assert.equal(rates(null, two, 2), null);
});
