from django.urls import path

from radshare.studies import views

urlpatterns = [
    path("", views.study_list, name="studies"),
    path("studies/<int:pk>/", views.study_detail, name="study"),
    path("upload/", views.upload, name="upload"),
]
