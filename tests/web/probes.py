"""XSS probes, and how to tell that a page kept them inert.

Every probe's script sets ``window.__xss`` (or opens an alert): if it ever
runs, the browser test sees the marker. The CSP of the pages (no inline
script) would stop most of them anyway, so a probe that reaches the page as
live markup is also caught twice more, without relying on the CSP:

- in the browser, :data:`LIVE_MARKUP` finds any element with an event
  handler attribute, a ``javascript:`` URL, or a script that is not the
  site's own; and the console shows the CSP violation (tests/web/browser.py);
- on the server's HTML, :func:`live_markup` parses the page the same way,
  and :func:`unescaped` finds any probe written out verbatim.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: What a probe runs. No spaces or slashes in the first two: they fit in a git ref name or a file name.
MARK = "window.__xss=1"
ALERT = "alert(1)"

# File and directory names: anything but "/" and NUL.
IMG = f"<img src=x onerror={MARK}>"
SVG_BREAKOUT = f'"><svg onload={MARK}>'
SCRIPT_DIR = f"<script>{MARK}<"  # with the file "script>" inside: "<script>...</script>" if a path is joined raw
JS_NAME = f"javascript:{MARK}"  # a relative href to this name would run it
QUOTE_BREAKOUT = f"'><img src=x onerror={ALERT}>"

# git ref names: no spaces, ":", "?", "*", "[", "\\", "..", "@{"; "/" separates components.
GIT_BRANCH = f"<svg/onload={MARK}>"
GIT_BRANCH_BREAKOUT = f'"><svg/onload={ALERT}>'
GIT_TAG = f"<img/src=x/onerror={MARK}>"
# hg labels: no ":", newline or NUL; spaces are fine.
HG_BRANCH = f"<img src=x onerror={MARK}>"
HG_BOOKMARK = f"<script>{MARK}</script>"
HG_TAG = f'"><svg onload={ALERT}>'

COMMIT_MESSAGE = f"<script>{MARK}</script> subject {IMG}\n\nbody {SVG_BREAKOUT} <a href=\"javascript:{MARK}\">x</a>"
AUTHOR = f'<img src=x onerror={MARK}> "><svg onload={ALERT}>'
GIT_AUTHOR = f"{AUTHOR} <{SVG_BREAKOUT}@example.com>"
HG_AUTHOR = f"{AUTHOR} <x@example.com>"
TOKEN_LABEL = f"<img src=x onerror={MARK}>"

README = f"""# Probe <img src=x onerror={MARK}>

<script>{MARK}</script>

<img src="x" onerror="{MARK}">

<svg onload="{MARK}"><circle r="5"/></svg>

<details open ontoggle="{MARK}"><summary>toggle</summary>opened</details>

<iframe src="javascript:{MARK}"></iframe>
<iframe srcdoc="&lt;script&gt;parent.__xss=1&lt;/script&gt;"></iframe>

<object data="javascript:{MARK}"></object>
<embed src="javascript:{MARK}">

<a href="javascript:{MARK}">plain javascript link</a>
<a href="JaVaScRiPt:{MARK}">mixed case</a>
<a href="&#106;avascript:{MARK}">entity</a>
<a href=" javascript:{MARK}">leading space</a>
<a href="data:text/html,&lt;script&gt;{MARK}&lt;/script&gt;">data URL</a>

