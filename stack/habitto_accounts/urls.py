"""Accounts routes, mounted at /api/ by the standalone server."""

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("refresh/", views.RefreshView.as_view(), name="refresh"),
    path("token/refresh/", views.RefreshView.as_view(), name="token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("users/", views.UsersView.as_view(), name="users"),
    path("users/me/", views.MeView.as_view(), name="me"),
    path("profiles/", views.ProfilesView.as_view(), name="profiles"),
    path("profiles/me/", views.MyProfileView.as_view(), name="my-profile"),
    path("profiles/me/picture/", views.MyPictureView.as_view(), name="my-picture"),
]
