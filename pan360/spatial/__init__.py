"""Spatial audio: first-order ambisonics formats, rotation, camera-following stereo, energy maps."""

from pan360.spatial.ambisonics import (
    CameraStereo,
    ambix_to_fuma,
    camera_stereo,
    encode_foa,
    fuma_to_ambix,
    n3d_to_sn3d,
    rotate_foa,
)
from pan360.spatial.foa_map import DirectionTrack, foa_direction_track, foa_energy_maps, map_peaks

__all__ = [
    "CameraStereo",
    "ambix_to_fuma",
    "camera_stereo",
    "encode_foa",
    "fuma_to_ambix",
    "n3d_to_sn3d",
    "rotate_foa",
    "DirectionTrack",
    "foa_direction_track",
    "foa_energy_maps",
    "map_peaks",
]
