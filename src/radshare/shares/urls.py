from django.urls import path

from radshare.shares import conflict_views, pacs_views, views

urlpatterns = [
    path("pacs/", pacs_views.pacs_search, name="pacs_search"),
    path("shares/", views.share_list, name="list"),
    path("shares/new", views.share_new, name="new"),
    path("shares/<int:pk>/", views.share_detail, name="detail"),
    path("shares/<int:pk>/revoke", views.share_revoke, name="revoke"),
    path("shares/<int:pk>/unlock", views.share_unlock, name="unlock"),
    path("shares/<int:pk>/retry", views.share_retry, name="retry"),
    path("conflicts/", conflict_views.conflict_list, name="conflicts"),
    path("conflicts/<int:pk>/", conflict_views.conflict_detail, name="conflict"),
    path("conflicts/<int:pk>/accept", conflict_views.conflict_accept, name="conflict_accept"),
    path("conflicts/<int:pk>/dismiss", conflict_views.conflict_dismiss, name="conflict_dismiss"),
]
