"""The report's renderer: indexed PNGs that any decoder reads back as the intended colours, colour
maps by lookup with no-data pixels grey, and figures whose cells sit where the page looks for them."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from restore.report.figures import FigurePolicy, nice_ceiling
from restore.report.render import Cell, Legend, Row, colorize, compose, palette_png, worst_window


def test_an_indexed_png_decodes_to_its_palette_colours(tmp_path):
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    palette = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 7)], axis=1).astype(np.uint8)
    path = tmp_path / "p.png"
    path.write_bytes(palette_png(indices, palette))
    with Image.open(path) as image:  # Pillow checks every chunk's CRC
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), palette[indices])
    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]  # and libpng through OpenCV
    np.testing.assert_array_equal(decoded, palette[indices])


def test_colour_maps_clip_to_the_legend_and_show_missing_data_grey():
    values = np.array([[np.nan, -5.0, 0.0, 10.0, 99.0]], np.float32)
    rgb = colorize(values, Legend(0.0, 10.0, "gray", "x"))
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[0, 1].tolist() == rgb[0, 2].tolist() == [0, 0, 0]
    assert rgb[0, 3].tolist() == rgb[0, 4].tolist() == [255, 255, 255]


def test_a_figure_draws_each_cell_at_full_resolution_where_it_says():
    ramp = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (40, 1))
    maps = Row([Cell("a", "A", ramp), Cell("b", "B", ramp)], Legend(0, 1, "viridis", "value"))
    errors = Row([None, Cell("e", "E", ramp * 2)], Legend(0, 2, "inferno", "|error|"))
    figure = compose([maps, errors])
    rgb = figure.rgb()
    for key, colormap, high in (("a", "viridis", 1), ("b", "viridis", 1), ("e", "inferno", 2)):
        x, y, w, h = figure.cells[key]
        assert (w, h) == (50, 40)
        expected = colorize(ramp * high, Legend(0, high, colormap, ""))
        # 120 palette levels per colour map instead of 256: within one level of the full table
        assert np.abs(rgb[y : y + h, x : x + w].astype(int) - expected.astype(int)).max() <= 12
    assert figure.cells["e"][0] == figure.cells["b"][0]  # the error map sits under its model


def test_the_worst_window_holds_the_largest_error():
    error = np.zeros((300, 400), np.float32)
    error[200:230, 310:330] = 5.0
    top, left = worst_window(error, 64)
    assert top <= 200 and top + 64 >= 230 and left <= 310 and left + 64 >= 330


def test_figure_policies_and_readable_scale_ends():
    assert FigurePolicy.parse(["worst", "3"]) == FigurePolicy("worst", 3) == FigurePolicy.parse("worst:3")
    assert FigurePolicy.parse("all").mode == "all" and str(FigurePolicy.parse("none")) == "none"
    assert nice_ceiling(12.34) == 13 and nice_ceiling(0.0456) == 0.046 and nice_ceiling(100) == 100
