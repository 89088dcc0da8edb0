"""BERTViz head and model views as self-contained pages that render offline.

bertviz's HTML loads require.js, d3 and jQuery from a CDN, so it draws nothing
without a network. We inline the same libraries (from the npm registry:
requirejs 2.3.6, d3 5.7.0, jQuery 2.2.4; files in ``vendor/``, licences beside
them) and register d3 and jQuery as AMD modules before bertviz asks for them.

Token labels (``ID (GROUP)``) end up inside a ``<script>`` as JSON; ``<``, ``>``
and ``&`` in them are written as ``\\u003c``-style escapes, so an ID cannot close
the script or inject markup, and the page still shows the ID as it is.
"""

from __future__ import annotations

import re
from importlib import resources

import torch

_VENDOR = resources.files("seq2king.analysis.vendor")
_CDN_SCRIPT = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/[^"]+require\.min\.js"></script>')
_REQUIRE_CONFIG = re.compile(r"require\.config\(\{\s*paths:\s*\{[^}]*\}\s*\}\);", re.S)
_PARAMS = re.compile(r"(const params = )(.*?)(;\n)", re.S)


def _vendor(name: str) -> str:
    # "</script" cannot occur inside an inline script; these minified files do not
    # contain it, but make sure.
    return (_VENDOR / name).read_text(encoding="utf-8").replace("</script", "<\\/script")


def _escape_json_for_script(js: str) -> str:
    return js.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def make_offline(html: str) -> str:
    """Turn bertviz's CDN-loading HTML into one self-contained page."""
    libs = (
        "<script>" + _vendor("d3-5.7.0.min.js") + "</script>\n"
        "<script>" + _vendor("jquery-2.2.4.min.js") + "</script>\n"
        "<script>" + _vendor("require-2.3.6.js") + "</script>\n"
        "<script>define('d3', [], function () { return window.d3; });"
        "define('jquery', [], function () { return window.jQuery; });</script>\n"
    )
    if not _CDN_SCRIPT.search(html):
        raise RuntimeError("unexpected bertviz HTML: no require.js script tag to replace")
    html = _CDN_SCRIPT.sub(lambda m: libs, html, count=1)
    html = _REQUIRE_CONFIG.sub("", html, count=1)
    html = _PARAMS.sub(lambda m: m.group(1) + _escape_json_for_script(m.group(2)) + m.group(3), html, count=1)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>seq2king attention</title></head>"
            "<body>\n" + html + "\n</body></html>\n")


def views(attention: list[torch.Tensor], tokens: list[str]) -> dict[str, str]:
    """``{"head_view": html, "model_view": html}`` for per-layer (1, heads, n, n) attention."""
    from bertviz import head_view, model_view

    attn = [a.detach().float().cpu() for a in attention]
    return {
        "head_view": make_offline(head_view(attn, tokens, html_action="return").data),
        "model_view": make_offline(model_view(attn, tokens, html_action="return").data),
    }
