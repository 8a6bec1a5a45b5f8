"""emofeat: frame-aligned audio-visual emotion features, built as a plugin system.

Public API (what plugins and users import):

* plugin authoring: :data:`hookimpl`, :class:`Extractor`, :class:`StreamSpec`, :class:`Rows`,
  :class:`Setting`, :class:`ModelInfo`, chunk types :class:`AudioChunk`, :class:`VideoChunk`,
  audio helpers :class:`SlidingWindows`, :class:`ContextChunks`, errors
  :class:`SkipExtractor`, :class:`ConfigError`;
* reading results: :func:`open_store`, :class:`FeatureStore` (its ``catalog()`` lists
  :class:`ItemInfo`), the alignment rule's name :data:`ALIGNMENT_RULE`;
* the timeline rule: :func:`align_to_frames`;
* window statistics (what ``functionals`` computes): :data:`STATS`, :func:`window_statistics`;
* media: :func:`probe`, :class:`Decoder`, :func:`count_frames` / :func:`demux_grid` (the
  frame grid by demuxing, no decoding), :data:`VIDEO_SUFFIXES`;
* extraction from Python: :func:`extract` (what ``emofeat extract`` does, into a store),
  :func:`process_file` (one file in, DataFrames out) and :func:`build_jobs` (imported on
  first use: ``import emofeat`` stays light);
* reporting: :func:`stderr_console`, the rich console emofeat reports runs on (commands a
  plugin or recipe adds print there too; imported on first use).

Public modules: besides ``emofeat`` itself, only

* ``emofeat.models``: the model registry (models, files, sources, the verified cache);
* ``emofeat.recipes``: what recipes are built on (``Recipe``, ``RecipeRun``, ``RecipeError``);
* ``emofeat.settings``: the settings grammar that extractor settings and recipe configs
  share (``Key``, ``parse_value``, ``coerce``, ``load_yaml``);
* ``emofeat.testing``: plugin authors' test helpers (``check_extractor``, ``sample_input``).

Every other module of the package (``emofeat.media``, ``emofeat.engine``, ``emofeat.store``,
``emofeat.progress``, ...) is private and may change in any release: plugins, recipes and
users import the names above. The built-in plugins and recipes are held to this rule by a
test that reads their imports.
"""

from typing import Any

from emofeat._version import __version__
from emofeat.errors import (
    ConfigError,
    EmofeatError,
    MediaError,
    SkipExtractor,
    StoreError,
    StoreInUseError,
    UnknownExtractorError,
)
from emofeat.extractor import (
    AUDIO,
    FEATURES,
    VIDEO,
    ContextChunks,
    Extractor,
    ModelInfo,
    Rows,
    Setting,
    SlidingWindows,
    StreamSpec,
)
from emofeat.hookspecs import hookimpl
from emofeat.media import (
    VIDEO_SUFFIXES,
    AudioChunk,
    Decoder,
    FrameGrid,
    MediaInfo,
    VideoChunk,
    count_frames,
    demux_grid,
    probe,
)
from emofeat.plugins import get_extractor, get_extractors
from emofeat.statistics import STATS, check_stats, window_statistics
from emofeat.store import (
    ALIGNMENT_RULE,
    FeatureStore,
    ItemInfo,
    StoredInput,
    StreamData,
    open_store,
)
from emofeat.timeline import align_to_frames


def __getattr__(name: str) -> Any:
    # the engine is imported only when extraction is asked for
    if name in ("extract", "process_file", "build_jobs"):
        from emofeat import api

        return getattr(api, name)
    if name == "stderr_console":
        from emofeat.progress import stderr_console

        return stderr_console
    raise AttributeError(f"module 'emofeat' has no attribute {name!r}")


__all__ = [
    "ALIGNMENT_RULE",
    "VIDEO_SUFFIXES",
    "ItemInfo",
    "count_frames",
    "demux_grid",
    "STATS",
    "AUDIO",
    "FEATURES",
    "VIDEO",
    "AudioChunk",
    "ConfigError",
    "ContextChunks",
    "Decoder",
    "EmofeatError",
    "Extractor",
    "FeatureStore",
    "FrameGrid",
    "MediaError",
    "MediaInfo",
    "ModelInfo",
    "Rows",
    "Setting",
    "SkipExtractor",
    "SlidingWindows",
    "StoreError",
    "StoreInUseError",
    "StoredInput",
    "StreamData",
    "StreamSpec",
    "UnknownExtractorError",
    "VideoChunk",
    "__version__",
    "align_to_frames",
    "build_jobs",
    "check_stats",
    "extract",
    "get_extractor",
    "get_extractors",
    "hookimpl",
    "open_store",
    "process_file",
    "stderr_console",
    "probe",
    "window_statistics",
]
