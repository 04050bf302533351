"""The basemap of an extract, encoded once for serving: JSON, gzip and an ETag per layer."""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass

import orjson

from tracking.basemap.features import FeatureCollection
from tracking.basemap.layers import read_layers
from tracking.basemap.sea import Box


@dataclass(frozen=True, slots=True)
class EncodedLayer:
    """One layer's GeoJSON, ready to send.

    Attributes:
        plain: The FeatureCollection as JSON.
        gzipped: ``plain`` gzip-compressed (level 9, no timestamp: the same
            bytes on every gateway).
        digest: Hex digest of ``plain``: the ETag's opaque part, and a cache
            buster in the style's data URLs.
        features: Number of features.
    """

    plain: bytes
    gzipped: bytes
    digest: str
    features: int


@dataclass(frozen=True, slots=True)
class Basemap:
    """Every layer of one extract, encoded.

    Attributes:
        path: The .osm.pbf it was built from.
        layers: Encoded layers by name, bottom to top.
        bounds: (min_lon, min_lat, max_lon, max_lat) of the extract.
        has_sea: True when the water layer holds the sea built from the coastline.
        build_time_s: Wall time of reading and encoding.
    """

    path: str
    layers: dict[str, EncodedLayer]
    bounds: Box
    has_sea: bool
    build_time_s: float


def encode_layer(collection: FeatureCollection) -> EncodedLayer:
    """Encode one FeatureCollection (JSON, gzip, digest)."""
    plain = orjson.dumps(collection)
    features = collection.get("features")
    return EncodedLayer(
        plain=plain,
        gzipped=gzip.compress(plain, compresslevel=9, mtime=0),
        digest=hashlib.sha256(plain).hexdigest()[:20],
        features=len(features) if isinstance(features, list) else 0,
    )


def build_basemap(path: str) -> Basemap:
    """Read an extract's basemap layers and encode them (blocking: run it in a thread).

    Args:
        path: Path of the .osm.pbf.

    Raises:
        OSError / RuntimeError: When the file cannot be read (from pyosmium).
    """
    started = time.perf_counter()
    read = read_layers(path)
    layers = {name: encode_layer(collection) for name, collection in read.layers.items()}
    return Basemap(path, layers, read.bounds, read.has_sea, time.perf_counter() - started)
