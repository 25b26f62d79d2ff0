"""A SORT-style face tracker (box overlap and embedding distance) and naming tracks by vote.

At every analyzed frame, each live track predicts its box (constant velocity from its last two
detections) and is matched to one detected face. A pair may match when the boxes overlap
(IoU >= :data:`IOU_MIN`) and the face is not far from the track's appearance (distance <=
:data:`SPLIT_DISTANCE`), or, anywhere in the frame, when the face is very close to it (distance
<= :data:`REID_DISTANCE`: the same person after a miss). Pairs are taken greedily, lowest
``distance + (1 - IoU)`` first (with a handful of faces per frame this gives the Hungarian
assignment SORT uses). A face left over starts a track; a track unmatched for longer than
``max_age`` seconds ends. A track's appearance is the running mean direction of its embeddings.

The embedding check is what splits a track at a scene cut: on the shared Hamilton clip one
person's box is followed by another's with IoU 0.39, but their embeddings are 1.31 apart, while
the same person's embeddings stay within 0.65 from frame to frame.

Naming (:func:`name_track`): the enrolled person with the smallest MEDIAN distance over the
track's frames, if that median is within the threshold (see
:class:`~toolchain.video.results.TrackSummary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from toolchain.core.boxes import iou
from toolchain.gallery import Candidate
from toolchain.runtime.faces import Face
from toolchain.video.results import Box, TrackedFace, TrackSummary

IOU_MIN = 0.1
"""Smallest box overlap for a match by position."""

SPLIT_DISTANCE = 1.05
"""Largest distance between a face and a track's appearance for a match by position: farther, it
is someone else in the same place (a scene cut)."""

REID_DISTANCE = 0.6
"""Largest distance for a match anywhere in the frame (the same person, moved or re-found)."""

MAX_AGE = 1.0
"""Seconds a track survives without a detection."""

APPEARANCE_MOMENTUM = 0.8
"""Weight of a track's appearance against each new embedding (running mean direction)."""


@dataclass(frozen=True)
class Observation:
    """A track's face in one analyzed frame."""

    frame: int
    time: float
    box: Box
    distances: np.ndarray = field(repr=False)
    """Distance to every enrolled person (in the tracker's ``people`` order)."""
    votes: bool
    """The face is large enough to take part in naming."""


@dataclass(frozen=True)
class Naming:
    """The outcome of a track's vote (see :func:`name_track`)."""

    name: str | None
    nearest: str | None
    median: float | None
    best: Observation | None
    """The voting frame closest to ``nearest``."""
    best_distance: float | None
    votes: int
    voters: int
    candidates: tuple[Candidate, ...]


NO_VOTE = Naming(None, None, None, None, None, 0, 0, ())


def name_track(voters: Sequence[Observation], people: Sequence[str], threshold: float,
               top_k: int = 3, matrix: np.ndarray | None = None) -> Naming:
    """Name a track by the vote of its frames.

    Args:
        voters: The track's frames that vote (large enough faces).
        people: Enrolled names, in the order of each observation's ``distances``.
        threshold: Largest median distance that names.
        top_k: People listed in ``candidates``.
        matrix: The voters' ``distances`` stacked, if the caller keeps them so.

    Returns:
        The person with the smallest median distance over the voting frames (named if that
        median is within ``threshold``), its votes, and the voting frame closest to it.
    """
    if not voters or not people:
        return Naming(None, None, None, None, None, 0, len(voters), ())
    if matrix is None:
        matrix = np.stack([o.distances for o in voters])
    medians = np.median(matrix, axis=0)
    order = np.argsort(medians, kind="stable")
    person = int(order[0])
    median = float(medians[person])
    column = matrix[:, person]
    votes = int(np.sum((matrix.argmin(axis=1) == person) & (column <= threshold)))
    return Naming(
        name=people[person] if median <= threshold else None, nearest=people[person],
        median=median, best=voters[int(np.argmin(column))], best_distance=float(column.min()),
        votes=votes, voters=len(voters),
        candidates=tuple(Candidate(people[int(i)], float(medians[i])) for i in order[:top_k]),
    )


