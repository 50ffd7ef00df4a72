"""Small line charts drawn with OpenCV, so the runtime and training write PNG plots without matplotlib."""

from __future__ import annotations

from os import PathLike

import cv2
import numpy as np

from edge_facenet._files import atomic_output

_COLOURS = ((200, 80, 0), (0, 120, 220), (40, 160, 40), (150, 50, 170), (0, 170, 200), (90, 90, 90))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def line_chart(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (640, 400),
) -> np.ndarray:
    """Draw named (x, y) lines on one pair of axes.

    Args:
        series: Label -> (x values, y values).
        title, x_label, y_label: Texts.
        log_x: Logarithmic x axis (x values must be positive; smaller ones are clipped to the range).
        x_range, y_range: Axis ranges; default: the data's.
        size: (width, height) in pixels.

    Returns:
        The chart as a BGR uint8 image.
    """
    width, height = size
    left, right, top, bottom = 64, 20, 40, 48
    canvas = np.full((height, width, 3), 255, np.uint8)
    finite = [(np.asarray(x, float), np.asarray(y, float)) for x, y in series.values()]
    all_x = np.concatenate([x for x, _ in finite]) if finite else np.array([0.0, 1.0])
    all_y = np.concatenate([y[np.isfinite(y)] for _, y in finite]) if finite else np.array([0.0, 1.0])
    x0, x1 = x_range or (float(all_x.min()), float(all_x.max()))
    y0, y1 = y_range or (float(all_y.min()), float(all_y.max())) if all_y.size else (0.0, 1.0)
    if log_x:
        x0, x1 = np.log10(max(x0, 1e-12)), np.log10(max(x1, 1e-12))
    x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)

    def to_pixel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.log10(np.clip(x, 10**x0, None)) if log_x else x
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return np.stack([px, py], axis=1)

    x_ticks = np.arange(np.ceil(x0), np.floor(x1) + 1) if log_x else np.linspace(x0, x1, 6)
    for tick in x_ticks:
        value = 10**tick if log_x else tick
        px = round(float(to_pixel(np.array([value]), np.array([y0]))[0, 0]))
        cv2.line(canvas, (px, top), (px, height - bottom), (228, 228, 228), 1)
        text = f"1e{int(tick)}" if log_x else f"{value:.3g}"
        cv2.putText(canvas, text, (px - 12, height - bottom + 16), _FONT, 0.38, 0, 1, cv2.LINE_AA)
    for tick in np.linspace(y0, y1, 6):
        py = round(float(to_pixel(np.array([10**x0 if log_x else x0]), np.array([tick]))[0, 1]))
        cv2.line(canvas, (left, py), (width - right, py), (228, 228, 228), 1)
        cv2.putText(canvas, f"{tick:.3g}", (4, py + 4), _FONT, 0.38, 0, 1, cv2.LINE_AA)

    for number, (label, (x, y)) in enumerate(series.items()):
        colour = _COLOURS[number % len(_COLOURS)]
        keep = np.isfinite(np.asarray(y, float))
        points = to_pixel(np.asarray(x, float)[keep], np.asarray(y, float)[keep]).round().astype(np.int32)
        if len(points) == 1:
            cv2.circle(canvas, tuple(points[0]), 3, colour, -1, cv2.LINE_AA)
        elif len(points) > 1:
            cv2.polylines(canvas, [points], False, colour, 2, cv2.LINE_AA)
        cv2.putText(canvas, label, (width - right - 170, top + 16 + 16 * number), _FONT, 0.42, colour, 1, cv2.LINE_AA)

    cv2.rectangle(canvas, (left, top), (width - right, height - bottom), 0, 1)
    cv2.putText(canvas, title, (left, top - 14), _FONT, 0.5, 0, 1, cv2.LINE_AA)
    cv2.putText(canvas, x_label, (width // 2 - 50, height - 12), _FONT, 0.42, 0, 1, cv2.LINE_AA)
    cv2.putText(canvas, y_label, (left + 4, top + 14), _FONT, 0.42, (110, 110, 110), 1, cv2.LINE_AA)
    return canvas


def write_png(path: str | PathLike[str], *charts: np.ndarray) -> None:
    """Write one or more charts, stacked vertically, as a PNG file (atomically).

    Raises:
        ValueError: When the image cannot be encoded.
    """
    width = max(chart.shape[1] for chart in charts)
    padded = [
        cv2.copyMakeBorder(c, 0, 0, 0, width - c.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255)) for c in charts
    ]
    ok, encoded = cv2.imencode(".png", np.vstack(padded))
    if not ok:
        raise ValueError("cannot encode the chart as PNG")
    with atomic_output(path) as temporary:
        temporary.write_bytes(encoded.tobytes())
