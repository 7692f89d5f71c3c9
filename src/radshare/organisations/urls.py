from django.contrib.auth import views as auth_views
from django.urls import path

from radshare.organisations import auth, pacs_views, views

urlpatterns = [
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("pacs-nodes/", pacs_views.pacs_nodes, name="pacs_nodes"),
    path("pacs-nodes/<int:pk>/", pacs_views.pacs_node_edit, name="pacs_node_edit"),
    path("pacs-nodes/<int:pk>/delete/", pacs_views.pacs_node_delete, name="pacs_node_delete"),
    path("pacs-nodes/<int:pk>/test/", pacs_views.pacs_node_test, name="pacs_node_test"),
]
