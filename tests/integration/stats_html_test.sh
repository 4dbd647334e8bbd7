#!/usr/bin/env bash
# The HTML report in a real browser: stats_sites_program runs under the shim (with a command line
# that tries to inject a script), poolshim-stats writes --format html, and headless Chromium loads
# the page offline (no network: the page's Content-Security-Policy forbids every outside load and
# the browser gets no proxy or DNS). The rendered DOM must hold the flame graph the page's script
# drew — as many rectangles as it says, site_leak and site_peak as rectangle labels — and nothing
# injected may have run; hover, click-to-zoom, Escape and the weight buttons must work (a test
# script in a copy of the page drives them), temporary allocations among them. The screenshot must
# exist and not be blank. A second
# page, from stats_html_fixture, has function and file names made to break it ("</script><script>",
# quotes, "<!--", U+2028, a byte that is not UTF-8): its data must still parse and the names show
# as text.
# Without Chromium the test is skipped (exit 77), except under CI (CI=true), where
# scripts/setup.sh installs it, so its absence is a failure there.
# usage: stats_html_test.sh --shim libpoolshim.so --program stats_sites_program
#          --stats poolshim-stats --fixture stats_html_fixture [--keep DIR]
set -u
shim="" program="" stats="" fixture="" keep=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shim) shim=$2; shift 2 ;;
    --program) program=$2; shift 2 ;;
    --stats) stats=$2; shift 2 ;;
    --fixture) fixture=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;  # copy the pages, DOM dumps and screenshot there
    *) echo "stats_html_test: unknown option $1" >&2; exit 2 ;;
  esac
done
fail() { echo "stats_html_test: FAIL: $*" >&2; exit 1; }

browser=""
for b in chromium chromium-headless-shell chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$(command -v "$b"); break; fi
done
if [[ -z $browser ]]; then
  [[ ${CI:-} == true ]] && fail "no chromium under CI (scripts/setup.sh installs the chromium package)"
  echo "stats_html_test: SKIPPED: no chromium or chromium-headless-shell on PATH (Debian: apt-get install" \
       "chromium, or run scripts/setup.sh); the HTML report was not checked in a browser"
  exit 77
fi

dir=$(mktemp -d /tmp/poolshim-stats-html-XXXXXX)
trap 'rm -rf "$dir"' EXIT

# Headless Chromium, offline and without the simulator's libraries or the shim: a fresh profile,
# no proxy or name resolution, no background traffic.
browse() {  # browse URL FLAG...: prints the DOM for --dump-dom
  local url=$1; shift
  env -u LD_PRELOAD -u LD_LIBRARY_PATH HOME="$dir/home" timeout 60 "$browser" --headless --no-sandbox --disable-gpu \
    --user-data-dir="$dir/profile" --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-sync --disable-component-update --disable-default-apps \
    --proxy-server=127.0.0.1:9 --host-resolver-rules="MAP * ~NOTFOUND" --hide-scrollbars --mute-audio \
    --window-size=1400,1000 "$@" "$url" 2>>"$dir/chromium.log"
}

check_dom() {  # check_dom DOM_FILE METRIC LABEL...: the flame graph the script drew
  python3 - "$@" <<'PY'
import re, sys, html
dom, metric, labels = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2], sys.argv[3:]
body = re.search(r"<body([^>]*)>", dom)
assert body, "no <body> in the DOM"
attrs = body.group(1)
assert not re.search(r"<[a-zA-Z][^<>]*\sdata-pwned=", dom), "an injected script ran"
count = re.search(r'data-flame-rects="(\d+)"', attrs)
assert count, f"the page's script did not draw the flame graph (body attributes: {attrs.strip()!r})"
n = int(count.group(1))
rects = len(re.findall(r'<rect class="flame-rect"', dom))
assert n == rects and n >= 5, f"data-flame-rects={n}, {rects} rectangles in the DOM"
got_metric = re.search(r'data-flame-metric="(\w+)"', attrs).group(1)
assert got_metric == metric, f"weight {got_metric}, want {metric}"
texts = [html.unescape(t) for t in re.findall(r'<text class="flame-label"[^>]*>([^<]*)</text>', dom)]
for want in labels:
    assert any(want in t for t in texts), f"no rectangle labelled {want!r}; labels: {texts}"
print(f"{metric}: {n} rectangles drawn; labels include {', '.join(repr(l) for l in labels)}")
PY
}

