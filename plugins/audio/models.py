"""Model registry entries of the audio plugin: PDEM, audEERING's dimensional emotion model.

PDEM (``w2v2-L-robust-12.6bc4a7fd-1.1.0``) is the ONNX export of a wav2vec 2.0 large
robust model pruned to 12 layers and fine-tuned on MSP-Podcast for arousal, dominance and
valence (Wagner et al. 2023, doi:10.5281/zenodo.6221127). It is licensed CC BY-NC-SA 4.0:
non-commercial, so the registry asks for an explicit opt-in before fetching or loading it.

Sources, in order:

1. the Zenodo archive (about 610 MB, a zip holding ``model.onnx`` and ``model.yaml``);
2. audEERING's model store through the ``audmodel`` package (uid ``6bc4a7fd-1.1.0``), for
   users who have it (it is not a dependency of emofeat);
3. a local copy: ``emofeat models import pdem PATH`` (the downloaded zip or its unpacked
   folder).

audEERING publishes no checksum of the archive or of its files in a place this project could
read (Zenodo's record page was not reachable from the machines that wrote this entry), so the
files are registered without digests. Instead :func:`check_pdem_files` checks that a
candidate copy is the PDEM export (an audonnx YAML pointing at ``model.onnx``; an ONNX graph
with input ``signal`` and outputs ``hidden_states`` (1024) and ``logits`` labelled arousal,
dominance, valence) before it enters the cache, and the digests of the copy obtained are
recorded in the cache and stored with every output (``model_sha256``), so results can be
traced to the exact files. When the digests are known, put them in :data:`PDEM_FILES` (and
the archive's in ``Source.checksum``): the registry then verifies them.
"""

from __future__ import annotations

from pathlib import Path

from emofeat.models import Model, ModelError, ModelFile, Source

PDEM_URL = "https://zenodo.org/record/6221127/files/w2v2-L-robust-12.6bc4a7fd-1.1.0.zip"
PDEM_UID = "6bc4a7fd-1.1.0"
PDEM_LABELS = ("arousal", "dominance", "valence")
PDEM_LICENSE = "CC-BY-NC-SA-4.0"
PDEM_HIDDEN = 1024

#: digests not published by audEERING: "" (see the module docstring)
PDEM_FILES = (ModelFile("model.onnx", "", 0), ModelFile("model.yaml", "", 0))


def yaml_model_path(yaml_path: Path) -> str:
    """The ONNX path an audonnx model YAML points to (raises ModelError if it is not one)."""
    import yaml

    try:
        data = yaml.safe_load(yaml_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{yaml_path.name} is not readable YAML: {exc}") from None
    if not isinstance(data, dict) or len(data) != 1:
        raise ModelError(f"{yaml_path.name} is not an audonnx model file")
    ((key, body),) = data.items()
    if not str(key).startswith("$audonnx") or not isinstance(body, dict) or "path" not in body:
        raise ModelError(f"{yaml_path.name} is not an audonnx model file (top key {key!r})")
    return str(body["path"])


def check_pdem_files(files: dict[str, Path]) -> None:
    """Raise :class:`ModelError` unless ``files`` (``model.onnx``, ``model.yaml``) are PDEM-shaped.

    Checks the structure, not the weights (their digests are not published): the YAML is an
    audonnx model pointing at ``model.onnx``; the ONNX graph takes ``signal`` and gives
    ``hidden_states`` with 1024 values and ``logits`` with 3, labelled arousal, dominance,
    valence (labels come from the YAML).
    """
    import onnx

    onnx_path, yaml_path = files["model.onnx"], files["model.yaml"]
    target = yaml_model_path(yaml_path)
    if Path(target).name != "model.onnx":
        raise ModelError(f"model.yaml points to {target!r}, not model.onnx")
    try:
        # the graph only: the weights stay on disk when stored as external data
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"model.onnx is not an ONNX model: {exc}") from None
    inputs = [i.name for i in proto.graph.input]
    outputs = {o.name: o for o in proto.graph.output}
    if "signal" not in inputs or not {"hidden_states", "logits"} <= set(outputs):
        raise ModelError(
            f"model.onnx is not PDEM-shaped: inputs {inputs}, outputs {sorted(outputs)} "
            "(expected input 'signal', outputs 'hidden_states' and 'logits')"
        )

    def last_dim(name: str) -> int:
        dims = outputs[name].type.tensor_type.shape.dim
        return dims[-1].dim_value if dims else 0

    if last_dim("logits") != len(PDEM_LABELS):
        raise ModelError(f"model.onnx: logits has {last_dim('logits')} values, expected 3")
    import yaml

    body = next(iter(yaml.safe_load(yaml_path.read_text()).values()))
    labels = (body.get("labels") or {}).get("logits") if isinstance(body, dict) else None
    if labels is not None and tuple(labels) != PDEM_LABELS:
        raise ModelError(f"model.yaml labels logits {labels}, expected {list(PDEM_LABELS)}")


PDEM = Model(
    name="pdem",
    version="w2v2-L-robust-12.6bc4a7fd-1.1.0",
    files=PDEM_FILES,
    license=PDEM_LICENSE,
    sources=(
        Source("url", PDEM_URL, {"model.onnx": "model.onnx", "model.yaml": "model.yaml"}),
        Source("audmodel", PDEM_UID),
    ),
    commercial_use=False,
    description="audEERING PDEM: wav2vec 2.0 (12 layers) arousal/dominance/valence, ONNX (610 MB)",
    homepage="https://github.com/audeering/w2v2-how-to",
    check=check_pdem_files,
)

MODELS = [PDEM]
