"""The HTML docs site (`make docs`): it builds without a warning within the target time, and headless Chromium
shows a reader the guides of docs/, every module and filter, and every role entry point with its options."""

import ast
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUILD_SECONDS = 120  # issue 23's target for `make docs`
WINDOW = (1280, 900)
# Screenshots stay for a person to look at (the file tool, an image viewer) after the test.
SHOTS = ROOT / ".cache" / "docs-screenshots"
COLLECTION = "collections/hubspoke/revtunnel/"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site as `make docs` does, into a scratch directory; return the URL of its index."""
    dest = tmp_path_factory.mktemp("docs-site")
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.run(["bash", ROOT / "scripts/docs/build-site.sh", dest], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"scripts/docs/build-site.sh failed ({proc.returncode}):\n{log[-6000:]}"
    assert "build succeeded." in log, log[-3000:]
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    assert not warnings, warnings
    assert seconds <= BUILD_SECONDS, f"the docs site took {seconds:.0f} s to build (target {BUILD_SECONDS} s)"
    index = dest / "build" / "html" / "index.html"
    assert index.is_file()
    return index.as_uri()


def chromium(*args):
    """Headless Chromium as root in a container: no sandbox, no GPU, nothing fetched, a fresh profile."""
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: scripts/docs/ensure-chromium.sh (make docs-test) installs it"
    with tempfile.TemporaryDirectory(prefix="revtunnel-chromium-") as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def dom(url):
    """The page's DOM after Chromium has loaded it (scripts run), as a reader's browser holds it."""
    html = chromium("--dump-dom", url)
    assert "</html>" in html, html[-500:]
    return html


def screenshot(url, name):
    path = SHOTS / f"{name}.png"
    SHOTS.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    chromium(f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={path}", url)
    assert path.is_file(), f"chromium wrote no screenshot for {url}"
    return path


def png_pixels(path):
    """Decode Chromium's PNG (8-bit RGB or RGBA, not interlaced): width, height and rows of (r, g, b)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, interlace = header[:4] + header[6:]
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[i] = (line[i] + near[2]) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, channels)])
        previous = line
    return width, height, rows


def assert_renders_like_a_docs_site(path):
    """A full window of a styled page: many colours (text, code, links), the theme's dark bar across the top
    and a light page under it. A blank page has a handful of colours, and one whose CSS did not load has no
    dark bar."""
    width, height, rows = png_pixels(path)
    assert (width, height) == WINDOW, (width, height)
    colours = {pixel for row in rows[::4] for pixel in row[::4]}
    assert len(colours) > 200, f"{path}: only {len(colours)} colours, the page looks empty or unstyled"
    # The theme's bar is 44 px high; the navigation column on the left scrolls with the page, so the page is
    # sampled right of it.
    top_bar = [rows[y][x] for y in range(4, 40, 4) for x in range(0, width, 8)]
    page = [rows[y][x] for y in range(60, height, 8) for x in range(400, width, 8)]
    dark = sum(sum(pixel) < 150 for pixel in top_bar) / len(top_bar)
    light = sum(sum(pixel) > 600 for pixel in page) / len(page)
    assert dark > 0.6, f"{path}: {dark:.0%} of the top bar is dark: the theme's CSS did not load"
    assert light > 0.7, f"{path}: only {light:.0%} of the page is light"


class Links(HTMLParser):
    def __init__(self, base):
        super().__init__()
        self.base, self.found = base, set()

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.found.add(urldefrag(urljoin(self.base, href))[0])


def links(url, html):
    parser = Links(url)
    parser.feed(html)
    return parser.found


def site_url(site, relative):
    return urljoin(site, relative)


def documented_options(module):
    """The top-level options of a module's DOCUMENTATION, read from its source."""
    tree = ast.parse((ROOT / "plugins/modules" / f"{module}.py").read_text())
    text = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) == "DOCUMENTATION")
    return yaml.safe_load(text)["options"]


def parameters_section(html):
    """The Parameters section of a module page: from its heading to the next section."""
    match = re.search(r'<section id="parameters">(.*?)<section id=', html, re.S)
    assert match, "the page has no Parameters section"
    return match.group(1)


def test_the_index_shows_the_guides_and_the_reference(site):
    shot = screenshot(site, "index")
    assert_renders_like_a_docs_site(shot)
    html = dom(site)
    found = links(site, html)
    guides = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    missing = [g for g in guides if site_url(site, f"docs/{g}.html") not in found]
    assert not missing, f"guides of docs/ not linked from the index: {missing}"
    assert site_url(site, f"{COLLECTION}index.html") in found


def test_a_guide_is_its_markdown_page_rendered(site):
    page = site_url(site, "docs/usage.html")
    html = dom(page)
    title = (ROOT / "docs/usage.md").read_text().splitlines()[0].lstrip("# ").strip()
    assert re.search(rf"<h1>{re.escape(title)}", html), f"docs/usage.md's title {title!r} is not the page's h1"
    # A guide's links to other guides lead to their pages, not to the .md files.
    assert site_url(site, "docs/registry-format.html") in links(page, html)


def test_every_module_filter_and_role_is_reachable_from_the_collection_index(site):
    index = site_url(site, f"{COLLECTION}index.html")
    found = links(index, dom(index))
    wanted = [f"{p.stem}_module" for p in (ROOT / "plugins/modules").glob("*.py")]
    wanted += [f"{p.stem}_filter" for p in (ROOT / "plugins/filter").glob("*.py")]
    wanted += [f"{p.parent.parent.name}_role" for p in (ROOT / "roles").glob("*/meta/argument_specs.yml")]
    missing = [w for w in sorted(wanted) if site_url(site, f"{COLLECTION}{w}.html") not in found]
    assert not missing, f"not linked from the collection's index: {missing}"


@pytest.mark.parametrize("role", sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/argument_specs.yml")))
def test_every_role_entry_point_shows_its_argument_spec(site, role):
    html = dom(site_url(site, f"{COLLECTION}{role}_role.html"))
    specs = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())["argument_specs"]
    missing = []
    for entry_point, spec in specs.items():
        heading = rf'<h2>[^\n]*?Entry point <code[^>]*><span class="pre">{re.escape(entry_point)}</span></code>'
        if not re.search(heading, html):
            missing.append(entry_point)
        missing += [f"{entry_point}: {option}" for option in spec.get("options", {})
                    if f'id="parameter-{entry_point}--{option}"' not in html]
    assert not missing, f"{role} role page lacks: {missing}"


def test_a_module_page_shows_its_options_table(site):
    page = site_url(site, f"{COLLECTION}spoke_registry_module.html")
    shot = screenshot(page, "spoke_registry_module")
    assert_renders_like_a_docs_site(shot)
    section = parameters_section(dom(page))
    assert 'class="longtable ansible-option-table' in section, "the Parameters section has no options table"
    options = documented_options("spoke_registry")
    missing = [o for o in sorted(options) if f'id="parameter-{o}"' not in section]
    assert not missing, f"options of spoke_registry missing from its table: {missing}"
    # A known option's row, as a reader sees it: its name, its type, its description and its default.
    option = options["path"]
    row = re.search(r'id="parameter-path".*?</tr>', section, re.S)
    assert row, "no row for the path option"
    for shown in ("<strong>path</strong>", f'<span class="ansible-option-type">{option["type"]}</span>',
                  f"<p>{option['description'][0]}</p>", f'"{option["default"]}"'):
        assert shown in row.group(0), f"the path option's row does not show {shown!r}:\n{row.group(0)}"
