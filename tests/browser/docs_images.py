"""Make the README's small screenshots (docs/*.png) from the browser tests' artifacts.

Run the browser tests on both generations first (they save full-size screenshots under
test-artifacts/browser/), then ``python -m tests.browser.docs_images``. Each image is cropped
to what it shows, scaled down and stored with a 256-colour palette, which keeps it small.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS = ROOT / "docs"

# name -> (sources side by side: (artifact, crop box)), width of the result
IMAGES: dict[str, tuple[list[tuple[str, tuple[int, int, int, int]]], int]] = {
    "badges.png": ([("modern-txt2img-badges.png", (40, 110, 1185, 650))], 820),
    "badges-2024.png": ([("march2024-txt2img-badges.png", (30, 20, 1160, 560))], 820),
    "runs-panel.png": (
        [("modern-txt2img-panel.png", (0, 0, 420, 1420)), ("march2024-txt2img-panel.png", (0, 0, 520, 1220))],
        760,
    ),
    "dashboard.png": ([("modern-dashboard.png", (80, 0, 1320, 1120))], 900),
}


def compose(parts: list[tuple[str, tuple[int, int, int, int]]]) -> Image.Image:
    """The crops of `parts`, left to right, on the page's background colour."""
    crops = [Image.open(ARTIFACTS / name).convert("RGB").crop(box) for name, box in parts]
    out = Image.new("RGB", (sum(c.width for c in crops), max(c.height for c in crops)), (32, 32, 32))
    x = 0
    for crop in crops:
        out.paste(crop, (x, 0))
        x += crop.width
    return out


def main() -> int:
    """Write every image of IMAGES; one line per image, or what is missing."""
    DOCS.mkdir(exist_ok=True)
    missing = sorted({n for parts, _ in IMAGES.values() for n, _ in parts if not (ARTIFACTS / n).is_file()})
    if missing:
        print(f"missing artifacts (run the browser tests on both generations): {', '.join(missing)}", file=sys.stderr)
        return 1
    for name, (parts, width) in IMAGES.items():
        image = compose(parts)
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)
        print(f"{DOCS / name}: {image.width}x{image.height}, {(DOCS / name).stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
