import assert from "node:assert/strict";
import test from "node:test";

import { haversineM, Polyline } from "../src/lib/geo.js";
import { CarMotion } from "../src/lib/motion.js";

// An L-shaped street in Helsinki: 200 m east, then 200 m north.
const ROUTE = [
  [24.94, 60.17],
  [24.9436, 60.17],
  [24.9436, 60.1718],
];

test("a polyline measures, locates and splits in metres", () => {
  const line = new Polyline(ROUTE);
  assert.ok(Math.abs(line.length - 400) < 5, String(line.length));
  const { alongM, crossM } = line.locate([24.9418, 60.17005]);
  assert.ok(Math.abs(alongM - 100) < 3 && crossM < 7, JSON.stringify({ alongM, crossM }));
  const [travelled, remaining] = line.split(300);
  assert.deepEqual(travelled.slice(0, 2), ROUTE.slice(0, 2));
  assert.deepEqual(remaining.at(-1), ROUTE[2]);
  assert.ok(haversineM(travelled.at(-1), remaining[0]) < 0.01);
});

test("the car glides along the road, around the corner, over the fix interval", () => {
  const motion = new CarMotion();
  motion.setRoute(ROUTE);
  motion.update({ lon: 24.9418, lat: 60.17 }, 0); // 100 m along
  motion.update({ lon: 24.9436, lat: 60.1709 }, 1000); // 300 m along, past the corner
  const mid = motion.at(1500);
  // Half-way in time is half-way along the road (200 m: the corner), not
  // the straight line's midpoint that cuts across the block.
  assert.ok(haversineM(mid.lonLat, ROUTE[1]) < 3, JSON.stringify(mid));
  assert.ok(motion.moving(1500));
  const end = motion.at(2000);
  assert.ok(haversineM(end.lonLat, [24.9436, 60.1709]) < 1);
  assert.ok(Math.abs(end.heading - 0) < 1 || Math.abs(end.heading - 360) < 1, String(end.heading));
  assert.equal(motion.moving(2001), false);
});

test("a fix a little behind the car is noise: the car never slides back", () => {
  const motion = new CarMotion();
  motion.setRoute(ROUTE);
  motion.update({ lon: 24.9418, lat: 60.17 }, 0);
  motion.update({ lon: 24.9427, lat: 60.17 }, 1000); // 150 m
  const shown = motion.at(2000);
  motion.update({ lon: 24.9424, lat: 60.17 }, 3000); // 133 m: 17 m behind
  for (const t of [3000, 3500, 5000]) {
    assert.ok(motion.at(t).alongM >= shown.alongM - 0.01);
  }
});

test("off the route the car moves in a straight line, never jumping", () => {
  const motion = new CarMotion();
  motion.update({ lon: 24.95, lat: 60.18, heading: 90 }, 0);
  motion.update({ lon: 24.951, lat: 60.18, heading: 90 }, 1000);
  const mid = motion.at(1500);
  assert.ok(Math.abs(mid.lonLat[0] - 24.9505) < 1e-6);
  assert.equal(mid.alongM, null);
});
