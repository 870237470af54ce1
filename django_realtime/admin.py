"""The event log in Django's admin: browse it read-only, and publish an event to a channel by hand.

Rows are never edited or deleted here: the log is append-only (retention
deletes, and remembers what it deleted, see :class:`PruneMark`).  "Add" is a
form that goes through :func:`~django_realtime.publish`, with the same
checks, so the event is delivered like any other.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from .models import Event, PresenceMember, PresenceProcess, PruneMark, SkippedIds
from .names import CHANNEL_MAX_LENGTH, EVENT_MAX_LENGTH
from .publishing import publish

#: Characters of an event's data shown in the list.
PREVIEW = 80


class PublishForm(forms.Form):
    channel = forms.CharField(max_length=CHANNEL_MAX_LENGTH, help_text="For example chat:lobby or user:42.")
    event = forms.CharField(max_length=EVENT_MAX_LENGTH, initial="message", help_text="The event name.")
    payload = forms.CharField(
        label="Data",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        initial="null",
        help_text='JSON: a string needs quotes, e.g. "hello" or {"text": "hello"}.',
    )

    def clean_payload(self) -> Any:
        try:
            return json.loads(self.cleaned_data["payload"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None


class ChannelPrefixFilter(admin.SimpleListFilter):
    """Filter by the part of the channel name before its first colon (chat, user, ...): channels can be many."""

    title = "channel kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = Event.objects.values_list("channel", flat=True).distinct().order_by("channel")[:1000]
        kinds = sorted({name.split(":", 1)[0] for name in names})
        return [(kind, kind) for kind in kinds]

    def queryset(self, request: HttpRequest, queryset):
        kind = self.value()
        if kind is None:
            return queryset
        return queryset.filter(channel=kind) | queryset.filter(channel__startswith=f"{kind}:")


class ReadOnly:
    """Nothing changed or deleted through the admin."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class Listed(ReadOnly):
    """Nothing added either: rows the package writes itself."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("id", "channel", "event", "created", "preview")
    list_filter = (ChannelPrefixFilter, "event", "created")
    search_fields = ("=channel", "channel", "event", "data_json")
    date_hierarchy = "created"
    ordering = ("-id",)
    show_full_result_count = False  # COUNT(*) of a big log on every page is slow
    readonly_fields = ("id", "channel", "event", "data_json", "created")
    fields = readonly_fields

    class Media:
        css = {"all": ["django_realtime/admin.css"]}

    @admin.display(description="data")
    def preview(self, obj: Event) -> str:
        text = obj.data_json
        return text if len(text) <= PREVIEW else f"{text[: PREVIEW - 1]}…"

    def get_urls(self) -> list:
        status = path(
            "status/",
            self.admin_site.admin_view(self.status_view),
            name=f"{self.model._meta.app_label}_{self.model._meta.model_name}_status",
        )
        return [status, *super().get_urls()]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        """Show the deployment's live status: a page that updates itself over SSE (django_realtime.status)."""
        try:
            stream = reverse("django_realtime:status")
        except NoReverseMatch:  # the package's URLconf is not included: no stream to follow
            stream = None
        context = {
            **self.admin_site.each_context(request),
            "title": "Realtime status",
            "opts": self.model._meta,
            "stream_url": stream,
        }
        return TemplateResponse(request, "admin/django_realtime/event/status.html", context)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """Publish an event by hand, through publish(): stored and delivered like any other."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PublishForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            values = form.cleaned_data
            try:
                event = publish(values["channel"], values["payload"], event=values["event"])
            except ValueError as exc:  # a bad name, data too large: publish()'s own errors
                form.add_error(None, str(exc))
            else:
                self.log_addition(request, event, [{"added": {}}])
                self.message_user(request, f"Published event {event.id} to {event.channel}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:django_realtime_event_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Publish an event",
            "form": form,
            "opts": self.model._meta,
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/django_realtime/event/publish.html", context)


@admin.register(PruneMark)
class PruneMarkAdmin(Listed, admin.ModelAdmin):
    """What retention deleted: a client whose cursor is below a channel's mark gets a reset."""

    list_display = ("channel", "pruned_through")
    search_fields = ("channel",)
    ordering = ("channel",)


@admin.register(SkippedIds)
class SkippedIdsAdmin(Listed, admin.ModelAdmin):
    """Ids the hubs stepped over after GAP_TIMEOUT (only on databases with no commit-order rule)."""

    list_display = ("first", "last", "recorded")
    ordering = ("-last",)


@admin.register(PresenceMember)
class PresenceMemberAdmin(Listed, admin.ModelAdmin):
    """Who is present on which channel, across every process (django_realtime.presence).

    A member of a process that died stays listed until another process
    reaps it (within PRESENCE_TIMEOUT + PRESENCE_HEARTBEAT); "who is here"
    leaves it out already.
    """

    list_display = ("user", "channel", "joined", "process", "info_json")
    list_filter = ("joined",)
    search_fields = ("=channel", "channel", "user")
    ordering = ("channel", "joined")


@admin.register(PresenceProcess)
class PresenceProcessAdmin(Listed, admin.ModelAdmin):
    """The processes that hold presence members, and their last heartbeat."""

    list_display = ("key", "seen")
    ordering = ("-seen",)
