"""NotificationService and the system's notifications (DDS Notifications).

:func:`notify` is what background jobs and other domains call, inside their own
transaction, to tell one user something (autopay results, bill reminders, ...).
"""

from __future__ import annotations

from server.notifications.domain import Notification, UnknownNotificationType, notify

__all__ = ["Notification", "UnknownNotificationType", "notify"]
