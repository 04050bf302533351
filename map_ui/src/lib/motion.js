// The car marker's motion: glide from where it is shown to each new fix over
// the observed fix interval, following the road when the fix is on the
// route, and never sliding backwards because of GPS noise.

import { haversineM, lerpAngle, Polyline } from "./geo.js";

const ON_ROUTE_M = 35; // a fix this close to the route is drawn on it
const BACKTRACK_NOISE_M = 30; // a fix this little behind the car is noise: hold
const JUMP_M = 800; // farther than this (a gap, a re-route): move quickly

export class CarMotion {
  /**
   * @param {{minMs?: number, maxMs?: number}} [options] bounds of a glide
   */
  constructor({ minMs = 250, maxMs = 4000 } = {}) {
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.route = null;
    this.from = null; // {lonLat, heading, alongM|null}
    this.to = null;
    this.startMs = 0;
    this.durationMs = 0;
    this.lastFixMs = null;
  }

  /** A new route line (GeoJSON coordinates), or null. */
  setRoute(coords) {
    this.route = coords && coords.length >= 2 ? new Polyline(coords) : null;
    // Re-express what is shown on the new line so the glide continues.
    for (const key of ["from", "to"]) {
      const pose = this[key];
      if (pose) pose.alongM = this.#alongOnRoute(pose.lonLat);
    }
  }

  /**
   * A fix arrived at `nowMs` (page clock).
   * @param {{lon: number, lat: number, heading?: number|null}} fix
   */
  update(fix, nowMs) {
    const target = [fix.lon, fix.lat];
    const shown = this.at(nowMs);
    let alongM = this.#alongOnRoute(target);
    let heading = fix.heading ?? shown?.heading ?? 0;
    if (!shown) {
      this.#glide({ lonLat: target, heading, alongM }, { lonLat: target, heading, alongM }, nowMs, 0);
      this.lastFixMs = nowMs;
      return;
    }
    const gapMs = this.lastFixMs == null ? this.maxMs : nowMs - this.lastFixMs;
    this.lastFixMs = nowMs;
    if (alongM != null && shown.alongM != null) {
      const behind = shown.alongM - alongM;
      if (behind > 0 && behind <= BACKTRACK_NOISE_M) {
        // Noise puts the fix a little behind: keep the car where it is.
        this.#glide(shown, { ...shown }, nowMs, 0);
        return;
      }
      if (alongM >= shown.alongM) heading = this.route.pointAt(alongM).heading;
    }
    const far = haversineM(shown.lonLat, target) > JUMP_M;
    const duration = far ? this.minMs : Math.max(this.minMs, Math.min(this.maxMs, gapMs));
    this.#glide(shown, { lonLat: target, heading, alongM }, nowMs, duration);
  }

  /**
   * Where to draw the car at `nowMs`.
   * @returns {{lonLat: number[], heading: number, alongM: number|null}|null}
   */
  at(nowMs) {
    if (!this.to) return null;
    const t = this.durationMs > 0 ? Math.min(1, Math.max(0, (nowMs - this.startMs) / this.durationMs)) : 1;
    if (t >= 1) return { ...this.to };
    const { from, to } = this;
    if (this.route && from.alongM != null && to.alongM != null && to.alongM >= from.alongM) {
      // Along the road, so the car takes the corners the route takes.
      const alongM = from.alongM + (to.alongM - from.alongM) * t;
      const point = this.route.pointAt(alongM);
      return { lonLat: point.lonLat, heading: point.heading, alongM };
    }
    return {
      lonLat: [
        from.lonLat[0] + (to.lonLat[0] - from.lonLat[0]) * t,
        from.lonLat[1] + (to.lonLat[1] - from.lonLat[1]) * t,
      ],
      heading: lerpAngle(from.heading, to.heading, t),
      alongM: null,
    };
  }

  /** True while a glide is under way (the page keeps animating). */
  moving(nowMs) {
    return this.to != null && nowMs < this.startMs + this.durationMs;
  }

  /** Forget the car (trip over, driver hidden). */
  clear() {
    this.from = this.to = null;
    this.lastFixMs = null;
  }

  #alongOnRoute(lonLat) {
    if (!this.route) return null;
    const { alongM, crossM } = this.route.locate(lonLat);
    return crossM <= ON_ROUTE_M ? alongM : null;
  }

  #glide(from, to, nowMs, durationMs) {
    this.from = from;
    this.to = to;
    this.startMs = nowMs;
    this.durationMs = durationMs;
  }
}
