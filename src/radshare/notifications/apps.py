from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "radshare.notifications"
    label = "notifications"
    verbose_name = "Notifications"
