from django.contrib.auth import views as auth_views
from django.urls import path

from radshare.studies import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.study_list, name="studies"),
    path("studies/<int:pk>/", views.study_detail, name="study"),
    path("upload/", views.upload, name="upload"),
]
