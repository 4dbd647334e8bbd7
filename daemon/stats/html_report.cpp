// The self-contained HTML report (html_report.h).
#include "stats/html_report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <exception>
#include <map>
#include <random>
#include <tuple>

#include "stats/labels.h"
#include "stats/report_text.h"
#include "stats/site_text.h"
#include "stats/timeline.h"

namespace poolshim::stats_tool {
namespace {

constexpr const char* k_kind_names[] = {"device", "pinned", "managed", "async", "vmm"};

const char* kind_text(int kind) { return kind >= 0 && kind < 5 ? k_kind_names[kind] : "unknown"; }

std::string seconds_text(double s) {
  char b[32];
  std::snprintf(b, sizeof b, s < 10 ? "%.2f s" : "%.1f s", s);
  return b;
}

std::string count_text(std::uint64_t n) {
  std::string d = std::to_string(n), out;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i != 0 && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return out;
}

std::string rate_text(std::uint64_t n, double secs) {
  if (secs <= 0) return "-";
  return count_text(static_cast<std::uint64_t>(std::llround(static_cast<double>(n) / secs)));
}

// A frame as people read it, split: the function (or module+offset) and "file:line".
std::string frame_name(const frame& f) {
  if (!f.function.empty()) return f.function;
  if (!f.module.empty()) return base_name(f.module) + "+" + hex_text(f.offset);
  return hex_text(f.pc);
}
std::string frame_where(const frame& f) {
  // Without a line, the offset: two places in one function of a library without -g differ by it.
  if (f.file.empty())
    return f.module.empty() || f.function.empty() ? "" : base_name(f.module) + "+" + hex_text(f.offset);
  return base_name(f.file) + ":" + std::to_string(f.line);
}

// The page's script carries this nonce; its Content-Security-Policy runs no other script, so even
// markup that escaping missed could not run code.
std::string nonce() {
  std::string out;
  try {
    std::random_device rd;
    for (int i = 0; i < 4; ++i) out += hex_text(rd()).substr(2);
  } catch (const std::exception&) {  // no entropy source: still unguessable enough for a static page
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    out =
        hex_text(static_cast<std::uint64_t>(t.tv_nsec) * 2654435761u ^ static_cast<std::uint64_t>(t.tv_sec)).substr(2);
  }
  return out;
}

const char* k_css = R"CSS(
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #ffffff; --panel: #f5f7fa; --accent: #2f6fdf; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.cmd { margin: 0 0 12px; color: var(--muted); word-break: break-all; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         vertical-align: middle; background: #e6ecf7; color: #244a8f; }
.state.killed { background: #fde8e6; color: #9a2617; }
.state.running { background: #e5f5e8; color: #1e6b32; }
table { border-collapse: collapse; }
.facts th { text-align: left; font-weight: 500; color: var(--muted); padding: 2px 18px 2px 0; vertical-align: top; }
.facts td { padding: 2px 0; }
.grid { width: 100%; }
.grid th, .grid td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: right; white-space: nowrap;
                     vertical-align: top; }
.grid th { background: var(--panel); font-weight: 600; font-size: 12.5px; }
.grid td.left, .grid th.left { text-align: left; white-space: normal; }
.grid tr.leak td.leaked { color: #9a2617; font-weight: 600; }
.note { background: #fff7e0; border: 1px solid #f0d890; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.note.framework { background: #eaf2ff; border-color: #b7cdf5; }
.badge { display: inline-block; padding: 0 6px; margin-left: 6px; border-radius: 8px;
         background: #dbe7ff; color: #1f4aa8;
         font-size: 11.5px; font-weight: 600; white-space: nowrap; }
.where { color: var(--muted); }
details summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
ol.stack { margin: 4px 0 0; padding-left: 28px; }
ol.stack li { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
#controls, .controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; margin: 6px 0 8px; }
#controls label, .controls label { white-space: nowrap; }
#flame-search { padding: 3px 6px; width: 220px; }
#flame-filter { padding: 3px 6px; width: 260px; }
#flame-filter.bad { outline: 2px solid #d2452b; }
#flame-status { color: var(--muted); font-size: 12.5px; margin-bottom: 6px; }
#flame { position: relative; width: 100%; border: 1px solid var(--line); border-radius: 4px; overflow: hidden;
         background: #fcfcfd; min-height: 40px; }
#flame-svg { display: block; }
.flame-node { cursor: pointer; }
.flame-node.dim { opacity: 0.55; }
.flame-node:hover rect { stroke: #111; stroke-width: 1; }
.flame-label { font: 11.5px "DejaVu Sans Mono", ui-monospace, monospace; fill: #111; pointer-events: none; }
#flame-tip { position: absolute; z-index: 2; max-width: 560px; padding: 6px 9px; background: #1d2330; color: #f3f5f8;
             border-radius: 4px; font-size: 12px; pointer-events: none; box-shadow: 0 2px 8px rgba(0,0,0,.25); }
#flame-tip .tip-name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 600;
                      word-break: break-all; }
#flame-tip .tip-loc, #flame-tip .tip-mod { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: #c8d0dd;
             word-break: break-all; }
#flame-tip .tip-fw { color: #9cc2ff; }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; word-break: break-all; }
)CSS";

// The flame graph. Reads the embedded JSON (frames: {f function, s file, l line, m module,
// o offset, fw framework}; sites: {id, w: {peak, live, total, count, temporary}, st: frame indexes innermost
// first}) and draws an icicle (callers above callees) as SVG. Names go into the DOM through
// textContent only. data-flame-rects on <body> and the <svg> counts the rectangles drawn.
const char* k_script = R"JS(
'use strict';
(() => {
  const D = JSON.parse(document.getElementById('poolshim-data').textContent);
  const NAMES = {peak: 'bytes at the process peak', live: D.live_label, total: 'bytes allocated', count: 'allocations',
                 temporary: 'temporary allocations'};
  const COUNTS = {count: ['allocation', 'allocations'], temporary: ['temporary allocation', 'temporary allocations']};
  const NS = 'http://www.w3.org/2000/svg';
  const ROW = 18, CHAR = 7, PAD = 4;
  const box = document.getElementById('flame');
  const svg = document.getElementById('flame-svg');
  const tip = document.getElementById('flame-tip');
  const status = document.getElementById('flame-status');
  const search = document.getElementById('flame-search');
  const filterBox = document.getElementById('flame-filter');
  const filterMode = document.getElementById('filter-mode');
  let metric = Object.hasOwn(NAMES, D.sort) ? D.sort : 'peak';
  let view = D.view === 'bottom-up' ? 'bottom-up' : 'top-down';
  // A link may name the state: #metric=live&view=bottom-up&filter=REGEX&mode=keep|drop|hide.
  const asked = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (Object.hasOwn(NAMES, asked.get('metric') || '')) metric = asked.get('metric');
  if (asked.get('view') === 'bottom-up' || asked.get('view') === 'top-down') view = asked.get('view');
  if (asked.has('filter')) filterBox.value = asked.get('filter');
  if (['keep', 'drop', 'hide'].includes(asked.get('mode'))) filterMode.value = asked.get('mode');
  let root = null, focus = null, drawn = [], shownSites = 0, filterError = '';

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const bytes = b => {
    let u = 0;
    while (Math.abs(b) >= 1024 && u < 4) { b /= 1024; ++u; }
    return (u ? b.toFixed(1) : String(Math.round(b))) + ' ' + UNITS[u];
  };
  const amount = v =>
    COUNTS[metric] ? v.toLocaleString('en-US') + ' ' + COUNTS[metric][v === 1 ? 0 : 1] : bytes(v);
  const pct = (a, b) => b > 0 ? (100 * a / b).toFixed(1) + '%' : '-';
  const base = p => { const i = p.lastIndexOf('/'); return i < 0 ? p : p.slice(i + 1); };
  const frameName = fr => fr.f || (fr.m ? base(fr.m) + '+' + fr.o : fr.o);

  function node(parent, name) {
    return {name, parent, depth: parent ? parent.depth + 1 : 0, v: 0, x0: 0, sites: 0, kids: new Map(), list: [],
            locs: new Map(), mods: new Set(), fw: '', py: false, unknown: false};
  }
  function child(n, name, fr, w) {
    let c = n.kids.get(name);
    if (!c) { c = node(n, name); n.kids.set(name, c); }
    c.v += w; c.sites += 1;
    if (!fr) { c.unknown = true; return c; }
    if (fr.s) { const loc = fr.s + ':' + fr.l; c.locs.set(loc, (c.locs.get(loc) || 0) + w); }
    if (fr.m) c.mods.add(fr.m);
    if (fr.fw) c.fw = fr.fw;
    if (fr.m === '[python]') c.py = true;
    if (!fr.f) c.unknown = true;
    return c;
  }
  function place(n) {
    let x = n.x0;
    n.list = [...n.kids.values()].sort((a, b) => b.v - a.v || (a.name < b.name ? -1 : 1));
    for (const c of n.list) { c.x0 = x; x += c.v; place(c); }
  }
  // The filter: a regular expression (case-insensitive) over each frame's function, module and
  // file:line. keep: only sites with a matching frame; drop: only sites without one; hide: every
  // site, without its matching frames. It applies to the flame graph and the table alike.
  function pattern() {
    filterError = '';
    filterBox.classList.remove('bad');
    if (filterBox.value === '') return null;
    try {
      return new RegExp(filterBox.value, 'i');
    } catch (e) {
      filterError = 'The filter is not a regular expression (' + e.message + '): nothing is filtered.';
      filterBox.classList.add('bad');
      return null;
    }
  }
  const frameMatches = (re, fr) =>
    re.test(fr.f || '') || re.test(fr.m || '') || re.test(fr.s ? fr.s + ':' + fr.l : '') || re.test(frameName(fr));
  function siteShown(s, re) {
    if (!re || filterMode.value === 'hide') return true;
    const any = s.st.some(i => frameMatches(re, D.frames[i]));
    return filterMode.value === 'drop' ? !any : any;
  }
  // Top-down: from the program's entry (the root's children) to the allocation; bottom-up: from the
  // function that allocates (the root's children) out to its callers, heaptrack's bottom-up view.
  function build() {
    const re = pattern();
    const r = node(null, 'all');
    shownSites = 0;
    for (const s of D.sites) {
      if (!siteShown(s, re)) continue;
      ++shownSites;
      const w = s.w[metric];
      if (!(w > 0)) continue;
      let st = s.st.map(i => D.frames[i]);  // innermost first
      if (re && filterMode.value === 'hide') st = st.filter(fr => !frameMatches(re, fr));
      r.v += w; r.sites += 1;
      if (st.length === 0) {
        child(r, s.id === 0 ? '[untracked stacks]' : s.st.length ? '[every frame filtered out]' : '[stack kept without frames]',
              null, w);
        continue;
      }
      let n = r;
      if (view === 'bottom-up') {
        for (const fr of st) n = child(n, frameName(fr), fr, w);
        if (s.cut) n = child(n, s.cut, null, w);  // where the callers end: the stack was cut
      } else {
        if (s.cut) n = child(n, s.cut, null, w);  // its outermost frames are missing: not a root of its own
        for (let i = st.length - 1; i >= 0; --i) n = child(n, frameName(st[i]), st[i], w);
      }
    }
    place(r);
    return r;
  }
  function filterRows() {
    const re = pattern();
    let shown = 0;
    for (const tr of document.querySelectorAll('#site-table tr[data-site]')) {
      tr.hidden = !siteShown(D.sites[+tr.getAttribute('data-site')], re);
      if (!tr.hidden) ++shown;
    }
    document.body.setAttribute('data-rows-shown', shown);
  }
  function remember() {  // the state in the URL, so that a link shows the same view
    const p = new URLSearchParams();
    p.set('metric', metric);
    if (view !== 'top-down') p.set('view', view);
    if (filterBox.value !== '') {
      p.set('filter', filterBox.value);
      if (filterMode.value !== 'keep') p.set('mode', filterMode.value);
    }
    try { history.replaceState(null, '', '#' + p.toString()); } catch (e) { /* a sandboxed page */ }
  }

  function hash(s) {  // FNV-1a: a frame's colour stays the same from page to page
    let h = 2166136261;
    for (let i = 0; i < s.length; ++i) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }
  function colour(n) {
    if (n.depth === 0) return '#b9bec8';
    const h = hash(n.name);
    if (n.fw) return 'hsl(' + (200 + h % 25) + ',75%,' + (60 + (h >>> 8) % 12) + '%)';
    if (n.py) return 'hsl(' + (95 + h % 40) + ',50%,' + (55 + (h >>> 8) % 12) + '%)';
    if (n.unknown) return 'hsl(220,8%,' + (74 + h % 12) + '%)';
    return 'hsl(' + (h % 48 + 4) + ',' + (72 + (h >>> 8) % 22) + '%,' + (56 + (h >>> 16) % 12) + '%)';
  }
  function shortName(name) {
    let s = name, depth = 0;
    for (let i = 1; i < s.length; ++i) {
      const c = s[i];
      if (c === '<') depth++;
      else if (c === '>') depth--;
      else if (c === '(' && depth <= 0 && !s.slice(0, i).endsWith('operator')) { s = s.slice(0, i); break; }
    }
    const k = s.lastIndexOf('::');
    return k >= 0 && k + 2 < s.length ? s.slice(k + 2) : s;
  }
  function label(name, w) {
    const max = Math.floor((w - 2 * PAD) / CHAR);
    if (max < 3) return '';
    if (name.length <= max) return name;
    const s = shortName(name);
    return s.length <= max ? s : s.slice(0, max - 1) + '\u2026';
  }
  function mark(count) {
    svg.setAttribute('data-rects', count);
    document.body.setAttribute('data-flame-rects', count);
    document.body.setAttribute('data-flame-metric', metric);
    document.body.setAttribute('data-flame-view', view);
    document.body.setAttribute('data-sites-shown', shownSites);
  }
  function draw(frag, n, x, w, dim, match) {
    const g = document.createElementNS(NS, 'g');
    g.setAttribute('class', 'flame-node' + (dim ? ' dim' : '') + (match ? ' match' : ''));
    g.setAttribute('transform', 'translate(' + x.toFixed(2) + ',' + n.depth * ROW + ')');
    g.setAttribute('data-i', drawn.length);
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('class', 'flame-rect');
    r.setAttribute('width', Math.max(w - 1, 0.5).toFixed(2));
    r.setAttribute('height', ROW - 1);
    r.setAttribute('fill', match ? '#d23cf2' : colour(n));
    g.appendChild(r);
    const t = label(n.name, w);
    if (t) {
      const e = document.createElementNS(NS, 'text');
      e.setAttribute('class', 'flame-label');
      e.setAttribute('x', PAD);
      e.setAttribute('y', 12.5);
      e.textContent = t;
      g.appendChild(e);
    }
    frag.appendChild(g);
    drawn.push(n);
  }
  function render() {
    drawn = [];
    svg.textContent = '';
    tip.hidden = true;
    const W = Math.max(box.clientWidth, 320);
    svg.setAttribute('width', W);
    const filtered = filterBox.value !== '' && !filterError
        ? ' Filter: ' + shownSites + ' of ' + D.sites.length + ' call sites' +
          (filterMode.value === 'hide' ? ', matching frames hidden.' : '.')
        : ' ' + filterError;
    if (!root || !(root.v > 0)) {
      svg.setAttribute('height', 0);
      status.textContent = 'No call site' + (filterBox.value !== '' ? ' left by the filter' : '') + ' has any ' +
                           NAMES[metric] + '.' + filtered;
      mark(0);
      return;
    }
    const q = search.value;
    let depth = 0, matched = 0;
    const frag = document.createDocumentFragment();
    for (let a = focus.parent; a; a = a.parent) draw(frag, a, 0, W, true, false);
    const scale = W / focus.v;
    const walk = (n, inMatch) => {
      const w = n.v * scale;
      if (w < 0.5) return;
      const m = q !== '' && n.name.includes(q);
      if (m && !inMatch) matched += n.v;
      draw(frag, n, (n.x0 - focus.x0) * scale, w, false, m);
      depth = Math.max(depth, n.depth);
      for (const c of n.list) walk(c, inMatch || m);
    };
    walk(focus, false);
    svg.appendChild(frag);
    svg.setAttribute('height', (depth + 1) * ROW);
    let text = (view === 'bottom-up' ? 'Bottom-up (allocating functions on top, their callers below), ' : '') +
               NAMES[metric] + ': ' + amount(root.v) + ' over ' + root.sites +
               (root.sites === 1 ? ' call site' : ' call sites');
    text += focus === root ? '. Click a frame to zoom, hover for details.'
                           : '. Zoomed into ' + focus.name + ' (' + amount(focus.v) + ', ' + pct(focus.v, root.v) +
                             '); click a dimmed frame or press Escape to zoom out.';
    if (q !== '') text += ' "' + q + '" matches ' + amount(matched) + ' (' + pct(matched, root.v) + ').';
    status.textContent = text + filtered;
    mark(drawn.length);
  }

  const nodeAt = ev => {
    const g = ev.target.closest ? ev.target.closest('g.flame-node') : null;
    return g ? drawn[+g.getAttribute('data-i')] : null;
  };
  svg.addEventListener('mousemove', ev => {
    const n = nodeAt(ev);
    if (!n) { tip.hidden = true; return; }
    tip.textContent = '';
    const add = (cls, text) => {
      const d = document.createElement('div');
      d.className = cls;
      d.textContent = text;
      tip.appendChild(d);
    };
    add('tip-name', n.name);
    const locs = [...n.locs.entries()].sort((a, b) => b[1] - a[1]);
    for (const [loc] of locs.slice(0, 3)) add('tip-loc', loc);
    if (locs.length > 3) add('tip-loc', '\u2026 and ' + (locs.length - 3) + ' more lines');
    for (const m of [...n.mods].slice(0, 2)) add('tip-mod', m);
    add('tip-val', amount(n.v) + ': ' + pct(n.v, root.v) + ' of all' +
                   (focus !== root ? ', ' + pct(n.v, focus.v) + ' of the zoomed frame' : ''));
    add('tip-sites', n.sites + (n.sites === 1 ? ' call site' : ' call sites'));
    if (n.fw) add('tip-fw', n.fw + ': the framework\u2019s cache growing, not one tensor');
    tip.hidden = false;
    const bx = box.getBoundingClientRect();
    let x = ev.clientX - bx.left + 14;
    const y = ev.clientY - bx.top + 16;
    if (x + tip.offsetWidth > box.clientWidth) x = Math.max(0, ev.clientX - bx.left - tip.offsetWidth - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  });
  svg.addEventListener('mouseleave', () => { tip.hidden = true; });
  svg.addEventListener('click', ev => { const n = nodeAt(ev); if (n) { focus = n; render(); } });
  for (const input of document.querySelectorAll('input[name=metric]')) {
    input.checked = input.value === metric;
    input.addEventListener('change', () => {
      metric = input.value;
      remember();
      root = build(); focus = root; render();
    });
  }
  for (const input of document.querySelectorAll('input[name=view]')) {
    input.checked = input.value === view;
    input.addEventListener('change', () => {
      view = input.value;
      remember();
      root = build(); focus = root; render();
    });
  }
  const refilter = () => { remember(); filterRows(); root = build(); focus = root; render(); };
  filterBox.addEventListener('input', refilter);
  filterMode.addEventListener('change', refilter);
  filterRows();
  document.getElementById('flame-reset').addEventListener('click', () => { focus = root; render(); });
  search.addEventListener('input', render);
  document.addEventListener('keydown', ev => { if (ev.key === 'Escape') { focus = root; render(); } });
  window.addEventListener('resize', render);
  root = build();
  focus = root;
  render();
})();
)JS";

class page {
 public:
  explicit page(std::FILE* out) : out_(out) {}
  page& operator<<(const std::string& s) {
    ok_ = ok_ && std::fwrite(s.data(), 1, s.size(), out_) == s.size();
    return *this;
  }
  page& operator<<(const char* s) { return *this << std::string(s); }
  bool ok() const { return ok_; }

 private:
  std::FILE* out_;
  bool ok_ = true;
};

std::string data_json(const html_input& in) {
  std::string frames = "[", sites = "[";
  std::map<std::tuple<std::string, std::string, int, std::string, std::string>, std::size_t> index;
  for (const site& s : in.sites) {
    std::string st;
    for (const frame& f : s.frames) {
      auto key = std::make_tuple(f.function, f.file, f.line, f.module, f.function.empty() ? hex_text(f.offset) : "");
      auto it = index.find(key);
      if (it == index.end()) {
        it = index.emplace(key, index.size()).first;
        const framework* fw = framework_of(f);
        frames += std::string(frames.size() > 1 ? "," : "") + "{\"f\":" + json_quote(f.function, true) +
                  ",\"s\":" + json_quote(f.file, true) + ",\"l\":" + std::to_string(f.line) +
                  ",\"m\":" + json_quote(f.module, true) +
                  ",\"o\":" + json_quote(f.module.empty() ? hex_text(f.pc) : hex_text(f.offset), true) +
                  ",\"fw\":" + (fw != nullptr ? json_quote(fw->name, true) : "null") + "}";
      }
      st += (st.empty() ? "" : ",") + std::to_string(it->second);
    }
    const framework* fw = framework_of(s);
    sites +=
        std::string(sites.size() > 1 ? "," : "") + "{\"id\":" + std::to_string(s.id) +
        ",\"w\":{\"peak\":" + std::to_string(s.at_process_peak) + ",\"live\":" + std::to_string(s.counters.live_bytes) +
        ",\"total\":" + std::to_string(s.counters.bytes_allocated) + ",\"count\":" + std::to_string(s.counters.allocs) +
        ",\"temporary\":" + std::to_string(s.counters.temporary) +
        "},\"fw\":" + (fw != nullptr ? json_quote(fw->name, true) : "null") + ",\"cut\":" +
        (s.cut ? json_quote("[stack cut at " + std::to_string(in.depth_cap) + " frames]", true) : "null") +
        ",\"st\":[" + st + "]}";
  }
  const std::string live_label = in.state == "exited"    ? "bytes still allocated at exit"
                                 : in.state == "running" ? "bytes allocated now"
                                                         : "bytes allocated when it died";
  return "{\"sort\":" + json_quote(in.sort, true) + ",\"view\":" + (in.bottom_up ? "\"bottom-up\"" : "\"top-down\"") +
         ",\"live_label\":" + json_quote(live_label, true) + ",\"frames\":" + frames + "],\"sites\":" + sites + "]}";
}

}  // namespace

bool write_html(std::FILE* out, const html_input& in) {
  page p(out);
  const std::string n = nonce();
  const double ran = in.end_ns > in.start_ns ? static_cast<double>(in.end_ns - in.start_ns) / 1e9
                     : in.state == "running" && in.now_ns > in.start_ns
                         ? static_cast<double>(in.now_ns - in.start_ns) / 1e9
                         : 0.0;
  const auto since_start = [&](std::uint64_t ns) {
    return ns > in.start_ns ? " (+" + seconds_text(static_cast<double>(ns - in.start_ns) / 1e9) + ")" : std::string();
  };
  const std::string live_head = in.state == "exited"    ? "leaked at exit"
                                : in.state == "running" ? "live now"
                                                        : "live when killed";
  std::uint64_t allocs = 0;
  for (const kind_figures& k : in.kinds) allocs += k.counters.allocs;

  p << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'nonce-" << n
    << "'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<meta name=\"generator\" content=\"poolshim-stats\">\n"
    << "<title>poolshim-stats: pid " << std::to_string(in.pid) << " " << html_escape(base_name(in.exe)) << "</title>\n"
    << "<style>" << k_css << "</style>\n</head>\n<body>\n";

  // Summary.
  p << "<header>\n<h1>poolshim-stats: pid " << std::to_string(in.pid) << " <span class=\"state "
    << html_escape(in.state) << "\">" << html_escape(in.state) << "</span></h1>\n"
    << "<p class=\"cmd\"><code>" << html_escape(in.cmdline) << "</code></p>\n</header>\n";
  p << "<section id=\"summary\">\n<table class=\"facts\">\n"
    << "<tr><th>program</th><td><code>" << html_escape(in.exe) << "</code></td></tr>\n"
    << "<tr><th>started</th><td>" << time_text(in.start_ns) << "</td></tr>\n";
  if (in.state == "exited")
    p << "<tr><th>ran</th><td>" << seconds_text(ran) << ", exited " << time_text(in.end_ns) << "</td></tr>\n";
  else if (in.state == "running")
    p << "<tr><th>running for</th><td>" << seconds_text(ran) << "</td></tr>\n";
  else
    p << "<tr><th>ended</th><td>killed or crashed (no clean exit recorded; the time is unknown)</td></tr>\n";
  p << "<tr><th>process peak</th><td><b>" << bytes_text(static_cast<long double>(in.peak_bytes)) << "</b> at "
    << time_text(in.peak_ns) << since_start(in.peak_ns) << "</td></tr>\n"
    << "<tr><th>allocations/s</th><td>" << (ran > 0 ? rate_text(allocs, ran) : "- (no end time)") << "</td></tr>\n"
    << "<tr><th>"
    << (in.state == "exited"    ? "still allocated at exit"
        : in.state == "running" ? "allocated now"
                                : "allocated when it died")
    << "</th><td><b>" << bytes_text(static_cast<long double>(in.live_bytes)) << "</b> in " << count_text(in.live_count)
    << (in.live_count == 1 ? " allocation" : " allocations")
    << (in.state == "exited" && in.live_count != 0 ? " (leaked)" : "") << "</td></tr>\n"
    << "<tr><th>events</th><td>" << count_text(in.events) << " allocations and frees recorded";
  if (in.untracked_frees != 0)
    p << "; " << count_text(in.untracked_frees) << " frees of memory allocated before tracking";
  p << "</td></tr>\n</table>\n";
  if (in.stacks_dropped)
    p << "<p class=\"note\">Some stacks were dropped (a table of the stats file was full); they count under "
         "[untracked stacks].</p>\n";
  if (in.stacks_off)
    p << "<p class=\"note\" id=\"stacks-off\">No call stacks: the stats folder had no room for the full file "
         "(POOLSHIM_STATS_DIR); only the figures per device and kind were counted.</p>\n";
  const std::size_t cut =
      static_cast<std::size_t>(std::count_if(in.sites.begin(), in.sites.end(), [](const site& s) { return s.cut; }));
  if (cut != 0) {
    bool more = false;
    const std::uint32_t needed = depth_needed(in.sites, &more);
    p << "<p class=\"note\" id=\"stacks-cut\">" << std::to_string(cut) << (cut == 1 ? " stack was" : " stacks were")
      << " cut at the depth cap of " << std::to_string(in.depth_cap)
      << " frames: their outermost frames are missing (they hang under [stack cut] in the flame graph). "
      << (needed == 0 ? "Raise POOLSHIM_STATS_DEPTH to keep more."
          : more || needed > POOLSHIM_STATS_MAX_DEPTH
              ? "The deepest has " + std::string(more ? "more than " : "") + std::to_string(needed) +
                    " frames, more than POOLSHIM_STATS_DEPTH can keep (" + std::to_string(POOLSHIM_STATS_MAX_DEPTH) +
                    ")."
              : "POOLSHIM_STATS_DEPTH=" + std::to_string(needed) + " keeps " + (cut == 1 ? "it" : "them") + " whole.")
      << "</p>\n";
  }

  p << "<h2>Per device and kind</h2>\n<table class=\"grid\" id=\"kinds\">\n<tr><th class=\"left\">device</th>"
       "<th class=\"left\">kind</th><th>allocations</th><th>frees</th><th>allocations/s</th><th>bytes allocated</th>"
       "<th>peak</th><th class=\"left\">peak at</th><th>"
    << live_head << "</th></tr>\n";
  for (const kind_figures& k : in.kinds) {
    const auto& c = k.counters;
    p << "<tr" << (in.state == "exited" && c.live_bytes > 0 ? " class=\"leak\"" : "") << "><td class=\"left\">"
      << std::to_string(k.device) << "</td><td class=\"left\">" << kind_text(k.kind) << "</td><td>"
      << count_text(c.allocs) << "</td><td>" << count_text(c.frees) << "</td><td>"
      << (ran > 0 ? rate_text(c.allocs, ran) : "-") << "</td><td>"
      << bytes_text(static_cast<long double>(c.bytes_allocated)) << "</td><td>"
      << bytes_text(static_cast<long double>(c.peak_bytes)) << "</td><td class=\"left\">" << time_text(c.peak_ns)
      << since_start(c.peak_ns) << "</td><td class=\"leaked\">" << bytes_text(static_cast<long double>(c.live_bytes))
      << "</td></tr>\n";
  }
  if (in.kinds.empty()) p << "<tr><td class=\"left\" colspan=\"9\">no allocations recorded</td></tr>\n";
  p << "</table>\n</section>\n";
  // Memory over time (timeline.h), with the lines of the sites with the largest own peaks.
  p << timeline_html(in.series, in.start_ns, site_lines_of(in.series, in.sites, k_site_lines));

  // Framework caches.
  const std::vector<framework_use> uses = frameworks_used(in.sites);
  if (!uses.empty()) {
    p << "<section id=\"frameworks\">\n";
    for (const framework_use& u : uses)
      p << "<p class=\"note framework\" data-framework=\"" << html_escape(u.fw->name) << "\"><b>"
        << html_escape(u.fw->name) << "</b>: " << std::to_string(u.sites)
        << (u.sites == 1 ? " call site is " : " call sites are ") << html_escape(u.fw->what) << " growing its cache ("
        << bytes_text(static_cast<long double>(u.bytes_at_peak))
        << " at the peak). Its blocks are reused by many allocations over time, so these stacks show where the cache "
           "grew, not what uses the memory. "
        << html_escape(u.fw->hint) << "</p>\n";
    p << "</section>\n";
  }

  // Flame graph.
  p << "<section id=\"flamegraph\">\n<h2>Call stacks</h2>\n<div id=\"controls\">\n<span>weight:</span>\n"
    << "<label><input type=\"radio\" name=\"metric\" value=\"peak\"> bytes at the process peak</label>\n"
    << "<label><input type=\"radio\" name=\"metric\" value=\"live\"> " << live_head << "</label>\n"
    << "<label><input type=\"radio\" name=\"metric\" value=\"total\"> bytes allocated</label>\n"
    << "<label><input type=\"radio\" name=\"metric\" value=\"count\"> allocations</label>\n"
    << "<label title=\"allocations freed before their thread allocated anything else\"><input type=\"radio\" "
       "name=\"metric\" value=\"temporary\"> temporary allocations</label>\n"
    << "<input type=\"search\" id=\"flame-search\" placeholder=\"highlight frames containing\u2026\">\n"
    << "<button type=\"button\" id=\"flame-reset\">reset zoom</button>\n</div>\n"
    << "<div id=\"controls-view\" class=\"controls\">\n<span>view:</span>\n"
    << "<label><input type=\"radio\" name=\"view\" value=\"top-down\"> top-down (callers above)</label>\n"
    << "<label><input type=\"radio\" name=\"view\" value=\"bottom-up\"> bottom-up (allocating functions above, "
       "callers below)</label>\n"
    << "<span>filter:</span>\n<select id=\"filter-mode\"><option value=\"keep\">sites with a frame matching"
       "</option><option value=\"drop\">sites without a frame matching</option><option value=\"hide\">every site, "
       "hiding frames matching</option></select>\n"
    << "<input type=\"search\" id=\"flame-filter\" placeholder=\"function, module or file (regex)\">\n</div>\n"
    << "<div id=\"flame-status\">The flame graph needs JavaScript.</div>\n"
    << "<div id=\"flame\"><svg id=\"flame-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"0\" height=\"0\" "
       "role=\"img\" aria-label=\"call stacks\"></svg><div id=\"flame-tip\" hidden></div></div>\n"
    << "<p class=\"where\">Icicle graph: each call stack from the program's entry (top) to the allocation (bottom); a "
       "frame's width is its share of the weight. Blue frames are a framework's cache, green ones Python, grey ones "
       "unknown. The filter applies to the graph and to the table below.</p>\n"
    << (in.frames_hidden
            ? "<p class=\"where\" id=\"frames-hidden\">The CUDA runtime's and libc's frames (and the Python "
              "interpreter's) are hidden, and sites that differ only in them are folded into one: "
              "<code>poolshim-stats report --all-frames</code> shows every frame.</p>\n"
            : "")
    << "</section>\n";

  // Top call sites.
  const std::size_t rows = in.top == 0 ? in.sites.size() : std::min(in.top, in.sites.size());
  const char* by = in.sort == "live"        ? "live bytes"
                   : in.sort == "total"     ? "bytes allocated"
                   : in.sort == "count"     ? "allocations"
                   : in.sort == "own-peak"  ? "own peak (the most each held at once)"
                   : in.sort == "temporary" ? "temporary allocations"
                                            : "bytes held at the process peak";
  // Each row names its call site by file:line, and by as many callers as it takes for no two rows
  // to read alike (two sites in one function; one helper called from two places).
  const std::vector<label_span> label =
      label_spans(std::vector<site>(in.sites.begin(), in.sites.begin() + static_cast<std::ptrdiff_t>(rows)));
  p << "<section id=\"sites\">\n<h2>Top " << std::to_string(rows) << " call sites by " << by << " (of "
    << std::to_string(in.sites.size()) << ")</h2>\n<table class=\"grid\" id=\"site-table\">\n"
    << "<tr><th>#</th><th>at peak</th><th>share</th><th>" << live_head
    << "</th><th>own peak</th><th>allocations</th><th>bytes allocated</th><th>largest</th><th>temporary</th>"
       "<th class=\"left\">call site</th></tr>\n";
  for (std::size_t i = 0; i < rows; ++i) {
    const site& s = in.sites[i];
    const auto& c = s.counters;
    const char* share_fmt = "%.1f%%";
    char share[16] = "-";
    if (in.peak_bytes > 0)
      std::snprintf(share, sizeof share, share_fmt,
                    100.0 * static_cast<double>(s.at_process_peak) / static_cast<double>(in.peak_bytes));
    p << "<tr data-site=\"" << std::to_string(i) << "\""
      << (in.state == "exited" && c.live_bytes > 0 ? " class=\"leak\"" : "") << "><td>" << std::to_string(i + 1)
      << "</td><td>" << bytes_text(static_cast<long double>(s.at_process_peak)) << "</td><td>" << share
      << "</td><td class=\"leaked\">" << bytes_text(static_cast<long double>(c.live_bytes))
      << (c.live_count > 0 ? " in " + count_text(static_cast<std::uint64_t>(c.live_count)) : "") << "</td><td>"
      << bytes_text(static_cast<long double>(c.own_peak)) << "</td><td>" << count_text(c.allocs) << "</td><td>"
      << bytes_text(static_cast<long double>(c.bytes_allocated)) << "</td><td>"
      << bytes_text(static_cast<long double>(c.largest)) << "</td><td>" << count_text(c.temporary)
      << "</td><td class=\"left\">";
    if (label[i].count == 0) {
      p << (s.id == 0 ? "[untracked stacks]" : "[stack kept without frames]");
    } else {
      for (std::size_t k = 0; k < label[i].count; ++k) {
        const frame& fr = s.frames[label[i].first + k];
        if (k != 0) p << " <span class=\"where\">\u2190 called from</span> ";
        p << "<code>" << html_escape(frame_name(fr)) << "</code>";
        const std::string where = frame_where(fr);
        if (!where.empty())
          p << " <span class=\"where\" title=\"" << html_escape(fr.file.empty() ? fr.module : fr.file) << "\">"
            << html_escape(where) << "</span>";
      }
      if (label[i].via != label_span::none) {  // two sites that differ only inside the call site
        const frame& fr = s.frames[label[i].via];
        p << " <span class=\"where\">via</span> <code>" << html_escape(frame_name(fr)) << "</code>";
        if (const std::string where = frame_where(fr); !where.empty())
          p << " <span class=\"where\">" << html_escape(where) << "</span>";
      }
    }
    if (const framework* fw = framework_of(s))
      p << "<span class=\"badge\">" << html_escape(fw->name) << " cache</span>";
    if (!s.frames.empty()) {
      p << "<details><summary>stack, " << std::to_string(s.frames.size())
        << " frames, innermost first</summary><ol class=\"stack\">";
      for (const frame& fr : s.frames) {
        p << "<li>" << html_escape(frame_name(fr));
        if (!fr.file.empty())
          p << " <span class=\"where\">(" << html_escape(fr.file) << ":" << std::to_string(fr.line) << ")</span>";
        else if (!fr.function.empty() && !fr.module.empty())
          p << " <span class=\"where\">(" << html_escape(base_name(fr.module)) << ")</span>";
        p << "</li>";
      }
      if (s.cut) p << "<li class=\"cut\">" << html_escape(cut_text(s, in.depth_cap)) << "</li>";
      p << "</ol></details>";
    }
    p << "</td></tr>\n";
  }
  if (rows == 0) p << "<tr><td class=\"left\" colspan=\"10\">no call sites recorded</td></tr>\n";
  p << "</table>\n</section>\n";
  p << sizes_html(in.kind_sizes, in.sites, in.top);  // size histograms (timeline.h)

  p << "<footer>poolshim-stats report of <code>" << html_escape(in.file) << "</code>, uid " << std::to_string(in.uid)
    << ", made " << time_text(in.now_ns) << ".</footer>\n";
  // The data: JSON with every <, > and & escaped, so nothing in it can close the element.
  p << "<script type=\"application/json\" id=\"poolshim-data\">" << data_json(in) << "</script>\n"
    << "<script nonce=\"" << n << "\">" << k_script << "</script>\n</body>\n</html>\n";
  return p.ok() && std::fflush(out) == 0 && !std::ferror(out);
}

}  // namespace poolshim::stats_tool
