"""Model packs: one folder with the runtime's models and a manifest that vouches for each file.

A machine that only recognizes faces needs a pack, not the pipeline's ``artifacts/`` tree. The
export writes ``artifacts/pack/`` (:mod:`toolchain.runtime.pack_writer`), and
:meth:`Recognizer.load(PACK) <toolchain.runtime.recognizer.Recognizer.load>` opens one anywhere.
Inside, paths are those of ``artifacts/models``::

    manifest.json
    facenet.onnx  facenet_int8.onnx                      ONNX Runtime, fp32 and int8
    facenet_openvino/facenet.{xml,bin}                   OpenVINO IR, fp32 (when exported)
    facenet_openvino_int8/facenet.{xml,bin}              OpenVINO IR, int8 (when exported)
    mtcnn_pnet.onnx  mtcnn_rnet.onnx  mtcnn_onet.onnx    the face detector, on either runtime

What a pack holds to run a (runtime, precision) pair is :func:`members`, read from the runtime's
own tables (:data:`~toolchain.runtime.backends.EMBEDDER_FILES`,
:data:`~toolchain.core.contracts.MTCNN_FILES`). The manifest (format :data:`PACK_FORMAT`)::

    {"format": "facenet-toolchain/model-pack/1", "toolchain_version": "0.1.0",
     "made": {"at": "<UTC time>", "by": "facenet model export", "from": "<models folder>"},
     "model": {"weights_fingerprint": "<sha256>", "embedding_dim": 128,
               "input_size": [160, 160, 3], "default_threshold": 1.0581,
               "threshold_calibration": {"policy": ..., "far": ..., "impostor_pairs": ...,
                                         "data": ...},
               "default_crop": "align"},
     "runs": [{"runtime": "onnxruntime", "precision": "fp32", "embedder": "facenet.onnx"}, ...],
     "files": {"facenet.onnx": {"sha256": "<hex>", "size": 91298295}, ...}}

``weights_fingerprint`` is what galleries are bound to (:attr:`Embedder.fingerprint
<toolchain.runtime.embedder.Embedder.fingerprint>`: the recovered weights manifest's sha256).

Opening a pack checks, before anything runs: the manifest's format and shape; that the pack runs
the (runtime, precision) asked for; each file that is loaded against its size and sha256 (each
read once: the digest also serves the embedder and ONNX Runtime's cache); and the FaceNet model
against the manifest's ``model`` section (:func:`model_facts`): a manifest edited to another
threshold, crop or fingerprint is refused. Only ``made`` and ``toolchain_version`` are not held
to anything. Failures are :class:`~toolchain.core.errors.MissingArtifactError` (exit 6: the pack,
its manifest or a file it lists is missing, or it does not hold that runtime) or
:class:`~toolchain.core.errors.IntegrityError` (exit 4: anything that does not match). A pack is
vouched for by its manifest alone; the artifacts tree's own pack is checked against
``SHA256SUMS`` too (:func:`artifacts_pack`).

A tree without a pack (exported before packs existed, or a ``models/`` folder filled by hand) is
read as :class:`ArtifactModels`: its files checked against ``SHA256SUMS``, as they always were.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from toolchain.core.contracts import INPUT_SIZE, MTCNN_FILES
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.integrity import verify_file
from toolchain.core.integrity.digests import remembered_sha256
from toolchain.core.integrity.sums import is_tracked, not_regular, outside_tree, walk_files
from toolchain.core.paths import Layout
from toolchain.runtime.backends import PRECISIONS, RUNTIMES, ModelChoice
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.ort_options import OrtSettings

PACK_FORMAT = "facenet-toolchain/model-pack/1"
"""The ``format`` of a pack's manifest this toolchain writes and reads."""

PACK_MANIFEST = "manifest.json"
"""The manifest's name, at the root of a pack."""

PACK_HINT = "write the pack again from the exported models (`nox -s export` writes artifacts/pack)"
"""What to do about a pack that is incomplete, damaged or edited."""

ALL_RUNS: tuple[ModelChoice, ...] = tuple(
    ModelChoice(runtime, precision) for runtime in RUNTIMES for precision in PRECISIONS)
