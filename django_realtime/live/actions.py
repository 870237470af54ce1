"""The wire form of a live action: one event whose data is HTML that htmx and live.js both apply.

Pure: no Django import.  An action's event data is one ``<template>``
carrying what live.js needs (``data-live``, ``data-live-target``,
``data-live-id``) around one element with ``hx-swap-oob``, which htmx's SSE
extension swaps by itself (htmx swaps the out-of-band elements a
``<template>`` holds and drops the template).  See docs/live.md, "On the wire".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from html.parser import HTMLParser

#: The event name of every action but refresh; ``sse-swap="live"`` on htmx pages.
LIVE_EVENT = "live"
#: The event name of a refresh; its data is the request id that caused it, or ``-``.
REFRESH_EVENT = "live-refresh"
#: The event name of a change's envelope when its fragment renders later: no page applies it (docs/live.md).
PENDING_EVENT = "live-pending"
#: A refresh's data when no request is to be left out (an SSE event with empty data is never dispatched).
NO_REQUEST = "-"

#: Actions that insert the rendered fragment next to or inside a target, and htmx's swap style for each.
INSERTS = {"append": "beforeend", "prepend": "afterbegin", "before": "beforebegin", "after": "afterend"}
#: Every action an event can carry (``refresh`` is an event of its own).
ACTIONS = (*INSERTS, "replace", "update", "remove")

#: A DOM id the package writes into a CSS selector: a letter first, then letters, digits, ``_`` and ``-``.
DOM_ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,199}\Z")
_FIRST_TAG = re.compile(r"\s*<([A-Za-z][A-Za-z0-9-]*)(?=[\s/>])")
_TEMPLATE_TAG = re.compile(r"<template\b([^>]*)>")
_ATTRIBUTE = re.compile(r'(data-live(?:-target|-id)?)="([^"]*)"')


def validate_dom_id(value: object, what: str = "DOM id") -> str:
    """Return *value* if it is a DOM id this package can address; raise ValueError otherwise."""
    if not isinstance(value, str) or not DOM_ID_PATTERN.match(value):
        raise ValueError(
            f"{what} must start with a letter and hold only letters, digits, _ and - (at most 200), got {value!r}"
        )
    return value


class _RootParser(HTMLParser):
    """Find the first element of a fragment and its id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tag: str | None = None
        self.id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.tag is None:
            self.tag = tag
            self.id = dict(attrs).get("id")


def root_of(html: str) -> tuple[str | None, str | None]:
    """Return the tag name and the id of the first element of *html* (``None`` where there is none)."""
    parser = _RootParser()
    parser.feed(html)
    parser.close()
    return parser.tag, parser.id


def _wrapper(html: str) -> str:
    # A <tr> or <td> inside a <div> is dropped by the HTML parser: give rows a table section to live in.
    tag, _ = root_of(html)
    return {"tr": "tbody", "td": "tr", "th": "tr"}.get(tag or "", "div")


def action_html(action: str, *, target: str, dom_id: str | None = None, html: str = "") -> str:
    """Return the event data of *action* on *target* (a DOM id), with the rendered fragment *html*.

    * ``append``, ``prepend``, ``before``, ``after``: *html* is one element
      whose id is *dom_id*; *target* is the container (append, prepend) or
      the sibling (before, after).  A page that shows *dom_id* already is not
      given a second one (docs/live.md, "Exactness").
    * ``replace``: *html* is one element whose id is *target*; it replaces the
      element of that id.
    * ``update``: *html* replaces the content of the element *target*.
    * ``remove``: the element *target* goes; *html* is ignored.
    """
    validate_dom_id(target, "target")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    attributes = f'data-live="{action}" data-live-target="{target}"'
    if action in INSERTS:
        validate_dom_id(dom_id, "dom_id")
        _check_root(html, dom_id, action)
        attributes += f' data-live-id="{dom_id}"'
        # Inserted only where the page shows no element of that id yet: a replay (or a render that
        # already holds the row) does not duplicate it (CSS :has(), Chromium 105, Safari 15.4, Firefox 121).
        selector = f"body:not(:has(#{dom_id})) #{target}"
        wrapper = _wrapper(html)
        inner = f'<{wrapper} hx-swap-oob="{escape(INSERTS[action] + ":" + selector)}">{html}</{wrapper}>'
    elif action == "replace":
        end = _check_root(html, target, action)
        inner = f'{html[:end]} hx-swap-oob="outerHTML"{html[end:]}'
    elif action == "update":
        wrapper = _wrapper(html)
        inner = f'<{wrapper} hx-swap-oob="innerHTML:#{target}">{html}</{wrapper}>'
    else:  # remove
        inner = f'<div hx-swap-oob="delete:#{target}"></div>'
    return f"<template {attributes}>{inner}</template>"


def pending_html(action: str, *, target: str, dom_id: str | None = None) -> str:
    """Return the envelope of *action* whose fragment a task renders later: the action's attributes, no HTML."""
    validate_dom_id(target, "target")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    attributes = f'data-live="{action}" data-live-target="{target}"'
    if action in INSERTS:
        attributes += f' data-live-id="{validate_dom_id(dom_id, "dom_id")}"'
    return f"<template {attributes} data-live-pending></template>"


def _check_root(html: str, dom_id: str | None, action: str) -> int:
    """Return where the name of *html*'s first tag ends; raise ValueError unless that element's id is *dom_id*."""
    start = _FIRST_TAG.match(html)
    if start is None or root_of(html)[1] != dom_id:
        raise ValueError(
            f"a fragment to {action} must start with one element whose id is {dom_id!r} "
            f'(id="{{{{ dom_id }}}}" in its template), got {html[:80]!r}'
        )
    return start.end()


@dataclass(frozen=True)
class Action:
    """One live action as an event carries it: read back by the testing helpers."""

    channel: str
    action: str
    target: str
    dom_id: str | None
    #: The event's data: the whole ``<template>``, HTML included.
    html: str


def parse_action(channel: str, event: str, data: object) -> Action | None:
    """Return the :class:`Action` an event of *channel* carries, or None if it carries none."""
    if event == REFRESH_EVENT:
        return Action(channel, "refresh", "", None, data if isinstance(data, str) else "")
    if event != LIVE_EVENT or not isinstance(data, str):
        return None
    match = _TEMPLATE_TAG.match(data)
    if match is None:
        return None
    fields = dict(_ATTRIBUTE.findall(match.group(1)))
    if fields.get("data-live") not in ACTIONS:
        return None
    return Action(channel, fields["data-live"], fields.get("data-live-target", ""), fields.get("data-live-id"), data)
