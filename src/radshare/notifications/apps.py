from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "radshare.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The login limits (organisations, below this app) announce a lock by a signal; the outbox tells the sender.
        from radshare.notifications import outbox
        from radshare.organisations.services import login_locked

        login_locked.connect(outbox.on_login_locked, dispatch_uid="radshare.notifications.login_locked")
