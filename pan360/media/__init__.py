"""Media I/O through PyAV: probing, decoding one eye with timestamps, audio, H.264/AAC writing,
atomic output files."""

from pan360.media.audio import AudioStream, AudioTrack, read_audio
from pan360.media.output import atomic_output, check_output
from pan360.media.probe import FOA_FORMATS, STEREO_MODES, AudioInfo, MediaInfo, is_foa_layout, probe
from pan360.media.video import AAC_LAYOUTS, VideoWriter, aac_writable, equirect_picture, iter_frames

__all__ = [
    "AAC_LAYOUTS",
    "FOA_FORMATS",
    "STEREO_MODES",
    "AudioInfo",
    "AudioStream",
    "AudioTrack",
    "MediaInfo",
    "VideoWriter",
    "aac_writable",
    "atomic_output",
    "check_output",
    "equirect_picture",
    "is_foa_layout",
    "iter_frames",
    "probe",
    "read_audio",
]
