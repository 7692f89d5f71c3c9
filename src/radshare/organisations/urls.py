from django.contrib.auth import views as auth_views
from django.urls import path

from radshare.organisations import auth, two_factor_views, views

urlpatterns = [
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("two-factor/", two_factor_views.verify, name="two_factor"),
    path("two-factor/setup/", two_factor_views.setup, name="two_factor_setup"),
    path("two-factor/recovery-codes/", two_factor_views.recovery_codes, name="two_factor_recovery_codes"),
    path("account/", views.account, name="account"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("senders/", two_factor_views.senders, name="senders"),
    path("senders/<int:pk>/reset-two-factor/", two_factor_views.sender_reset, name="sender_reset"),
    path("senders/<int:pk>/log-admin/", two_factor_views.sender_log_admin, name="sender_log_admin"),
]
