"""A per-map picture for test reports: colour-mapped LR, baseline, output(s), GT and each
output's error side by side (matplotlib's Agg canvas; no display or global backend needed)."""

from __future__ import annotations

import numpy as np

from .depth_metrics import rmse

PANEL_INCHES = 3.2


def _plane(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HW float map at `size` (LR maps are repeated pixel by pixel up to it)."""
    plane = (img[..., 0] if img.ndim == 3 else img).astype(np.float64)
    if plane.shape != size:
        ry, rx = -(-size[0] // plane.shape[0]), -(-size[1] // plane.shape[1])
        plane = np.repeat(np.repeat(plane, ry, 0), rx, 1)[: size[0], : size[1]]
    return plane


def depth_figure(panels: dict[str, np.ndarray], *, baseline: str | None = None, valid: np.ndarray | None = None,
                 units: str = "", unit_scale: float = 1.0, crop_border: int = 0) -> np.ndarray:
    """RGB uint8 picture of `panels` (``LQ``, one entry per model, ``GT``; maps in data units),
    after the RGB ``Guide`` photo when there is one (guided depth SR).

    All maps share one colour scale set by the GT; invalid GT pixels are grey. Models are titled
    with their RMSE as the ``rmse`` metric computes it; an |error| map follows the GT for every
    model except the `baseline` (or for the baseline when it is the only model).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    guide = panels.get("Guide")
    models = sorted((label for label in panels if label not in ("LQ", "GT", "Guide")),
                    key=lambda label: label != baseline)
    labels = [*(["LQ"] if "LQ" in panels else []), *models, *(["GT"] if "GT" in panels else [])]
    reference_label = "GT" if "GT" in panels else labels[-1]
    size = panels[reference_label].shape[:2]
    shown = {label: _plane(panels[label], size) * unit_scale for label in labels}
    mask = np.isfinite(shown[reference_label])
    if valid is not None and "GT" in panels:
        mask &= np.asarray(valid, dtype=bool)
    low, high = shown[reference_label][mask].min(), shown[reference_label][mask].max()

    suffix = f" {units}" if units else ""
    titles = {label: label for label in shown}
    errors: list[str] = []
    if "GT" in shown:
        context = {"valid": mask, "unit_scale": 1.0}
        for label in models:
            value = rmse(shown[label], shown["GT"], crop_border=crop_border, context=context)
            titles[label] = f"{label} (RMSE {value:.3g}{suffix})"
        errors = [label for label in models if label != baseline] or models

    columns = len(shown) + len(errors) + (guide is not None)
    fig = Figure(figsize=(PANEL_INCHES * columns + 1.0, PANEL_INCHES * size[0] / size[1] + 0.6),
                 dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, columns, squeeze=False)[0]
    if guide is not None:
        axes[0].imshow(guide[: size[0], : size[1]])
        axes[0].set_title("Guide", fontsize=9)
        axes[0].set_axis_off()
        axes = axes[1:]
    depth_cmap = colormaps["turbo"].with_extremes(bad="0.5")  # grey = invalid
    for ax, (label, plane) in zip(axes, shown.items(), strict=False):
        image = ax.imshow(np.ma.masked_array(plane, ~mask), cmap=depth_cmap, vmin=low, vmax=high)
        ax.set_title(titles[label], fontsize=9)
    fig.colorbar(image, ax=axes[len(shown) - 1], shrink=0.8, label=units or None)
    error_cmap = colormaps["inferno"].with_extremes(bad="0.5")
    for ax, label in zip(axes[len(shown):], errors, strict=True):
        image = ax.imshow(np.ma.masked_array(np.abs(shown[label] - shown["GT"]), ~mask), cmap=error_cmap)
        ax.set_title(f"|{label} - GT|", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8, label=units or None)
    for ax in axes:
        ax.set_axis_off()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
