"""Data: the mini world generator, its stored splits, and the common dataset interface."""
from .dataset import CaptionedImages, FileImages, Queries, as_uint8_images, load_karpathy
from .world import WorldConfig
from .world_store import World, WorldGenerator, build_world, load_world

__all__ = [
    "CaptionedImages",
    "FileImages",
    "Queries",
    "World",
    "WorldConfig",
    "WorldGenerator",
    "as_uint8_images",
    "build_world",
    "load_karpathy",
    "load_world",
]
