from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "radshare.delivery"
    # The label of its first name stays: it names the tables and migrations of installations that exist.
    label = "notifications"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # The login limits (organisations, below this app) announce a lock by a signal; the outbox tells the sender.
        from radshare.delivery import outbox
        from radshare.organisations.services import login_locked

        login_locked.connect(outbox.on_login_locked, dispatch_uid="radshare.delivery.login_locked")
