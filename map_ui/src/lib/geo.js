// Metric geometry on small areas (a city): an equirectangular projection
// around a reference latitude is accurate to well under a metre per km.

const M_PER_DEG_LAT = 110_574;
const M_PER_DEG_LON_EQ = 111_320;

/** Projection of [lon, lat] to metres around `lat0`, and back. */
export function projector(lat0) {
  const kx = M_PER_DEG_LON_EQ * Math.cos((lat0 * Math.PI) / 180);
  return {
    toXY: ([lon, lat]) => [lon * kx, lat * M_PER_DEG_LAT],
    toLonLat: ([x, y]) => [x / kx, y / M_PER_DEG_LAT],
  };
}

/** Great-circle distance in metres. */
export function haversineM(a, b) {
  const r = 6_371_008.8;
  const toRad = Math.PI / 180;
  const dLat = (b[1] - a[1]) * toRad;
  const dLon = (b[0] - a[0]) * toRad;
  const h =
    Math.sin(dLat / 2) ** 2 +
    Math.cos(a[1] * toRad) * Math.cos(b[1] * toRad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Degrees clockwise from north, 0..360. */
export function bearingDeg(a, b) {
  const toRad = Math.PI / 180;
  const y = Math.sin((b[0] - a[0]) * toRad) * Math.cos(b[1] * toRad);
  const x =
    Math.cos(a[1] * toRad) * Math.sin(b[1] * toRad) -
    Math.sin(a[1] * toRad) * Math.cos(b[1] * toRad) * Math.cos((b[0] - a[0]) * toRad);
  return ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360;
}

/** Interpolates an angle in degrees along the shorter arc. */
export function lerpAngle(from, to, t) {
  const delta = ((((to - from) % 360) + 540) % 360) - 180;
  return (from + delta * t + 360) % 360;
}

/** A route line with distances along it in metres. */
export class Polyline {
  constructor(coords) {
    if (!Array.isArray(coords) || coords.length < 2) throw new Error("a line needs two points");
    this.coords = coords;
    this.proj = projector(coords[0][1]);
    this.xy = coords.map(this.proj.toXY);
    this.cum = [0];
    for (let i = 1; i < this.xy.length; i++) {
      const [x0, y0] = this.xy[i - 1];
      const [x1, y1] = this.xy[i];
      this.cum.push(this.cum[i - 1] + Math.hypot(x1 - x0, y1 - y0));
    }
    this.length = this.cum[this.cum.length - 1];
  }

  /** Index of the segment holding `alongM` (clamped). */
  segmentAt(alongM) {
    let lo = 0;
    let hi = this.cum.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.cum[mid] <= alongM) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** Point and direction at `alongM` metres from the start. */
  pointAt(alongM) {
    const along = Math.max(0, Math.min(this.length, alongM));
    const i = this.segmentAt(along);
    const segLen = this.cum[i + 1] - this.cum[i];
    const t = segLen > 0 ? (along - this.cum[i]) / segLen : 0;
    const [x0, y0] = this.xy[i];
    const [x1, y1] = this.xy[i + 1];
    const lonLat = this.proj.toLonLat([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t]);
    const heading = (((Math.atan2(x1 - x0, y1 - y0) * 180) / Math.PI) + 360) % 360;
    return { lonLat, heading };
  }

  /** Nearest point of the line to `lonLat`: distance along and across, in metres. */
  locate(lonLat) {
    const [px, py] = this.proj.toXY(lonLat);
    let best = { alongM: 0, crossM: Infinity };
    for (let i = 0; i < this.xy.length - 1; i++) {
      const [x0, y0] = this.xy[i];
      const [x1, y1] = this.xy[i + 1];
      const dx = x1 - x0;
      const dy = y1 - y0;
      const len2 = dx * dx + dy * dy;
      const t = len2 > 0 ? Math.max(0, Math.min(1, ((px - x0) * dx + (py - y0) * dy) / len2)) : 0;
      const cross = Math.hypot(px - (x0 + dx * t), py - (y0 + dy * t));
      if (cross < best.crossM) {
        best = { alongM: this.cum[i] + Math.sqrt(len2) * t, crossM: cross };
      }
    }
    return best;
  }

  /** The line cut at `alongM`: [travelled, remaining] coordinate lists. */
  split(alongM) {
    const along = Math.max(0, Math.min(this.length, alongM));
    const i = this.segmentAt(along);
    const cut = this.pointAt(along).lonLat;
    const travelled = [...this.coords.slice(0, i + 1), cut];
    const remaining = [cut, ...this.coords.slice(i + 1)];
    return [travelled, remaining];
  }
}
