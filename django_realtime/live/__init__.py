"""Live models: declare what a model broadcasts; pages apply each change as it commits (docs/live.md)."""

from .actions import ACTIONS, LIVE_EVENT, PENDING_EVENT, REFRESH_EVENT, Action, action_html, parse_action, pending_html
from .broadcasting import (
    broadcast,
    channel_for,
    cursor,
    dom_id,
    is_suppressed,
    object_for_channel,
    refresh,
    suppressed,
)
from .declarations import Declaration, broadcasts, declaration_for, deleted, register, saved, unregister
from .requests import RequestIdMiddleware, originating

__all__ = [
    "ACTIONS",
    "LIVE_EVENT",
    "PENDING_EVENT",
    "REFRESH_EVENT",
    "Action",
    "Declaration",
    "RequestIdMiddleware",
    "action_html",
    "broadcast",
    "broadcasts",
    "channel_for",
    "cursor",
    "declaration_for",
    "deleted",
    "dom_id",
    "is_suppressed",
    "object_for_channel",
    "originating",
    "parse_action",
    "pending_html",
    "refresh",
    "register",
    "saved",
    "suppressed",
    "unregister",
]
