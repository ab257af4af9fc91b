"""The skin-dose map as a PNG: the phantom's skin unwrapped onto a plane (Pillow; no plotting service)."""
from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont

# a perceptually ordered ramp (dark blue -> yellow -> red) for dose
_RAMP = [(0.0, (30, 30, 90)), (0.25, (40, 100, 190)), (0.5, (60, 180, 120)), (0.75, (240, 200, 40)), (1.0, (200, 30, 30))]
_NO_DOSE = (235, 235, 235)


def _colour(f: float) -> tuple[int, int, int]:
    f = min(max(f, 0.0), 1.0)
    for (a, ca), (b, cb) in zip(_RAMP, _RAMP[1:]):
        if f <= b:
            t = (f - a) / (b - a) if b > a else 0.0
            return tuple(int(round(ca[i] + t * (cb[i] - ca[i]))) for i in range(3))  # type: ignore[return-value]
    return _RAMP[-1][1]


def unwrap(cells: dict[str, list[float]], phantom: str) -> list[tuple[float, float]]:
    """(u, v) per cell: u across the body (cm; around it for a cylinder or mesh), v along it (cm, head up)."""
    xs, ys, zs = cells["x_cm"], cells["y_cm"], cells["z_cm"]
    if phantom == "plane":
        return list(zip(xs, zs))
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    radius = max((max(xs) - min(xs)), (max(ys) - min(ys))) / 2 or 1.0
    # angle from the back (posterior, +y) around the body; arc length on a circle of the body's half-width
    return [(math.atan2(x - cx, y - cy) * radius, z) for x, y, z in zip(xs, ys, zs)]


def skin_map_png(cells: dict[str, list[float]], *, phantom: str, psd_gy: float, title: str = "") -> bytes:
    uv = unwrap(cells, phantom)
    dose = cells["dose_gy"]
    us, vs = [p[0] for p in uv], [p[1] for p in uv]
    umin, umax, vmin, vmax = min(us), max(us), min(vs), max(vs)
    w_plot, h_plot, margin, bar = 360, 560, 48, 90
    img = Image.new("RGB", (w_plot + 2 * margin + bar, h_plot + 2 * margin), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    su = w_plot / ((umax - umin) or 1.0)
    sv = h_plot / ((vmax - vmin) or 1.0)
    # cell size from the grid spacing (median gap between distinct coordinates)
    def step(values: list[float]) -> float:
        distinct = sorted(set(round(v, 1) for v in values))
        gaps = sorted(b - a for a, b in zip(distinct, distinct[1:]) if b - a > 0.05)
        return gaps[len(gaps) // 2] if gaps else 1.0
    du, dv = max(step(us) * su, 2.0), max(step(vs) * sv, 2.0)
    top = psd_gy if psd_gy > 0 else 1.0
    order = sorted(range(len(dose)), key=lambda i: dose[i])  # highest drawn last
    for i in order:
        x = margin + (us[i] - umin) * su
        y = margin + (vmax - vs[i]) * sv  # head at the top
        colour = _colour(dose[i] / top) if dose[i] > 0 else _NO_DOSE
        draw.rectangle([x - du / 2, y - dv / 2, x + du / 2, y + dv / 2], fill=colour)
    draw.text((margin, 8), title or f"Skin dose map ({phantom} phantom), peak {psd_gy:.3g} Gy", fill="black", font=font)
    draw.text((margin, margin + h_plot + 10), "head at the top; " + (
        "the back as seen from below the table" if phantom == "plane" else "unwrapped around the body, back in the middle"),
        fill="black", font=font)
    # colour bar
    x0 = margin + w_plot + 30
    for k in range(h_plot):
        f = 1 - k / h_plot
        draw.line([(x0, margin + k), (x0 + 18, margin + k)], fill=_colour(f))
    for f in (0.0, 0.5, 1.0):
        y = margin + (1 - f) * h_plot
        draw.text((x0 + 24, y - 5), f"{f * top:.2g} Gy", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