"""Every (runtime, precision) pair a pack may run, the default first."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


def members(choice: ModelChoice) -> tuple[str, ...]:
    """What a pack holds to run ``choice``: its FaceNet model (a file, or the folder of an
    OpenVINO IR) and the three MTCNN nets, relative to the pack and to ``artifacts/models``."""
    folder = PurePosixPath(choice.embedder_file).parent
    return (str(folder) if folder.parts else choice.embedder_file, *MTCNN_FILES.values())


def describe(runs: tuple[ModelChoice, ...] | list[ModelChoice]) -> str:
    """``onnxruntime fp32, onnxruntime int8`` for messages."""
    return ", ".join(f"{c.runtime} {c.precision}" for c in runs) or "nothing"


def model_facts(embedder: Embedder) -> dict[str, Any]:
    """What a pack's manifest says about its FaceNet model, read from the loaded model itself
    (fingerprint, embedding size, input size, default threshold with its calibration and crop)."""
    return {
        "weights_fingerprint": embedder.fingerprint,
        "embedding_dim": embedder.dim,
        "input_size": [INPUT_SIZE, INPUT_SIZE, 3],
        "default_threshold": embedder.default_threshold,
        "threshold_calibration": {
            key.removeprefix("threshold_"): value
            for key, value in sorted(embedder.metadata.items())
            if key.startswith("threshold_")
        },
        "default_crop": embedder.default_crop,
    }


class ModelSource(Protocol):
    """Where a recognizer's models come from: a :class:`ModelPack` or :class:`ArtifactModels`."""

    @property
    def root(self) -> Path:
        """The folder the members' relative paths start from."""
        ...

    @property
    def runs(self) -> tuple[ModelChoice, ...]:
        """The (runtime, precision) pairs it holds."""
        ...

    def verify(self, choice: ModelChoice) -> dict[str, str]:
        """Check every file ``choice`` loads; their sha256 by relative path."""
        ...

    def check_model(self, embedder: Embedder) -> None:
        """Hold the loaded FaceNet model to what the source says of it."""
        ...


@dataclass(frozen=True)
class PackFile:
    """One file of a pack, as its manifest records it."""

    sha256: str
    size: int


@dataclass(frozen=True)
class ModelPack:
    """A model pack opened by :func:`open_pack` (the manifest read and checked, no model yet).

    Attributes:
        root: The pack's folder.
        runs: The (runtime, precision) pairs it runs.
        files: Every file, by path relative to ``root``.
        model: The manifest's ``model`` section (:func:`model_facts` of its FaceNet models).
        manifest: The whole manifest.
    """

    root: Path
    runs: tuple[ModelChoice, ...]
    files: dict[str, PackFile]
    model: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)

    def files_of(self, choice: ModelChoice) -> list[str]:
        """The files ``choice`` loads, by relative path.

        Raises:
            MissingArtifactError: the pack does not run ``choice``.
            IntegrityError: the manifest says it does but lists no file for one of its members.
        """
        if choice not in self.runs:
            raise MissingArtifactError(
                f"model pack {self.root} holds no {choice.runtime} {choice.precision} FaceNet "
                f"model (it runs {describe(self.runs)}); use a pack that does (on the build "
                f"machine `{choice.export_hint}` exports it and rewrites artifacts/pack)")
        found: list[str] = []
        for member in members(choice):
            found.extend(sorted(rel for rel in self.files
                                if rel == member or rel.startswith(f"{member}/")))
        for needed in (choice.embedder_file, *MTCNN_FILES.values()):
            if needed not in found:
                raise _manifest_error(self.root, f"lists no {needed} though it says the pack "
                                                 f"runs {choice.runtime} {choice.precision}")
        return found

    def verify(self, choice: ModelChoice) -> dict[str, str]:
        """Check the size and sha256 of every file ``choice`` loads against the manifest.

        Raises:
            MissingArtifactError: the pack does not run ``choice``, or a file is missing.
            InputError: a file is a FIFO, socket, device or folder (never read).
            IntegrityError: a file's size or sha256 is not the manifest's.
        """
        return {rel: self._check(rel) for rel in self.files_of(choice)}

    def _check(self, rel: str) -> str:
        path = self.root / rel
        kind = not_regular(path)
        if kind == "missing":
            raise MissingArtifactError(
                f"model pack {self.root}: {rel} is missing (its manifest lists it); copy the "
                f"whole pack folder, or {PACK_HINT}")
        if kind is not None:
            raise InputError(f"refusing to load {path}: {kind}")
        record = self.files[rel]
        size = path.stat().st_size
        if size != record.size:
            raise IntegrityError(
                f"model pack {self.root}: {rel} is {size:,} bytes, its manifest says "
                f"{record.size:,} (changed, truncated or substituted); {PACK_HINT}")
        digest = remembered_sha256(path)
        if digest != record.sha256:
            raise IntegrityError(
                f"model pack {self.root}: {rel}: sha256 does not match its manifest (tampered, "
                f"damaged or substituted); {PACK_HINT}")
        return digest

    def check_model(self, embedder: Embedder) -> None:
        """Refuse a manifest whose ``model`` section is not what the loaded model says.

        Raises:
            IntegrityError: a fact differs (the manifest was edited, or files of another export
                were put in with a manifest recomputed for them).
        """
        facts = model_facts(embedder)
        wrong = [f"{key}: {self.model.get(key)!r} in the manifest, {facts.get(key)!r} in "
                 f"{embedder.path.relative_to(self.root).as_posix()}"
                 for key in sorted(set(facts) | set(self.model))
                 if facts.get(key) != self.model.get(key)]
        if wrong:
            raise IntegrityError(f"model pack {self.root}: its manifest does not describe its "
                                 f"model ({'; '.join(wrong)}); {PACK_HINT}")


