"""The evaluation's charts drawn with Pillow only: the ROC and the distance histograms.

The runtime environment has no matplotlib, so these charts are drawn on a plain canvas: axes with
ticks and labels, polylines and bars, a legend (the font and the atomic PNG writer are the
annotated photos', :mod:`toolchain.runtime.drawing`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from toolchain.runtime.drawing import font, save_image


class Chart:
    """A white canvas with a plot area mapping data coordinates to pixels."""

    def __init__(self, title: str, xlabel: str, ylabel: str,
                 xlim: tuple[float, float], ylim: tuple[float, float],
                 size: tuple[int, int] = (800, 600)):
        """Draw the frame, title and axis labels."""
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = font(15)
        self.title_font = font(19)
        self.left, self.top, self.right, self.bottom = 80, 50, size[0] - 30, size[1] - 70
        self.xlim, self.ylim = xlim, ylim
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline="black")
        self._centered(title, (self.left + self.right) / 2, 15, self.title_font)
        self._centered(xlabel, (self.left + self.right) / 2, size[1] - 30, self.font)
        ylabel_img = Image.new("RGB", (400, 24), "white")
        ImageDraw.Draw(ylabel_img).text((0, 0), ylabel, fill="black", font=self.font)
        text_w = int(ImageDraw.Draw(ylabel_img).textlength(ylabel, font=self.font)) + 2
        rotated = ylabel_img.crop((0, 0, text_w, 24)).rotate(90, expand=True)
        self.image.paste(rotated, (8, int((self.top + self.bottom - rotated.height) / 2)))

    def _centered(self, text: str, cx: float, y: float,
                  text_font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
        width = self.draw.textlength(text, font=text_font)
        self.draw.text((cx - width / 2, y), text, fill="black", font=text_font)

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of data point ``(x, y)``."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return (self.left + (x - x0) / (x1 - x0) * (self.right - self.left),
                self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top))

    def ticks(self, xticks: Sequence[float], yticks: Sequence[float], fmt: str = "{:.1f}") -> None:
        """Tick marks, labels and light grid lines."""
        for x in xticks:
            px, _ = self.px(x, self.ylim[0])
            self.draw.line([px, self.top, px, self.bottom], fill=(232, 232, 232))
            self.draw.line([px, self.bottom, px, self.bottom + 6], fill="black")
            self._centered(fmt.format(x), px, self.bottom + 9, self.font)
        for y in yticks:
            _, py = self.px(self.xlim[0], y)
            self.draw.line([self.left, py, self.right, py], fill=(232, 232, 232))
            self.draw.line([self.left - 6, py, self.left, py], fill="black")
            text = fmt.format(y)
            width = self.draw.textlength(text, font=self.font)
            self.draw.text((self.left - 10 - width, py - 9), text, fill="black", font=self.font)
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline="black")

    def polyline(self, xs: Sequence[float], ys: Sequence[float], color: tuple[int, int, int],
                 width: int = 3, dashed: bool = False) -> None:
        """Connect the points; a dashed line is drawn as short segments."""
        points = [self.px(x, y) for x, y in zip(xs, ys, strict=True)]
        if not dashed:
            self.draw.line(points, fill=color, width=width, joint="curve")
            return
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            length = max(1.0, float(np.hypot(bx - ax, by - ay)))
            for start in np.arange(0.0, length, 14.0):
                end = min(length, start + 8.0)
                self.draw.line([ax + (bx - ax) * start / length, ay + (by - ay) * start / length,
                                ax + (bx - ax) * end / length, ay + (by - ay) * end / length],
                               fill=color, width=width)

    def marker(self, x: float, y: float, color: tuple[int, int, int], radius: int = 6) -> None:
        """A filled dot."""
        px, py = self.px(x, y)
        self.draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=color,
                          outline="black")

    def legend(self, items: Sequence[tuple[str, tuple[int, int, int]]],
               corner: str = "lower right") -> None:
        """A boxed legend of colored swatches in a corner of the plot area."""
        line_h = 24
        width = 40 + max(int(self.draw.textlength(t, font=self.font)) for t, _ in items)
        height = line_h * len(items) + 10
        x = self.right - width - 12 if "right" in corner else self.left + 12
        y = self.bottom - height - 12 if "lower" in corner else self.top + 12
        self.draw.rectangle([x, y, x + width, y + height], fill="white", outline=(120, 120, 120))
        for i, (text, color) in enumerate(items):
            row = y + 6 + i * line_h
            self.draw.rectangle([x + 8, row + 4, x + 26, row + 16], fill=color)
            self.draw.text((x + 32, row), text, fill="black", font=self.font)

    def save(self, path: Path) -> None:
        """Write the chart as PNG, atomically."""
        save_image(self.image, path)


def roc_chart(fpr: np.ndarray, tpr: np.ndarray, auc: float, eer: float, path: Path) -> None:
    """Draw the verification ROC curve with the chance diagonal and the equal-error point."""
    chart = Chart(f"Verification ROC (AUC {auc:.4f}, EER {eer:.2%})", "false positive rate",
                  "true positive rate", (0.0, 1.0), (0.0, 1.0))
    ticks = [i / 5 for i in range(6)]
    chart.ticks(ticks, ticks)
    chart.polyline([0, 1], [0, 1], (150, 150, 150), width=2, dashed=True)
    chart.polyline(list(fpr), list(tpr), (30, 90, 200))
    chart.marker(eer, 1 - eer, (235, 120, 0))
    chart.legend([("ROC", (30, 90, 200)), (f"EER {eer:.2%}", (235, 120, 0)),
                  ("chance", (150, 150, 150))])
    chart.save(path)


def distance_histogram(same: np.ndarray, different: np.ndarray, threshold: float,
                       path: Path, bins: int = 40) -> None:
    """Draw the distance histograms of same-person and different-person pairs (each normalized to
    a density, so the two classes compare despite their different sizes) and the threshold."""
    upper = max(2.0, float(np.max(np.concatenate([same, different]))) if len(same) else 2.0)
    edges = np.linspace(0.0, upper, bins + 1)
    dens_same = np.histogram(same, bins=edges, density=True)[0] if len(same) else np.zeros(bins)
    dens_diff = (np.histogram(different, bins=edges, density=True)[0] if len(different)
                 else np.zeros(bins))
    peaks = np.maximum(dens_same, dens_diff)
    top = float(max(peaks.max(), 1e-6)) * 1.35
    legend_corner = ("upper left" if peaks[: bins // 2].max() < peaks[bins // 2 :].max()
                     else "upper right")
    chart = Chart("Pair distances: same vs different person", "distance (unit vectors)",
                  "density", (0.0, upper), (0.0, top))
    step = 10 ** np.floor(np.log10(top / 2))
    yticks = list(np.arange(0.0, top, step * (2 if top / step > 8 else 1)))
    chart.ticks([i * upper / 8 for i in range(9)], yticks, fmt="{:.2f}")
    overlay = Image.new("RGBA", chart.image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for dens, color in ((dens_diff, (220, 50, 50, 120)), (dens_same, (30, 160, 70, 120))):
        for lo, hi, value in zip(edges[:-1], edges[1:], dens, strict=True):
            if value > 0:
                x0, y0 = chart.px(lo, value)
                x1, y1 = chart.px(hi, 0.0)
                draw.rectangle([x0, y0, x1, y1], fill=color, outline=(*color[:3], 255))
    chart.image = Image.alpha_composite(chart.image.convert("RGBA"), overlay).convert("RGB")
    chart.draw = ImageDraw.Draw(chart.image)
    chart.polyline([threshold, threshold], [0.0, top], (20, 20, 20), width=2, dashed=True)
    chart.ticks([], [])
    chart.legend([(f"same person ({len(same)} pairs)", (30, 160, 70)),
                  (f"different people ({len(different)} pairs)", (220, 50, 50)),
                  (f"threshold {threshold:.3f}", (20, 20, 20))], corner=legend_corner)
    chart.save(path)