class Track:
    """One face followed across frames."""

    def __init__(self, track_id: int, observation: Observation, embedding: np.ndarray):
        """Start a track at its first detection."""
        self.id = track_id
        self.observations = [observation]
        self.appearance = np.asarray(embedding, np.float32)
        self.velocity = np.zeros(4)
        self.naming = NO_VOTE
        self._voters: list[Observation] = []
        self._votes = np.zeros((0, len(observation.distances)), np.float32)
        self._vote(observation)

    def _vote(self, observation: Observation) -> None:
        """Keep a voting observation's distances in a matrix that grows by doubling."""
        if not observation.votes:
            return
        n = len(self._voters)
        if n == len(self._votes):
            grown = np.zeros((max(8, 2 * n), len(observation.distances)), np.float32)
            grown[:n] = self._votes[:n]
            self._votes = grown
        self._votes[n] = observation.distances
        self._voters.append(observation)

    def rename(self, people: Sequence[str], threshold: float, top_k: int) -> None:
        """Recount the vote (after a new detection)."""
        self.naming = name_track(self._voters, people, threshold, top_k,
                                 self._votes[:len(self._voters)])

    @property
    def last(self) -> Observation:
        """The latest detection."""
        return self.observations[-1]

    def predict(self, frame: int) -> Box:
        """The box expected at ``frame`` (constant velocity since the last detection)."""
        box = np.asarray(self.last.box) + self.velocity * (frame - self.last.frame)
        x, y, w, h = (float(v) for v in box)
        return x, y, max(1.0, w), max(1.0, h)

    def add(self, observation: Observation, embedding: np.ndarray) -> None:
        """Extend the track with a detection: velocity and appearance follow it."""
        gap = observation.frame - self.last.frame
        if gap > 0:
            step = (np.asarray(observation.box) - np.asarray(self.last.box)) / gap
            self.velocity = step if len(self.observations) == 1 else (self.velocity + step) / 2
        mixed = APPEARANCE_MOMENTUM * self.appearance + (1 - APPEARANCE_MOMENTUM) * embedding
        self.appearance = (mixed / max(float(np.linalg.norm(mixed)), 1e-12)).astype(np.float32)
        self.observations.append(observation)
        self._vote(observation)

    def summary(self) -> TrackSummary:
        """The track as reported (from its current :attr:`naming`)."""
        first, last, naming = self.observations[0], self.last, self.naming
        best = naming.best or max(self.observations, key=lambda o: o.box[2] * o.box[3])
        return TrackSummary(
            track_id=self.id, name=naming.name, nearest=naming.nearest,
            first_frame=first.frame, last_frame=last.frame, first_time=first.time,
            last_time=last.time, frames=len(self.observations), votes=naming.votes,
            voters=naming.voters, median_distance=naming.median,
            best_distance=naming.best_distance, best_frame=best.frame, best_time=best.time,
            best_box=best.box, candidates=naming.candidates,
        )


class Tracker:
    """Tracks faces over the analyzed frames of one video and names them by vote."""

    def __init__(self, people: Sequence[str], threshold: float, *, top_k: int = 3,
                 min_name_face: float = 0.0, max_age: float = MAX_AGE):
        """A tracker for one run.

        Args:
            people: Enrolled names, in the order of the distance rows given to :meth:`update`.
            threshold: Largest median distance that names a track.
            top_k: Candidates kept per track.
            min_name_face: Faces smaller than this (short side, px) are tracked, not voting.
            max_age: Seconds a track survives without a detection.
        """
        self.people = list(people)
        self.threshold = threshold
        self.top_k = top_k
        self.min_name_face = min_name_face
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._last_analyzed: int | None = None

    def _live(self, time: float) -> list[Track]:
        return [t for t in self.tracks if time - t.last.time <= self.max_age]

    def update(self, frame: int, time: float, faces: Sequence[Face],
               distances: np.ndarray) -> list[TrackedFace]:
        """Match an analyzed frame's faces to the tracks, start tracks for the others.

        Args:
            frame: The frame's number.
            time: Its time in seconds.
            faces: Its faces (with embeddings).
            distances: ``(len(faces), len(people))`` distances to the enrolled people.

        Returns:
            The frame's faces with their tracks, in the order of ``faces``.
        """
        live = self._live(time)
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(live):
            predicted = track.predict(frame)
            for fi, face in enumerate(faces):
                overlap = iou(predicted, face.box)
                distance = float(np.linalg.norm(track.appearance - face.embedding))
                if (overlap >= IOU_MIN and distance <= SPLIT_DISTANCE) or (
                        distance <= REID_DISTANCE):
                    pairs.append((distance + 1.0 - overlap, ti, fi))
        owner: dict[int, Track] = {}
        taken: set[int] = set()
        for _, ti, fi in sorted(pairs):
            if ti not in taken and fi not in owner:
                taken.add(ti)
                owner[fi] = live[ti]
        result = []
        for fi, face in enumerate(faces):
            observation = Observation(frame, time, face.box, np.asarray(distances[fi]),
                                      min(face.box[2], face.box[3]) >= self.min_name_face)
            if fi in owner:
                track = owner[fi]
                track.add(observation, face.embedding)
            else:
                track = Track(len(self.tracks) + 1, observation, face.embedding)
                self.tracks.append(track)
            track.rename(self.people, self.threshold, self.top_k)
            result.append(TrackedFace(track.id, face.box, track.naming.name,
                                      track.naming.median, True))
        self._last_analyzed = frame
        return result

    def carry(self, frame: int) -> list[TrackedFace]:
        """The faces of a frame between analyzed ones: the tracks detected in the last analyzed
        frame, at their predicted boxes."""
        if self._last_analyzed is None:
            return []
        return [TrackedFace(t.id, t.predict(frame), t.naming.name, t.naming.median, False)
                for t in self.tracks if t.last.frame == self._last_analyzed]

    def summaries(self, min_frames: int = 1) -> list[TrackSummary]:
        """Every track of at least ``min_frames`` detections, in order of first appearance."""
        return [t.summary() for t in self.tracks if len(t.observations) >= min_frames]
