"""Screenshots of the report pages for the docs: docs/img/report-store.png, report-run.png.

Usage: .venv/bin/python scripts/report_screenshots.py STORE RUN_DIR [--input KEY]

Writes both pages with ``emofeat report`` (into a temporary folder), opens them in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, as the tests do) and saves the
screenshots. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from emofeat.report import write_run_report, write_store_report

DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"


def shoot(page: Path, out: Path, height: int) -> None:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size=1200,{height}"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + 15
        while not driver.execute_script("return !!(window.emofeatReport||{}).ready"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{page}: the page did not finish drawing")
            time.sleep(0.05)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("run_dir")
    ap.add_argument("--input", action="append", help="the store's input to show")
    ap.add_argument("--height", type=int, default=1500, help="pixels of page to capture")
    args = ap.parse_args()
    DOCS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store_page = write_store_report(args.store, Path(tmp) / "store.html", inputs=args.input)
        run_page = write_run_report(args.run_dir, Path(tmp) / "run.html")
        shoot(store_page, DOCS / "report-store.png", args.height)
        shoot(run_page, DOCS / "report-run.png", args.height)


if __name__ == "__main__":
    main()
