from django.urls import path

from radshare.delivery import views

urlpatterns = [
    path("shares/<int:pk>/resend", views.share_resend, name="resend"),
    path("shares/<int:pk>/letter", views.share_letter, name="letter"),
]