@dataclass(frozen=True)
class ArtifactModels:
    """The ``models/`` folder of an artifacts tree that has no pack: its files are checked against
    ``SHA256SUMS`` (when the tree has one) by :func:`~toolchain.core.integrity.verify_file`, and a
    missing model is left to its loader, whose message names the nox session that makes it."""

    layout: Layout

    @property
    def root(self) -> Path:
        """``<artifacts>/models``."""
        return self.layout.models_dir

    @property
    def runs(self) -> tuple[ModelChoice, ...]:
        """The pairs whose every member is there."""
        return tuple(choice for choice in ALL_RUNS
                     if all((self.root / member).exists() for member in members(choice)))

    def files_of(self, choice: ModelChoice) -> list[str]:
        """The files of ``choice``'s members that are there, by relative path (in a folder: the
        generated ones, not hidden leftovers or caches)."""
        found: list[str] = []
        for member in members(choice):
            path = self.root / member
            if path.is_dir():
                found.extend(f"{member}/{sub}" for sub, _ in walk_files(path)
                             if is_tracked(f"models/{member}/{sub}"))
            elif path.exists():
                found.append(member)
        return found

    def verify(self, choice: ModelChoice) -> dict[str, str]:
        """Check the files of ``choice`` that are there against ``SHA256SUMS``.

        Raises:
            InputError: a file is a FIFO, socket or device.
            IntegrityError: a file does not match ``SHA256SUMS`` or is not listed there.
        """
        return {rel: verify_file(self.root / rel, self.layout, remembered=True)
                for rel in self.files_of(choice)}

    def check_model(self, embedder: Embedder) -> None:
        """Nothing to hold the model to: the tree states nothing about it but its sha256."""


def _manifest_error(root: Path, problem: str) -> IntegrityError:
    return IntegrityError(f"{root / PACK_MANIFEST}: {problem}; {PACK_HINT}")


def _files(root: Path, value: Any) -> dict[str, PackFile]:
    if not isinstance(value, dict) or not value:
        raise _manifest_error(root, "'files' is not an object of files")
    files: dict[str, PackFile] = {}
    for rel, record in value.items():
        if not isinstance(rel, str) or outside_tree(rel) or rel == PACK_MANIFEST:
            raise _manifest_error(root, f"lists {rel!r}, not a path inside the pack")
        sha = record.get("sha256") if isinstance(record, dict) else None
        size = record.get("size") if isinstance(record, dict) else None
        if not (isinstance(sha, str) and _SHA256.fullmatch(sha) and isinstance(size, int)
                and not isinstance(size, bool) and size >= 0):
            raise _manifest_error(root, f"the record of {rel} is not a sha256 and a size")
        files[rel] = PackFile(sha, size)
    return files


