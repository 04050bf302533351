"""The offline basemap: street geometry for the map pages from the router's .osm.pbf.

``build_basemap(path)`` reads the extract once (pyosmium) into GeoJSON layers
(``water``, ``landuse``, ``buildings``, ``roads``, ``rail``) encoded for
serving, and ``build_style(urls)`` gives the MapLibre style that draws them.
The HTTP adapter is :mod:`tracking.api.maps`.
"""

from tracking.basemap.bundle import Basemap, EncodedLayer, build_basemap
from tracking.basemap.layers import LAYER_NAMES, BasemapLayers, extract_bounds, read_layers
from tracking.basemap.style import ATTRIBUTION, build_style

__all__ = [
    "ATTRIBUTION",
    "LAYER_NAMES",
    "Basemap",
    "BasemapLayers",
    "EncodedLayer",
    "build_basemap",
    "build_style",
    "extract_bounds",
    "read_layers",
]
