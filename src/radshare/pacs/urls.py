from django.urls import path

from radshare.pacs import views

urlpatterns = [
    path("pacs-nodes/", views.nodes, name="nodes"),
    path("pacs-nodes/<int:pk>/", views.node_edit, name="node_edit"),
    path("pacs-nodes/<int:pk>/delete/", views.node_delete, name="node_delete"),
    path("pacs-nodes/<int:pk>/test/", views.node_test, name="node_test"),
]
