from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "radshare.delivery"
    # The label of its first name stays: it names the tables and migrations of installations that exist.
    label = "notifications"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # The login limits (organisations, below this app) announce a lock by a signal; the outbox tells the sender.
        from radshare.delivery import outbox, services
        from radshare.organisations.services import login_locked, own_email_changed
        from radshare.shares import signals

        login_locked.connect(outbox.on_login_locked, dispatch_uid="radshare.delivery.login_locked")
        own_email_changed.connect(outbox.on_email_changed, dispatch_uid="radshare.delivery.own_email_changed")
        # The share's moments (shares is below this app): the messages they call for (docs/architecture.md).
        signals.share_ready.connect(services.on_share_ready, dispatch_uid="radshare.delivery.share_ready")
        signals.share_opened.connect(services.on_share_opened, dispatch_uid="radshare.delivery.share_opened")
        signals.share_ended.connect(services.on_share_ended, dispatch_uid="radshare.delivery.share_ended")
        signals.share_revoked_by_correction.connect(
            services.on_share_revoked_by_correction,
            dispatch_uid="radshare.delivery.share_revoked_by_correction",
        )
        signals.share_page.connect(services.share_page, dispatch_uid="radshare.delivery.share_page")