# A real report, with a command line that tries to inject markup.
evil_arg='</script><script>document.body.setAttribute("data-pwned","1")</script><!--'
out=$(env LD_PRELOAD="$shim" POOLSHIM_STATS=native POOLSHIM_STATS_DIR="$dir" "$program" "$evil_arg") ||
  fail "the program failed: $out"
"$stats" report --dir "$dir" --format html --output "$dir/report.html" || fail "report --format html"
size=$(stat -c %s "$dir/report.html")
echo "report.html: $size bytes"
grep -Eq '<(link|img|iframe)[ >]|src="http|href="http|@import|url\(' "$dir/report.html" &&
  fail "the page loads something from outside"
python3 - "$dir/report.html" <<'PY' || fail "the embedded data"
import json, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<script type="application/json" id="poolshim-data">(.*?)</script>', page, re.S)
assert m, "no embedded data"
assert "<" not in m.group(1), "a '<' in the embedded JSON"
data = json.loads(m.group(1))
assert any("site_leak" in f["f"] for f in data["frames"]), "site_leak not in the data"
assert page.count("</script>") == 2, f"{page.count('</script>')} </script> tags (want 2: data and script)"
print(f"embedded data: {len(data['sites'])} sites, {len(data['frames'])} frames, no '<'")
PY
browse "file://$dir/report.html" --dump-dom --screenshot="$dir/report.png" >"$dir/report.dom" ||
  fail "chromium failed: $(tail -5 "$dir/chromium.log")"
check_dom "$dir/report.dom" peak site_leak site_peak || fail "flame graph (bytes at the peak)"
grep -q '<title>poolshim-stats: pid [0-9]* stats_sites_program</title>' "$dir/report.dom" || fail "the title changed"
# site_leak's cudaMalloc is in leak_block, inlined into it: the table names the innermost frame.
grep -q '<td class="left"><code>leak_block</code>' "$dir/report.dom" ||
  fail "the call-site table lacks site_leak's leak_block"
# Interaction, in a copy of the page with a test script after the page's own (allowed by its
# nonce): the weight named in the URL, hover over site_leak (the tooltip), a click on it (zoom),
# Escape (zoom out), then the "allocations" weight chosen with its radio button.
python3 - "$dir/report.html" "$dir/interact.html" <<'PY' || fail "the interaction page"
import re, sys
page = open(sys.argv[1], encoding="utf-8").read()
nonce = re.search(r'<script nonce="([0-9a-f]+)">', page).group(1)
test = """<script nonce="%s">
(() => {
  const b = document.body, set = (k, v) => b.setAttribute('data-test-' + k, String(v));
  set('initial-metric', b.getAttribute('data-flame-metric'));
  const node = name => [...document.querySelectorAll('g.flame-node')].find(g => g.textContent.includes(name));
  let g = node('site_leak');
  const r = g.querySelector('rect').getBoundingClientRect();
  g.querySelector('rect').dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + 5, clientY: r.top + 5}));
  const tip = document.getElementById('flame-tip');
  set('tip', tip.hidden ? 'hidden' : [...tip.children].map(d => d.textContent).join(' | '));
  g.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  g = node('site_leak');
  set('zoom-status', document.getElementById('flame-status').textContent);
  set('zoom-dim', document.querySelectorAll('g.flame-node.dim').length);
  set('zoom-width', (+g.querySelector('rect').getAttribute('width') + 1) / +document.getElementById('flame-svg').getAttribute('width'));
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}));
  set('unzoom-dim', document.querySelectorAll('g.flame-node.dim').length);
  document.querySelector('input[name=metric][value=count]').click();
  set('hash', location.hash);
})();
</script>
""" % nonce
assert page.count("</body>") == 1
open(sys.argv[2], "w", encoding="utf-8").write(page.replace("</body>", test + "</body>"))
PY
browse "file://$dir/interact.html#metric=total" --dump-dom >"$dir/interact.dom" || fail "chromium --dump-dom (interaction)"
check_dom "$dir/interact.dom" count site_temp site_leak || fail "flame graph (allocations, chosen by its button)"
python3 - "$dir/interact.dom" <<'PY' || fail "interaction"
import html, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
attrs = {k: html.unescape(v) for k, v in re.findall(r'data-test-([\w-]+)="([^"]*)"', dom)}
print("interaction:", attrs)
assert attrs["initial-metric"] == "total", "the weight named in the URL (#metric=total) was not used"
tip = attrs["tip"]
assert "site_leak" in tip and "stats_sites_program.cpp:" in tip and "3.0 MiB" in tip, f"tooltip: {tip}"
assert "Zoomed into (anonymous namespace)::site_leak()" in attrs["zoom-status"], attrs["zoom-status"]
assert int(attrs["zoom-dim"]) >= 2, "no dimmed callers above the zoomed frame"
assert abs(float(attrs["zoom-width"]) - 1) < 0.01, "the zoomed frame does not span the graph"
assert attrs["unzoom-dim"] == "0", "Escape did not zoom out"
assert attrs["hash"] == "#metric=count", attrs["hash"]
PY
# Temporary allocations as the flame graph's weight (site_temp's and site_peak's one each; the
# sites that free nothing at once are not drawn), chosen by the URL as a link would.
browse "file://$dir/report.html#metric=temporary" --dump-dom >"$dir/temporary.dom" || fail "chromium (temporary)"
python3 - "$dir/temporary.dom" <<'PY' || fail "flame graph (temporary allocations)"
import html, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
assert attrs["flame-metric"] == "temporary", attrs
labels = [html.unescape(t) for t in re.findall(r'<text class="flame-label"[^>]*>([^<]*)</text>', dom)]
assert any("site_temp" in l for l in labels) and any("site_peak" in l for l in labels), labels
assert not any("site_leak" in l or "leak_block" in l for l in labels), labels
status = html.unescape(re.search(r'<div id="flame-status">([^<]*)</div>', dom).group(1))
assert status.startswith("temporary allocations: 2 temporary allocations over 2 call sites"), status
print(f"temporary: {attrs['flame-rects']} rectangles, labels {labels}")
PY
[[ -s $dir/report.png ]] || fail "chromium wrote no screenshot: $(tail -5 "$dir/chromium.log")"
python3 - "$dir/report.png" <<'PY' || fail "the screenshot"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat = 8, b""
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
assert depth == 8 and colour_type in (2, 6), f"bit depth {depth}, colour type {colour_type}"
bpp = 3 if colour_type == 2 else 4
stride = width * bpp
raw = zlib.decompress(idat)
prev = bytearray(stride)
colours = {}
rows = min(height, 720)  # the summary and the flame graph: enough to tell a blank page
for y in range(rows):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if f == 1:
        for i in range(bpp, stride): line[i] = (line[i] + line[i - bpp]) & 255
    elif f == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, prev))
    elif f == 3:
        for i in range(stride): line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
    elif f == 4:
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 2 == 0:  # every other row is plenty to count colours
        for i in range(0, stride, bpp * 2):
            key = bytes(line[i:i + 3])
            colours[key] = colours.get(key, 0) + 1
    prev = line
