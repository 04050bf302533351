// Creating the map: the style comes from the gateway (/map/config.json),
// which serves an offline basemap built from the road map's .osm.pbf or
// points at an external style in production.

import * as maplibregl from "maplibre-gl";

// The worker is served next to the bundles (build.mjs copies it from the
// npm package), from our own origin: no CDN, and CSP can stay 'self'.
maplibregl.setWorkerUrl("/assets/maplibre-gl-worker.mjs");

const EMPTY_STYLE = {
  version: 8,
  sources: {},
  layers: [{ id: "background", type: "background", paint: { "background-color": "#eeece7" } }],
};

/** The gateway's map configuration, or null when it cannot be read. */
export async function loadMapConfig(origin) {
  try {
    const response = await fetch(`${origin}/map/config.json`);
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * A MapLibre map in `container`.
 * @param {HTMLElement} container
 * @param {object|null} config from loadMapConfig
 * @param {object} [options] extra MapLibre options
 */
export function createMap(container, config, options = {}) {
  const map = new maplibregl.Map({
    container,
    style: config?.style_url ?? EMPTY_STYLE,
    bounds: config?.bounds,
    fitBoundsOptions: { padding: 20 },
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
    maxZoom: 19,
    ...options,
  });
  map.touchZoomRotate.disableRotation();
  map.keyboard.enable();
  map.addControl(
    new maplibregl.AttributionControl({
      compact: true,
      customAttribution: config?.attribution ?? "© OpenStreetMap contributors",
    }),
    "bottom-right",
  );
  return map;
}

/** Resolves once the map has loaded (call it right after creating the map). */
export function whenLoaded(map) {
  // `loaded()` is false again whenever tiles are loading, and "load" fires
  // only once: waiting on either later could hang, so remember the event.
  if (!map.__loaded) {
    map.__loaded = new Promise((resolve) => map.once("load", () => resolve(map)));
  }
  return map.__loaded;
}

export { maplibregl };
