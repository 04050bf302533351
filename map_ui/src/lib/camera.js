// When the map should move by itself: keep the car and what it drives to in
// view, but leave the map alone for a while after the rider moves it.

export class CameraPolicy {
  /** @param {{pauseMs?: number}} [options] how long a user's pan or zoom wins */
  constructor({ pauseMs = 20_000 } = {}) {
    this.pauseMs = pauseMs;
    this.userUntilMs = 0;
  }

  /** The rider panned, zoomed or rotated the map. */
  userMoved(nowMs) {
    this.userUntilMs = nowMs + this.pauseMs;
  }

  /** The rider asked to recenter. */
  recenter() {
    this.userUntilMs = 0;
  }

  /** Whether the camera follows by itself now. */
  following(nowMs) {
    return nowMs >= this.userUntilMs;
  }

  /**
   * Whether the view must be refitted: a point of interest left the view's
   * inner part, or the points fill only a sliver of it.
   * @param {number[][]} view [[west, south], [east, north]]
   * @param {number[][]} points [lon, lat] pairs to keep in view
   */
  needsFit(view, points, { margin = 0.15, minFill = 0.12 } = {}) {
    if (!points.length) return false;
    const [[w, s], [e, n]] = view;
    const dx = (e - w) * margin;
    const dy = (n - s) * margin;
    const outside = points.some(
      ([lon, lat]) => lon < w + dx || lon > e - dx || lat < s + dy || lat > n - dy,
    );
    if (outside) return true;
    const [[pw, ps], [pe, pn]] = bounds(points);
    const fill = Math.max((pe - pw) / (e - w), (pn - ps) / (n - s));
    return points.length > 1 && fill < minFill;
  }
}

/** [[west, south], [east, north]] of [lon, lat] points. */
export function bounds(points) {
  let w = Infinity;
  let s = Infinity;
  let e = -Infinity;
  let n = -Infinity;
  for (const [lon, lat] of points) {
    w = Math.min(w, lon);
    s = Math.min(s, lat);
    e = Math.max(e, lon);
    n = Math.max(n, lat);
  }
  return [
    [w, s],
    [e, n],
  ];
}
