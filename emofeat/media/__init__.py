"""Media layer: probe and decode inputs once, streaming bounded chunks (PyAV).

Three kinds of input are understood:

* video containers (mp4, avi, mov, mkv, webm, ...: whatever FFmpeg decodes), with
  constant or variable frame rate; frame times come from the container's timestamps;
* audio files (wav, flac, mp3, m4a, ogg, ...);
* image-sequence folders as Aff-Wild2 ships them (``<track>/00001.jpg``, gaps allowed).

Time origin: t = 0 s is the first video frame's timestamp (audio-only inputs: the first
audio sample). Audio is delivered as mono float32 at every rate an extractor asks for,
sample ``n`` lying at ``n / rate`` seconds: audio before t = 0 is dropped and a late audio
start is filled with silence, so extractors never deal with offsets.

Memory: only the current batch of frames and audio chunk live in memory; what grows with
the input's length is the list of frame timestamps (8 bytes per frame).

One job per module: :mod:`.probing` (:func:`probe`, :class:`MediaInfo`), :mod:`.decoding`
(:class:`Decoder` and its chunks, resampling and mixdown), :mod:`.grid` (frame grids,
:func:`demux_grid`, :func:`count_frames`), :mod:`.images` (image-sequence folders) and
:mod:`.discovery` (suffixes, :func:`find_inputs`). This package is internal to the core:
users and plugins take these names from ``emofeat``.
"""

from emofeat.media.decoding import AudioChunk, Decoder, VideoChunk
from emofeat.media.discovery import AUDIO_SUFFIXES, MEDIA_SUFFIXES, VIDEO_SUFFIXES, find_inputs
from emofeat.media.grid import (
    FrameGrid,
    count_frames,
    demux_grid,
    fixed_grid,
    grid_from_starts,
)
from emofeat.media.images import IMAGE_SUFFIXES, is_image_folder, missing_frame_numbers
from emofeat.media.probing import MediaInfo, probe

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MEDIA_SUFFIXES",
    "VIDEO_SUFFIXES",
    "AudioChunk",
    "Decoder",
    "FrameGrid",
    "MediaInfo",
    "VideoChunk",
    "count_frames",
    "demux_grid",
    "find_inputs",
    "fixed_grid",
    "grid_from_starts",
    "is_image_folder",
    "missing_frame_numbers",
    "probe",
]
