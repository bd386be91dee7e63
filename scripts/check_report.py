#!/usr/bin/env python3
"""Opens a `jepsen compare` report (index.html) in headless Chromium, as a
person would, and checks that it renders: the DOM after load holds the
table with one row per mode and one chart per mode, and a screenshot of
the page has the requested size and is mostly not blank, with coloured
chart pixels (lines and shaded fault windows). Usage:

    scripts/check_report.py STORE/compare/<ts>/index.html MODES [SCREENSHOT.png]

Exit 0: rendered; 1: did not render as it should; 77: no Chromium here
(one line says so; scripts/test installs Debian's chromium as root).
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

WIDTH, HEIGHT = 1100, 1400


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(binary, profile, *args):
    # The flags keep a headless Chromium off the network: this machine
    # reaches nothing but its package registries.
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {color}")
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        filt, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if filt == 1:
                line[x] = (line[x] + a) & 0xFF
            elif filt == 2:
                line[x] = (line[x] + b) & 0xFF
            elif filt == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, channels)])
        prev = line
    return width, height, rows


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    index, modes = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    shot = sys.argv[3] if len(sys.argv) > 3 else None
    binary = chromium()
    if not binary:
        print("skipping the report check: no Chromium (apt-get install -y chromium)")
        return 77
    url = "file://" + index
    failures = []
    with tempfile.TemporaryDirectory() as profile:
        dom = run_chromium(binary, profile, "--dump-dom", url)
        html = dom.stdout
        rows = re.findall(r"<tr>", html)
        if 'id="summary"' not in html:
            failures.append("no summary table in the DOM")
        if len(rows) != modes + 1:
            failures.append(f"the table has {len(rows)} rows, expected {modes + 1}")
        charts = re.findall(r"<svg[^>]*>.*?</svg>", html, re.S)
        if len(charts) < modes:
            failures.append(f"{len(charts)} charts in the DOM, expected {modes}")
        elif not all("<path" in c and "stroke-dasharray" in c for c in charts[:modes]):
            failures.append("a chart lacks its lines (running, or the dashed limit)")
        png = shot or os.path.join(profile, "report.png")
        run_chromium(binary, profile, f"--screenshot={png}", f"--window-size={WIDTH},{HEIGHT}", url)
        if not os.path.exists(png):
            failures.append("Chromium wrote no screenshot")
        else:
            w, h, pixels = png_pixels(png)
            if (w, h) != (WIDTH, HEIGHT):
                failures.append(f"screenshot is {w}x{h}, expected {WIDTH}x{HEIGHT}")
            flat = [p for row in pixels for p in row]
            not_white = sum(1 for p in flat if min(p) < 240)
            coloured = sum(1 for p in flat if max(p) - min(p) > 40)
            print(
                f"report: {len(rows) - 1} rows, {len(charts)} charts; screenshot {w}x{h}, "
                f"{not_white / len(flat):.1%} not white, {coloured} coloured pixels"
            )
            if not_white < len(flat) * 0.02:
                failures.append("the screenshot is blank")
            if coloured < 2000:
                failures.append(f"only {coloured} coloured pixels: no chart drawn")
    for f in failures:
        print("report check:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