total = sum(colours.values())
common = max(colours.values())
print(f"screenshot {width}x{height} (top {rows} rows): {len(colours)} distinct colours, the commonest {100 * common / total:.0f}% of pixels")
assert len(colours) >= 50, "too few colours: a blank page?"
assert common < 0.97 * total, "one colour covers the page"
PY

# Hand-made hostile names.
"$fixture" "$dir/fixture.html" || fail "stats_html_fixture"
browse "file://$dir/fixture.html" --dump-dom >"$dir/fixture.dom" || fail "chromium --dump-dom (fixture)"
check_dom "$dir/fixture.dom" peak "</script><script>document.body.setAttribute('data-pwned','1')</script>" \
  "operator<(std::vector<int, alloc<int> > const&, q&)" || fail "fixture flame graph"
python3 - "$dir/fixture.dom" <<'PY' || fail "fixture page"
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
assert "<title>poolshim-stats: pid 4242 app</title>" in dom, "the title changed"
assert len(re.findall(r"<script", dom)) == 2, "a script element was injected"
assert "&lt;/script&gt;&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;" in dom
assert "a\"b'c &lt;x&gt; &amp; y.cpp:7</span>" in dom, "the quoted file name"
assert "&lt;b&gt;bold&lt;/b&gt; &amp;amp; more" not in dom and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in dom
assert 'data-framework="PyTorch CUDACachingAllocator"' in dom, "no framework note"
assert dom.count('<span class="badge">PyTorch CUDACachingAllocator cache</span>') == 1, "no framework badge"
rows = re.findall(r'<table class="grid" id="site-table">(.*?)</table>', dom, re.S)[0].count("<tr")
assert rows == 5, f"{rows - 1} site rows, want 4"
print("fixture: hostile names shown as text, nothing injected, framework labelled")
PY
if [[ -n $keep ]]; then
  mkdir -p "$keep" && cp "$dir"/*.html "$dir"/*.dom "$dir"/*.png "$keep"/ && echo "kept in $keep"
fi
echo "stats_html_test: OK"