[markdown javascript link](javascript:{MARK})
[markdown title breakout](https://example.com "x\\" onmouseover=\\"{MARK}")
![image alt breakout" onerror="{MARK}](x)

<form action="javascript:{MARK}"><button formaction="javascript:{MARK}">go</button></form>
<style>body {{ display: none }}</style>
<p style="background:url(javascript:{MARK})">styled</p>
<meta http-equiv="refresh" content="0;url=javascript:{MARK}">
<base href="javascript:{MARK}//">
<math><mtext><table><mglyph><style><img src=x onerror={MARK}></style></mglyph></table></mtext></math>

Text after the probes: still here.
"""

RAW_HTML = f"<!doctype html><html><body><script>{MARK};{ALERT}</script><img src=x onerror={MARK}></body></html>\n"
RAW_SVG = (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{MARK}"><script>{MARK};{ALERT}</script>'
           '<circle r="5"/></svg>\n')

#: Every probe string that must never appear verbatim in a page's HTML. Each starts a tag: text
#: such as ``onerror="..."`` is harmless between tags once its ``<`` is escaped, and in an
#: attribute it is caught by :func:`live_markup` (an attribute that breaks out becomes its own).
PROBES = (IMG, SVG_BREAKOUT, SCRIPT_DIR, QUOTE_BREAKOUT, GIT_BRANCH, GIT_BRANCH_BREAKOUT, GIT_TAG, HG_BRANCH,
          HG_BOOKMARK, HG_TAG, TOKEN_LABEL, "<script>window", "<svg onload", "<img src=x onerror", "<details open",
          "<iframe", "<object", "<embed", "<base", "<meta http-equiv", "<form action=\"javascript", "<math>")

#: Run in a raw file's page: what the browser made of it. A text/plain document is the browser's
#: own text view (one <pre>, styled by the browser itself); nothing in it may be markup of the file.
RAW_VIEW = """
return {
  type: document.contentType,
  ran: window.__xss !== undefined,
  elements: Array.from(document.querySelectorAll('body *')).map(el => el.tagName.toLowerCase()),
  text: document.body ? document.body.innerText : null,
};
"""

#: Run in the page: what of it is live markup (the marker, handlers, javascript: URLs, foreign scripts).
LIVE_MARKUP = """
const found = [];
if (window.__xss !== undefined) found.push('window.__xss is set: a probe ran');
const urls = ['href', 'src', 'action', 'formaction', 'data', 'xlink:href', 'background', 'poster'];
for (const el of document.querySelectorAll('*')) {
  for (const attr of el.attributes) {
    const name = attr.name.toLowerCase();
    const value = attr.value.replace(/[\\u0000-\\u0020]/g, '').toLowerCase();
    if (name.startsWith('on')) found.push(el.tagName + ' has ' + name + '=' + attr.value);
    if (urls.includes(name) && /^(javascript|vbscript|data:text\\/html)/.test(value))
      found.push(el.tagName + ' ' + name + '=' + attr.value);
    if (name === 'srcdoc' || name === 'style') found.push(el.tagName + ' has ' + name);
  }
  const tag = el.tagName.toLowerCase();
  if (tag === 'script' && el.getAttribute('src') !== '/static/site.js') found.push('a script: ' + el.outerHTML);
  if (['iframe', 'object', 'embed', 'base', 'frame', 'frameset'].includes(tag)) found.push('a ' + tag);
  if (tag === 'meta' && el.getAttribute('http-equiv')) found.push('a meta http-equiv');
  if (tag === 'style') found.push('a style element');
  if (tag === 'svg' && el.closest('main')) found.push('an inline svg: ' + el.outerHTML.slice(0, 80));
}
for (const a of document.querySelectorAll('a[href], form[action], [formaction]')) {
  const url = a.href || a.action || a.formAction || '';
  if (/^(javascript|vbscript|data):/i.test(url)) found.push('a link to ' + url);
}
return found;
"""

_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "xlink:href", "background", "poster"})
_DANGEROUS_URL = re.compile(r"^(javascript|vbscript|data:text/html)", re.IGNORECASE)
_FORBIDDEN_TAGS = frozenset({"iframe", "object", "embed", "base", "frame", "frameset", "style", "svg", "math"})


class _LiveMarkup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            text = re.sub(r"[\x00-\x20]", "", value or "")
            if name.startswith("on"):
                self.found.append(f"<{tag}> with {name}={value!r}")
            if name in _URL_ATTRIBUTES and _DANGEROUS_URL.match(text):
                self.found.append(f"<{tag}> with {name}={value!r}")
            if name in ("srcdoc", "style"):
                self.found.append(f"<{tag}> with {name}")
        if tag == "script" and dict(attrs).get("src") != "/static/site.js":
            self.found.append(f"<script {attrs!r}>")
        if tag in _FORBIDDEN_TAGS:
            self.found.append(f"<{tag}>")
        if tag == "meta" and any(name == "http-equiv" for name, _ in attrs):
            self.found.append("<meta http-equiv>")

    handle_startendtag = handle_starttag


def live_markup(html: str) -> list[str]:
    """The elements and attributes of ``html`` that could run script or restyle the page."""
    parser = _LiveMarkup()
    parser.feed(html)
    parser.close()
    return parser.found


def unescaped(html: str) -> list[str]:
    """The probes written into ``html`` verbatim (they should only ever appear escaped)."""
    return [probe for probe in PROBES if probe in html]
