"""Build the documentation site and screenshot pages of it in headless Chromium (Debian's ``chromium``).

    python scripts/docs/screenshots.py                      # home page and the attention concept page
    python scripts/docs/screenshots.py --out shots/ index.html concepts/positional.html

Writes one PNG per page (``index.png``, ``concepts-attention.png``) into ``--out`` (default: a new temporary
folder, printed at the end), for a person to look at. The site is opened from disk (``file://``): it loads
nothing from the network, which is how it must read offline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def build_site(site: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=REPO,
        check=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def screenshot(page: Path, out: Path, *, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={out}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", default=["index.html", "concepts/attention.html"])
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default: a new temporary folder)")
    parser.add_argument("--site", type=Path, help="an already built site (default: build one)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="swapformer-screenshots-"))
    out.mkdir(parents=True, exist_ok=True)
    site = args.site
    if site is None:
        site = Path(tempfile.mkdtemp(prefix="swapformer-site-"))
        build_site(site)
    for page in args.pages:
        target = out / (page.removesuffix(".html").replace("/", "-") + ".png")
        screenshot(site / page, target, width=args.width, height=args.height)
        print(target)


if __name__ == "__main__":
    main()
