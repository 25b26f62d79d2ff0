"""``facenet model verify`` and ``checksums``: every check of the artifacts tree in one report,
one gallery against the current model, and writing ``SHA256SUMS`` only for files that pass their
own validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from toolchain.core.atomic import write_text
from toolchain.core.contracts import ONNX_FILE
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.integrity.fingerprint import model_fingerprint
from toolchain.core.integrity.galleries import check_gallery, check_gallery_file
from toolchain.core.integrity.inputs import check_source, check_weights
from toolchain.core.integrity.models import check_caches, check_models, verify_file
from toolchain.core.integrity.sums import (
    GUARDED_DIRS,
    SUMS_NAME,
    Hashes,
    check_sums,
    format_sums,
    leftovers,
    not_regular,
    parse_sums,
    regenerate_hint,
    sums_lock,
    sums_path,
    tracked_files,
)
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)

@dataclass
class VerifyReport:
    """What :func:`verify_artifacts` checked.

    Attributes:
        checked: per check (``source``, ``weights``, ``models``, ``SHA256SUMS``, ``caches``,
            ``galleries``; ``gallery`` for :func:`verify_gallery`), files found OK.
        problems: one line per mismatch, missing, unlisted or unreadable file.
        warnings: things worth knowing that are not integrity failures (leftover temp files).
    """

    checked: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


@dataclass(frozen=True)
class ChecksumsResult:
    """What :func:`write_checksums` wrote."""

    path: Path
    files: int


def verify_gallery(path: Path, layout: Layout) -> VerifyReport:
    """``facenet model verify --gallery FILE``: one gallery, against the artifacts' current model.

    The model is itself checked against ``SHA256SUMS`` first (a tampered model is no reference).

    Raises:
        InputError: ``path`` does not exist or is not a regular file.
    """
    path = Path(path)
    if (kind := not_regular(path)) is not None:
        raise InputError(f"gallery {path}: {kind}")
    report = VerifyReport()
    model = layout.models_dir / ONNX_FILE
    model_sha256 = None
    if not_regular(model) is not None:
        report.warnings.append(f"{model} missing: the gallery's model fingerprint is not "
                               "compared (create it with `nox -s export`)")
    else:
        try:
            model_sha256 = model_fingerprint(model, verify_file(model, layout))
        except IntegrityError as exc:
            report.problems.append(str(exc))
    report.problems.extend(check_gallery_file(path, model_sha256))
    report.checked["gallery"] = 0 if report.problems else 1
    return report


def verify_artifacts(layout: Layout) -> VerifyReport:
    """Re-hash everything: pinned source files, weights vs manifest, SavedModel stamps,
    SHA256SUMS, ONNX Runtime caches, and check every gallery of the tree.

    Raises:
        MissingArtifactError: the artifacts directory does not exist.
    """
    if not layout.root.is_dir():
        raise MissingArtifactError(
            f"artifacts directory {layout.root} does not exist; run `nox` (the main job)"
        )
    hashes = Hashes()
    report = VerifyReport()
    checks = [("source", check_source), ("weights", check_weights), ("models", check_models),
              (SUMS_NAME, check_sums), ("caches", check_caches), ("galleries", check_gallery)]
    for name, check in checks:
        good, problems = check(layout, hashes)
        report.checked[name] = good
        report.problems.extend(problems)
    report.warnings.extend(
        f"{layout.root / rel}: leftover of an interrupted write (safe to delete)"
        for rel in leftovers(layout)
    )
    return report


def _changed_guarded_files(layout: Layout, tracked: list[str], hashes: Hashes) -> list[str]:
    """Files of :data:`GUARDED_DIRS` whose sha256 differs from the existing ``SHA256SUMS``.

    Malformed lines of an existing file are ignored (it is being rewritten); with no file there
    is no record to hold a file to.
    """
    path = sums_path(layout)
    try:
        text = path.read_text(encoding="utf-8") if not_regular(path) is None else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    recorded, _ = parse_sums(text, path)
    return [
        f"{layout.root / rel}: sha256 no longer matches {SUMS_NAME} (changed outside the "
        f"toolchain); {regenerate_hint(rel)}"
        for rel in tracked
        if PurePosixPath(rel).parts[0] in GUARDED_DIRS and rel in recorded
        and hashes(layout.root / rel) != recorded[rel]
    ]


def write_checksums(layout: Layout) -> ChecksumsResult:
    """Write ``SHA256SUMS`` for every generated file, atomically.

    Nothing that fails its own validation is blessed (see the module docstring): the npz files
    are checked against their manifest, SavedModels against their export stamp, and a file of
    :data:`GUARDED_DIRS` against the entry the existing ``SHA256SUMS`` has for it.

    Raises:
        MissingArtifactError: the artifacts directory does not exist.
        IntegrityError: one of those checks failed, or a generated file is not a regular file
            (nothing is written).
    """
    if not layout.root.is_dir():
        raise MissingArtifactError(
            f"artifacts directory {layout.root} does not exist; run `nox` (the main job)"
        )
    hashes = Hashes()
    problems: list[str] = []
    if layout.weights_dir.is_dir():
        problems.extend(check_weights(layout, hashes)[1])
    problems.extend(check_models(layout, hashes)[1])
    with sums_lock(layout):
        tracked = tracked_files(layout)
        problems.extend(f"{layout.root / rel}: {kind}" for rel in tracked
                        if (kind := not_regular(layout.root / rel)) is not None)
        if not problems:
            problems.extend(_changed_guarded_files(layout, tracked, hashes))
        if problems:
            raise IntegrityError(f"not writing {sums_path(layout)}: {len(problems)} file(s) fail "
                                 "their own validation: " + "; ".join(problems))
        entries = {rel: hashes(layout.root / rel) for rel in tracked}
        write_text(sums_path(layout), format_sums(entries))
    log.info("wrote %s (%d files)", sums_path(layout), len(entries))
    return ChecksumsResult(sums_path(layout), len(entries))
