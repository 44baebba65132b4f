"""Error codes of the channels domain (messages in the locale catalogues)."""

from __future__ import annotations

UNKNOWN_CHANNEL = "channels.unknown_channel"  # not a configurable channel
OUTBOX_NOT_FOUND = "channels.outbox_not_found"
NOT_DEAD = "channels.not_dead_letter"  # only failed rows can be retried
SECRET_REQUIRED = "channels.secret_required"  # webhook / SMS need a secret to sign
BAD_FILTER = "channels.bad_filter"  # an unknown status or reason code in a filter