def _runs(root: Path, value: Any) -> tuple[ModelChoice, ...]:
    if not isinstance(value, list) or not value:
        raise _manifest_error(root, "'runs' is not a list of (runtime, precision) pairs")
    runs: list[ModelChoice] = []
    for run in value:
        try:
            choice = ModelChoice(run["runtime"], run["precision"])
        except (TypeError, KeyError, ValueError) as exc:
            raise _manifest_error(root, f"run {run!r} is not a runtime and precision") from exc
        if run.get("embedder") != choice.embedder_file or choice in runs:
            raise _manifest_error(root, f"run {run!r} names another FaceNet model than "
                                        f"{choice.embedder_file}, or comes twice")
        runs.append(choice)
    return tuple(runs)


def parse_manifest(root: Path, data: Any) -> ModelPack:
    """A pack from its manifest's JSON value.

    Raises:
        IntegrityError: not a manifest of :data:`PACK_FORMAT`, or malformed.
    """
    if not isinstance(data, dict):
        raise _manifest_error(root, "not a JSON object")
    if data.get("format") != PACK_FORMAT:
        raise _manifest_error(root, f"format {data.get('format')!r} is not a model pack this "
                                    f"toolchain reads ({PACK_FORMAT})")
    model = data.get("model")
    if not isinstance(model, dict):
        raise _manifest_error(root, "'model' is not an object")
    return ModelPack(root, _runs(root, data.get("runs")), _files(root, data.get("files")),
                     model, data)


def open_pack(path: Path | str) -> ModelPack:
    """Read and check a pack's manifest (no model is loaded or hashed yet).

    Raises:
        MissingArtifactError: no such folder, or it has no manifest.
        InputError: the manifest is a FIFO, socket or device.
        IntegrityError: the manifest is unreadable, malformed or of another format.
    """
    root = Path(path)
    if not root.is_dir():
        raise MissingArtifactError(f"model pack {root} does not exist (or is not a folder); "
                                   "`nox -s export` writes one into artifacts/pack")
    manifest = root / PACK_MANIFEST
    kind = not_regular(manifest)
    if kind == "missing":
        raise MissingArtifactError(f"{root} is not a model pack: it has no {PACK_MANIFEST}; "
                                   f"copy the whole pack folder, or {PACK_HINT}")
    if kind is not None:
        raise InputError(f"refusing to read {manifest}: {kind}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _manifest_error(root, f"not a readable JSON manifest ({exc})") from exc
    return parse_manifest(root, data)


def artifacts_pack(layout: Layout) -> ModelSource:
    """The models of an artifacts tree: its pack (the manifest checked against ``SHA256SUMS``
    first) when the export wrote one, else its ``models/`` folder (:class:`ArtifactModels`).

    Raises:
        IntegrityError: the pack's manifest does not match ``SHA256SUMS``, or is malformed.
    """
    manifest = layout.pack_dir / PACK_MANIFEST
    if not manifest.is_file():
        return ArtifactModels(layout)
    verify_file(manifest, layout)
    return open_pack(layout.pack_dir)


def model_source(models: Path | str | None, artifacts: Path | str) -> ModelSource:
    """The pack at ``models`` when one is given (``--models PACK``), else the artifacts tree's
    own (:func:`artifacts_pack`)."""
    if models is not None:
        return open_pack(models)
    return artifacts_pack(Layout(Path(artifacts)))


def open_embedder(source: ModelSource, choice: ModelChoice, settings: OrtSettings) -> Embedder:
    """The FaceNet model of ``choice``: every file ``choice`` loads (the detector's too) checked
    first, the model held to what ``source`` says of it.

    Raises:
        MissingArtifactError: a file is missing, or ``source`` does not hold ``choice``.
        IntegrityError: a file or the model does not match what ``source`` records.
        EnvironmentToolError: the runtime is not installed.
    """
    digests = source.verify(choice)
    embedder = Embedder(source.root / choice.embedder_file, runtime=choice.runtime,
                        export_hint=choice.export_hint, settings=settings,
                        sha256=digests.get(choice.embedder_file))
    source.check_model(embedder)
    return embedder
