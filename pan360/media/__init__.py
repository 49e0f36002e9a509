"""Media I/O through PyAV: probing, decoding one eye with timestamps, audio, H.264/AAC writing,
atomic output files."""

from pan360.media.audio import AudioTrack, read_audio
from pan360.media.output import atomic_output, check_output
from pan360.media.probe import STEREO_MODES, AudioInfo, MediaInfo, probe
from pan360.media.video import VideoWriter, iter_frames

__all__ = [
    "STEREO_MODES",
    "AudioInfo",
    "AudioTrack",
    "MediaInfo",
    "VideoWriter",
    "atomic_output",
    "check_output",
    "iter_frames",
    "probe",
    "read_audio",
]
